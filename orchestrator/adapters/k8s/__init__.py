"""Kubernetes adapter: the only code that talks to the Kubernetes API (design §2, §4).

- `KubeClient` (client.py): the API calls hashpivot makes, over the official client;
  `load_api_client` builds the ApiClient, `CountingApiClient` counts its calls.
- `ClusterCache` (watch.py): nodes and GPU pods kept current by list + watch.
- `KubeFleetSource` (fleet.py), `KubeDemandSource` (demand.py): the FleetSource and
  DemandSource ports.
- `KubeActuator`, `ShadowActuator` (actuator.py): the Actuator port, live and shadow.
- `LeaderElector` (leader.py): one acting replica, through a coordination.k8s.io Lease.
- `build_adapters` (wiring.py): all of the above for one config, live or shadow.

The in-memory API the unit tests use (`FakeKube`) lives in `tests/doubles`, not here.
"""

from orchestrator.adapters.k8s.actuator import (
    KubeActuator,
    NodeTarget,
    ShadowActuator,
    ensure_miner_daemonset,
    miner_daemonset_manifest,
    targets_from_plan,
)
from orchestrator.adapters.k8s.api import ApiError, KubeOps
from orchestrator.adapters.k8s.client import CountingApiClient, KubeClient, load_api_client
from orchestrator.adapters.k8s.demand import KubeDemandSource
from orchestrator.adapters.k8s.fleet import KubeFleetSource
from orchestrator.adapters.k8s.leader import LeaderElector
from orchestrator.adapters.k8s.ratelimit import TokenBucket
from orchestrator.adapters.k8s.watch import ClusterCache, ListingSource, ObjectCache
from orchestrator.adapters.k8s.wiring import KubeAdapters, build_adapters

__all__ = [
    "ApiError",
    "ClusterCache",
    "CountingApiClient",
    "KubeActuator",
    "KubeAdapters",
    "KubeClient",
    "KubeDemandSource",
    "KubeFleetSource",
    "KubeOps",
    "LeaderElector",
    "ListingSource",
    "NodeTarget",
    "ObjectCache",
    "ShadowActuator",
    "TokenBucket",
    "build_adapters",
    "ensure_miner_daemonset",
    "load_api_client",
    "miner_daemonset_manifest",
    "targets_from_plan",
]
