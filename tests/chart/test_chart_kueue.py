"""The chart beside Kueue and KubeRay: the extra RBAC follows the config, least privilege
(reads for demand; writes to the one ClusterQueue and to Workloads only in live mode), and
the rendered config carries the `kueue`/`kuberay` sections to the controller."""

from __future__ import annotations

from typing import Any

import yaml

from .helm import CI_VALUES, Helm, one

CQ = "site-gpus"
BASE = [
    "config.kueue.enabled=true",
    f"config.kueue.cluster_queue={CQ}",
    "config.kuberay.enabled=true",
]


def rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rules_: list[dict[str, Any]] = one(docs, "ClusterRole")["rules"]
    return rules_


def grants(docs: list[dict[str, Any]], group: str) -> dict[str, tuple[set[str], list[str]]]:
    """resource → (verbs, resourceNames) for one API group."""
    out: dict[str, tuple[set[str], list[str]]] = {}
    for rule in rules(docs):
        if group in rule["apiGroups"]:
            for res in rule["resources"]:
                out[res] = (set(rule["verbs"]), list(rule.get("resourceNames") or []))
    return out


def config_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    data = one(docs, "ConfigMap")["data"]
    parsed: dict[str, Any] = yaml.safe_load(next(iter(data.values())))
    return parsed


def test_shadow_reads_only(helm: Helm) -> None:
    docs = helm.template(sets=BASE)
    kueue = grants(docs, "kueue.x-k8s.io")
    assert kueue["workloads"] == ({"list", "watch"}, [])
    assert kueue["resourceflavors"] == ({"get"}, [])
    assert kueue["clusterqueues"] == ({"get"}, [CQ])
    assert grants(docs, "ray.io") == {"rayclusters": ({"list", "watch"}, []),
                                     "rayjobs": ({"list", "watch"}, [])}
    config = config_of(docs)
    assert config["kueue"]["cluster_queue"] == CQ and config["kuberay"]["enabled"] is True


def test_live_patches_the_one_cluster_queue_and_workloads(helm: Helm) -> None:
    docs = helm.template([CI_VALUES / "live-values.yaml"], sets=BASE)
    kueue = grants(docs, "kueue.x-k8s.io")
    assert kueue["clusterqueues"] == ({"get", "patch"}, [CQ])
    assert kueue["workloads"] == ({"list", "watch", "patch"}, [])
    assert kueue["resourceflavors"] == ({"get"}, [])
    # Ray objects are read only, live or not.
    assert grants(docs, "ray.io")["rayclusters"] == ({"list", "watch"}, [])


def test_no_deactivation_no_workload_writes(helm: Helm) -> None:
    docs = helm.template([CI_VALUES / "live-values.yaml"],
                         sets=[*BASE, "config.kueue.deactivate_interruptible=false"])
    assert grants(docs, "kueue.x-k8s.io")["workloads"] == ({"list", "watch"}, [])


def test_demand_only_grants_no_queue_access(helm: Helm) -> None:
    docs = helm.template([CI_VALUES / "live-values.yaml"], sets=["config.kueue.enabled=true"])
    kueue = grants(docs, "kueue.x-k8s.io")
    assert "clusterqueues" not in kueue
    assert kueue["workloads"] == ({"list", "watch"}, [])
    assert not grants(docs, "ray.io")


def test_nothing_without_kueue_or_kuberay(helm: Helm) -> None:
    docs = helm.template([CI_VALUES / "live-values.yaml"])
    assert not grants(docs, "kueue.x-k8s.io")
    assert not grants(docs, "ray.io")
