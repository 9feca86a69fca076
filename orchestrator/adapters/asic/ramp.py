"""Ramp planning: which miners to curtail or resume in this step. Pure, vectorized.

The engine decides *which* miners should sleep; this decides *when*, so a site's draw
never moves by more than the configured kW or miner count within any window:

- curtailments go first, least value per watt first (the least efficient miners);
- resumptions follow, most value per watt first, and only into power headroom the site
  has now (a curtailment frees power once the miner has stopped, so it is not counted
  in the same step);
- each site has its own budget; a miner that does not fit waits for the next step,
  in order, so the sequence follows efficiency strictly.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from orchestrator.engine.scoring import group_cumsum_before
from orchestrator.models.asic_config import RampConfig

F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]
IDX = npt.NDArray[np.intp]
B = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class RampStep:
    """Indices (into the inputs) to act on now, and those left for later steps."""

    curtail: IDX
    resume: IDX
    waiting: IDX

    @property
    def moves(self) -> int:
        return int(self.curtail.size + self.resume.size)


def plan_ramp_step(
    *,
    mining: B,
    want_mining: B,
    movable: B,
    delta_w: F64,
    priority: F64,
    site: I32,
    budget_w: F64,
    budget_miners: F64,
    headroom_w: F64,
) -> RampStep:
    """One step toward the targets (module docstring).

    Per miner: `mining` now, `want_mining` target, `movable` (reachable, not opted out),
    `delta_w` the draw it adds when mining rather than asleep (W, >= 0), `priority` its
    value per watt (higher: keep longer, restore sooner), `site` index. Per site:
    `budget_w` and `budget_miners` left in the window, `headroom_w` the power the site
    may still add now (cap minus what it draws or has committed).
    """
    delta = np.maximum(np.asarray(delta_w, dtype=np.float64), 0.0)
    site = np.asarray(site, dtype=np.int32)
    budget_w = np.maximum(np.asarray(budget_w, dtype=np.float64), 0.0)
    budget_n = np.maximum(np.asarray(budget_miners, dtype=np.float64), 0.0)
    headroom = np.maximum(np.asarray(headroom_w, dtype=np.float64), 0.0)

    down = np.flatnonzero(mining & ~want_mining & movable)
    up = np.flatnonzero(~mining & want_mining & movable)

    cut = _prefix(down, site, delta, priority[down], budget_w, budget_n, None)
    used_w = np.bincount(site[cut], weights=delta[cut], minlength=budget_w.shape[0])
    used_n = np.bincount(site[cut], minlength=budget_n.shape[0]).astype(np.float64)
    res = _prefix(up, site, delta, -priority[up], budget_w - used_w, budget_n - used_n,
                  headroom)
    acted = np.zeros(mining.shape[0], dtype=bool)
    acted[cut] = True
    acted[res] = True
    waiting = np.setdiff1d(np.concatenate([down, up]), np.flatnonzero(acted))
    return RampStep(curtail=cut, resume=res, waiting=waiting)


def _prefix(
    candidates: IDX,
    site: I32,
    delta: F64,
    key: F64,
    budget_w: F64,
    budget_n: F64,
    headroom: F64 | None,
) -> IDX:
    """The longest prefix per site, in `key` order, within every per-site limit."""
    if candidates.size == 0:
        return candidates
    s = site[candidates]
    order = np.lexsort((candidates, key, s))  # ties keep address order: deterministic
    cand, s = candidates[order], s[order]
    w = delta[cand]
    before_w = group_cumsum_before(s, w)
    before_n = group_cumsum_before(s, np.ones_like(w))
    fits = (before_w + w <= budget_w[s] + 1e-9) & (before_n + 1 <= budget_n[s] + 1e-9)
    if headroom is not None:
        fits &= before_w + w <= headroom[s] + 1e-9
    # A prefix: once one miner does not fit, the ones after it wait too (strict order).
    blocked = group_cumsum_before(s, (~fits).astype(np.float64)) + (~fits) > 0
    return np.sort(cand[~blocked])


@dataclass
class RampWindow:
    """Moves made in the trailing window, per site: what the budget has left."""

    config: RampConfig
    n_sites: int
    _moves: deque[tuple[float, int, float]] = field(default_factory=deque)

    def record(self, now_s: float, site: npt.ArrayLike, delta_w: npt.ArrayLike) -> None:
        for s, w in zip(np.asarray(site).tolist(), np.asarray(delta_w).tolist(), strict=True):
            self._moves.append((now_s, int(s), float(w)))

    def remaining(self, now_s: float) -> tuple[F64, F64]:
        """(W, miners) each site may still move before the window rolls on."""
        while self._moves and self._moves[0][0] <= now_s - self.config.window_s:
            self._moves.popleft()
        used_w = np.zeros(self.n_sites)
        used_n = np.zeros(self.n_sites)
        for _, s, w in self._moves:
            used_w[s] += w
            used_n[s] += 1
        kw = self.config.max_kw_per_window
        n = self.config.max_miners_per_window
        budget_w = np.full(self.n_sites, np.inf) if kw is None else kw * 1000.0 - used_w
        budget_n = np.full(self.n_sites, np.inf) if n is None else n - used_n
        return budget_w, budget_n
