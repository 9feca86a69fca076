"""The cluster-wide kill switch: `hashpivot.io/frozen=true` on the controller's namespace.

    kubectl annotate namespace hashpivot hashpivot.io/frozen=true --overwrite   # freeze
    kubectl annotate namespace hashpivot hashpivot.io/frozen-                   # thaw

While frozen every cycle decides with `GuardConfig(frozen=True)`: no node starts a switch,
and a switch under way settles at the mode its node is committed to (what its label says)
instead of carrying on. Reconcile passes between cycles do the same.

The namespace object was chosen because the controller already knows its name and the
chart can grant `get` on exactly that one object (a Role rule with `resourceNames`): no new
object to create, no list or watch, nothing writable. It fails closed: when the annotation
cannot be read (403, apiserver down), the cycle is treated as frozen and says why. Holding
every node is the safe action; switching blind to an operator's "stop" is not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from orchestrator.adapters.k8s.actuator import KubeActuator, NodeTarget, ShadowActuator
from orchestrator.adapters.k8s.api import ApiError, KubeOps, Obj
from orchestrator.adapters.k8s.client import KubeClient
from orchestrator.adapters.k8s.objects import annotations_of, is_true, mode_of, node_view
from orchestrator.engine.plan import Plan
from orchestrator.framework.reasons import Reason
from orchestrator.models.fleet import FleetTable
from orchestrator.ports import ActuationResult

log = logging.getLogger("hashpivot.k8s.freeze")

FROZEN_ANNOTATION = "hashpivot.io/frozen"
FROZEN_DECISION = "frozen"
#: A reading is reused this long: reconcile passes run every few seconds.
DEFAULT_TTL_S = 2.0


class FreezeSwitch:
    """Reads the kill switch; call it for why the fleet is frozen (None: not frozen)."""

    def __init__(
        self,
        read: Callable[[], Obj],
        where: str,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self.where = where
        self.ttl_s = ttl_s
        self._mono = monotonic
        self._lock = threading.Lock()
        self._cached: tuple[float, str | None] | None = None
        self._last_logged: str | None = None
        #: Readings that failed (the fleet was held for them): for tests and status.
        self.failures = 0

    @classmethod
    def on_namespace(cls, kube: KubeClient, namespace: str, **kw: Any) -> FreezeSwitch:
        def read() -> Obj:
            obj: Obj = kube.request("GET", f"/api/v1/namespaces/{namespace}")
            return obj

        return cls(read, f"namespace {namespace}", **kw)

    def __call__(self) -> str | None:
        with self._lock:
            now = self._mono()
            if self._cached is not None and now - self._cached[0] < self.ttl_s:
                return self._cached[1]
            why = self._check()
            self._cached = (now, why)
        if why != self._last_logged:
            if why is None:
                log.info("kill switch off (%s): switching resumes", self.where)
            else:
                log.warning("fleet frozen: %s; every node is held", why)
            self._last_logged = why
        return why

    def _check(self) -> str | None:
        try:
            obj = self._read()
        except ApiError as exc:
            self.failures += 1
            detail = f"{exc.status} {exc.message}".strip() if exc.status else exc.message
            return (
                f"kill switch unreadable ({self.where}: {detail[:200]}); holding until it "
                f"can be read"
            )
        value = annotations_of(obj).get(FROZEN_ANNOTATION)
        if value is not None and is_true(value):
            return f"annotation {FROZEN_ANNOTATION}={value} on {self.where}"
        return None


def kill_switch(kube: KubeOps, namespace: str) -> FreezeSwitch | None:
    """The switch for a real API client; None for other `KubeOps` (fakes carry no namespace)."""
    return FreezeSwitch.on_namespace(kube, namespace) if isinstance(kube, KubeClient) else None


class FreezableActuator:
    """An actuator whose between-cycle reconcile obeys the kill switch.

    Cycles already decide frozen plans (the cycle reads the same switch); this keeps the
    reconcile passes between them from carrying a switch on to its old target meanwhile.
    """

    def __init__(self, inner: KubeActuator | ShadowActuator, frozen: Callable[[], str | None]):
        self.inner = inner
        self.frozen = frozen

    def apply(self, plan: Plan, fleet: FleetTable | None = None) -> ActuationResult:
        return self.inner.apply(plan, fleet)

    def reconcile(self) -> ActuationResult:
        inner = self.inner
        if not isinstance(inner, KubeActuator):
            return ActuationResult()  # shadow: nothing to carry on
        if self.frozen() is None:
            return inner.reconcile()
        return settle(inner)


def settle(actuator: KubeActuator) -> ActuationResult:
    """Bring every switch under way to the mode its node is committed to; start none."""
    try:
        nodes = actuator.nodes.nodes()
    except ApiError as exc:
        return ActuationResult(errors={"(cluster)": f"reading nodes: {exc}"})
    targets = []
    for obj in nodes:
        view = node_view(obj, actuator.config)
        if view.state_recorded and not view.opt_out:
            targets.append(
                NodeTarget(view.name, mode_of(view.state), reason=Reason.GUARD_FROZEN.name)
            )
    return actuator.apply_targets(targets, FROZEN_DECISION)
