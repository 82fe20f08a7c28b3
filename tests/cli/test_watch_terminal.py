"""``reportrelay jobs watch`` on a real terminal (tmux): the live line, and every retry printed as it happens.

The vendor (the DevExpress simulator behind the tests' deployment) answers a storm of 429s and then cuts
the download half-way; the watch, a process of its own in a tmux pane, must show each retry in words.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.api.access import deployment
from tests.cli.conftest import reportrelay, signed_as

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None,
    reason="tmux is not installed and make test could not install it (sudo apt-get install tmux): "
    "the terminal test is SKIPPED",
)


def pane(session: str) -> str:
    """What the pane shows, scrollback included, without colours."""
    answer = subprocess.run(
        ["tmux", "capture-pane", "-p", "-J", "-S", "-", "-t", session],
        capture_output=True,
        text=True,
        check=False,
    )
    return answer.stdout


def test_watch_on_a_terminal_shows_the_retries_of_a_429_storm_and_a_broken_download(tmp_path, capsys):
    with deployment(tmp_path, generation_seconds=1.0) as deployed, signed_as(deployed.machine("alice")):
        # given a vendor that throttles its next three answers, then breaks the download half-way
        deployed.simulator.faults.throttle_next = 3
        deployed.simulator.faults.throttle_retry_after = 1
        deployed.simulator.faults.break_downloads_next = 1
        request = tmp_path / "request.json"
        request.write_text(json.dumps(deployed.request("finance")), encoding="utf-8")
        started = reportrelay(
            capsys, "jobs", "start", "--api", deployed.iam_url, "--request", request, "--json"
        )
        assert started.code == 0, started.err
        job_id = started.json()["job_id"]
        # when it is watched in a terminal 160 columns wide
        session = f"reportrelay-watch-{uuid.uuid4().hex[:8]}"
        environment = {
            name: os.environ[name]
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION")
            if os.environ.get(name)
        }
        exports = " ".join(f"{name}={shlex.quote(value)}" for name, value in environment.items())
        python_path = shlex.quote(f"{REPO}/functions:{REPO}/cli:{REPO}")
        command = (
            f"env {exports} PYTHONPATH={python_path} {shlex.quote(sys.executable)} "
            f"-m reportrelay_cli.main jobs watch {job_id} --api {deployed.iam_url} --interval 0.3; "
            "echo EXIT=$?; sleep 30"
        )
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "50", command], check=True
        )
        try:
            live_lines: list[str] = []
            deadline = time.monotonic() + 60
            while "EXIT=" not in (screen := pane(session)):
                assert time.monotonic() < deadline, screen
                live_lines += [line for line in screen.splitlines() if " · elapsed " in line]
                time.sleep(0.2)
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    # then the live line was seen while the job ran, in plain words
    assert any("check(s)" in line for line in live_lines), screen
    assert not [line for line in live_lines if "WaitForReport" in line or "DescribeReady" in line]
    # and each 429 came with its own line, in the vendor's and the attempt's words
    lines = screen.splitlines()
    throttled = [line for line in lines if "429" in line and "retrying in" in line]
    assert len(throttled) >= 2, screen
    assert "(attempt 2 of" in "\n".join(throttled)
    # and so did the broken download
    assert [line for line in lines if "download" in line.lower() and ("broke" in line or "retry" in line)], (
        screen
    )
    # and the watch ended saying READY, with exit 0
    assert any(line.startswith("READY Sales.pdf") for line in lines), screen
    assert "EXIT=0" in screen
