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

from reportrelay.vendors import FIRST_SANDBOX_PORT, last_sandbox_port, sandbox_ports
from reportrelay_cli.main import main
from reportrelay_cli.sandbox import cli as sandbox_cli

REPO = Path(__file__).resolve().parents[2]
SEARCH_PATH = os.pathsep.join(str(path) for path in (REPO / "functions", REPO / "cli", REPO))
#: Every port the sandbox serves: each vendor's (some serve two), then the OpenID Connect issuer's.
PORTS = last_sandbox_port() - FIRST_SANDBOX_PORT + 1


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
    offset = free_port_block(PORTS) - FIRST_SANDBOX_PORT
    process = subprocess.Popen(
        [sys.executable, "-m", "reportrelay_cli.main", "sandbox", "--port-offset", str(offset),
         "--throttle", "1", "--retry-after", "0", "--only-paths", "/status/"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": SEARCH_PATH},
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
            if len(served) == PORTS:
                break
        yield served
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_sandbox_serves_every_vendor_with_the_faults_asked_for(sandbox: dict[str, str]) -> None:
    # given `reportrelay sandbox --throttle 1 --retry-after 0 --only-paths /status/`
    # then it announced every vendor's simulator on its port (Amazon Ads' file host on the next one), and
    # the OpenID Connect issuer after them
    assert len(sandbox) == PORTS
    ports = {name: int(url.rsplit(":", 1)[1]) for name, url in sandbox.items()}
    offset = ports["devexpress"] - FIRST_SANDBOX_PORT
    assert {key: ports[key] - offset for key in sandbox_ports()} == sandbox_ports()
    assert ports["amazon_ads_storage"] == ports["amazon_ads"] + 1
    assert ports["oidc"] - offset == last_sandbox_port()
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


# ---- a port the sandbox cannot have: exit 2, naming the port and the flag that moves it


@pytest.fixture
def taken_port_offset() -> Iterator[tuple[int, int]]:
    """A --port-offset whose ports are free but metric_insights', which a listener holds."""
    offset = free_port_block(PORTS) - FIRST_SANDBOX_PORT
    port = sandbox_ports()["metric_insights"] + offset
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        yield offset, port


def test_a_taken_port_exits_2_naming_it_and_the_flag_before_anything_is_served(taken_port_offset, capsys):
    # given another program listening on one of the sandbox's ports
    offset, port = taken_port_offset
    # when the sandbox is started
    code = main(["sandbox", "--port-offset", str(offset)])
    # then it exits 2 with one line naming the port and the flag that changes it, and serves nothing
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    first, last = FIRST_SANDBOX_PORT + offset, last_sandbox_port() + offset
    assert captured.err.strip() == (
        f"reportrelay: error: port {port} is in use (by another program): choose another with "
        f"--port-offset N (the sandbox serves ports {first}-{last})"
    )


def test_a_port_taken_after_the_check_exits_2_and_stops_what_was_served(
    taken_port_offset, capsys, monkeypatch
):
    # given a port taken between the check and the bind (the check passes; the bind does not)
    offset, port = taken_port_offset
    monkeypatch.setattr(sandbox_cli, "_check_bindable", lambda port, offset: None)
    # when the sandbox is started
    code = main(["sandbox", "--port-offset", str(offset)])
    # then it exits 2 naming that port and the flag, without a traceback
    assert code == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert captured.err.strip().startswith(
        f"reportrelay: error: port {port} is in use (by another program): choose another with --port-offset N"
    )
    # and the simulators started before it were stopped: their ports are free again
    for free in (FIRST_SANDBOX_PORT + offset, FIRST_SANDBOX_PORT + 1 + offset):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", free))


def test_a_port_offset_out_of_range_exits_2_naming_the_flag(capsys):
    # when the sandbox is asked for ports past 65535, then it says so in one line, and exits 2
    assert main(["sandbox", "--port-offset", "60000"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        f"reportrelay: error: --port-offset 60000 puts port {FIRST_SANDBOX_PORT + 60000} out of range "
        f"(1-65535): the sandbox serves {FIRST_SANDBOX_PORT}+N to {last_sandbox_port()}+N; choose another "
        "with --port-offset N"
    )


# ---- reportrelay demo


def test_a_failed_demo_ends_with_a_line_saying_failed_and_why(tmp_path, capfd, monkeypatch):
    # given a demo of one simulator that fails every report
    devexpress = next(p for p in sandbox_cli.SANDBOX_PROVIDERS if p.key == "devexpress")
    monkeypatch.setattr(sandbox_cli, "SANDBOX_PROVIDERS", [devexpress])
    monkeypatch.setitem(sandbox_cli.DEMO_KNOBS, "fail_reports", "Data source unavailable")
    monkeypatch.setitem(sandbox_cli.DEMO_KNOBS, "generation_seconds", 0.2)
    monkeypatch.setenv("PYTHONPATH", SEARCH_PATH)
    # when the demo runs
    code = main(["demo", "--out", str(tmp_path / "demo")])
    # then it exits 1 and its last line says FAILED, with the provider, the error code and the message
    assert code == 1
    last = capfd.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("FAILED 1 of 1: devexpress ReportGenerationFailed: ")
    assert last.endswith("Data source unavailable")
