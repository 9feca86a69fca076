"""Startup as an operator meets it, through the installed `hashpivot` script: a missing
kubeconfig, an unreachable API server, a rejected token and misspelled or bad
`HASHPIVOT_…` variables are one clear line each, never a traceback, in Ray mode too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden" / "site.yaml"


def hashpivot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("hashpivot", path=str(Path(sys.executable).parent))
    assert exe, "the hashpivot console script is installed with the package"
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("HASHPIVOT_") and k not in ("KUBECONFIG",
                                                            "KUBERNETES_SERVICE_HOST")}
    return subprocess.run([exe, *args], capture_output=True, text=True, check=False,
                          timeout=600, env=base | (env or {}))


def kubeconfig(tmp: Path, server: str) -> Path:
    path = tmp / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: c\n  cluster: {{server: '{server}'}}\n"
        "contexts:\n- name: x\n  context: {cluster: c, user: u}\n"
        "current-context: x\n"
        "users:\n- name: u\n  user: {token: not-a-valid-token}\n"
    )
    return path


@pytest.fixture(params=[401])
def rejecting_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """An HTTP server that answers every request the way an API server answers a bad
    bearer token (401) or a token without the RBAC grant (403)."""
    seen: list[str] = []
    status = int(request.param)
    message = (b"Unauthorized" if status == 401 else
               b'nodes is forbidden: User \\"system:serviceaccount:hp:hashpivot\\" cannot '
               b'list resource \\"nodes\\"')

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            body = (b'{"kind":"Status","apiVersion":"v1","status":"Failure",'
                    b'"message":"' + message + b'","code":' + str(status).encode() + b"}")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    # The token from the kubeconfig was the one offered and refused.
    assert seen and all(h == "Bearer not-a-valid-token" for h in seen)


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_shadow(tmp: Path, *extra: str, ray: bool = False) -> subprocess.CompletedProcess[str]:
    return hashpivot("run", "-c", str(GOLDEN), "--mode", "shadow", "--metrics-port", "0",
                     "--journal", str(tmp / "journal"), "--cycles", "1",
                     "--ray" if ray else "--no-ray", *extra)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def test_missing_kubeconfig_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-kubeconfig"
    line = one_error_line(run_shadow(tmp_path, "--kubeconfig", str(missing)))
    assert str(missing) in line and "kubeconfig not found" in line


def test_unreachable_api_server_names_the_server(tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{closed_port()}"
    line = one_error_line(run_shadow(tmp_path, "--kubeconfig",
                                     str(kubeconfig(tmp_path, server))))
    assert f"cannot reach the Kubernetes API server {server}" in line


@pytest.mark.parametrize("rejecting_server", [403], indirect=True)
def test_missing_rbac_grant_says_which(tmp_path: Path, rejecting_server: str) -> None:
    line = one_error_line(run_shadow(tmp_path, "--kubeconfig",
                                     str(kubeconfig(tmp_path, rejecting_server))))
    assert rejecting_server in line and "not allowed to list nodes (403, RBAC)" in line
    assert 'cannot list resource "nodes"' in line


def test_rejected_token_says_so(tmp_path: Path, rejecting_server: str) -> None:
    line = one_error_line(run_shadow(tmp_path, "--kubeconfig",
                                     str(kubeconfig(tmp_path, rejecting_server))))
    assert rejecting_server in line and "token rejected" in line


@pytest.mark.ray
def test_unreachable_api_server_in_ray_mode_is_one_line(tmp_path: Path) -> None:
    # The controller starts inside a Ray actor; its failure is still the one line.
    server = f"https://127.0.0.1:{closed_port()}"
    proc = run_shadow(tmp_path, "--kubeconfig", str(kubeconfig(tmp_path, server)), ray=True)
    line = one_error_line(proc)
    assert f"cannot reach the Kubernetes API server {server}" in line
    assert "ActorDiedError" not in proc.stderr


def test_misspelled_environment_variable_is_warned_about() -> None:
    proc = hashpivot("config", "check", str(GOLDEN),
                     env={"HASHPIVOT_CONTROLER__MODE": "live"})
    assert proc.returncode == 0, proc.stderr
    assert "HASHPIVOT_CONTROLER__MODE" in proc.stderr and "controller" in proc.stderr


def test_bad_environment_value_names_the_variable_not_the_file() -> None:
    proc = hashpivot("config", "check", str(GOLDEN),
                     env={"HASHPIVOT_CONTROLLER__INTERVAL_S": "soon"})
    line = one_error_line(proc)
    assert "HASHPIVOT_CONTROLLER__INTERVAL_S" in line and "controller.interval_s" in line
    assert str(GOLDEN) not in line


def test_a_valid_environment_value_is_used_without_a_warning() -> None:
    proc = hashpivot("config", "check", str(GOLDEN),
                     env={"HASHPIVOT_CONTROLLER__MODE": "live"})
    assert proc.returncode == 0, proc.stderr
    assert "controller mode: live" in proc.stdout
    assert "WARNING" not in proc.stderr
