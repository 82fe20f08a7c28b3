"""``reportrelay serve`` as a user runs it (a process of its own, the sandbox simulators alongside), and
``reportrelay jobs`` speaking HTTP to it: jobs, downloads and failures kept across a restart."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from reportrelay_cli.jobs import JobApi, SigV4
from reportrelay_cli.local.identities import LocalIdentities, LocalIdentity
from reportrelay_cli.local.serve import LocalServer
from tests.cli.conftest import free_port, reportrelay, schema_problems, signed_as

REPO = Path(__file__).resolve().parents[2]
REQUEST = REPO / "examples" / "devexpress-report.json"
STARTUP_SECONDS = 90


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str
    greeting: str
    identity: LocalIdentity
    #: What serve printed on stderr, once it has stopped.
    err: str = ""

    def api(self) -> list[str]:
        return ["--api", self.url]


@contextmanager
def serving(state: Path, *, kill: bool = False) -> Iterator[Served]:
    """``reportrelay serve --state STATE --sandbox`` on a free port, until it has said how to call it;
    stopped with Ctrl-C (SIGINT) at the end, or killed (SIGKILL) when ``kill``."""
    process, port, greeting = _started(state)
    try:
        identity = next(iter(LocalIdentities.from_file(state / "identities.json")))
        served = Served(process, f"http://127.0.0.1:{port}/v1", greeting, identity)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL if kill else signal.SIGINT)
        err = _stopped(process)
        if "served" in locals():
            served.err = err


def _stopped(process: subprocess.Popen[str], timeout: float = 60) -> str:
    """What serve printed on stderr once it has exited; a serve that does not stop in ``timeout`` is asked
    for its threads' stacks (SIGUSR1), killed, and the test fails showing them."""
    try:
        return process.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)
        time.sleep(2)
        process.kill()
        err = process.communicate()[1]
        raise AssertionError(f"serve did not stop in {timeout:g} s; stderr ends:\n{err[-12000:]}") from None


def _started(state: Path, tries: int = 3) -> tuple[subprocess.Popen[str], int, str]:
    """serve on a port free a moment ago, and its greeting. Another test's server may take the port
    between that moment and serve's own bind; serve then says the port is in use, and another is tried."""
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(path) for path in (REPO / "functions", REPO / "cli", REPO)),
    }
    for _ in range(tries):
        port = free_port()
        command = [sys.executable, "-m", "reportrelay_cli.main", "serve", "--state", str(state)]
        process = subprocess.Popen(
            [*command, "--port", str(port), "--sandbox"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        lines: list[str] = []
        deadline = time.monotonic() + STARTUP_SECONDS
        while not lines or not lines[-1].strip().startswith("reportrelay jobs list"):
            line = process.stdout.readline() if process.stdout else ""
            if not line:
                break
            assert time.monotonic() < deadline, "serve did not start in time"
            lines.append(line)
        else:
            return process, port, "".join(lines)
        _, err = process.communicate(timeout=60)
        assert f"port {port} is in use" in err, f"serve did not start: {err}"
    raise AssertionError(f"serve found no free port in {tries} tries")


def wait_until_saved(state: Path, job_id: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while job_id not in ((state / "jobs.json").read_text() if (state / "jobs.json").exists() else ""):
        assert time.monotonic() < deadline, f"{job_id} was not saved in {timeout}s"
        time.sleep(0.1)


def test_serve_runs_a_job_and_keeps_jobs_and_files_across_a_restart(tmp_path, capsys):
    state = tmp_path / "state"
    with serving(state) as served, signed_as(served.identity):
        # given serve says where it is and how to call it
        assert f"the job API on {served.url}" in served.greeting
        assert f"AWS_ACCESS_KEY_ID={served.identity.access_key_id}" in served.greeting
        # when the example request is started and watched to the end
        ran = reportrelay(
            capsys,
            "jobs",
            "start",
            *served.api(),
            "--request",
            REQUEST,
            "--watch",
            "--json",
            "--interval",
            "0.3",
        )
        # then it is ready, as the schema says
        assert ran.code == 0, ran.err
        ready = ran.json()
        assert ready["state"] == "ready" and schema_problems(ready, "cli-job.json") == []
        # and its file downloads with its SHA-256 checked
        first = reportrelay(
            capsys, "jobs", "download", *served.api(), ready["job_id"], "--out", tmp_path / "a.pdf", "--json"
        )
        assert first.code == 0 and first.json()["verified"] is True, first.err
        # when a second job is started and serve stops (Ctrl-C) while it is generating
        second = reportrelay(capsys, "jobs", "start", *served.api(), "--request", REQUEST, "--json").json()[
            "job_id"
        ]
    assert served.process.returncode == 0
    assert "stopping (saving state)" in served.err and "Traceback" not in served.err

    with serving(state) as served, signed_as(served.identity):
        # then after a restart both jobs are listed, newest first
        listed = reportrelay(capsys, "jobs", "list", *served.api(), "--json")
        assert listed.code == 0 and schema_problems(listed.json(), "cli-job-list.json") == []
        states = {job["job_id"]: job["state"] for job in listed.json()["jobs"]}
        assert states == {second: "failed", ready["job_id"]: "ready"}, states
        # and the one that was running says why it failed, with exit 1
        got = reportrelay(capsys, "jobs", "get", *served.api(), second, "--json")
        assert got.code == 1 and got.json()["error"]["code"] == "ServeStopped"
        assert f"reportrelay jobs rerun {second}" in got.json()["error"]["message"]
        # and the ready one's file still downloads, the same bytes
        again = reportrelay(
            capsys, "jobs", "download", *served.api(), ready["job_id"], "--out", tmp_path / "b.pdf", "--json"
        )
        assert again.code == 0, again.err
        assert again.json()["sha256"] == ready["object"]["sha256"] == first.json()["sha256"]
        assert (tmp_path / "b.pdf").read_bytes() == (tmp_path / "a.pdf").read_bytes()
        # and its events are still there
        events = reportrelay(capsys, "jobs", "events", *served.api(), ready["job_id"], "--json")
        assert events.code == 0 and events.json()["events"], events.err
        # when the failed one is run again, it is ready
        rerun = reportrelay(
            capsys, "jobs", "rerun", *served.api(), second, "--watch", "--json", "--interval", "0.3"
        )
        assert rerun.code == 0 and rerun.json()["state"] == "ready", rerun.err


def test_a_job_left_running_by_a_crash_is_failed_on_the_next_start(tmp_path, capsys):
    state = tmp_path / "state"
    # given serve killed (no chance to save on the way out) while a job was generating
    with serving(state, kill=True) as served, signed_as(served.identity):
        job_id = reportrelay(capsys, "jobs", "start", *served.api(), "--request", REQUEST, "--json").json()[
            "job_id"
        ]
        wait_until_saved(state, job_id)
    # when serve starts again on the same state
    with serving(state) as served, signed_as(served.identity):
        # then it says one job was left unfinished, and the job is failed with the reason, never stuck
        assert "1 job(s) left unfinished by the last run are marked failed" in served.greeting
        got = reportrelay(capsys, "jobs", "get", *served.api(), job_id, "--json")
        assert got.code == 1 and got.json()["state"] == "failed"
        assert got.json()["error"]["code"] == "ServeStopped"
        assert "before this start" in got.json()["error"]["message"]


def test_download_links_are_checked_as_s3_checks_presigned_urls(tmp_path, capsys):
    with serving(tmp_path / "state") as served, signed_as(served.identity):
        # given a ready job
        ran = reportrelay(
            capsys,
            "jobs",
            "start",
            *served.api(),
            "--request",
            REQUEST,
            "--watch",
            "--json",
            "--interval",
            "0.3",
        )
        job = ran.json()
        # when its download route is asked, signed, as a client would
        api = JobApi(served.url, SigV4(_credentials(served.identity), "us-east-1"))
        link = api.call("GET", f"/reports/{job['job_id']}/download").headers["Location"]
        # then the link points at serve itself and answers the stored bytes
        assert link.startswith(served.url.removesuffix("/v1") + "/_s3/")
        file = requests.get(link, timeout=30)
        assert file.status_code == 200 and hashlib.sha256(file.content).hexdigest() == job["object"]["sha256"]
        # and a link changed to another key, or with its signature changed, is refused
        other_key = link.replace("Sales.pdf", "Other.pdf")
        forged = link[:-4] + ("0000" if not link.endswith("0000") else "1111")
        for changed in (other_key, forged):
            refused = requests.get(changed, timeout=30)
            assert refused.status_code == 403 and "SignatureDoesNotMatch" in refused.text


def test_a_busy_port_exits_2_naming_the_flag(tmp_path, capsys):
    # given a port another program listens on
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # when serve is asked to use it
        ran = reportrelay(capsys, "serve", "--state", tmp_path / "state", "--port", port, "--sandbox")
    # then exit 2 with one line naming the port and --port
    assert ran.code == 2
    assert ran.err.strip() == (
        f"reportrelay: error: port {port} is in use (by another program): choose another with --port N"
    )


def test_serve_without_connections_exits_2(tmp_path, capsys):
    ran = reportrelay(capsys, "serve", "--state", tmp_path / "state")
    assert ran.code == 2 and "--sandbox" in ran.err and "--connections FILE" in ran.err


def _credentials(identity: LocalIdentity):  # a botocore session's credentials, as SigV4 takes them
    from botocore.credentials import Credentials

    return Credentials(identity.access_key_id, identity.secret_access_key, identity.session_token)


def test_state_files_hold_no_secret_for_others(tmp_path, capsys):
    # given a serve that ran a job
    state = tmp_path / "state"
    with serving(state) as served, signed_as(served.identity):
        ran = reportrelay(
            capsys,
            "jobs",
            "start",
            *served.api(),
            "--request",
            REQUEST,
            "--watch",
            "--json",
            "--interval",
            "0.3",
        )
        assert ran.code == 0, ran.err
    # then the keys and the job table are readable by their owner only
    for name in ("identities.json", "link-key", "jobs.json", "objects.json"):
        assert (state / name).stat().st_mode & 0o077 == 0, name
    saved = json.loads((state / "objects.json").read_text())["objects"]
    assert [entry["etag"] for entry in saved.values()]


def test_a_ctrl_c_the_system_hands_to_another_thread_still_stops_serve_at_once(tmp_path):
    # given serve's main thread waiting to be stopped, with Ctrl-C's handler as serve installs it
    assert threading.current_thread() is threading.main_thread()
    server = LocalServer(tmp_path / "state")
    bystander = threading.Thread(target=time.sleep, args=(3,), daemon=True)
    bystander.start()
    giving_up = threading.Timer(5, server._stop.set)  # a wait that never noticed ends here, too late
    giving_up.start()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        # when the SIGINT is delivered to another of its threads, as Linux may do
        threading.Timer(0.3, signal.pthread_kill, (bystander.ident, signal.SIGINT)).start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            server.wait()
        waited = time.monotonic() - started
    finally:
        giving_up.cancel()
        signal.signal(signal.SIGINT, previous)
    # then the main thread heard it within a moment, not when its wait ran out
    assert waited < 2, f"serve heard Ctrl-C only after {waited:.1f} s"
