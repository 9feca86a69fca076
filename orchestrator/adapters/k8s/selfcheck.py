"""What the controller's credentials may do, asked of the API server itself
(SelfSubjectAccessReview): everything its mode needs, and nothing it must never have.

`hashpivot doctor` (and the chart's `helm test`) run it as the controller's ServiceAccount,
so a missing or excessive RBAC grant shows before a cycle needs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.adapters.k8s.client import KubeClient


@dataclass(frozen=True)
class Access:
    verb: str
    resource: str
    group: str = ""
    namespace: str | None = None
    subresource: str = ""
    name: str = ""
    #: True: the controller needs it; False: it must not have it.
    wanted: bool = True

    def describe(self) -> str:
        what = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        if self.group:
            what += f".{self.group}"
        if self.name:
            what += f" {self.name}"
        where = f" in {self.namespace}" if self.namespace else " cluster-wide"
        return f"{self.verb} {what}{where}"


def required_access(namespace: str, lease: str, live: bool) -> list[Access]:
    """What a controller in `namespace` needs (live: also writes), and what it must lack."""
    out = [Access("list", "nodes"), Access("watch", "nodes"),
           Access("list", "pods"), Access("watch", "pods"),
           Access("get", "namespaces", namespace=namespace, name=namespace)]
    if live:
        leases = "coordination.k8s.io"
        out += [Access("patch", "nodes"),
                Access("create", "pods", subresource="eviction"),
                Access("create", "leases", leases, namespace),
                Access("get", "leases", leases, namespace, name=lease),
                Access("update", "leases", leases, namespace, name=lease),
                Access("create", "events", "events.k8s.io", "default")]
    else:  # shadow writes nothing, so it is granted no writes either
        out += [Access("patch", "nodes", wanted=False),
                Access("create", "pods", subresource="eviction", wanted=False),
                Access("create", "events", "events.k8s.io", "default", wanted=False),
                Access("create", "leases", "coordination.k8s.io", namespace, wanted=False)]
    out += [Access("get", "secrets", namespace=namespace, wanted=False),
            Access("list", "secrets", wanted=False)]
    return out


def check_access_list(kube: KubeClient, checks: list[Access]) -> list[tuple[Access, bool]]:
    """Each check with whether the API server allows it to these credentials."""
    results = []
    for check in checks:
        attrs: dict[str, str] = {"verb": check.verb, "resource": check.resource,
                                 "group": check.group}
        if check.namespace:
            attrs["namespace"] = check.namespace
        if check.subresource:
            attrs["subresource"] = check.subresource
        if check.name:
            attrs["name"] = check.name
        review = kube.request(
            "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            body={"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": attrs}})
        results.append((check, bool((review.get("status") or {}).get("allowed"))))
    return results
