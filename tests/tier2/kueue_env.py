"""Real Kueue (v0.17.0) and the KubeRay operator (v1.6.0) beside the tier-2 control plane.

Both run as local processes against the session's apiserver, built by
``scripts/kueue-testenv.sh`` (cached outside the repo with the CRDs and Kueue's webhook
manifests). Kueue's webhooks must be reachable by the apiserver, which here has no Service
network: they are rendered with ``url: https://127.0.0.1:<port>`` and our own CA, and the
CA and serving certificate are handed to Kueue's internal certificate manager as its Secret
(so it keeps them) and as files in its certDir (where a kubelet would put them).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime as dt
import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .cluster import KwokCluster, wait_until

KUEUE_VERSION = "v0.17.0"
KUBERAY_VERSION = "v1.6.0"
BUILD_SCRIPT = "scripts/kueue-testenv.sh"
NAMESPACE = "kueue-system"
SECRET = "kueue-webhook-server-cert"
SERVICE = "kueue-webhook-service"
#: Webhooks kept: Kueue's own kinds and the integrations the tests use (no Pod webhook:
#: with failurePolicy Fail it would stand in front of every pod of the session).
KEPT_GROUPS = {"kueue.x-k8s.io", "batch", "ray.io"}
KEPT_RESOURCES = {"jobs", "rayclusters", "rayjobs"}
TIMEOUT = 180.0
#: Kueue's certificate manager renews what expires within 90 days: stay well past that.
VALID_DAYS = 400


def kueue_testenv_dir() -> Path:
    configured = os.environ.get("HASHPIVOT_KUEUE_TESTENV_DIR")
    if configured:
        return Path(configured).expanduser()
    return (Path.home() / ".cache" / "hashpivot" / "kueue-testenv"
            / f"kueue-{KUEUE_VERSION}-kuberay-{KUBERAY_VERSION}")


def find_kueue_testenv() -> Path | None:
    root = kueue_testenv_dir()
    ok = all(os.access(root / "bin" / b, os.X_OK) for b in ("kueue", "ray-operator"))
    ok = ok and (root / "manifests" / "kueue" / "webhook" / "manifests.yaml").is_file()
    return root if ok else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    # PKCS#1 ("RSA PRIVATE KEY"): what Kueue's certificate manager reads back.
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def make_certs() -> dict[str, bytes]:
    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kueue-ca")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=True,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("kueue-ca")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    dns = f"{SERVICE}.{NAMESPACE}.svc"
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns)]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(dns), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return {"ca.crt": _pem_cert(ca), "ca.key": _pem_key(ca_key),
            "tls.crt": _pem_cert(cert), "tls.key": _pem_key(key)}


def _kept_webhook(hook: dict[str, Any]) -> bool:
    for rule in hook.get("rules") or []:
        groups = set(rule.get("apiGroups") or [])
        resources = {r.split("/")[0] for r in rule.get("resources") or []}
        if groups == {"kueue.x-k8s.io"}:
            return True
        if groups <= KEPT_GROUPS and resources <= KEPT_RESOURCES:
            return True
    return False


def webhook_configs(manifest: Path, port: int, ca: bytes) -> list[dict[str, Any]]:
    """Kueue's webhook configurations, pointed at 127.0.0.1 instead of its Service."""
    bundle = base64.b64encode(ca).decode()
    out = []
    for loaded in yaml.safe_load_all(manifest.read_text()):
        if not loaded:
            continue
        doc = copy.deepcopy(loaded)
        # Kueue's certificate manager injects its CA into configurations of these names.
        doc["metadata"]["name"] = "kueue-" + doc["metadata"]["name"]
        doc["webhooks"] = [h for h in doc.get("webhooks") or [] if _kept_webhook(h)]
        for hook in doc["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": bundle}
        out.append(doc)
    return out


def conversion_crds(kustomization: Path) -> set[str]:
    """File names of the CRDs Kueue's kustomization gives a conversion webhook."""
    data = yaml.safe_load(kustomization.read_text())
    names = set()
    for patch in data.get("patches") or []:
        path = str(patch.get("path") or "")
        if "webhook_in_" in path:
            names.add(path.rsplit("webhook_in_", 1)[1].removesuffix(".yaml"))
    return names


class KueueEnv:
    """Kueue and the KubeRay operator running against one `KwokCluster`."""

    def __init__(self, cluster: KwokCluster, root: Path) -> None:
        self.cluster = cluster
        self.root = root
        self.tmp = Path(tempfile.mkdtemp(prefix="hashpivot-kueue-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.webhook_port = free_port()

    # -- helpers ---------------------------------------------------------------------------

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        proc = subprocess.run(
            [str(self.cluster.bin_dir / "kubectl"), "--kubeconfig", str(self.cluster.kubeconfig),
             *args],
            input=stdin, capture_output=True, text=True, timeout=TIMEOUT, check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
        return proc.stdout

    def apply(self, docs: list[dict[str, Any]]) -> None:
        # Server-side: the Ray CRDs are too large for the last-applied annotation.
        self.kubectl("apply", "--server-side", "--force-conflicts",
                     "--field-manager=hashpivot-tests", "-f", "-",
                     stdin=yaml.safe_dump_all(docs))

    def log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def diagnostics(self) -> str:
        parts = []
        for name in ("kueue", "ray-operator"):
            with contextlib.suppress(OSError):
                lines = self.log(name).read_text(errors="replace").splitlines()[-30:]
                parts.append(f"--- {name}.log\n" + "\n".join(lines))
        return "\n".join(parts)

    # -- start -----------------------------------------------------------------------------

    def start(self) -> KueueEnv:
        certs = make_certs()
        cert_dir = self.tmp / "certs"
        cert_dir.mkdir()
        for name, data in certs.items():
            (cert_dir / name).write_bytes(data)
        api = self.cluster.api_client()
        try:
            core = client.CoreV1Api(api)
            with contextlib.suppress(ApiException):
                core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
                    name=NAMESPACE)))
            with contextlib.suppress(ApiException):
                core.create_namespaced_secret(NAMESPACE, client.V1Secret(
                    metadata=client.V1ObjectMeta(name=SECRET),
                    data={k: base64.b64encode(v).decode() for k, v in certs.items()}))
        finally:
            api.close()  # type: ignore[no-untyped-call]
        self._apply_crds(certs["ca.crt"])
        self.apply(webhook_configs(self.root / "manifests/kueue/webhook/manifests.yaml",
                                   self.webhook_port, certs["ca.crt"]))
        self._start_kueue(cert_dir)
        self._start_kuberay()
        return self

    def _apply_crds(self, ca: bytes) -> None:
        man = self.root / "manifests"
        converted = conversion_crds(man / "kueue" / "kustomization.yaml")
        docs = []
        for path in sorted((man / "kueue" / "crd").glob("*.yaml")):
            crd = yaml.safe_load(path.read_text())
            plural = crd["spec"]["names"]["plural"]
            if plural in converted:
                crd["spec"]["conversion"] = {"strategy": "Webhook", "webhook": {
                    "clientConfig": {"url": f"https://127.0.0.1:{self.webhook_port}/convert",
                                     "caBundle": base64.b64encode(ca).decode()},
                    "conversionReviewVersions": ["v1"]}}
            docs.append(crd)
        docs += [yaml.safe_load(p.read_text())
                 for p in sorted((man / "ray" / "crd").glob("*.yaml"))]
        self.apply(docs)
        names = [d["metadata"]["name"] for d in docs]
        self.kubectl("wait", "--for=condition=Established", f"--timeout={int(TIMEOUT)}s",
                     *[f"crd/{n}" for n in names])

    def _spawn(self, name: str, args: list[str]) -> None:
        out = self.log(name).open("ab")
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        self.procs.append(subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, env=env))
        out.close()

    def _start_kueue(self, cert_dir: Path) -> None:
        config = {
            "apiVersion": "config.kueue.x-k8s.io/v1beta2",
            "kind": "Configuration",
            "namespace": NAMESPACE,
            "health": {"healthProbeBindAddress": f"127.0.0.1:{free_port()}"},
            "metrics": {"bindAddress": f"127.0.0.1:{free_port()}"},
            "webhook": {"port": self.webhook_port, "host": "127.0.0.1",
                        "certDir": str(cert_dir)},
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": True, "webhookServiceName": SERVICE,
                                       "webhookSecretName": SECRET},
            "integrations": {"frameworks": ["batch/job", "ray.io/rayjob", "ray.io/raycluster"]},
            # On, it opens another server on 0.0.0.0.
            "featureGates": {"VisibilityOnDemand": False},
        }
        path = self.tmp / "kueue-config.yaml"
        path.write_text(yaml.safe_dump(config))
        self._spawn("kueue", [str(self.root / "bin" / "kueue"), "--config", str(path),
                              "--kubeconfig", str(self.cluster.kubeconfig)])

    def _start_kuberay(self) -> None:
        self._spawn("ray-operator", [
            str(self.root / "bin" / "ray-operator"),
            f"--metrics-addr=127.0.0.1:{free_port()}",
            f"--health-probe-bind-address=127.0.0.1:{free_port()}",
            "--enable-leader-election=false",
        ])  # the cluster comes from KUBECONFIG

    def wait_webhook(self, api: client.ApiClient) -> None:
        """Kueue answers its webhook a few seconds after start: probe with a dry-run
        ResourceFlavor until the apiserver gets through."""
        custom = client.CustomObjectsApi(api)
        body = {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor",
                "metadata": {"name": "probe"}, "spec": {}}

        def probe() -> bool:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args[0]} exited {proc.returncode}\n"
                                       f"{self.diagnostics()}")
            custom.create_cluster_custom_object("kueue.x-k8s.io", "v1beta2", "resourceflavors",
                                                body, dry_run="All")
            return True

        try:
            wait_until(probe, timeout=TIMEOUT, interval=0.5, what="Kueue's webhook")
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{self.diagnostics()}") from exc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)


@contextlib.contextmanager
def running(cluster: KwokCluster, root: Path) -> Iterator[KueueEnv]:
    env = KueueEnv(cluster, root)
    try:
        env.start()
        api = cluster.api_client()
        try:
            env.wait_webhook(api)
        finally:
            api.close()  # type: ignore[no-untyped-call]
        yield env
    finally:
        env.stop()
