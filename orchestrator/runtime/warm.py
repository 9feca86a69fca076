"""Compile every kernel into the on-disk cache (`hashpivot warm-cache`).

Numba compiles a kernel on its first call, once per argument types, and keeps the machine
code in its cache directory (`orchestrator.framework.jit`): a process that finds it there
loads in milliseconds what a cold one compiles for tens of seconds. This runs, once, the
code that calls every kernel with the types a controller calls them with:

- the policy contract check (`orchestrator.testing.check_policy`) of every installed
  policy, and of the config's own when one is given with its guards: cycles of a small
  mixed site through the decision step a running controller uses, spikes, caps, clock
  changes and a stale market included, so the engine's kernels and the policies' are
  compiled for the controller's column types;
- a two-day backtest with its baselines and hindsight oracle over the recorded data
  bundled with hashpivot: the simulated site of dry-runs and backtests.

The image build runs it into a directory baked into the image; an operator can run it
on a cache volume before a restart.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import HashpivotError
from orchestrator.models.config import HashpivotConfig, is_policy_path, load_config

#: The bundled-data site of the backtest part: a capped site with ASICs and GPU nodes, so
#: the cap, the job book and the oracle all run. Two days at the configured step.
WARM_SITE = """\
sites:
  - {name: warm, power_cap_kw: 30, tariff_adder_usd_mwh: 4.0, pool_fee: 0.02,
     ai_platform_fee: 0.10}
fleet:
  - {profile: s19-xp, count: 4, site: warm, mode: mine}
  - {profile: s21, count: 4, site: warm, mode: mine}
  - {profile: h100-sxm-8x, count: 2, site: warm, mode: ai}
market:
  btc_usd: {path: "bundled:recorded/btc_daily.csv", time_column: date,
            value_column: price_usd, unit: usd, observed_lag_s: 86400}
  difficulty: {path: "bundled:recorded/btc_daily.csv", time_column: date,
               value_column: difficulty, observed_lag_s: 86400}
  fees_btc_per_block: {path: "bundled:recorded/btc_daily.csv", time_column: date,
                       value_column: fees_btc_per_block, unit: btc, observed_lag_s: 86400}
  subsidy_btc: {path: "bundled:recorded/btc_daily.csv", time_column: date,
                value_column: subsidy_btc_per_block, unit: btc, observed_lag_s: 86400}
  power_usd_mwh:
    default: {path: "bundled:recorded/ercot_hb_west_hourly.csv", time_column: time,
              value_column: usd_per_mwh, unit: usd_per_mwh, observed_lag_s: 3600,
              max_gap_s: 7200}
  gpu_usd_per_gpu_hour: {H100_80GB_SXM5: 2.1}
demand: {path: "bundled:recorded/ai_jobs_trace.csv", load_factor: 0.6, max_wait_h: 12}
policy: {name: hysteresis}
guards: {min_dwell_s: 3600, stale_after_s: 172800}
backtest: {start: "2024-05-01T00:00:00Z", end: "2024-05-03T00:00:00Z", step_s: 3600}
"""


@dataclass
class WarmReport:
    """What a warm-up found: kernels, and signatures compiled or loaded from the cache."""

    cache_dir: str | None
    kernels: int = 0
    #: Signatures compiled by this run (and saved to the cache).
    compiled: int = 0
    #: Signatures loaded from the cache instead.
    loaded: int = 0
    #: Kernels neither called here nor in the cache: a process compiles them on first use.
    unexercised: list[str] = field(default_factory=list)
    #: Policies not checked, and why.
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def kernels(extra_modules: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every compiled function defined in hashpivot's modules (and `extra_modules`), by
    qualified name. Modules whose optional dependencies are not installed hold none that
    could run, so they are left out."""
    from numba.core.registry import CPUDispatcher

    import orchestrator
    import policies

    names = set(extra_modules)
    for package in (orchestrator, policies):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            names.add(info.name)
    found: dict[str, Any] = {}
    for name in sorted(names):
        try:
            module = importlib.import_module(name) if name not in sys.modules \
                else sys.modules[name]
        except ImportError:  # an extra that is not installed ([k8s], [gpu], [ray])
            continue
        for attr, value in vars(module).items():
            if isinstance(value, CPUDispatcher) and value.py_func.__module__ == name:
                found[f"{name}.{attr}"] = value
    return found


def _in_cache(dispatcher: Any) -> bool:
    """Whether the cache holds code of `dispatcher` for its current source. A kernel that
    only other kernels call is loaded inside their code, never dispatched on its own, so
    a process that found the cache warm sees no signature of it."""
    try:  # numba has no public call for this; an unreadable index means "not cached"
        return bool(dispatcher._cache._cache_file._load_index())
    except Exception:
        return False


def _policies(config: HashpivotConfig | None) -> Iterator[tuple[str, dict[str, Any]]]:
    from orchestrator.framework.registry import registered_policies

    for name in sorted(registered_policies()):
        yield name, {}
    if config is not None:
        yield config.policy.name, dict(config.policy.params)


def _policy_modules(spec: str) -> list[str]:
    """The module(s) the checked policy `spec` was loaded from, looked up without loading
    it again: a policy file loaded twice is a second module with new, uncompiled kernels."""
    from orchestrator.framework.registry import registered_policies

    spec = spec.strip()
    if is_policy_path(spec):
        path = Path(spec.partition(":")[0] if spec.count(":") == 1 else spec).resolve()
        files = {name: getattr(module, "__file__", None)
                 for name, module in list(sys.modules.items())}
        return [name for name, file in files.items() if file and Path(file).resolve() == path]
    if ":" in spec:
        return [spec.partition(":")[0]]
    entry = registered_policies().get(spec)
    return [] if entry is None else [entry.module]


def warm(config_path: Path | None = None,
         progress: Callable[[str], None] | None = None) -> WarmReport:
    """Exercise every kernel (see the module docstring) and report what was compiled."""
    from numba.core import config as numba_config

    from orchestrator.backtest.runner import run_backtest
    from orchestrator.testing import check_policy

    began = time.perf_counter()
    say = progress or (lambda _line: None)
    config = None if config_path is None else load_config(config_path)
    # numba sets its config attributes at import, from the environment (no stubs).
    cache_dir = getattr(numba_config, "CACHE_DIR", "")
    report = WarmReport(cache_dir=str(cache_dir) if cache_dir else None)
    extra: list[str] = []
    for spec, params in _policies(config):
        say(f"policy {spec}")
        try:
            result = check_policy(spec, params, config=config)
        except HashpivotError as exc:
            report.skipped[spec] = str(exc)
            continue
        failed = [f.check for f in result.findings if not f.ok]
        if failed:
            # Still compiled as far as it ran; a policy that needs parameters fails to load.
            report.skipped[spec] = "; ".join(failed)
        extra += _policy_modules(spec)
    say("backtest on the bundled data")
    with tempfile.TemporaryDirectory(prefix="hashpivot-warm-") as folder:
        site = Path(folder) / "site.yaml"
        site.write_text(WARM_SITE, encoding="utf-8")
        run_backtest(load_config(site), baselines=True)
    found = kernels(tuple(extra))
    report.kernels = len(found)
    for name, dispatcher in found.items():
        stats = dispatcher.stats
        report.compiled += sum(stats.cache_misses.values())
        report.loaded += sum(stats.cache_hits.values())
        if not dispatcher.signatures and not _in_cache(dispatcher):
            report.unexercised.append(name)
    report.seconds = time.perf_counter() - began
    return report
