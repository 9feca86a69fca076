"""Tier 2: the controller flips a site while the Kubernetes API misbehaves.

Every test runs the same two flips with the real controller (live, the chart's RBAC,
through the fault proxy): four mining nodes asked to go to AI (the site's power cap lets
two or three), tenants land there; then back to mining, where interruptible tenants are
evicted and protected ones (not interruptible, or inside a lease) are waited for until
they end by themselves. The fault is injected during the flips; afterwards the four
invariants hold.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.k8s_site import AI_APP, MINER_APP, Site, check_site, wait
from tests.faults.ledger import REAL, FaultLedger
from tests.faults.proxy import Rule
from tests.tier2.cluster import KwokCluster

pytestmark = pytest.mark.tier2

TENANTS = {"int-1": "interruptible", "int-2": "interruptible", "fixed": "fixed",
           "leased": "leased"}


def flip_to_ai(site: Site, ctl: object, during: Callable[[], None] | None = None) -> None:
    """Ask every node for AI: the cap lets two or three go; the four 4-GPU tenants land."""
    for name, kind in TENANTS.items():
        site.tenant(name, interruptible=kind != "fixed", lease_h=6.0 if kind == "leased" else
                    None, gpus=4)
    ctl.want("ai")  # type: ignore[attr-defined]
    if during is not None:
        during()

    def done() -> bool:
        states = list(site.states().values())
        placed = sum(len(p) for p in site.running(AI_APP).values())
        return set(states) <= {"AI", "MINING", "IDLE"} and states.count("AI") >= 2 and (
            placed == 4
        )

    site.wait(done, "nodes in AI as far as the cap allows, every tenant running")


def flip_to_mine(site: Site, ctl: object, during: Callable[[], None] | None = None) -> None:
    """Ask every node to mine: interruptible tenants are evicted, protected ones waited for
    until they end by themselves; then every node mines."""
    ctl.clock.later()  # type: ignore[attr-defined]
    ctl.want("mine")  # type: ignore[attr-defined]
    if during is not None:
        during()

    def draining() -> bool:
        # Nodes of protected tenants wait: held in AI by the lease guard, or draining.
        pods = site.running(AI_APP)
        left = {p for names in pods.values() for p in names}
        states = site.states()
        return left == {"fixed", "leased"} and all(
            states[n] in ("AI", "DRAINING_AI") for n in pods
        ) and all(s == "MINING" for n, s in states.items() if n not in pods)

    site.wait(draining, "interruptible tenants evicted, protected ones waited for")
    time.sleep(2.0)  # two more cycles: protected tenants must still not be touched
    assert {p for v in site.running(AI_APP).values() for p in v} == {"fixed", "leased"}
    for name in ("fixed", "leased"):
        site.finish(name)

    def mining() -> bool:
        return set(site.states().values()) == {"MINING"} and len(site.running(MINER_APP)) == 4

    site.wait(mining, "every node mining again, its miner running")


def test_apiserver_500s_mid_flip(site: Site, ledger: FaultLedger) -> None:
    with ledger.run("apiserver-500", REAL) as run:
        with site.controller("mine") as ctl:
            writes = site.proxy.add(Rule("node write 500", method="PATCH",
                                         path=r"^/api/v1/nodes/", status=500, times=3))
            flip_to_ai(site, ctl)
            evictions = site.proxy.add(Rule("eviction 500", method="POST", path=r"/eviction$",
                                            status=500, times=2))
            flip_to_mine(site, ctl)
        assert (writes.injected, evictions.injected) == (3, 2)
        run.inject(writes.injected + evictions.injected)
        check_site(run, site, site.journal(), ctl.cycles)


def test_conflicts_on_node_writes(site: Site, ledger: FaultLedger) -> None:
    with ledger.run("conflict-409", REAL) as run:
        with site.controller("mine") as ctl:
            # Two in a row for one write: re-read and redo, then "retry next pass".
            rule = site.proxy.add(Rule("node write 409", method="PATCH",
                                       path=r"^/api/v1/nodes/", status=409, times=4))
            flip_to_ai(site, ctl)
            again = site.proxy.add(Rule("node write 409 (drain)", method="PATCH",
                                        path=r"^/api/v1/nodes/", status=409, times=2))
            flip_to_mine(site, ctl)
        assert (rule.injected, again.injected) == (4, 2)
        run.inject(rule.injected + again.injected)
        check_site(run, site, site.journal(), ctl.cycles)


def test_disruption_budget_429_on_eviction(site: Site, ledger: FaultLedger) -> None:
    with ledger.run("eviction-429", REAL) as run:
        with site.controller("mine") as ctl:
            flip_to_ai(site, ctl)
            rule = site.proxy.add(Rule("eviction 429", method="POST", path=r"/eviction$",
                                       status=429, times=4))
            flip_to_mine(site, ctl)
        assert rule.injected == 4
        run.inject(rule.injected)
        check_site(run, site, site.journal(), ctl.cycles)


def test_watches_expire_mid_flip(site: Site, ledger: FaultLedger) -> None:
    with ledger.run("watch-410", REAL) as run:
        with site.controller("mine") as ctl:
            injected: list[int] = []

            def expire() -> None:
                # The open watches end with 410 Gone; the next watch of each is refused too.
                for kind in ("nodes", "pods"):
                    site.proxy.add(Rule(f"{kind} watch 410", method="GET",
                                        path=rf"^/api/v1/{kind}$", query="watch=true",
                                        gone_event=True, times=1))
                injected.append(site.proxy.expire_watches())

            flip_to_ai(site, ctl, during=expire)
            flip_to_mine(site, ctl, during=expire)
        gone = [r for r in site.proxy.rules if r.gone_event]
        assert injected == [2, 2] and sum(r.injected for r in gone) == 4
        run.inject(sum(injected) + 4)
        check_site(run, site, site.journal(), ctl.cycles)


def test_connections_dropped_and_apiserver_unreachable(site: Site, ledger: FaultLedger) -> None:
    with ledger.run("connection-drop", REAL) as run:
        with site.controller("mine") as ctl:

            def cut() -> None:
                time.sleep(0.5)
                site.proxy.drop_all()
                run.inject()

            def outage() -> None:
                # Longer than the renew deadline: the leader steps down, then leads again.
                with site.proxy.outage():
                    time.sleep(3.0)
                run.inject()

            flip_to_ai(site, ctl, during=cut)
            flip_to_mine(site, ctl, during=outage)
        assert run.injected == 2
        check_site(run, site, site.journal(), ctl.cycles)


def restart_apiserver(cluster: KwokCluster) -> None:
    """Kill kube-apiserver (-9) and start it again with the same command line, as a crash
    and a supervisor's restart would. etcd keeps the state."""
    pid_file = cluster.cluster_dir / "pids" / "kube-apiserver.pid"
    pid = int(pid_file.read_text().strip())
    proc_dir = Path(f"/proc/{pid}")
    argv = [a.decode() for a in (proc_dir / "cmdline").read_bytes().split(b"\0") if a]
    cwd = os.readlink(proc_dir / "cwd")
    env = dict(
        e.decode().split("=", 1) for e in (proc_dir / "environ").read_bytes().split(b"\0") if e
    )
    os.kill(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)  # ours when kwokctl's components were adopted by this process
    except ChildProcessError:
        wait(lambda: not proc_dir.exists(), "the old kube-apiserver to exit", timeout=30)
    log = cluster.cluster_dir / "logs" / "kube-apiserver.log"
    with log.open("ab") as out:
        new = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    _RESTARTED.append(new)  # kept: the session's cluster stop reaps it through the pid file
    pid_file.write_text(str(new.pid))


_RESTARTED: list[subprocess.Popen[bytes]] = []


def test_apiserver_killed_and_restarted_mid_flip(
    site: Site, ledger: FaultLedger, kwok_cluster: KwokCluster
) -> None:
    from kubernetes import client

    def healthy() -> bool:
        api = kwok_cluster.api_client()
        try:
            client.CoreV1Api(api).list_namespace(limit=1)
            return True
        except Exception:
            return False
        finally:
            api.close()  # type: ignore[no-untyped-call]

    with ledger.run("apiserver-restart", REAL) as run:
        with site.controller("mine") as ctl:

            def restart() -> None:
                time.sleep(0.5)
                restart_apiserver(kwok_cluster)
                run.inject()
                wait(healthy, "kube-apiserver to serve again")

            flip_to_ai(site, ctl, during=restart)
            flip_to_mine(site, ctl, during=restart)
        assert run.injected == 2
        check_site(run, site, site.journal(), ctl.cycles)
