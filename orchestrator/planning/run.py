"""`hashpivot plan`: evaluate the grid, then summarize and recommend."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from orchestrator.planning.config import Plan
from orchestrator.planning.evaluate import (
    CellProgress,
    CellResult,
    MapCells,
    Scenario,
    check_policy,
    grid,
    run_cells_sequentially,
    scenarios,
    site_mw,
    sizes_mw,
)
from orchestrator.planning.model import (
    Outcome,
    Recommendation,
    SizeSummary,
    bootstrap_npv,
    outcomes,
    recommend,
    summarize,
)


@dataclass(frozen=True, slots=True)
class PlanResult:
    plan: Plan
    scenarios: list[Scenario]
    cells: list[CellResult]
    outcomes: list[Outcome]
    bootstrap: dict[float, Any]
    sizes: list[SizeSummary]
    recommendation: Recommendation

    def summary(self) -> dict[str, Any]:
        """Everything the report shows, as JSON-ready data (NaN written as null)."""
        f = self.plan.file
        base_lf = self.plan.site.demand.load_factor if self.plan.site.demand else None
        zero = next(s for s in self.sizes if s.size_mw == 0)
        out: dict[str, Any] = _clean(
            {
                "site": {
                    "mw": site_mw(self.plan),
                    "policy": f.policy or self.plan.site.policy.name,
                },
                "conversion": f.conversion.model_dump(),
                "financing": f.financing.model_dump(),
                "scenarios": [
                    {"name": s.name, "kind": s.kind, "assumptions": s.assumptions(base_lf)}
                    for s in self.scenarios
                ]
                + (
                    [
                        {
                            "name": "bootstrap",
                            "kind": "bootstrap",
                            "assumptions": bootstrap_assumptions(self.plan, self.scenarios[0].name),
                        }
                    ]
                    if self.bootstrap
                    else []
                ),
                "sizes": [asdict(s) for s in self.sizes],
                "outcomes": [asdict(o) for o in self.outcomes],
                "recommendation": asdict(self.recommendation),
                "valuations": {
                    "quoted_mining_usd_per_mw": f.valuations.mining_usd_per_mw,
                    "quoted_ai_usd_per_mw": f.valuations.ai_usd_per_mw,
                    "mining_usd_per_mw": zero.npv_mean / site_mw(self.plan),
                    "converted_usd_per_mw": {
                        f"{s.size_mw:g}": s.converted_mw_value for s in self.sizes if s.size_mw
                    },
                },
            }
        )
        return out


def bootstrap_assumptions(plan: Plan, scenario: str) -> str:
    bs = plan.file.scenarios.bootstrap
    return (
        f"{bs.draws} histories of {bs.block_days}-day blocks drawn with replacement from "
        f"the days of '{scenario}' as the site ran them (seed {bs.seed}); each size sees "
        "the same draws; the spread shown is P10-P90 of NPV"
    )


def _clean(x: Any) -> Any:
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else x
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def run_plan(
    plan: Plan, *, map_cells: MapCells | None = None, progress: CellProgress | None = None,
    bootstrap_progress: CellProgress | None = None,
) -> PlanResult:
    """Run every size × scenario (default: here, one after another) and summarize;
    `progress` counts the runs, `bootstrap_progress` the bootstrap's histories."""
    check_policy(plan)
    scs = scenarios(plan)
    cells = grid(plan)
    results = (map_cells or run_cells_sequentially)(plan, cells, progress)
    outs = outcomes(plan, results)
    base = scs[0].name
    boot = bootstrap_npv(plan, results, base, bootstrap_progress)
    sizes = summarize(plan, outs, boot, base)
    rec = recommend(plan, sizes, len(scs))
    assert [s.size_mw for s in sizes] == sizes_mw(plan)
    return PlanResult(plan, scs, results, outs, boot, sizes, rec)
