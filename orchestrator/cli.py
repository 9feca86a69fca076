"""The `hashpivot` command line.

User errors (bad config, bad data, unknown policy) print one clear message and exit 2,
never a traceback.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from orchestrator.errors import ConfigError, HashpivotError

if TYPE_CHECKING:
    from orchestrator.models.config import HashpivotConfig

app = typer.Typer(
    name="hashpivot",
    help="Switch a site's hardware between Bitcoin mining and rented AI jobs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
policies_app = typer.Typer(help="Decision policies.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration files.", no_args_is_help=True)
app.add_typer(policies_app, name="policies")
app.add_typer(config_app, name="config")
data_app = typer.Typer(help="Recorded data files.", no_args_is_help=True)
app.add_typer(data_app, name="data")

# Piped output (CI logs, files) gets a wide table instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Site config (YAML).")]


class ModeChoice(StrEnum):
    """`--mode` values, listed in the help; the same strings as `ControllerMode` (a test
    keeps them equal) without importing the config models for every command."""

    live = "live"
    shadow = "shadow"
    dry_run = "dry-run"


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("hashpivot")
        except PackageNotFoundError:  # run from a source tree that was never installed
            number = "unknown"
        console.print(f"hashpivot {number}", highlight=False)
        raise typer.Exit()


class LogFormat(StrEnum):
    text = "text"
    json = "json"


#: HASHPIVOT_* variables that are not config fields (the node agent's, the test suite's).
OTHER_ENV = frozenset({"HASHPIVOT_NODE_NAME", "HASHPIVOT_NVML_SET_LIMITS",
                       "HASHPIVOT_REQUIRE_NVML", "HASHPIVOT_REQUIRE_TIER2",
                       "HASHPIVOT_TESTENV_DIR", "HASHPIVOT_KUEUE_TESTENV_DIR"})


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True,
                     help="Print the installed version and exit."),
    ] = False,
    log_format: Annotated[
        LogFormat, typer.Option(help="Log lines as text, or one JSON object per line.")
    ] = LogFormat.text,
    log_level: Annotated[
        str, typer.Option(help="Least level logged: DEBUG, INFO, WARNING or ERROR.")
    ] = "INFO",
) -> None:
    """Switch a site's hardware between Bitcoin mining and rented AI jobs."""
    from orchestrator.runtime.logs import configure_logging

    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise HashpivotError(f"--log-level: one of DEBUG, INFO, WARNING, ERROR, got {log_level!r}")
    configure_logging(log_format.value, level)
    _check_env()


def _check_env() -> None:
    """`HASHPIVOT_…` variables lay config values over the file. A misspelled name would be
    ignored without a word, and a bad value blamed on the file: warn about the first and
    name the variable in the second."""
    import logging
    import os

    names = sorted(n for n in os.environ if n.startswith("HASHPIVOT_") and n not in OTHER_ENV)
    if not names:
        return
    from pydantic import ValidationError

    from orchestrator.models.config import HashpivotConfig, environment_values

    for name in names:
        problem = _env_field_problem(name)
        if problem is not None:
            logging.getLogger("hashpivot.cli").warning(
                "environment variable %s names no config field: %s", name, problem)
    try:
        HashpivotConfig(**environment_values())
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            for name in names:
                path = name.removeprefix("HASHPIVOT_").lower().split("__")
                if loc[: len(path)] == path:
                    problems.append(f"environment variable {name}: {'.'.join(loc)}: "
                                    f"{err['msg']}")
                    break
        if problems:
            raise HashpivotError("\n".join(problems)) from None


def _env_field_problem(name: str) -> str | None:
    """Why `HASHPIVOT_A__B` names no config field (`a.b`), or None when it does."""
    import typing

    from pydantic import BaseModel

    from orchestrator.models.config import HashpivotConfig

    model: Any = HashpivotConfig
    path = name.removeprefix("HASHPIVOT_").lower().split("__")
    for depth, part in enumerate(path):
        fields = model.model_fields
        if part not in fields:
            where = ".".join(path[:depth]) or "the config"
            close = [f for f in fields if f.startswith(part[:3])][:3]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            return f"{where} has no field {part!r}{hint}"
        if depth == len(path) - 1:
            return None
        # Descend into a nested section; a list or mapping takes JSON, so stop there.
        annotation = fields[part].annotation
        nested = [a for a in (annotation, *typing.get_args(annotation))
                  if isinstance(a, type) and issubclass(a, BaseModel)]
        if not nested:
            return None
        model = nested[0]
    return None


def _when(ts: float) -> str:
    """A journal time for people: UTC, with its zone, whatever the host's zone is."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _parse_when(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise HashpivotError(f"{flag}: not an ISO date or time: {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _usd(x: float) -> str:
    return f"{x:,.0f}"


@app.command()
def backtest(
    config: ConfigOpt,
    start: Annotated[str | None, typer.Option("--from", help="Start (ISO date/time, UTC).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="End (ISO date/time, UTC).")] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", "-p", help=(
            "Policy name, module:Class or file.py; LABEL=POLICY names the run (the same "
            "policy twice with other --params). Repeatable.")),
    ] = None,
    params: Annotated[
        list[str] | None,
        typer.Option("--params", help=(
            "A run's parameter: LABEL.name=value, or name=value when one policy runs "
            "(repeatable), e.g. --params slow.confirm_ticks=6.")),
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Report folder.")] = None,
    baselines: Annotated[bool, typer.Option(help="Run baselines and the oracle.")] = True,
    unguarded_baselines: Annotated[
        bool,
        typer.Option(help="Also run each baseline without dwell or switch budgets (labelled)."),
    ] = False,
    oracle_gap: Annotated[
        float | None,
        typer.Option(help="Oracle stops at this gap between bound and feasible (0.005 = 0.5%)."),
    ] = None,
    oracle_iterations: Annotated[
        int | None, typer.Option(help="Oracle stops after this many iterations.")
    ] = None,
    use_ray: Annotated[
        bool, typer.Option("--ray/--no-ray", help="Run policies in parallel as Ray tasks.")
    ] = True,
    ray_address: Annotated[
        str | None, typer.Option(help="Join this Ray cluster instead of starting one.")
    ] = None,
    sweep: Annotated[
        Path | None, typer.Option(help="Sweep file: policy, parameter grid, periods.")
    ] = None,
    journal: Annotated[
        Path | None,
        typer.Option(help="Replay a controller's journal: decide every cycle again (with "
                     "--report, a dry-run's journal also gets the replayed plans' ledger)."),
    ] = None,
    ignore_programs: Annotated[
        bool,
        typer.Option(help="Also run each policy with the power contract's programs (demand "
                     "charge, coincident peak, demand response, curtailment credit) unseen "
                     "by its decisions but billed, labelled '(programs ignored)'."),
    ] = False,
) -> None:
    """Backtest policies on recorded market data and write a report (or replay a journal)."""
    from contextlib import nullcontext

    from orchestrator.backtest.report import (
        avoided_text,
        best_policy,
        contract_avoided,
        programs_gained,
        programs_text,
        write_report,
    )
    from orchestrator.backtest.runner import policy_specs, run_backtest
    from orchestrator.models.config import load_config

    cfg = load_config(config)
    cfg = _with_oracle_options(cfg, oracle_gap, oracle_iterations)
    if unguarded_baselines:
        cfg = cfg.model_copy(update={"backtest": cfg.backtest.model_copy(
            update={"unguarded_baselines": True})})
    when_from, when_to = _parse_when(start, "--from"), _parse_when(end, "--to")
    if journal is not None:
        _replay(cfg, journal, policy or [cfg.policy.name], report)
        return
    if sweep is not None:
        # The sweep file holds the periods and the runs: a flag for either would be
        # dropped without a word, so it is refused. Sweeps fan out over Ray.
        given = [flag for flag, value in (("--from", start), ("--to", end), ("-p", policy),
                                          ("--params", params), ("--no-ray", not use_ray),
                                          ("--ignore-programs", ignore_programs))
                 if value]
        if given:
            raise typer.BadParameter(
                f"{', '.join(given)} cannot go with --sweep: the sweep file names the "
                "periods and policies, and a sweep runs on Ray", param_hint="--sweep")
        _sweep(cfg, sweep, ray_address, report or Path("reports") / f"{config.stem}-sweep",
               baselines)
        return
    report_dir = report or Path("reports") / config.stem
    run_params = _run_params(cfg, policy, params)
    if ignore_programs and not any(s.contract is not None and s.contract.has_programs
                                   for s in cfg.sites):
        raise typer.BadParameter(f"no site in {config} has a power-contract program "
                                 "(demand charge, coincident peak, demand response or "
                                 "curtailment credit)", param_hint="--ignore-programs")
    # Bad names, labels or parameters fail here, before Ray starts.
    policy_specs(cfg, policy, baselines, run_params, ignore_programs)
    map_runs = None
    session: Any = nullcontext()
    if use_ray and not _has_module("ray"):
        # The base install has no Ray: the same runs, one after another, in this process.
        err_console.print("Ray is not installed (pip install 'hashpivot[ray]' to run "
                          "policies in parallel): running them here", highlight=False,
                          markup=False)
        use_ray = False
    if use_ray:
        from orchestrator.runtime.parallel import ray_map_runs, ray_session

        session = ray_session(ray_address)
        map_runs = ray_map_runs
    columns = (
        TextColumn("[bold]{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with session, Progress(*columns, console=err_console, transient=False) as bar:
        tasks: dict[str, Any] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done)

        try:
            result = run_backtest(
                cfg,
                policies=policy,
                params=run_params,
                start=when_from,
                end=when_to,
                baselines=baselines,
                progress=progress,
                map_runs=map_runs,
                ignore_programs=ignore_programs,
            )
        except ConfigError as exc:
            if exc.source is not None or (exc.field or "").startswith("-"):
                raise
            # A setting of the site file: name the file, as `load_config` does.
            raise ConfigError(exc.message, source=str(config), field=exc.field) from None
    html_path = write_report(result, report_dir)
    summary = result.summary()
    table = Table(title="hashpivot backtest", title_justify="left")
    for col in (
        "policy",
        "net USD",
        "revenue",
        "power",
        "switching",
        "switches",
        "SLA misses",
        "capture",
        "guards",
    ):
        table.add_column(col, justify="left" if col == "policy" else "right")
    policies = summary["policies"]
    assert isinstance(policies, dict)
    best = best_policy(result)
    for name, p in policies.items():
        capture = "—" if p["capture_ratio"] is None else f"{p['capture_ratio']:.1%}"
        label = f"{name} (baseline)" if p["baseline"] else name
        style = "bold green" if name == best else None
        table.add_row(
            label,
            _usd(p["net_usd"]),
            _usd(p["revenue_usd"]),
            _usd(p["power_cost_usd"]),
            _usd(p["switching_cost_usd"]),
            f"{p['switches']:,}",
            f"{p['sla_misses']:,}",
            capture,
            str(p["guards"]),
            style=style,
        )
    console.print(table)
    contract = _contract_table(policies)
    if contract is not None:
        console.print(contract)
        programs = _programs_table(policies)
        if programs is not None:
            console.print(programs)
        avoided = contract_avoided(policies, best)
        if avoided is not None:
            console.print(avoided_text(best, avoided), highlight=False)
        for name, gained in programs_gained(policies).items():
            console.print(programs_text(name, gained), highlight=False)
    if result.oracle is not None:
        console.print(f"hindsight oracle: {_usd(result.oracle.net_usd)} USD ({result.oracle.kind})")
    console.print(f"best policy: [bold]{best}[/bold]; report: {html_path}")


def _lines_table(policies: dict[str, Any], title: str,
                 lines: tuple[tuple[str, str], ...]) -> Table | None:
    """One column per ledger line (label, summary key), one row per policy that has the
    lines (None: no policy does)."""
    rows = [(name, p) for name, p in policies.items() if all(key in p for _, key in lines)]
    if not rows:
        return None
    table = Table(title=title, title_justify="left")
    table.add_column("policy")
    for label, _ in lines:
        table.add_column(label, justify="right")
    for name, p in rows:
        table.add_row(name, *(_usd(p[key]) for _, key in lines))
    return table


def _contract_table(policies: dict[str, Any]) -> Table | None:
    """A site's power-contract lines per policy (None: no site has a contract)."""
    return _lines_table(
        policies, "power contract, USD (net includes every line; so do the oracle's schedule "
        "and bound)",
        (("energy", "energy_cost_usd"), ("unused contracted", "contract_unused_energy_usd"),
         ("resale", "resale_revenue_usd"), ("demand charges", "demand_charge_usd"),
         ("coincident peak", "coincident_peak_charge_usd")))


def _programs_table(policies: dict[str, Any]) -> Table | None:
    """Demand-response and curtailment-credit lines per policy (None: no site has either
    program)."""
    return _lines_table(
        policies, "grid programs, USD (payments and credits lower the power bill, "
        "penalties raise it)",
        (("DR availability", "dr_availability_payment_usd"),
         ("DR energy", "dr_energy_payment_usd"), ("DR shortfall", "dr_shortfall_penalty_usd"),
         ("curtailment credits", "curtailment_credit_usd")))


def _with_oracle_options(cfg: Any, gap: float | None, iterations: int | None) -> Any:
    """The config with the oracle's stopping rule from the command line, validated as the
    config file's own fields are."""
    update = {}
    if gap is not None:
        update["oracle_gap"] = gap
    if iterations is not None:
        update["oracle_max_iterations"] = iterations
    if not update:
        return cfg
    from pydantic import ValidationError

    from orchestrator.models.config import BacktestConfig

    try:
        backtest = BacktestConfig.model_validate({**cfg.backtest.model_dump(), **update})
    except ValidationError as exc:
        err = exc.errors()[0]
        option = "--oracle-gap" if err["loc"][0] == "oracle_gap" else "--oracle-iterations"
        raise typer.BadParameter(err["msg"], param_hint=option) from None
    return cfg.model_copy(update={"backtest": backtest})


def _has_module(name: str) -> bool:
    from importlib.util import find_spec

    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _journal_records(folder: Path) -> list[Any]:
    """The journaled cycles in `folder`, a controller's `--journal` folder."""
    from orchestrator.runtime.journal import read_journal

    if not folder.exists():
        raise HashpivotError(f"{folder}: no such journal folder (the controller's --journal; "
                             "default runs/journal)")
    if not folder.is_dir():
        raise HashpivotError(f"{folder}: a file; --journal names the folder the controller "
                             "journals into")
    return list(read_journal(folder))


def _replay(cfg: Any, folder: Path, policies: list[str], out_dir: Path | None = None) -> None:
    from orchestrator.backtest.replay import replay_journal
    from orchestrator.framework.registry import load_policy
    records = _journal_records(folder)
    if not records:
        raise HashpivotError(f"{folder}: no journaled cycles to replay")
    table = Table(title=f"replay of {len(records):,} journaled cycles", title_justify="left")
    for col in ("policy", "replayed", "identical plans", "differing cycles", "journaled USD/h",
                "replayed USD/h"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for spec in policies:
        params = cfg.policy.params if spec == cfg.policy.name else None
        policy = load_policy(spec, params)
        report = replay_journal(records, cfg, policy)
        n = max(report.cycles, 1)
        table.add_row(policy.name or spec, f"{report.cycles:,}",
                      f"{report.identical:,} ({report.agreement:.0%})",
                      f"{len(report.differing):,}", f"{report.journaled_usd_h / n:,.2f}",
                      f"{report.replayed_usd_h / n:,.2f}")
    console.print(table)
    if out_dir is not None:
        _replay_ledgers(cfg, records, policies, out_dir)


def _replay_ledgers(cfg: Any, records: list[Any], policies: list[str], out_dir: Path) -> None:
    """The replayed plans run through the dry-run's simulated site: OUT/ledger.csv."""
    from orchestrator.backtest.ledger_csv import write_ledgers_csv
    from orchestrator.backtest.replay_ledger import replay_ledger
    from orchestrator.framework.registry import load_policy

    runs = []
    for spec in policies:
        params = cfg.policy.params if spec == cfg.policy.name else None
        policy = load_policy(spec, params)
        runs.append((policy.name or spec, False, replay_ledger(records, cfg, policy)))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_ledgers_csv(runs, out_dir / "ledger.csv")
    console.print(f"replayed ledger: {out_dir / 'ledger.csv'}")


def _progress_into(bar: Progress) -> Any:
    """A backtest progress callback that keeps one bar per run."""
    tasks: dict[str, Any] = {}

    def progress(name: str, done: int, total: int) -> None:
        if name not in tasks:
            tasks[name] = bar.add_task(name, total=total)
        bar.update(tasks[name], completed=done)

    return progress


def _sweep(cfg: Any, sweep_file: Path, ray_address: str | None, out_dir: Path,
           baselines: bool) -> None:
    """Every period of the sweep is one backtest whose runs are the grid's parameter
    sets (Ray tasks), with the baselines and the hindsight optimum beside them."""
    if not _has_module("ray"):
        raise HashpivotError("sweeps run on Ray: pip install 'hashpivot[ray]' (or compare "
                             "settings in one backtest with -p LABEL=POLICY --params)")
    from orchestrator.backtest.report import best_policy, write_report
    from orchestrator.backtest.runner import run_backtest
    from orchestrator.runtime.parallel import ray_map_runs, ray_session, read_sweep

    plan = read_sweep(str(sweep_file), cfg)
    policies = [f"{run.label}={run.spec}" for run in plan.runs]
    params = {run.label: run.params for run in plan.runs}
    columns = (TextColumn("[bold]{task.description:<28}"), BarColumn(), MofNCompleteColumn())
    rows: list[dict[str, Any]] = []
    table = Table(title=f"sweep: {len(plan.runs)} runs × {len(plan.periods)} period(s)",
                  title_justify="left")
    for col in ("period", "run", "net USD", "capture", "switches", "SLA misses", "guards"):
        table.add_column(col, justify="left" if col in ("period", "run", "guards") else "right")
    with ray_session(ray_address):
        for k, (start, end) in enumerate(plan.periods):
            with Progress(*columns, console=err_console) as bar:
                result = run_backtest(cfg, policies=policies, params=params, start=start,
                                      end=end, baselines=baselines,
                                      progress=_progress_into(bar), map_runs=ray_map_runs)
            summary: dict[str, Any] = result.summary()
            period = f"{summary['period']['start'][:10]}..{summary['period']['end'][:10]}"
            html = write_report(result, out_dir / f"period-{k + 1}")
            best = best_policy(result)
            for name, p in summary["policies"].items():
                rows.append({"period": period, "label": name, "report": str(html), **p})
                capture = "—" if p["capture_ratio"] is None else f"{p['capture_ratio']:.1%}"
                label = f"{name} (baseline)" if p["baseline"] else name
                table.add_row(period, label, _usd(p["net_usd"]), capture, f"{p['switches']:,}",
                              f"{p['sla_misses']:,}", p["guards"],
                              style="bold green" if name == best else None)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sweep.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    console.print(table)
    console.print(f"sweep results: {out_dir / 'sweep.json'}; a report per period in {out_dir}")


@app.command()
def run(
    config: ConfigOpt,
    mode: Annotated[
        ModeChoice | None, typer.Option(help="Controller mode (default: the config's).")
    ] = None,
    cycles: Annotated[
        int | None, typer.Option(min=1, help="Stop once the journal holds this many cycles.")
    ] = None,
    start: Annotated[str | None, typer.Option("--from", help="Dry-run start (ISO).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Dry-run end (ISO).")] = None,
    journal: Annotated[Path | None, typer.Option(help="Journal folder.")] = None,
    metrics_port: Annotated[
        int | None, typer.Option(min=0, max=65535,
                                 help="Serve /metrics, /healthz, /readyz (0: any port).")
    ] = None,
    use_ray: Annotated[
        bool, typer.Option("--ray/--no-ray", help="Host the loop in a Ray actor.")
    ] = True,
    ray_address: Annotated[
        str | None, typer.Option(help="Join this Ray cluster (e.g. KubeRay) for Ray work; "
                                 "the loop then runs in this process.")
    ] = None,
    kubeconfig: Annotated[str | None, typer.Option(help="Kubeconfig (default: in-cluster).")]
    = None,
    pace: Annotated[
        float, typer.Option(min=0.0, help="Dry-run: seconds between cycles (0: at once).")
    ] = 0.0,
) -> None:
    """Run the controller: decide every interval and act through the configured adapters."""
    if use_ray:
        import os

        # The controller actor's log lines reach this process's output (the pod log) as
        # they are: no "(pid=…)" prefix (it would break JSON lines), no merging of
        # similar lines. Ray reads these once, when first imported.
        os.environ.setdefault("RAY_DISABLE_WORKER_LOG_PREFIX", "1")
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    from orchestrator.models.config import ControllerMode, load_config
    from orchestrator.runtime.controller import Controller, RunOptions
    from orchestrator.runtime.logs import current_format

    overrides: dict[str, Any] = {"controller": {}}
    if mode is not None:
        overrides["controller"]["mode"] = mode.value
    cfg = load_config(config, overrides)
    options = RunOptions(
        mode=cfg.controller.mode,
        journal_dir=str(journal or cfg.controller.journal_dir),
        metrics_port=cfg.controller.metrics_port if metrics_port is None else metrics_port,
        kubeconfig=kubeconfig,
        start=_parse_when(start, "--from"),
        end=_parse_when(end, "--to"),
        log_format=current_format(),
        pace_s=pace,
    )
    from orchestrator.framework.registry import load_policy

    load_policy(cfg.policy.name, cfg.policy.params, source=f"{config}: policy.params")
    if options.mode == ControllerMode.DRY_RUN:
        for section, what in (("market", "recorded market data"), ("fleet", "a simulated fleet")):
            if not getattr(cfg, section):  # what the simulated site is made of
                raise ConfigError(f"a dry-run needs {what}", source=str(config), field=section)
    err_console.print(
        f"hashpivot {options.mode.value}: policy {cfg.policy.name}, journal {options.journal_dir}"
        + ("" if options.mode != ControllerMode.SHADOW else " (shadow: nothing is written)")
    )
    address = ray_address or cfg.controller.ray_address
    if use_ray and not address:
        import ray

        from orchestrator.runtime.actors import start_actors
        from orchestrator.runtime.parallel import ray_session

        with ray_session(None, log_to_driver=True):
            stopping = _on_sigterm()  # after ray.init, which installs a handler of its own
            actor, _cluster = start_actors(cfg, options)
            stopping.append(actor.stop.remote)
            status = ray.get(actor.run.remote(cycles))
            # Ray forwards the actor's log lines asynchronously (a log monitor tails its
            # files): give the last cycle's lines time to reach this process's output.
            import time

            time.sleep(RAY_LOG_DRAIN_S)
        if status.get("startup_error"):
            # Raised inside the actor (bad credentials, unreachable server): one line.
            raise HashpivotError(str(status["startup_error"]))
    else:
        # Joining a Ray cluster (`--ray-address`, the chart's external and kuberay modes),
        # the controller still runs here, in its own process and pod: its journal, its
        # metrics and the probes on them are the pod's. Its Ray work (the ASIC halls'
        # site actors) goes to the cluster.
        from contextlib import AbstractContextManager, nullcontext

        session: AbstractContextManager[None] = nullcontext()
        if use_ray:  # --no-ray never loads Ray (its start-up time and memory)
            from orchestrator.runtime.parallel import ray_session

            session = ray_session(address, log_to_driver=True)
        with session:
            stopping = _on_sigterm()
            controller = Controller(cfg, options)
            stopping.append(controller.stop)
            try:
                status = controller.run(cycles)
            finally:
                controller.close()
    _print_run_status(status)


def _on_sigterm() -> list[Any]:
    """SIGTERM (a pod being stopped) asks the controller to finish its cycle, hand the
    Lease over and return; the command then exits 0 without a traceback."""
    import signal

    actions: list[Any] = []

    def handler(signum: int, frame: Any) -> None:
        err_console.print("hashpivot: stopping (SIGTERM)", highlight=False)
        for action in actions:
            action()

    signal.signal(signal.SIGTERM, handler)
    return actions


def _print_run_status(status: dict[str, Any]) -> None:
    table = Table(title="hashpivot run", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    plan = status.get("last_plan") or {}
    table.add_row("mode", str(status["mode"]))
    table.add_row("last decision", str(status["last_decision"]))
    if isinstance(plan.get("modes"), dict):
        for mode_name, count in plan["modes"].items():
            table.add_row(f"nodes {mode_name}", f"{count:,}")
    if isinstance(plan.get("expected_usd_per_hour"), dict):
        total = sum(plan["expected_usd_per_hour"].values())
        table.add_row("expected net USD/h", f"{total:,.2f}")
    ledger = status.get("ledger")
    if isinstance(ledger, dict):
        table.add_row("simulated net USD", _usd(ledger["net_usd"]))
        table.add_row("switches", f"{ledger['switches']:,}")
        table.add_row("SLA misses", f"{ledger['sla_misses']:,}")
    table.add_row("journal", str(status["journal"]))
    console.print(table)


@app.command("warm-cache")
def warm_cache(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Also compile this config's policy, under its "
                     "guards (default: the installed policies only)."),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Cache folder (default: $NUMBA_CACHE_DIR, else "
                     "~/.cache/hashpivot/numba)."),
    ] = None,
) -> None:
    """Compile every kernel into the on-disk cache, so the next controller start loads
    them instead of compiling for tens of seconds (the image build runs this)."""
    import os

    if cache_dir is not None:
        if "numba" in sys.modules:  # numba reads NUMBA_CACHE_DIR once, when imported
            raise HashpivotError("--cache-dir: the compiler was loaded before the option "
                                 "was read; set NUMBA_CACHE_DIR instead")
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HashpivotError(f"--cache-dir {cache_dir}: {exc.strerror}") from None
        os.environ["NUMBA_CACHE_DIR"] = str(cache_dir.resolve())
    from orchestrator.runtime.warm import warm

    report = warm(config, progress=lambda what: err_console.print(
        f"warm-cache: compiling for {what}", highlight=False))
    if report.cache_dir is None:
        raise HashpivotError("no writable kernel cache folder: set NUMBA_CACHE_DIR or "
                             "--cache-dir (kernels were compiled in memory only)")
    if cache_dir is not None and Path(report.cache_dir) != cache_dir.resolve():
        raise HashpivotError(f"--cache-dir {cache_dir}: not writable (the kernels went to "
                             f"{report.cache_dir})")
    for spec, why in report.skipped.items():
        err_console.print(f"warm-cache: policy {spec} not fully checked: {why}",
                          highlight=False)
    if report.unexercised:
        err_console.print("warm-cache: not compiled (nothing here calls them): "
                          + ", ".join(report.unexercised), highlight=False)
    console.print(
        f"kernel cache {report.cache_dir}: {report.kernels} kernels, "
        f"{report.compiled} signatures compiled, {report.loaded} loaded from the cache, "
        f"in {report.seconds:.1f} s", highlight=False)


@app.command()
def status(
    journal: Annotated[Path, typer.Option(help="Journal folder of the controller.")] = Path(
        "runs/journal"
    ),
    last: Annotated[int, typer.Option(min=1, help="Decisions to list.")] = 10,
) -> None:
    """Nodes per mode, expected revenue, recent decisions and why, market freshness."""
    records = _journal_records(journal)
    if not records:
        from orchestrator.runtime.journal import journal_files

        if any(path.stat().st_size for path in journal_files(journal)):
            raise HashpivotError(f"{journal}: no readable decision: none of its lines is a "
                                 "journal record (see the warnings above)")
        raise HashpivotError(f"{journal}: no decisions journaled yet")
    rec = records[-1]
    when = _when(rec.now_s)
    console.print(f"[bold]{rec.mode}[/bold] · policy {rec.policy} · last decision "
                  f"{rec.decision_id} at {when} · {len(records):,} cycles journaled")
    modes = Table(title="nodes per mode", title_justify="left")
    # The fleet the last decision read, and what it planned (`explain NODE` says where
    # one node's switch stands).
    for col in ("mode", "at decision", "planned", "expected USD/h"):
        modes.add_column(col, justify="left" if col == "mode" else "right")
    planned = rec.plan.get("modes", {}) if isinstance(rec.plan.get("modes"), dict) else {}
    usd = rec.plan.get("expected_usd_per_hour", {})
    for m in ("mine", "ai", "idle"):
        modes.add_row(m, f"{rec.fleet_modes.get(m, 0):,}", f"{planned.get(m, 0):,}",
                      f"{usd.get(m, 0.0):,.2f}" if isinstance(usd, dict) else "—")
    console.print(modes)
    decisions = Table(title="recent decisions", title_justify="left")
    for col in ("decision", "changes", "guards", "why (first change)"):
        decisions.add_column(col)
    for r in records[-last:]:
        guards = r.plan.get("guards") or {}
        held = r.plan.get("held")
        first = r.changes[0].text if r.changes else (r.market_rejected or "no change")
        if held and not r.market_rejected:  # the policy failed: say so beside any change
            first = f"every node held ({held})" + (f"; {first}" if r.changes else "")
        decisions.add_row(r.decision_id, str(r.plan.get("changes", 0)),
                          ", ".join(f"{k}={v}" for k, v in guards.items()) or "—", first)
    console.print(decisions)
    if rec.market is not None:
        feeds = Table(title="market at the last decision", title_justify="left")
        for col in ("value", "number", "source", "age"):
            feeds.add_column(col, justify="right" if col in ("number", "age") else "left")
        for name, obs in rec.market.values():
            age_h = (rec.now_s - obs.observed_at.timestamp()) / 3600
            feeds.add_row(name, f"{obs.value:,.4g}", obs.source[-40:], f"{age_h:.1f} h")
        console.print(feeds)


@app.command()
def explain(
    node: Annotated[str, typer.Argument(help="Node name.")],
    journal: Annotated[Path, typer.Option(help="Journal folder.")] = Path("runs/journal"),
    last: Annotated[int, typer.Option(min=1, help="Decisions to show.")] = 5,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="The controller's config: also say which guard holds the "
        "node and since when (decides the journaled cycles again).")] = None,
) -> None:
    """The last decisions for one node, with the values and costs behind them, and what
    holds it now."""
    records = _journal_records(journal)
    found = [(r, c) for r in records for c in r.changes if c.node == node]
    latest = next((r for r in reversed(records) if r.fleet_columns is not None
                   and node in r.fleet_columns.names), None)
    if not found and latest is None:
        raise HashpivotError(f"no journaled decision names node {node!r} in {journal}")
    for rec, change in found[-last:]:
        when = _when(rec.now_s)
        console.print(f"[bold]{rec.decision_id}[/bold] {when}: {change.text}")
        values = ", ".join(f"{m} {v:,.3f}" for m, v in change.value_usd_h.items())
        console.print(f"    net USD/h by mode: {values}; switching {change.switch_cost_usd_h:,.3f}"
                      f" USD/h; AI fill {change.ai_fill:.0%}; reason: {change.reason}")
    if latest is not None:
        _explain_now(node, records, latest, config)


def _explain_now(node: str, records: list[Any], latest: Any, config: Path | None) -> None:
    """Where the node stands at the last cycle that journaled it, and which guard (if any)
    kept it there, from when (cycles decided again with `config`)."""
    from orchestrator.models.modes import MODE_LABELS

    cols = latest.fleet_columns
    i = cols.names.index(node)
    mode, since_s = MODE_LABELS[cols.mode[i]], cols.since[i]
    # The fleet as the cycle read it, then what its actuation did with this node.
    change = next((c for c in latest.changes if c.node == node), None)
    done = node in (latest.actuation.get("completed") or [])
    if change is not None and done:
        mode, since_s = change.target, latest.now_s
    elif change is not None and node in (latest.actuation.get("started") or []):
        mode = f"{mode}, switching to {change.target}"
    since = f" since {_when(since_s)}" if since_s > 0 else ""
    console.print(f"[bold]now[/bold] ({latest.decision_id}, {_when(latest.now_s)}): "
                  f"{mode}{since}", highlight=False)
    if latest.plan.get("held"):
        console.print(f"    every node held that cycle: {latest.plan['held']}", highlight=False)
    for what in ("deferred", "errors"):
        text = (latest.actuation.get(what) or {}).get(node)
        if text:
            console.print(f"    actuation {what[:-1] if what == 'errors' else what}: {text}",
                          highlight=False)
    if config is None:
        console.print("    (give --config with the controller's config to see which guard "
                      "holds it, and since when)", highlight=False)
        return
    from orchestrator.backtest.replay import redecide
    from orchestrator.framework.reasons import GUARD_REASONS, REASON_TEXT, Reason
    from orchestrator.framework.registry import load_policy
    from orchestrator.models.config import load_config

    cfg = load_config(config)
    policy = load_policy(cfg.policy.name, cfg.policy.params, source=f"{config}: policy.params")
    held: list[tuple[Any, Reason]] = []
    gave_way = None  # what the node gave way to under the power cap, at the latest cycle
    # Walk back from the latest cycle while the same guard held the node.
    for rec in reversed(records[: records.index(latest) + 1]):
        if rec.fleet_columns is None or node not in rec.fleet_columns.names:
            break
        plan = redecide(rec, cfg, policy)
        k = rec.fleet_columns.names.index(node)
        code = Reason(int(plan.reason[k]))
        if code not in GUARD_REASONS or (held and code != held[0][1]):
            if not held:
                console.print(f"    not held by a guard: {REASON_TEXT[code]}", highlight=False)
            break
        if not held and plan.cap is not None:
            gave_way = plan.cap.text(k, node)
        held.append((rec, code))
    if held:
        code = held[0][1]
        first = held[-1][0]
        console.print(f"    held by a guard: {REASON_TEXT[code]} ({code.name}), since "
                      f"{first.decision_id} at {_when(first.now_s)} ({len(held)} cycles)",
                      highlight=False)
        if gave_way:
            console.print(f"    {gave_way}", highlight=False)


@app.command()
def record(
    config: ConfigOpt,
    out: Annotated[Path, typer.Option(help="Folder for the recorded CSVs and market.yaml.")],
    samples: Annotated[int, typer.Option(min=1, help="Snapshots to take.")] = 60,
    interval: Annotated[float, typer.Option(min=0.0, help="Seconds between snapshots.")] = 60.0,
) -> None:
    """Record live market snapshots in the format `hashpivot backtest` reads."""
    from orchestrator.adapters.market.recorder import RecordProgress
    from orchestrator.adapters.market.recorder import record as record_market
    from orchestrator.models.config import load_config

    cfg = load_config(config)
    columns = (TextColumn("[bold]recording"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[note]}"))
    with Progress(*columns, console=err_console) as bar:
        task = bar.add_task("record", total=samples, note="")

        def progress(p: RecordProgress) -> None:
            note = f"error: {p.error}" if p.error else f"{sum(p.written.values())} rows"
            bar.update(task, completed=p.sample, note=note)

        market_yaml = record_market(cfg.live_market, out, samples=samples, interval_s=interval,
                                    progress=progress)
    console.print(f"recorded {samples} snapshots; market section for backtests: {market_yaml}")


@app.command()
def plan(
    config: Annotated[Path, typer.Option("--config", "-c", help="Plan file (YAML).")],
    report: Annotated[Path | None, typer.Option(help="Report folder.")] = None,
    use_ray: Annotated[
        bool, typer.Option("--ray/--no-ray", help="Run the sizes × scenarios as Ray tasks.")
    ] = True,
    ray_address: Annotated[
        str | None, typer.Option(help="Join this Ray cluster instead of starting one.")
    ] = None,
) -> None:
    """How many MW of a mining hall to convert to GPU hosting: NPV, IRR, payback per size."""
    from contextlib import nullcontext

    from orchestrator.planning.config import load_plan
    from orchestrator.planning.evaluate import check_policy, grid
    from orchestrator.planning.report import write_report
    from orchestrator.planning.run import run_plan

    plan_cfg = load_plan(config)
    check_policy(plan_cfg)  # bad policy names or parameters fail before Ray starts
    map_cells = None
    session: Any = nullcontext()
    if use_ray:
        from orchestrator.runtime.parallel import ray_session
        from orchestrator.runtime.plan_fanout import ray_map_cells

        session, map_cells = ray_session(ray_address), ray_map_cells
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn())
    with session, Progress(*columns, console=err_console) as bar:
        task = bar.add_task("sizes × scenarios", total=len(grid(plan_cfg)))
        draws = plan_cfg.file.scenarios.bootstrap.draws
        histories = bar.add_task("bootstrap histories", total=draws, visible=draws > 0)
        result = run_plan(
            plan_cfg, map_cells=map_cells, progress=lambda d, _t: bar.update(task, completed=d),
            bootstrap_progress=lambda d, _t: bar.update(histories, completed=d),
        )
    html_path = write_report(result, report or Path("reports") / f"{config.stem}-plan")
    table = Table(title="hashpivot plan", title_justify="left")
    for col in ("MW", "mean NPV", "worst NPV", "vs mining", "IRR", "payback y", "rent b/e"):
        table.add_column(col, justify="right")
    for s in result.sizes:
        table.add_row(
            f"{s.size_mw:g}",
            _usd(s.npv_mean),
            _usd(s.npv_min),
            _usd(s.delta_npv_mean),
            "—" if s.irr_median is None else f"{s.irr_median:.1%}",
            "—" if s.payback_years_median is None else f"{s.payback_years_median:.1f}",
            "—" if s.breakeven_gpu_rent is None else f"{s.breakeven_gpu_rent:.2f}",
            style="bold green" if s.size_mw == result.recommendation.size_mw else None,
        )
    console.print(table)
    console.print(f"recommended: [bold]{result.recommendation.size_mw:g} MW[/bold]")
    console.print(result.recommendation.why, markup=False)
    console.print(f"report: {html_path}")


@policies_app.command("list")
def policies_list() -> None:
    """Installed policies (entry-point group hashpivot.policies)."""
    from orchestrator.framework.registry import registered_policies, resolve_policy_class

    table = Table(title="policies")
    table.add_column("name")
    table.add_column("class")
    table.add_column("parameters")
    table.add_column("summary")
    for name, ep in registered_policies().items():
        cls = resolve_policy_class(name)
        params = ", ".join(cls.Params.model_fields) or "—"
        table.add_row(name, ep.value, params, cls.summary)
    console.print(table)


def _run_params(cfg: HashpivotConfig, policies: list[str] | None,
                pairs: list[str] | None) -> dict[str, dict[str, object]]:
    """`--params` of a backtest, by run label: `LABEL.name=value`, or `name=value` for the
    only run."""
    from orchestrator.backtest.runner import policy_specs

    by_run: dict[str, dict[str, object]] = {}
    for key, value in parse_params(pairs).items():
        label, dot, name = key.rpartition(".")
        if not dot:
            runs = policies or [cfg.policy.name]
            if len(runs) != 1:
                raise typer.BadParameter(
                    f"{key}: name the run it is for, as LABEL.{key}=…", param_hint="--params")
            label, name = policy_specs(cfg, runs, False)[0].label, key
        by_run.setdefault(label, {})[name] = value
    return by_run


def parse_params(pairs: list[str] | None, *, flag: str = "--params") -> dict[str, object]:
    """`k=v` pairs as policy parameters; values are read as YAML (numbers, lists, true)."""
    import yaml

    params: dict[str, object] = {}
    for pair in pairs or []:
        key, eq, raw = pair.partition("=")
        if not eq or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not name=value", param_hint=flag)
        try:
            params[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            params[key.strip()] = raw
    return params


@policies_app.command("check")
def policies_check(
    policy: Annotated[str, typer.Argument(
        help="Registry name, module:Class, or path/to/policy.py[:Class].")],
    params: Annotated[list[str] | None, typer.Option(
        "--params", help="A parameter as name=value (repeatable), e.g. --params strike=90.")]
    = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Use this config's guards and scoring.")] = None,
) -> None:
    """Check a policy against the policy contract over many simulated cycles."""
    from orchestrator.models.config import load_config
    from orchestrator.testing import check_policy

    cfg = load_config(config) if config is not None else None
    report = check_policy(policy, parse_params(params), config=cfg)
    console.print(f"policy {policy} ({report.cycles} cycles)", markup=False)
    for line in report.lines():
        console.print("  " + line, markup=False, style=None if line.startswith("ok") else "red")
    if not report.ok:
        raise typer.Exit(1)


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="Config file to check.")]) -> None:
    """Validate a config: fields, hardware profiles, policy and its parameters, data files."""
    from orchestrator.backtest.inspect import inspect_config
    from orchestrator.framework.registry import load_policy
    from orchestrator.models.build import build_fleet
    from orchestrator.models.config import load_config

    cfg = load_config(file)
    fleet = build_fleet(cfg)
    policy = load_policy(cfg.policy.name, cfg.policy.params, source=f"{file}: policy.params")
    lines = [
        f"{file}: ok",
        f"  sites: {', '.join(s.name for s in cfg.sites)}",
        f"  fleet: {fleet.n:,} nodes"
        + ("" if cfg.controller.mode.value == "dry-run" else
           " simulated (for backtests and dry-runs; live and shadow read the cluster's)"),
        f"  policy: {policy.name or cfg.policy.name}",
        f"  controller mode: {cfg.controller.mode.value}",
    ]
    if cfg.market is not None or cfg.demand is not None:
        # Every series and the job trace, loaded as the backtest loads them.
        found = inspect_config(cfg, first=0)
        lines.append(f"  recorded data: {len(found.reports)} source(s)")
        lines += ["    " + line for line in found.lines()]
    if cfg.controller.mode.value != "dry-run":
        found_live, lacks = live_inputs(cfg)
        lines.append(f"  {cfg.controller.mode.value} cycles read:")
        lines += [f"    {line}" for line in found_live]
        lines += [f"  lacks: {line}" for line in lacks]
    console.print("\n".join(lines), highlight=False, markup=False, soft_wrap=True)


def live_inputs(cfg: Any) -> tuple[list[str], list[str]]:
    """What a live or shadow cycle will read (from the config alone: the cluster and the
    feeds are not asked) and what it will lack. A missing power price holds every cycle."""
    from urllib.parse import urlsplit

    lm = cfg.live_market
    k8s = cfg.kubernetes
    found = [f"nodes: labelled {k8s.node_selector} (listed from the cluster at startup), "
             f"controller namespace {k8s.namespace}"]
    hosts: list[str] = []

    def host(url: str) -> str:
        name = urlsplit(url).hostname or url
        if name not in hosts and name not in ("localhost", "127.0.0.1", "::1"):
            hosts.append(name)
        return name

    found.append("chain data: " + ", ".join(f"{c.kind} ({host(c.base_url)})"
                                             for c in lm.chain_sources))
    found.append("BTC/USD: " + ", ".join(f"{p.kind} ({host(p.base_url)})"
                                          for p in lm.price_sources))
    lacks: list[str] = []
    power: list[str] = []
    for site, src in lm.power_sources.items():
        url = getattr(src, "url", None)
        power.append(f"{site}: {src.kind}" + (f" ({host(url)})" if url else
                                              f" {getattr(src, 'usd_mwh', '')} USD/MWh"))
    if lm.power_usd_mwh_fixed is not None and "default" not in lm.power_sources:
        power.append(f"default: fixed {lm.power_usd_mwh_fixed:g} USD/MWh")
    if power:
        found.append("power price: " + ", ".join(power))
    has_default = bool(power) and ("default" in lm.power_sources
                                   or lm.power_usd_mwh_fixed is not None)
    unpriced = [s.name for s in cfg.sites if s.name not in lm.power_sources and not has_default]
    if unpriced:
        lacks.append(f"a power price for site(s) {', '.join(unpriced)}: every cycle holds "
                     "every node; set live_market.power_usd_mwh_fixed or "
                     "live_market.power_sources")
    gpu = [f"{m} fixed {v:g}" for m, v in lm.gpu_usd_per_gpu_hour_fixed.items()]
    gpu += [f"feed ({host(g.url)})" for g in lm.gpu_sources]
    if gpu:
        found.append("GPU rental price: " + ", ".join(gpu))
    else:
        lacks.append("a GPU rental price: AI mode earns only from the offers of pending "
                     "jobs; set live_market.gpu_usd_per_gpu_hour_fixed or "
                     "live_market.gpu_sources")
    for h in lm.hashpower_sources:
        host(h.url)
    if cfg.asic is not None:
        found.append(f"ASIC miners: {len(cfg.asic.ranges)} address range(s)")
    if hosts:
        found.append("needs internet access to: " + ", ".join(hosts))
    return found, lacks


@data_app.command("inspect")
def data_inspect(
    target: Annotated[Path, typer.Argument(
        help="A site config (YAML): every source; or a data file (CSV, JSON/JSONL, Parquet).")],
    value_column: Annotated[str | None, typer.Option(
        help="File: column with the value (unset: the file's columns and first rows).")] = None,
    value: Annotated[str | None, typer.Option(
        help="File: SQL expression for the value instead of a column.")] = None,
    option: Annotated[list[str] | None, typer.Option("--set", help=(
        "File: a series option as name=value, e.g. --set separator=';' (repeatable)."))] = None,
    rows: Annotated[int, typer.Option(min=0, help="First rows shown per source.")] = 5,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of every series here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """What recorded data yields: span, step, gaps, min/median/max and the first rows."""
    from orchestrator.backtest.inspect import inspect_target
    from orchestrator.backtest.inspect import plot as plot_png

    found = inspect_target(target, value_column=value_column, value=value, options=option,
                           rows=rows)  # fmt: skip
    if isinstance(found, list):
        console.print("\n".join(found), highlight=False, markup=False)
        return
    written = None if plot is None else plot_png(found, plot)
    if as_json:
        print(json.dumps(found.as_dict(), indent=2))
    else:
        console.print("\n".join(found.lines()), highlight=False, markup=False)
    if written is not None:
        err_console.print(f"plot: {written}", highlight=False)


@app.command()
def doctor(
    config: ConfigOpt,
    url: Annotated[str | None, typer.Option(
        help="The controller's metrics address, e.g. http://hashpivot:9108: its /healthz, "
        "/readyz and /metrics are checked.")] = None,
    kubeconfig: Annotated[str | None, typer.Option(
        help="Kubeconfig (default: in-cluster, as the controller runs).")] = None,
    rbac: Annotated[bool, typer.Option(
        "--rbac/--no-rbac", help="Check the credentials' RBAC (needs the API server).")] = True,
) -> None:
    """Check an install: the controller answers, and its credentials may do what the
    config's mode needs and nothing they must not (RBAC, asked of the API server)."""
    from orchestrator.adapters.k8s.client import KubeClient, check_access, load_api_client
    from orchestrator.adapters.k8s.selfcheck import check_access_list, required_access
    from orchestrator.models.config import load_config

    cfg = load_config(config)
    if url is None and not rbac:
        raise typer.BadParameter("nothing to check: give --url, or drop --no-rbac",
                                 param_hint="--no-rbac")
    failures: list[str] = []
    if url is not None:
        import httpx

        for path in ("/healthz", "/readyz", "/metrics"):
            try:
                answer = httpx.get(url.rstrip("/") + path, timeout=10.0)
            except httpx.InvalidURL as exc:
                raise typer.BadParameter(str(exc), param_hint="--url") from None
            except httpx.HTTPError as exc:
                failures.append(f"{path}: {exc}")
                console.print(f"FAIL {path}: {exc}", highlight=False, markup=False)
                continue
            ok = answer.status_code == 200 and (
                path != "/metrics" or "hashpivot_build_info" in answer.text)
            first = answer.text.strip().splitlines()[0] if answer.text.strip() else ""
            line = f"{path}: {answer.status_code} {first if path != '/metrics' else ''}"
            console.print(("ok   " if ok else "FAIL ") + line.strip(), highlight=False,
                          markup=False)
            if not ok:
                failures.append(line)
    if not rbac:
        if failures:
            raise HashpivotError(f"{len(failures)} check(s) failed: " + "; ".join(failures))
        return
    kube = KubeClient(load_api_client(kubeconfig))
    check_access(kube)
    live = cfg.controller.mode.value == "live"
    k8s = cfg.kubernetes
    for check, allowed in check_access_list(
            kube, required_access(k8s.namespace, k8s.lease_name, live)):
        ok = allowed == check.wanted
        what = ("may " if check.wanted else "may not ") + check.describe()
        console.print(("ok   " if ok else "FAIL ") + what, highlight=False, markup=False)
        if not ok:
            failures.append(what + (" (not granted)" if check.wanted else " (granted)"))
    if failures:
        raise HashpivotError(f"{len(failures)} check(s) failed: " + "; ".join(failures))


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON schema of the config file."""
    from orchestrator.models.config import HashpivotConfig

    console.print_json(json.dumps(HashpivotConfig.model_json_schema()))


#: Seconds a Ray-hosted run waits before shutting Ray down, so the actor's last log lines
#: (forwarded by Ray's log monitor, which polls its files) reach the output: without it the
#: last cycle's line was lost in a test run.
RAY_LOG_DRAIN_S = 2.0

#: Modules of the optional extras (pyproject.toml) and the extra that installs each: the
#: base install runs backtests, policies and reports; live adapters come with extras.
EXTRAS = {"ray": "ray", "kubernetes": "k8s", "pyasic": "asic", "pynvml": "gpu"}


def _is_usage_error(exc: BaseException) -> bool:
    """Click's usage errors, whichever click raised them: typer vendors its own copy of
    click from 0.2x on, whose exceptions are not `click.ClickException`, so they are told
    by what they offer (`show()` and an integer `exit_code`)."""
    return callable(getattr(exc, "show", None)) and isinstance(
        getattr(exc, "exit_code", None), int)


def _print_error(message: str) -> None:
    """One error line: the message as it is (a path or a policy's words may hold what
    Rich would read as markup, `[/v2]`, or as an emoji code, `:b:`)."""
    from rich.text import Text

    err_console.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False,
                      soft_wrap=True)


def main() -> None:
    """Entry point: run the app; turn user errors into one line and exit code 2."""
    try:
        code = app(standalone_mode=False)
    except HashpivotError as exc:
        _print_error(str(exc))
        sys.exit(2)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except OSError as exc:
        # A path the user gave that cannot be used as asked (a report folder that is a
        # file, a journal that is a folder, no permission): the path and why. Any other
        # OSError (a connection, a timeout) is no user error: it keeps its traceback.
        if not exc.filename or not exc.strerror:
            raise
        why = ("a file is there, and a folder is needed" if isinstance(exc, FileExistsError)
               else exc.strerror)
        _print_error(f"{exc.filename}: {why}")
        sys.exit(2)
    except ModuleNotFoundError as exc:
        extra = EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        err_console.print(f"[bold red]error:[/bold red] this needs hashpivot's optional "
                          f"{extra!r} dependencies ({exc.name} is not installed): "
                          f"pip install 'hashpivot\\[{extra}]'", highlight=False,
                          soft_wrap=True)
        sys.exit(2)
    except Exception as exc:
        if _is_usage_error(exc):
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        if type(exc).__name__ == "Exit":  # typer.Exit / click.exceptions.Exit
            sys.exit(getattr(exc, "exit_code", 0))
        if type(exc).__name__ == "Abort":  # Ctrl-C at a prompt
            sys.exit(130)
        raise
    # Non-standalone click returns the exit code of `--help` and `typer.Exit` instead.
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
