"""Bad values fail at `helm template` time, with a message that names the value."""

from __future__ import annotations

import pytest

from .helm import CHART, NAMESPACE, RELEASE, SITE_VALUES, Helm

MINER_OK = [
    "miner.enabled=true",
    "miner.image.repository=registry.example.com/miner",
    "miner.wallet.existingSecret=wallet",
]

# (id, helm arguments, words the error must contain)
CASES: list[tuple[str, list[str], list[str]]] = [
    # Unknown keys, at every depth.
    ("unknown-top-level-key", ["--set", "replicaCout=3"], ["replicaCout"]),
    ("unknown-nested-key", ["--set", "image.tga=1.0"], ["image", "tga"]),
    ("unknown-config-key", ["--set", "config.controller.mdoe=live"], ["mdoe"]),
    ("unknown-config-section", ["--set", "config.controler.mode=live"], ["controler"]),
    ("unknown-k8s-key", ["--set", "securityContext.runAsUsr=0"], ["runAsUsr"]),
    # Wrong types and values.
    ("wrong-type", ["--set-string", "replicaCount=two"], ["replicaCount"]),
    (
        "wrong-type-in-config",
        ["--set-string", "config.controller.interval_s=soon"],
        ["controller", "interval_s"],
    ),
    ("bad-enum-in-config", ["--set", "config.controller.mode=yolo"], ["controller", "mode"]),
    (
        "out-of-range-in-config",
        ["--set", "config.guards.max_fleet_switch_share_per_hour=-0.5"],
        ["guards", "max_fleet_switch_share_per_hour"],
    ),
    ("bad-ray-mode", ["--set", "ray.mode=remote"], ["ray", "mode"]),
    ("bad-duration", ["--set", "serviceMonitor.interval=often"], ["serviceMonitor", "interval"]),
    (
        "wrong-type-in-k8s-value",
        ["--set-string", "tolerations[0].tolerationSeconds=soon"],
        ["tolerations", "tolerationSeconds"],
    ),
    # Rules that span several values.
    (
        "live-without-miner",
        ["--set", "config.controller.mode=live"],
        ["config.controller.mode", "miner.enabled", "config.kubernetes.miner_daemonset"],
    ),
    (
        "miner-without-wallet",
        [
            "--set",
            "miner.enabled=true",
            "--set",
            "miner.image.repository=registry.example.com/miner",
        ],
        ["miner.wallet.existingSecret"],
    ),
    (
        "miner-without-image",
        ["--set", "miner.enabled=true", "--set", "miner.wallet.existingSecret=wallet"],
        ["miner.image.repository"],
    ),
    (
        "miner-name-conflict",
        [a for s in MINER_OK for a in ("--set", s)]
        + ["--set", "config.kubernetes.miner_daemonset=other"],
        ["config.kubernetes.miner_daemonset"],
    ),
    ("external-ray-without-address", ["--set", "ray.mode=external"], ["ray.address"]),
    ("address-without-external-ray", ["--set", "ray.address=ray://head:10001"], ["ray.address"]),
    ("kuberay-without-crd", ["--set", "ray.mode=kuberay"], ["ray.mode=kuberay", "RayCluster"]),
    (
        "foreign-namespace",
        ["--set", "config.kubernetes.namespace=elsewhere"],
        ["config.kubernetes.namespace"],
    ),
    (
        "ray-address-in-config",
        ["--set", "config.controller.ray_address=ray://x:10001"],
        ["config.controller.ray_address", "ray.address"],
    ),
    (
        "journal-dir-in-config",
        ["--set", "config.controller.journal_dir=/data"],
        ["config.controller.journal_dir"],
    ),
    (
        # The mode through the environment: RBAC and probes would follow the values' mode.
        "mode-through-extra-env",
        ["--set", "extraEnv[0].name=HASHPIVOT_CONTROLLER__MODE",
         "--set", "extraEnv[0].value=live"],
        ["extraEnv HASHPIVOT_CONTROLLER__MODE", "config.controller.mode"],
    ),
    (
        "pod-label-over-a-selector-label",
        ["--set", "podLabels.app\\.kubernetes\\.io/component=x"],
        ["podLabels.app.kubernetes.io/component"],
    ),
    (
        "metrics-port-zero",
        ["--set", "config.controller.metrics_port=0"],
        ["config.controller.metrics_port"],
    ),
    ("no-service-account", ["--set", "serviceAccount.create=false"], ["serviceAccount.name"]),
]
#: Cases rendered without the site values, so the chart's own defaults are what fails.
BARE: list[tuple[str, list[str], list[str]]] = [
    ("no-power-price", [], ["config.live_market.power_usd_mwh_fixed",
                            "config.live_market.power_sources", "every cycle holds"]),
]


@pytest.mark.parametrize(("args", "named"), [c[1:] for c in CASES + BARE],
                         ids=[c[0] for c in CASES + BARE])
def test_bad_values_fail_naming_the_value(helm: Helm, args: list[str], named: list[str]) -> None:
    cmd = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    site = [] if not args else ["--values", str(SITE_VALUES)]  # bare: the chart's defaults
    proc = helm.run(*cmd, *helm.kube_version_args(), *site, *args)
    assert proc.returncode != 0, f"helm accepted {args}:\n{proc.stdout[:2000]}"
    for word in named:
        assert word in proc.stderr, f"error does not name {word!r}:\n{proc.stderr}"


def test_good_values_pass(helm: Helm) -> None:
    """The counterpart of the cases above: the fixed values render."""
    sets = [*MINER_OK, "config.controller.mode=live"]
    proc = helm.run(
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        *helm.kube_version_args(),
        "--values",
        str(SITE_VALUES),
        *[a for s in sets for a in ("--set", s)],
    )
    assert proc.returncode == 0, proc.stderr
