"""Leader election on a `coordination.k8s.io/v1` Lease: two replicas never both actuate.

The algorithm is client-go's: the holder renews `renewTime` every retry period with a
conditional update (resourceVersion; a 409 means another replica got there first). A
candidate takes over only after the record has not changed for a whole lease duration as
measured on its own monotonic clock, so clock skew between replicas does not matter. The
leader stops writing once it has gone `renew_deadline_s` without a renewal, which is
shorter than the lease: it has stopped before anyone else may start.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from orchestrator.adapters.k8s.api import CONFLICT, NOT_FOUND, ApiError, KubeOps, Obj
from orchestrator.adapters.k8s.objects import format_micro_time, resource_version_of
from orchestrator.models.config import KubernetesConfig

log = logging.getLogger("hashpivot.k8s.leader")


def default_identity() -> str:
    """Pod name (HOSTNAME in a pod) plus a random suffix: unique per process."""
    host = os.environ.get("HOSTNAME") or socket.gethostname()
    return f"{host}_{uuid.uuid4().hex[:8]}"


class LeaderElector:
    """Acquires and renews one Lease. Call `try_acquire_or_renew` in a loop, or `start()`
    a thread that does; ask `is_leader()` before every write."""

    def __init__(
        self,
        kube: KubeOps,
        namespace: str,
        name: str,
        *,
        identity: str | None = None,
        lease_duration_s: float = 15.0,
        renew_deadline_s: float = 10.0,
        retry_period_s: float = 2.0,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if not 0 < renew_deadline_s < lease_duration_s:
            raise ValueError(
                f"renew deadline ({renew_deadline_s}s) must be shorter than the lease "
                f"({lease_duration_s}s), or two leaders could overlap"
            )
        if not 0 < retry_period_s < renew_deadline_s:
            raise ValueError("retry period must be shorter than the renew deadline")
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.lease_duration_s = lease_duration_s
        self.renew_deadline_s = renew_deadline_s
        self.retry_period_s = retry_period_s
        self._wall = wall
        self._mono = monotonic
        self._on_change = on_change
        self._lock = threading.Lock()
        self._observed: tuple[object, ...] | None = None
        self._observed_at = 0.0
        self._renewed_at: float | None = None
        self._leading = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: The holder seen in the last read (None: nobody).
        self.holder: str | None = None
        self.transitions = 0

    @classmethod
    def from_config(
        cls, kube: KubeOps, config: KubernetesConfig, identity: str | None = None
    ) -> LeaderElector:
        return cls(
            kube,
            config.namespace,
            config.lease_name,
            identity=identity,
            lease_duration_s=config.lease_duration_s,
            renew_deadline_s=config.lease_renew_deadline_s,
            retry_period_s=config.lease_retry_period_s,
        )

    # -- state ---------------------------------------------------------------------------

    def is_leader(self) -> bool:
        """True while we hold the lease and renewed it within the renew deadline."""
        with self._lock:
            return (
                self._leading
                and self._renewed_at is not None
                and self._mono() - self._renewed_at < self.renew_deadline_s
            )

    def _set_leading(self, leading: bool) -> None:
        changed = leading != self._leading
        self._leading = leading
        if changed:
            log.info(
                "%s %s leadership of %s", self.identity, "took" if leading else "lost", self.name
            )
            if self._on_change is not None:
                self._on_change(leading)

    # -- one attempt ---------------------------------------------------------------------

    def _spec(self, acquire_s: float, transitions: int) -> Obj:
        now = self._wall()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": math.ceil(self.lease_duration_s),
            "acquireTime": format_micro_time(acquire_s),
            "renewTime": format_micro_time(now),
            "leaseTransitions": transitions,
        }

    def try_acquire_or_renew(self) -> bool:
        """One round: create, renew or take over the Lease. True if we lead afterwards."""
        with self._lock:
            ok = self._attempt()
            if ok:
                self._renewed_at = self._mono()
            self._set_leading(ok)
            return ok

    def _attempt(self) -> bool:
        try:
            lease = self.kube.get_lease(self.namespace, self.name)
        except ApiError as exc:
            if exc.status != NOT_FOUND:
                log.warning("reading lease %s: %s", self.name, exc)
                return False
            return self._create()
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or None
        self.holder = holder
        record = (
            holder,
            spec.get("renewTime"),
            spec.get("leaseDurationSeconds"),
            resource_version_of(lease),
        )
        now = self._mono()
        if record != self._observed:
            self._observed = record
            self._observed_at = now
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration_s)
        if holder and holder != self.identity and now - self._observed_at < duration:
            return False  # someone else holds a live lease
        transitions = int(spec.get("leaseTransitions") or 0)
        mine = holder == self.identity
        acquire = spec.get("acquireTime") if mine else None
        new_spec = self._spec(self._wall(), transitions if mine else transitions + 1)
        if acquire:
            new_spec["acquireTime"] = acquire
        body: Obj = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": resource_version_of(lease),
            },
            "spec": new_spec,
        }
        try:
            updated = self.kube.replace_lease(self.namespace, self.name, body)
        except ApiError as exc:
            if exc.status != CONFLICT:
                log.warning("updating lease %s: %s", self.name, exc)
            return False  # 409: another replica wrote first; look again next round
        self._record(updated)
        return True

    def _create(self) -> bool:
        body: Obj = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": self._spec(self._wall(), 0),
        }
        try:
            created = self.kube.create_lease(self.namespace, body)
        except ApiError as exc:
            if exc.status != CONFLICT:
                log.warning("creating lease %s: %s", self.name, exc)
            return False
        self._record(created)
        return True

    def _record(self, lease: Obj) -> None:
        spec = lease.get("spec") or {}
        self.holder = spec.get("holderIdentity") or None
        self.transitions = int(spec.get("leaseTransitions") or 0)
        self._observed = (
            self.holder,
            spec.get("renewTime"),
            spec.get("leaseDurationSeconds"),
            resource_version_of(lease),
        )
        self._observed_at = self._mono()

    def release(self) -> bool:
        """Give the lease up (on shutdown) so a standby takes over at once."""
        with self._lock:
            if not self._leading:
                return False
            self._set_leading(False)
            try:
                lease = self.kube.get_lease(self.namespace, self.name)
                spec = lease.get("spec") or {}
                if spec.get("holderIdentity") != self.identity:
                    return False
                body: Obj = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": self.name,
                        "namespace": self.namespace,
                        "resourceVersion": resource_version_of(lease),
                    },
                    "spec": {
                        "leaseDurationSeconds": 1,
                        "renewTime": format_micro_time(self._wall()),
                        "leaseTransitions": int(spec.get("leaseTransitions") or 0),
                    },
                }
                self.kube.replace_lease(self.namespace, self.name, body)
            except ApiError as exc:
                log.warning("releasing lease %s: %s", self.name, exc)
                return False
            return True

    # -- background loop -----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.try_acquire_or_renew()
            except Exception as exc:  # never let the loop die: leadership lapses instead
                log.warning("leader election %s: %s", self.name, exc)
            self._stop.wait(self.retry_period_s)

    def start(self) -> LeaderElector:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"hashpivot-leader-{self.name}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, *, release: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.retry_period_s + 30.0)
            self._thread = None
        if release:
            self.release()
        else:
            with self._lock:
                self._set_leading(False)
