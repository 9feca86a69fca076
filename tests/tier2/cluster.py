"""A real Kubernetes control plane for hashpivot's tier-2 tests.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler run as local processes on
127.0.0.1, started by ``kwokctl --runtime binary``; KWOK plays the kubelets of fake GPU
nodes and moves their pods through Pending -> Running. The binaries are built once by
``scripts/k8s-testenv.sh`` and cached outside the repo.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self, TypeVar

import urllib3
from kubernetes import client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

K8S_VERSION = "1.36.2"
BUILD_SCRIPT = "scripts/k8s-testenv.sh"
REQUIRED_BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "kwokctl",
)
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
NODE_PREFIX_LABEL = "hashpivot.test/node-prefix"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
H100 = "NVIDIA-H100-80GB-HBM3"

_TMP_PREFIX = "hashpivot-kwok-"
_OWNER_FILE = "owner.pid"
_PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>

T = TypeVar("T")


class KwokClusterError(RuntimeError):
    """The test control plane could not be started or used."""


def testenv_dir() -> Path:
    """Cache dir of the build script (HASHPIVOT_TESTENV_DIR or the per-version default)."""
    configured = os.environ.get("HASHPIVOT_TESTENV_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "hashpivot" / "k8s-testenv" / f"v{K8S_VERSION}"


def find_testenv_bin() -> Path | None:
    """Directory holding the control-plane binaries, or None if any is missing."""
    bin_dir = testenv_dir() / "bin"
    if all(os.access(bin_dir / name, os.X_OK) for name in REQUIRED_BINARIES):
        return bin_dir
    return None


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.25,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until it returns something other than None/False; return that value.

    Raises TimeoutError naming ``what`` and the last error the probe raised, if any.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = probe()
        # API errors and refused connections are retried until the deadline.
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            last_error, value = exc, None
        if value is not None and value is not False:
            return value
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _component_pids(pid_dir: Path, marker: str) -> list[int]:
    """Live pids from kwokctl's pid files whose command line contains ``marker``.

    ``marker`` is the cluster's own temp dir, so a recycled pid never names an unrelated
    process.
    """
    pids: list[int] = []
    for pid_file in sorted(pid_dir.glob("*.pid")) if pid_dir.is_dir() else []:
        with contextlib.suppress(ValueError, OSError):
            pid = int(pid_file.read_text().strip())
            if _is_running(pid, marker):
                pids.append(pid)
    return pids


def _terminate(pids: Sequence[int], marker: str, grace: float = 10.0) -> None:
    """SIGTERM the still-running ``pids``, SIGKILL them after ``grace``, reap our children."""
    for pid in pids:
        if _is_running(pid, marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_is_running(pid, marker) for pid in pids):
        _reap(pids)
        time.sleep(0.1)
    for pid in pids:
        if _is_running(pid, marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and not _reap(pids):
        time.sleep(0.1)


def _reap(pids: Sequence[int]) -> bool:
    """waitpid() those of ``pids`` that are our exited children; True when none is left."""
    left = False
    for pid in pids:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child, or already reaped
            continue
        left = left or done == 0
    return not left


@contextlib.contextmanager
def _adopting_orphans() -> Iterator[None]:
    """Become a child subreaper while kwokctl runs (Linux only).

    kwokctl forks the components and exits; as our adopted children they can be reaped
    once stopped, instead of lingering as zombies under an init that does not reap.
    """
    libc = None
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        if libc is not None:
            libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _is_running(pid: int, marker: str) -> bool:
    # A zombie keeps its pid but has an empty cmdline: it counts as stopped.
    return _pid_alive(pid) and marker in _cmdline(pid)


def reap_stale_clusters() -> list[Path]:
    """Stop clusters left behind by test sessions that were killed (SIGKILL, OOM).

    Each cluster's temp dir records its owner's pid; a dir whose owner is gone is stale.
    """
    reaped: list[Path] = []
    for tmp in Path(tempfile.gettempdir()).glob(f"{_TMP_PREFIX}*"):
        try:
            owner = int((tmp / _OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        if owner == os.getpid() or _pid_alive(owner):
            continue
        for pid_dir in tmp.glob("kwok/clusters/*/pids"):
            _terminate(_component_pids(pid_dir, str(tmp)), str(tmp))
        shutil.rmtree(tmp, ignore_errors=True)
        reaped.append(tmp)
    return reaped


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


class KwokCluster:
    """One control plane on 127.0.0.1, private to this process (own workdir, kubeconfig)."""

    def __init__(
        self,
        bin_dir: Path | None = None,
        *,
        name: str | None = None,
        ready_timeout: float = 180.0,
    ) -> None:
        found = bin_dir or find_testenv_bin()
        if found is None:
            raise KwokClusterError(
                f"control-plane binaries not found under {testenv_dir() / 'bin'}; "
                f"build them with `bash {BUILD_SCRIPT}`"
            )
        self.bin_dir = found
        self.name = name or f"hp-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.ready_timeout = ready_timeout
        self._tmp: Path | None = None
        self._prev_sigterm: Any = None

    # -- paths -----------------------------------------------------------------------------

    def _require_tmp(self) -> Path:
        if self._tmp is None:
            raise KwokClusterError("cluster is not started")
        return self._tmp

    @property
    def kubeconfig(self) -> Path:
        return self._require_tmp() / "kubeconfig"

    @property
    def workdir(self) -> Path:
        """KWOK_WORKDIR of this cluster; component logs are under clusters/<name>/logs."""
        return self._require_tmp() / "kwok"

    @property
    def cluster_dir(self) -> Path:
        return self.workdir / "clusters" / self.name

    # -- lifecycle -------------------------------------------------------------------------

    def _config_yaml(self) -> str:
        b = self.bin_dir
        # Every binary is named so kwokctl never tries to download one (no internet here).
        options: dict[str, str | Path | bool] = {
            "runtime": "binary",
            "bindAddress": "127.0.0.1",
            "kubeVersion": f"v{K8S_VERSION}",
            "kubeApiserverBinary": b / "kube-apiserver",
            "kubeControllerManagerBinary": b / "kube-controller-manager",
            "kubeSchedulerBinary": b / "kube-scheduler",
            "kubectlBinary": b / "kubectl",
            "kwokControllerBinary": b / "kwok",
            "etcdBinary": b / "etcd",
            "cacheDir": self.workdir / "cache",
            # RBAC and admission on, as in production: the chart's RBAC must really be enough.
            "kubeAuthorization": True,
            "kubeAdmission": True,
        }
        # JSON scalars are valid YAML: no YAML library needed.
        body = "\n".join(
            f"  {key}: {json.dumps(value if isinstance(value, bool) else str(value))}"
            for key, value in options.items()
        )
        return (
            "kind: KwokctlConfiguration\n"
            "apiVersion: config.kwok.x-k8s.io/v1alpha1\n"
            f"options:\n{body}\n"
        )

    def _env(self) -> dict[str, str]:
        # KWOK_* variables override kwokctl's config: drop the caller's, keep ours.
        env = {k: v for k, v in os.environ.items() if not k.startswith("KWOK_")}
        env["KWOK_WORKDIR"] = str(self.workdir)
        # kwokctl looks kubectl up on PATH first: make it find the matching one.
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def _kwokctl(self, *args: str, timeout: float) -> None:
        tmp = self._require_tmp()
        log = tmp / "kwokctl.log"
        cmd = [str(self.bin_dir / "kwokctl"), "--config", str(tmp / "kwokctl.yaml"), *args]
        with log.open("a") as out:
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            proc = subprocess.run(
                cmd,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        if proc.returncode != 0:
            raise KwokClusterError(
                f"`kwokctl {' '.join(args)}` exited {proc.returncode}\n{self.diagnostics()}"
            )

    def start(self) -> None:
        """Create the cluster and wait until its API answers and its controllers run."""
        if self._tmp is not None:
            raise KwokClusterError("cluster already started")
        reap_stale_clusters()
        self._tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX))
        try:
            (self._tmp / _OWNER_FILE).write_text(str(os.getpid()))
            (self._tmp / "kwokctl.yaml").write_text(self._config_yaml())
            with _adopting_orphans():
                self._kwokctl(
                    "create",
                    "cluster",
                    "--name",
                    self.name,
                    "--runtime",
                    "binary",
                    "--kubeconfig",
                    str(self.kubeconfig),
                    "--timeout",
                    f"{int(self.ready_timeout)}s",
                    timeout=self.ready_timeout + 30,
                )
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        api = self.api_client()
        try:
            core = client.CoreV1Api(api)
            try:
                # The default ServiceAccount appears only once kube-controller-manager runs.
                wait_until(
                    lambda: core.read_namespaced_service_account("default", "default"),
                    timeout=self.ready_timeout,
                    what="kube-apiserver and kube-controller-manager",
                )
            except TimeoutError as exc:
                raise KwokClusterError(f"{exc}\n{self.diagnostics()}") from exc
        finally:
            api.close()  # type: ignore[no-untyped-call]

    def stop(self) -> None:
        """Delete the cluster and its temp dir. Safe to call twice or after a failed start."""
        tmp = self._tmp
        if tmp is None:
            return
        try:
            if self.cluster_dir.exists():
                # Read before kwokctl removes the pid files: needed to reap, or to finish
                # the job if kwokctl fails or times out.
                pids = _component_pids(self.cluster_dir / "pids", str(tmp))
                with contextlib.suppress(KwokClusterError, subprocess.TimeoutExpired, OSError):
                    self._kwokctl("delete", "cluster", "--name", self.name, timeout=60)
                _terminate(pids, str(tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            self._tmp = None

    def diagnostics(self) -> str:
        """Tails of kwokctl's and each component's log, for error messages."""
        if self._tmp is None:
            return ""
        parts = [f"--- kwokctl.log\n{_tail(self._tmp / 'kwokctl.log')}"]
        for log in sorted((self.cluster_dir / "logs").glob("*.log")):
            parts.append(f"--- {log.name}\n{_tail(log, 15)}")
        return "\n".join(parts)

    def api_client(self) -> client.ApiClient:
        """A new client for this cluster (cluster-admin); close it when done."""
        api: client.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )
        return api

    def __enter__(self) -> Self:
        # pytest turns SIGINT into KeyboardInterrupt, but SIGTERM (CI timeouts) would kill
        # the process without cleanup: make it unwind too, for as long as the cluster runs.
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        ):
            self._prev_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            self.start()
        except BaseException:
            self._restore_sigterm()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            self._restore_sigterm()

    def _restore_sigterm(self) -> None:
        if self._prev_sigterm is not None:
            signal.signal(signal.SIGTERM, self._prev_sigterm)
            self._prev_sigterm = None


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# -- fake GPU nodes --------------------------------------------------------------------------


def _core(api: client.CoreV1Api | client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api) if isinstance(api, client.ApiClient) else api


def add_gpu_nodes(
    api: client.CoreV1Api | client.ApiClient,
    prefix: str,
    count: int,
    gpus: int = 8,
    labels: Mapping[str, str] | None = None,
    product: str = H100,
    *,
    cpu: str = "224",
    memory: str = "2Ti",
    pods: int = 110,
    taints: Sequence[client.V1Taint] = (),
) -> list[str]:
    """Create ``count`` KWOK-managed nodes named ``<prefix>-<i>``, each with ``gpus`` GPUs.

    ``prefix`` must be a valid label value: it also goes into NODE_PREFIX_LABEL so that a
    test can select (and delete) exactly its own nodes. No taint is set unless given, so
    pods need no toleration to land on these nodes.
    """
    core = _core(api)
    resources = {
        "cpu": cpu,
        "memory": memory,
        "pods": str(pods),
        "ephemeral-storage": "10Ti",
        GPU_RESOURCE: str(gpus),
    }
    names: list[str] = []
    for i in range(count):
        name = f"{prefix}-{i}"
        node_labels = {
            "type": "kwok",
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            NODE_PREFIX_LABEL: prefix,
            GPU_PRODUCT_LABEL: product,
            GPU_COUNT_LABEL: str(gpus),
            **(labels or {}),
        }
        node = client.V1Node(
            metadata=client.V1ObjectMeta(
                name=name,
                labels=node_labels,
                annotations={KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            ),
            spec=client.V1NodeSpec(taints=list(taints) or None),
            status=client.V1NodeStatus(capacity=resources, allocatable=dict(resources)),
        )
        core.create_node(node)
        names.append(name)
    return names


def delete_nodes(api: client.CoreV1Api | client.ApiClient, prefix: str) -> int:
    """Delete the nodes that add_gpu_nodes made with ``prefix``; return how many."""
    core = _core(api)
    nodes = core.list_node(label_selector=f"{NODE_PREFIX_LABEL}={prefix}").items
    names = [n.metadata.name for n in nodes if n.metadata and n.metadata.name]
    for name in names:
        try:
            core.delete_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
    return len(names)


def name_of(obj: Any) -> str:
    """metadata.name of an API object (the client types every field as optional)."""
    meta = getattr(obj, "metadata", None)
    if meta is None or not meta.name:
        raise ValueError(f"object without metadata.name: {obj!r}")
    return str(meta.name)


def phase_of(pod: client.V1Pod) -> str:
    return str(pod.status.phase) if pod.status and pod.status.phase else ""


def node_of(pod: client.V1Pod) -> str | None:
    return pod.spec.node_name if pod.spec else None


def node_is_ready(node: client.V1Node) -> bool:
    conditions = (node.status and node.status.conditions) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)
