"""``reportrelay run``: exit codes and one-line messages for bad input, and the JSON output."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reportrelay.cli import main
from tests.conftest import DX_PASSWORD, devexpress_connection, write_connections

REQUEST = {"connection": "dx", "report": {"document_id": 10}, "format": "pdf"}


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_DX_PASSWORD", DX_PASSWORD)
    connections = write_connections(tmp_path, {"dx": devexpress_connection("http://127.0.0.1:9")})
    request = tmp_path / "request.json"
    request.write_text(json.dumps(REQUEST))
    return tmp_path, connections, request


def run(connections, request, out):
    return main(["run", "--connections", str(connections), "--request", str(request), "--out", str(out)])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("reportrelay: error: ")
    return err


def test_an_unreadable_connections_file_exits_2(files, capsys):
    tmp_path, _, request = files
    assert run(tmp_path / "missing.json", request, tmp_path / "out") == 2
    assert "cannot read connections file" in one_line_error(capsys)


def test_a_connections_file_that_is_not_json_exits_2(files, capsys):
    tmp_path, connections, request = files
    connections.write_text("{not json")
    assert run(connections, request, tmp_path / "out") == 2
    assert "is not valid JSON (line 1" in one_line_error(capsys)


def test_an_invalid_request_exits_2_naming_the_field(files, capsys):
    tmp_path, connections, request = files
    request.write_text(json.dumps({"connection": "dx", "format": "pdf"}))
    assert run(connections, request, tmp_path / "out") == 2
    assert "request.report: Field required" in one_line_error(capsys)


def test_a_request_the_provider_cannot_serve_exits_2(files, capsys):
    tmp_path, connections, request = files
    request.write_text(json.dumps({**REQUEST, "format": "pptx"}))
    assert run(connections, request, tmp_path / "out") == 2
    assert "choose one of pdf, html, xlsx, docx" in one_line_error(capsys)


def test_an_unknown_connection_exits_2(files, capsys):
    tmp_path, connections, request = files
    request.write_text(json.dumps({**REQUEST, "connection": "nope"}))
    assert run(connections, request, tmp_path / "out") == 2
    assert "unknown connection 'nope' (configured: dx)" in one_line_error(capsys)


def test_an_unknown_provider_exits_2(files, capsys):
    tmp_path, _, request = files
    connections = write_connections(tmp_path, {"dx": devexpress_connection("http://x", provider="crystal")})
    assert run(connections, request, tmp_path / "out") == 2
    assert "unknown provider 'crystal'" in one_line_error(capsys)


def test_a_literal_secret_in_the_config_exits_2_without_echoing_it(files, capsys):
    tmp_path, _, request = files
    auth = {"type": "oauth_password", "username": "api", "password": "Plain-Text-Secret-77"}
    connections = write_connections(tmp_path, {"dx": devexpress_connection("http://x", auth=auth)})
    assert run(connections, request, tmp_path / "out") == 2
    message = one_line_error(capsys)
    assert "connections.dx.auth.password" in message and "reference" in message
    assert "Plain-Text-Secret-77" not in message


def test_a_missing_secret_exits_2_naming_the_variable(files, capsys, monkeypatch):
    tmp_path, connections, request = files
    monkeypatch.delenv("TEST_DX_PASSWORD")
    assert run(connections, request, tmp_path / "out") == 2
    assert "environment variable TEST_DX_PASSWORD is not set" in one_line_error(capsys)


def test_the_real_command_prints_the_event_detail_as_json_and_exits_0(devexpress_sim, files):
    # given the simulator and a connection pointing at it
    tmp_path, _, request = files
    connections = write_connections(tmp_path, {"dx": devexpress_connection(devexpress_sim.base_url)})
    # when the installed command runs with --json
    finished = subprocess.run(
        [sys.executable, "-m", "reportrelay.cli", "run", "--connections", str(connections),
         "--request", str(request), "--out", str(tmp_path / "out"), "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    # then stdout is exactly one JSON object, the event detail, and the file is in the output folder
    assert finished.returncode == 0, finished.stderr
    detail = json.loads(finished.stdout)
    assert detail["status"] == "READY"
    assert (tmp_path / "out" / detail["object"]["filename"]).stat().st_size == detail["object"]["size"]


def test_a_failed_report_exits_1(devexpress_sim, files, capsys):
    tmp_path, _, request = files
    devexpress_sim.fail_reports = "Data source unavailable"
    connections = write_connections(tmp_path, {"dx": devexpress_connection(devexpress_sim.base_url)})
    assert run(connections, request, tmp_path / "out") == 1
    captured = capsys.readouterr()
    event = json.loads(captured.out)
    assert event["detail-type"] == "Report Failed"
    assert "Data source unavailable" in event["detail"]["error"]["message"]
