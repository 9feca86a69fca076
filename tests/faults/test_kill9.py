"""Tier 2: `hashpivot run` killed with SIGKILL right after each step of a flip.

The fault proxy lets the k-th write of the flip reach the apiserver, then holds the answer;
the controller process is killed while it waits (the step happened, the controller never
heard). A fresh controller, with the same journal and no other memory, reads the cluster
back and finishes the flip: each step happens exactly once, and the invariants hold.

Steps, one node:
  to AI:   1 MINING → STOPPING_MINE   2 (miner gone) → AI, taint off
  to mine: 1 AI → DRAINING_AI, taint on   2 eviction of the interruptible tenant
           3 (tenants gone) → STARTING_MINE, label mine   4 (miner running) → MINING
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.faults.checks import read_lines
from tests.faults.k8s_site import AI_APP, MINER_APP, Site, check_site
from tests.faults.ledger import REAL, FaultLedger
from tests.faults.proxy import Rule

pytestmark = pytest.mark.tier2

STEPS = {"ai": 2, "mine": 4}
CASES = [(to, k) for to, n in STEPS.items() for k in range(1, n + 1)]
WRITES = r"^/api/v1/nodes/[^/]+$|/eviction$"


def prepare_ai(site: Site, node: str) -> None:
    """The node serves AI: two tenants, one interruptible, one not (it must end by itself)."""
    site.settle_as(node, "ai")
    site.tenant("int-1", interruptible=True, gpus=4, node=node)
    site.tenant("fixed", interruptible=False, gpus=4, node=node)
    site.wait(
        lambda: sorted(site.running(AI_APP).get(node, [])) == ["fixed", "int-1"]
        and node not in site.running(MINER_APP),
        f"both tenants running on {node}, its miner gone",
    )


def node_writes(site: Site, node: str) -> int:
    return site.proxy.count("PATCH", rf"^/api/v1/nodes/{node}$", status=200)


@pytest.mark.parametrize(("to", "k"), CASES, ids=[f"to-{to}-after-step-{k}" for to, k in CASES])
def test_controller_killed_after_each_step(site: Site, ledger: FaultLedger, to: str, k: int
                                           ) -> None:
    node = site.names[0]
    if to == "mine":
        prepare_ai(site, node)
    targets = {node: to}
    journal = site.journal()
    log = site.tmp / "controller.log"
    kill = site.proxy.add(Rule(f"kill after write {k}", method=("PATCH", "POST"), path=WRITES,
                               hold_after=True, skip=k - 1, times=1))
    with ledger.run("controller-kill9", REAL) as run:
        proc = site.cli_controller(targets, journal, log)
        try:
            if to == "mine" and k >= 3:
                # The tenant that is not interruptible finishes once the other was evicted,
                # so the killed controller gets as far as step k.
                site.wait(lambda: site.evicted() == ["int-1"], "the interruptible eviction")
                site.finish("fixed")
            site.wait(lambda: kill.held.is_set() or proc.poll() is not None,
                      f"write {k} of the flip")
            assert proc.poll() is None, log.read_text()[-3000:]
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            run.inject()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
            kill.release.set()
        assert proc.returncode == -signal.SIGKILL
        killed = read_lines(journal)  # readable as the killed process left it
        assert killed.records, "the killed controller journaled its plan before acting"
        if to == "mine" and k < 3:
            site.finish("fixed")

        with site.controller(None, targets, journal=journal) as ctl:
            if to == "ai":
                site.wait(lambda: site.states()[node] == "AI", f"{node} in AI")
            else:
                site.wait(lambda: site.states()[node] == "MINING"
                          and node in site.running(MINER_APP), f"{node} mining")
        # Every step exactly once, across both controllers.
        steps = {"ai": 2, "mine": 3}[to]
        assert node_writes(site, node) == steps, site.proxy.log
        if to == "mine":
            assert site.evicted() == ["int-1"]
        others = {n: s for n, s in site.states().items() if n != node}
        assert set(others.values()) == {"MINING"}
        check_site(run, site, journal, ctl.cycles, torn_allowed=1)
