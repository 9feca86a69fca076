"""Day-ahead prices reach a live controller's policies: `hashpivot run --mode shadow` on a
hall of emulated miners whose power feed is a CSV that also lists the coming hours, as a
day-ahead market publishes them. A policy file records what `ctx.known_future` held
each cycle: the hours the feed had published by then, with their prices and when they
became known, and nothing later; hours the market publishes during the run appear from
the first poll after."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import yaml

from orchestrator.runtime.journal import StepMemoryStore, read_journal
from tests.contract.feedserver import FeedServer, Reply
from tests.contract.fixtures.miners.emulator import MinerLab
from tests.e2e.test_asic_site import Controller, is_command, site_config

HOUR = 3600.0

POLICY = '''
from typing import ClassVar

import numpy as np

from orchestrator.framework import DecisionContext, Policy, PolicyDecision, Reason


class SeesAhead(Policy):
    """Keeps every node as it is; remembers what the context said was known ahead."""

    name: ClassVar[str] = "sees-ahead"
    uses_history: ClassVar[bool] = True

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        ahead = ctx.known_future
        last = float(ahead.times_s[-1]) if ahead.times_s.size else 0.0
        seen = ctx.policy_state.get("seen", np.zeros((0, 2)))
        return PolicyDecision(
            ctx.current.copy(), np.full(ctx.fleet.n, Reason.UNCHANGED, dtype=np.int16),
            state={"seen": np.vstack([seen, [[ctx.now_s, last]]]),
                   "ahead_s": np.array(ahead.times_s),
                   "ahead_usd_mwh": np.array(ahead.site_power_usd_mwh[:, 0]),
                   "known_at_s": np.array(ahead.known_at_s)})
'''


def day_ahead_csv(first_s: float, hours: int) -> tuple[bytes, dict[float, float]]:
    """Hourly rows from `first_s`, in USD/kWh as some markets publish them, and the same
    prices by interval start in USD/MWh."""
    prices = {first_s + h * HOUR: 20.0 + 3.0 * h for h in range(hours)}
    lines = ["time,price"] + [
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t))},{p / 1000.0:.6f}"
        for t, p in prices.items()]
    return ("\n".join(lines) + "\n").encode(), prices


def test_a_live_policy_sees_the_hours_a_day_ahead_market_has_published(
    tmp_path: Path, lab: MinerLab, feeds: FeedServer
) -> None:
    miners = [lab.add("antminer"), lab.add("vnish")]
    this_hour = math.floor(time.time() / HOUR) * HOUR
    first, first_prices = day_ahead_csv(this_hour - 2 * HOUR, 26)  # through tomorrow
    feeds.route("/dayahead.csv", Reply(body=first, content_type="text/csv"))
    config = site_config(tmp_path, miners, feeds, "shadow")
    site = yaml.safe_load(config.read_text())
    site["live_market"]["power_sources"] = {"default": {
        "kind": "http_csv", "url": f"{feeds.base}/dayahead.csv", "time_columns": ["time"],
        "value_column": "price", "unit": "usd_per_kwh"}}
    (tmp_path / "sees_ahead.py").write_text(POLICY)
    site["policy"] = {"name": str(tmp_path / "sees_ahead.py")}
    config.write_text(yaml.safe_dump(site), encoding="utf-8")

    run = Controller(config, tmp_path / "journal", "shadow", tmp_path)
    try:
        run.wait_cycles(3)
        # The market publishes the day after: one more day of hours.
        second, second_prices = day_ahead_csv(this_hour - 2 * HOUR, 50)
        feeds.route("/dayahead.csv", Reply(body=second, content_type="text/csv"))
        published_s = time.time()
        run.wait_cycles(3)  # two at least started after it
    finally:
        run.stop()

    memory = StepMemoryStore(tmp_path / "journal").load()
    assert memory is not None, run.output()
    seen = memory.policy_state["seen"]
    last_first, last_second = max(first_prices), max(second_prices)
    # Each cycle saw the hours published by then: the first day's, then both days'.
    assert set(seen[:, 1].tolist()) == {last_first, last_second}, seen
    assert seen[0, 1] == last_first and seen[-1, 1] == last_second
    assert np.all(np.diff(seen[:, 1]) >= 0)  # once published, never unseen
    assert all(last == last_first for now, last in seen.tolist() if now < published_s - 5.0)
    # The last cycle: every later hour with its price (USD/kWh read as USD/MWh), each
    # known when the feed was read, before the decision; no hour at or before it.
    now_s = float(seen[-1, 0])
    ahead_s = memory.policy_state["ahead_s"]
    expected = {t: p for t, p in second_prices.items() if t > now_s}
    assert ahead_s.tolist() == sorted(expected)
    assert np.allclose(memory.policy_state["ahead_usd_mwh"], [expected[t] for t in ahead_s])
    known_at = memory.policy_state["known_at_s"]
    assert np.all(known_at <= now_s) and np.all(known_at > published_s - 60.0)
    # Shadow: read and decided, never a command.
    assert not any(is_command(s) for m in miners for s in m.seen)
    assert len(list(read_journal(tmp_path / "journal"))) == seen.shape[0]  # every cycle
