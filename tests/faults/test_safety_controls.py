"""The controls an operator expects: the kill switch (namespace annotation or config), per-node
opt-out and other manual overrides, the hourly fleet switch budget, and a power cap that
holds on the way through a flip, not only at its end."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.adapters.k8s import actuator as actuator_module
from orchestrator.adapters.k8s.api import ApiError
from orchestrator.adapters.k8s.freeze import (
    FROZEN_ANNOTATION,
    FreezableActuator,
    FreezeSwitch,
    kill_switch,
)
from orchestrator.adapters.k8s.objects import MODE_LABEL
from orchestrator.runtime.journal import read_journal
from tests.faults.fake_site import FakeSite, site_config
from tests.faults.k8s_site import RunningController, Site

# -- the kill switch ------------------------------------------------------------------------


def namespace(annotations: dict[str, str] | None = None) -> dict[str, object]:
    return {"metadata": {"name": "hashpivot", "annotations": annotations or {}}}


def test_kill_switch_reads_the_namespace_annotation_and_fails_closed() -> None:
    now = [0.0]
    answer: list[object] = [namespace()]

    def read() -> dict[str, object]:
        got = answer[0]
        if isinstance(got, Exception):
            raise got
        assert isinstance(got, dict)
        return got

    switch = FreezeSwitch(read, "namespace hashpivot", ttl_s=2.0, monotonic=lambda: now[0])
    assert switch() is None
    answer[0] = namespace({FROZEN_ANNOTATION: "true"})
    assert switch() is None  # read 0 s ago: the cached answer stands for ttl_s
    now[0] = 2.5
    frozen = switch()
    assert frozen is not None and FROZEN_ANNOTATION in frozen and "namespace hashpivot" in frozen
    for value in ("false", "no", "0", ""):
        answer[0] = namespace({FROZEN_ANNOTATION: value})
        now[0] += 3
        assert switch() is None, value
    answer[0] = ApiError(403, 'namespaces "hashpivot" is forbidden')
    now[0] += 3
    why = switch()
    assert why is not None and "unreadable" in why and "403" in why  # fail closed
    answer[0] = ApiError(0, "connection refused")
    now[0] += 3
    assert switch() is not None and switch.failures == 2


def test_kill_switch_only_for_a_real_api_client() -> None:
    from tests.doubles.k8s import FakeKube

    assert kill_switch(FakeKube(), "hashpivot") is None


def test_frozen_cycles_start_no_switch_and_say_why(tmp_path: Path) -> None:
    site = FakeSite(tmp_path)
    frozen: list[str | None] = ["annotation hashpivot.io/frozen=true on namespace hashpivot"]
    site.deps.freeze = lambda: frozen[0]
    site.want("ai")
    writes = site.kube.writes
    site.step(3)
    assert site.kube.writes == writes, "a frozen fleet is not written to"
    assert set(site.states().values()) == {"MINING"}
    records = list(read_journal(site.folder))
    assert all(r.plan["frozen"] == frozen[0] for r in records)
    assert all(r.plan["changes"] == 0 and r.plan["guards"] == {"GUARD_FROZEN": 4}
               for r in records)
    frozen[0] = None  # thawed: the switch goes ahead
    site.run_until(lambda: list(site.states().values()).count("AI") >= 2, "switched to AI")
    assert "frozen" not in list(read_journal(site.folder))[-1].plan


def test_frozen_by_config_is_the_same_switch(tmp_path: Path) -> None:
    site = FakeSite(tmp_path, config=site_config(guards={
        "min_dwell_s": 0, "max_fleet_switch_share_per_hour": 1.0, "frozen": True}))
    site.want("ai")
    site.step(2)
    assert set(site.states().values()) == {"MINING"}
    assert all(r.plan["frozen"] == "config guards.frozen" for r in read_journal(site.folder))


def test_freezing_mid_switch_settles_at_the_committed_mode(tmp_path: Path) -> None:
    """A switch under way is not left half-done, nor carried on: it ends at the mode its
    node is committed to (the label), by the cycle and by reconcile passes alike."""
    for by_reconcile in (False, True):
        site = FakeSite(tmp_path / str(by_reconcile))
        site.want(n0="ai")
        site.clock.t += 60
        site.cycle.run_once()  # n0: MINING → STOPPING_MINE (label idle), heading to AI
        assert site.states()["n0"] == "STOPPING_MINE"
        frozen: list[str | None] = ["frozen by the test"]
        site.deps.freeze = lambda frozen=frozen: frozen[0]  # type: ignore[misc]
        site.kube.run_daemonset_controller("hashpivot", "hashpivot-miner")  # miner leaves
        if by_reconcile:
            FreezableActuator(site.actuator, site.deps.freeze).reconcile()
        else:
            site.clock.t += 60
            site.cycle.run_once()
        assert site.states()["n0"] == "IDLE"
        notes = site.kube.nodes["n0"]["metadata"]["annotations"]
        assert notes["hashpivot.io/target"] == "idle"
        assert notes["hashpivot.io/reason"] == "GUARD_FROZEN"
        site.step(2)
        assert site.states()["n0"] == "IDLE", "no new switch while frozen"


# -- manual overrides -----------------------------------------------------------------------


def deferred(site: FakeSite, node: str) -> str:
    return str(list(read_journal(site.folder))[-1].actuation["deferred"].get(node, ""))


def test_opt_out_label_and_cordon_are_left_alone_and_recorded(tmp_path: Path) -> None:
    site = FakeSite(tmp_path)
    site.kube.set_node("n0", lambda n: n["metadata"]["labels"].__setitem__(
        "hashpivot.io/opt-out", "true"))
    site.kube.set_node("n1", lambda n: n["spec"].__setitem__("unschedulable", True))
    site.want("ai")
    site.run_until(lambda: site.states()["n2"] == "AI" and site.states()["n3"] == "AI",
                   "n2 and n3 in AI")
    site.step(2)
    assert site.states()["n0"] == site.states()["n1"] == "MINING"
    assert "opted out, left alone: opt-out label hashpivot.io/opt-out=true" in deferred(
        site, "n0")
    assert "cordoned" in deferred(site, "n1")
    last = list(read_journal(site.folder))[-1]
    assert last.plan["guards"].get("GUARD_OPT_OUT") == 2
    assert last.fleet_columns is not None and last.fleet_columns.opt_out[:2] == [True, True]


def test_a_mode_label_changed_by_hand_is_respected_and_recorded(tmp_path: Path) -> None:
    site = FakeSite(tmp_path)
    site.want("mine")
    site.kube.set_node("n0", lambda n: n["metadata"]["labels"].__setitem__(MODE_LABEL, "idle"))
    site.step(3)
    node = site.kube.nodes["n0"]
    assert node["metadata"]["labels"][MODE_LABEL] == "idle", "not put back"
    assert "hashpivot.io/mode set to 'idle' by hand (hashpivot had it MINING)" in deferred(
        site, "n0")
    last = list(read_journal(site.folder))[-1]
    assert last.fleet_columns is not None
    assert last.fleet_columns.opt_out[0] and last.fleet_columns.mode[0] == 0  # counted idle
    # Undone (the label back as it was): managed again, nothing to repair.
    site.kube.set_node("n0", lambda n: n["metadata"]["labels"].__setitem__(MODE_LABEL, "mine"))
    site.step()
    assert "n0" not in list(read_journal(site.folder))[-1].actuation["deferred"]


@pytest.mark.parametrize(("was", "to", "tainted"), [("mine", "ai", False),
                                                     ("mine", "idle", False),
                                                     ("ai", "mine", True)])
def test_a_hand_set_mode_label_gets_the_taint_of_its_mode(
        tmp_path: Path, was: str, to: str, tainted: bool) -> None:
    # Labelled ai by hand but still tainted for mining, a node would take no AI pod.
    site = FakeSite(tmp_path)
    site.want(was)
    steady = {"mine": "MINING", "ai": "AI"}[was]
    site.run_until(lambda: site.states()["n2"] == steady, f"n2 {steady}")
    site.step()
    site.kube.set_node("n2", lambda n: n["metadata"]["labels"].__setitem__(MODE_LABEL, to))
    site.step(2)
    node = site.kube.nodes["n2"]
    assert node["metadata"]["labels"][MODE_LABEL] == to, "the label is the operator's"
    has_taint = any(t["key"] == "hashpivot.io/mining" for t in node["spec"].get("taints") or [])
    assert has_taint == tainted
    assert f"set to {to!r} by hand" in deferred(site, "n2")
    assert "mining taint set to match its label" in "".join(
        str(r.actuation.get("deferred", {}).get("n2", "")) for r in read_journal(site.folder))


def test_a_removed_label_is_drift_and_is_put_back(tmp_path: Path) -> None:
    site = FakeSite(tmp_path)
    site.want("mine")
    site.kube.set_node("n0", lambda n: n["metadata"]["labels"].pop(MODE_LABEL))
    site.step()
    assert site.kube.nodes["n0"]["metadata"]["labels"][MODE_LABEL] == "mine"


# -- the fleet switch budget ----------------------------------------------------------------


def test_at_most_the_configured_share_of_the_fleet_switches_per_hour(tmp_path: Path) -> None:
    site = FakeSite(tmp_path, config=site_config(guards={
        "min_dwell_s": 0, "max_fleet_switch_share_per_hour": 0.5}))
    site.want("idle")
    site.step(10)  # ten minutes
    assert list(site.states().values()).count("IDLE") == 2
    assert list(read_journal(site.folder))[-1].plan["guards"] == {
        "GUARD_FLEET_SWITCH_BUDGET": 2}
    site.step(1, dt=3600)  # an hour later: the next two
    site.step(2)
    assert set(site.states().values()) == {"IDLE"}


# -- the power cap on the way ---------------------------------------------------------------


def swap(tmp_path: Path) -> FakeSite:
    """Two AI nodes whose tenants must finish swap with two mining nodes: the plan fits the
    25 kW cap, but starting AI before the drains end would draw 28.4 kW."""
    site = FakeSite(tmp_path, modes=("ai", "ai", "mine", "mine"))
    site.tenant("fixed-0", interruptible=False, node="n0", gpus=8)
    site.tenant("fixed-1", interruptible=False, node="n1", gpus=8)
    site.tenant("next-2", interruptible=False, gpus=8)
    site.tenant("next-3", interruptible=False, gpus=8)
    site.want(n0="mine", n1="mine", n2="ai", n3="ai")
    site.step(5)
    site.finish("fixed-0")
    site.finish("fixed-1")
    site.run_until(lambda: site.states() == {"n0": "MINING", "n1": "MINING", "n2": "AI",
                                             "n3": "AI"}, "swapped")
    return site


def test_the_power_cap_holds_while_nodes_switch(tmp_path: Path) -> None:
    site = swap(tmp_path)
    ok, detail = site.history.power()
    assert ok, detail
    assert site.history.max_draw_w <= 25_000.0


def test_without_the_actuators_budget_the_swap_would_pass_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above has teeth: with no power budget in the actuator, the same swap
    draws more than the cap while the drains wait."""
    monkeypatch.setattr(actuator_module.PowerBudget, "of", staticmethod(lambda p, f: None))
    site = swap(tmp_path)
    assert site.history.max_draw_w > 25_000.0


def test_reconcile_waits_for_power_and_the_next_plan_ends_what_cannot_fit(
    tmp_path: Path,
) -> None:
    """All four nodes asked for AI while two still drain: the plan counts the switches under
    way at their committed mode (idle), so two more may start; the actuator lets none of
    them draw past the cap. Reconcile passes wait; the next cycle ends a switch that cannot
    fit where its node is committed (idle), and decides it again from there."""
    site = FakeSite(tmp_path, modes=("ai", "ai", "mine", "mine"))
    site.tenant("fixed-0", interruptible=False, node="n0", gpus=8)
    site.tenant("fixed-1", interruptible=False, node="n1", gpus=8)
    site.want(n0="mine", n1="mine", n2="ai", n3="ai")
    site.clock.t += 60
    site.cycle.run_once()
    for _ in range(4):
        site.world()
        site.actuator.reconcile()
    site.world()
    assert site.states() == {"n0": "DRAINING_AI", "n1": "DRAINING_AI",
                             "n2": "STOPPING_MINE", "n3": "STOPPING_MINE"}
    assert "power headroom" in str(site.actuator.reconcile().deferred.get("n2"))
    site.step()
    states = site.states()
    assert sorted([states["n2"], states["n3"]]) == ["AI", "IDLE"], states
    assert site.history.max_draw_w <= 25_000.0


# -- on the real control plane, as the chart's ServiceAccount --------------------------------


@pytest.mark.tier2
def test_kill_switch_and_manual_override_on_a_real_cluster(site: Site) -> None:
    from orchestrator.runtime.journal import last_record

    core = site.core

    def annotate(value: str | None) -> None:
        core.patch_namespace(site.namespace,
                             {"metadata": {"annotations": {FROZEN_ANNOTATION: value}}})

    def cycles_pass(ctl: RunningController, count: int) -> None:
        target = ctl.cycles + count
        site.wait(lambda: ctl.cycles >= target, f"{count} more cycles")

    with site.controller("mine") as ctl:
        annotate("true")
        site.wait(lambda: "annotation" in str(
            (last_record(site.journal()) or type("r", (), {"plan": {}})).plan.get("frozen")),
            "a cycle frozen by the namespace annotation")
        writes = site.proxy.count("PATCH", r"^/api/v1/nodes/")
        ctl.want("ai")
        cycles_pass(ctl, 3)
        assert set(site.states().values()) == {"MINING"}
        assert site.proxy.count("PATCH", r"^/api/v1/nodes/") == writes
        # The chart's Role lets the controller read the switch: never "unreadable"; and
        # its own namespace is all it can read of namespaces.
        assert not any("unreadable" in str(r.plan.get("frozen"))
                       for r in read_journal(site.journal()))
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        sa = client.CoreV1Api(site.api_client())
        assert sa.read_namespace(site.namespace).metadata.annotations[FROZEN_ANNOTATION]
        for refused in (lambda: sa.read_namespace("default"), sa.list_namespace,
                        lambda: sa.patch_namespace(site.namespace, {"metadata": {}})):
            with pytest.raises(ApiException) as err:
                refused()
            assert err.value.status == 403

        annotate(None)
        site.wait(lambda: list(site.states().values()).count("AI") >= 2
                  and set(site.states().values()) <= {"AI", "MINING", "IDLE"},
                  "thawed: AI again")

        # An operator takes an AI node by hand: left alone, and the journal says so.
        node = next(n for n, s in site.states().items() if s == "AI")
        site.patch_node(node, {"metadata": {"labels": {MODE_LABEL: "idle"}}})
        writes = site.proxy.count("PATCH", rf"^/api/v1/nodes/{node}$")
        cycles_pass(ctl, 3)
        assert site.facts()[node]["mode"] == "idle"
        assert site.proxy.count("PATCH", rf"^/api/v1/nodes/{node}$") == writes
        record = last_record(site.journal())
        assert record is not None
        assert "set to 'idle' by hand (hashpivot had it AI)" in record.actuation["deferred"][node]
