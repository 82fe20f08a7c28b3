"""``reportrelay sandbox`` as a user starts it: every simulator served, fault knobs from the command line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]


def free_port_block(size: int) -> int:
    """A port whose next ``size - 1`` neighbours are free too (the sandbox serves consecutive ports)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + size > 65535:
            continue
        try:
            for port in range(first, first + size):
                with socket.socket() as taken:
                    taken.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError("no block of free ports")


@pytest.fixture
def sandbox() -> Iterator[dict[str, str]]:
    offset = free_port_block(6) - 8701
    process = subprocess.Popen(
        [sys.executable, "-m", "reportrelay.cli", "sandbox", "--port-offset", str(offset),
         "--throttle", "1", "--retry-after", "0", "--only-paths", "/status/"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": f"{REPO / 'functions'}{os.pathsep}{REPO}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    served: dict[str, str] = {}
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.split() and line.split()[-1].startswith("http://"):
                name, url = line.split()
                served[name] = url
            if len(served) == 6:
                break
        yield served
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_sandbox_serves_all_six_with_the_faults_asked_for(sandbox: dict[str, str]) -> None:
    # given `reportrelay sandbox --throttle 1 --retry-after 0 --only-paths /status/`
    # then it announced the five simulators and the OpenID Connect issuer
    assert set(sandbox) == {"devexpress", "torus", "metric_insights", "myreports", "clinical_one", "oidc"}
    # when the DevExpress simulator is sent a queue call, then asked for a status twice
    queue_call = requests.post(f"{sandbox['devexpress']}/api/documents/export/report/10", timeout=5)
    status_url = f"{sandbox['devexpress']}/api/documents/export/status/no-such-export"
    first = requests.get(status_url, timeout=5)
    second = requests.get(status_url, timeout=5)
    # then the queue call, on a path the fault was not aimed at, was spared the pending 429
    assert queue_call.status_code != 429
    # and the first status call was throttled without a Retry-After, and the next one answered for itself
    assert first.status_code == 429 and "Retry-After" not in first.headers
    assert second.status_code != 429
    # and the issuer, spared the faults, describes itself and signs alice in with the sandbox secret
    discovery = requests.get(f"{sandbox['oidc']}/.well-known/openid-configuration", timeout=5)
    assert discovery.status_code == 200 and discovery.json()["issuer"] == sandbox["oidc"]
    password = os.environ.get("SANDBOX_SECRET", "sandbox-secret")
    form = {"grant_type": "password", "username": "alice", "password": password}
    tokens = requests.post(
        discovery.json()["token_endpoint"], data=form | {"client_id": "reportrelay-local"}, timeout=5
    )
    assert tokens.status_code == 200 and tokens.json()["token_type"] == "Bearer"
