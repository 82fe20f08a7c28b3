"""``reportrelay run``: exit codes and one-line messages for bad input, and the JSON output."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

import reportrelay
from reportrelay_cli.local.identities import LocalIdentities
from reportrelay_cli.main import main
from tests.conftest import DX_PASSWORD, devexpress_connection, write_connections

REQUEST = {"connection": "dx", "report": {"document_id": 10}, "format": "pdf"}


@pytest.fixture(autouse=True)
def _library_log_levels():
    """``main`` quiets library loggers for the terminal; the tests after these must find them as they were."""
    levels = {name: logging.getLogger(name).level for name in ("moto",)}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


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
    connections = write_connections(tmp_path, {"dx": devexpress_connection("https://x", provider="crystal")})
    assert run(connections, request, tmp_path / "out") == 2
    assert "unknown provider 'crystal'" in one_line_error(capsys)


def test_a_literal_secret_in_the_config_exits_2_without_echoing_it(files, capsys):
    tmp_path, _, request = files
    auth = {"type": "oauth_password", "username": "api", "password": "Plain-Text-Secret-77"}
    connections = write_connections(tmp_path, {"dx": devexpress_connection("https://x", auth=auth)})
    assert run(connections, request, tmp_path / "out") == 2
    message = one_line_error(capsys)
    assert "connections.dx.auth.password" in message and "reference" in message
    assert "Plain-Text-Secret-77" not in message


def test_a_missing_secret_exits_2_naming_the_variable(files, capsys, monkeypatch):
    tmp_path, connections, request = files
    monkeypatch.delenv("TEST_DX_PASSWORD")
    assert run(connections, request, tmp_path / "out") == 2
    assert "environment variable TEST_DX_PASSWORD is not set" in one_line_error(capsys)


def test_the_real_command_prints_the_event_detail_as_json_with_no_dead_link_and_exits_0(
    devexpress_sim, files, monkeypatch
):
    # given the simulator, a connection pointing at it, and a shell that names a people API
    tmp_path, _, request = files
    monkeypatch.setenv("REPORTRELAY_PEOPLE_URL", "https://reports.example/v1")
    connections = write_connections(tmp_path, {"dx": devexpress_connection(devexpress_sim.base_url)})
    # when the installed command runs with --json
    finished = subprocess.run(
        [sys.executable, "-m", "reportrelay_cli.main", "run", "--connections", str(connections),
         "--request", str(request), "--out", str(tmp_path / "out"), "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    # then stdout is exactly one JSON object, the event detail, and the file is in the output folder
    assert finished.returncode == 0, finished.stderr
    detail = json.loads(finished.stdout)
    assert detail["status"] == "READY"
    assert (tmp_path / "out" / detail["object"]["filename"]).stat().st_size == detail["object"]["size"]
    # and no link to a job API that a local run does not have: the local file is what the user gets
    assert detail["download_url"] is None


def test_a_failed_report_exits_1_and_its_last_line_says_failed_and_why(devexpress_sim, files, capsys):
    # given a report the provider fails to generate
    tmp_path, _, request = files
    devexpress_sim.fail_reports = "Data source unavailable"
    connections = write_connections(tmp_path, {"dx": devexpress_connection(devexpress_sim.base_url)})
    # when it is run
    assert run(connections, request, tmp_path / "out") == 1
    # then stdout is the Report Failed event
    captured = capsys.readouterr()
    event = json.loads(captured.out)
    assert event["detail-type"] == "Report Failed"
    assert "Data source unavailable" in event["detail"]["error"]["message"]
    # and the last line printed says FAILED with the error's code and message, not a progress line
    last = captured.err.strip().splitlines()[-1]
    error = event["detail"]["error"]
    assert last == f"FAILED {error['code']}: {error['message']}"
    assert error["code"] == "ReportGenerationFailed"


def test_a_failed_report_with_json_prints_only_its_detail_saying_why(devexpress_sim, files, capsys):
    # given a report the provider fails to generate
    tmp_path, _, request = files
    devexpress_sim.fail_reports = "Data source unavailable"
    connections = write_connections(tmp_path, {"dx": devexpress_connection(devexpress_sim.base_url)})
    # when it is run with --json
    code = main(["run", "--connections", str(connections), "--request", str(request),
                 "--out", str(tmp_path / "out"), "--json"])  # fmt: skip
    # then it exits 1 and stdout is one JSON object: the detail, with the status and the error
    assert code == 1
    detail = json.loads(capsys.readouterr().out)
    assert detail["status"] == "FAILED" and detail["object"] is None
    assert detail["error"]["code"] == "ReportGenerationFailed"
    assert "Data source unavailable" in detail["error"]["message"]


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_an_execution_that_ends_without_an_event_is_reported_failed(files, capsys, monkeypatch, as_json):
    # given an execution that ends without announcing an outcome
    from reportrelay_cli.local import runner

    tmp_path, connections, request = files
    arn = "arn:aws:states:us-east-1:123456789012:execution:reportrelay:job-7"
    ended = runner.JobOutcome(arn, "FAILED", None, None, None, 1.0)
    monkeypatch.setattr(runner, "run_job", lambda *args, **kwargs: ended)
    # when it is run
    argv = [
        "run",
        "--connections",
        str(connections),
        "--request",
        str(request),
        "--out",
        str(tmp_path / "out"),
    ]
    code = main(argv + (["--json"] if as_json else []))
    # then it exits 1, saying FAILED and why: as the last line, or as a JSON detail alone on stdout
    assert code == 1
    captured = capsys.readouterr()
    message = "the execution ended FAILED without announcing an outcome"
    if as_json:
        detail = json.loads(captured.out)
        assert detail["job_id"] == "job-7" and detail["status"] == "FAILED"
        assert detail["error"] == {"code": "NoCompletionEvent", "message": message}
    else:
        assert captured.out == ""
        assert captured.err.strip().splitlines()[-1] == f"FAILED NoCompletionEvent: {message}"


def test_ctrl_c_names_the_job_the_provider_may_still_run_and_exits_130(
    devexpress_sim, files, capsys, monkeypatch
):
    # given a report that takes a while, and a Ctrl-C once the provider has queued it
    from reportrelay_cli.local import runner

    tmp_path, _, request = files
    devexpress_sim.generation_seconds = 30
    connections = write_connections(tmp_path, {"dx": devexpress_connection(devexpress_sim.base_url)})
    real_progress, interrupted = runner._progress, []

    def progress_then_ctrl_c(sfn, execution_arn, elapsed):
        current = real_progress(sfn, execution_arn, elapsed)
        if current is not None and current.status is not None:  # Submit has queued the export
            interrupted.append(execution_arn)
            raise KeyboardInterrupt
        return current

    monkeypatch.setattr(runner, "_progress", progress_then_ctrl_c)
    # when the run is interrupted while following the job
    code = run(connections, request, tmp_path / "out")
    # then it exits 130, after the provider was asked for the report
    assert code == 130 and interrupted
    assert any(
        entry.method == "POST" and "/export/report/10" in entry.path for entry in devexpress_sim.request_log
    )
    # and stderr names the job and its connection, says it may still be queued there, and how it ends
    job_id = interrupted[0].rsplit(":", 1)[-1]
    err = capsys.readouterr().err
    assert "Traceback" not in err
    first, second = err.strip().splitlines()[-2:]
    assert first == (
        f"reportrelay: interrupted: job {job_id} may still be queued or generating at the provider "
        "of connection 'dx'"
    )
    assert "nothing here can cancel it" in second and "cancel it there" in second


# ---- bad input for every provider: exit 2 and a one-line message naming what is wrong

GUID = "00000000-0000-0000-0000-000000000001"
C1_REPORT = "E341BB429E7D44E3989D113A504F3BF8"
C1_STUDY = "CFD8129A430A473C8A02F4BA5DAAD865"
NOWHERE = "http://127.0.0.1:9"  # never contacted: bad input is refused before any call
ALL_PROVIDERS = {
    "dx": devexpress_connection(NOWHERE),
    "torus": {"provider": "torus", "base_url": NOWHERE, "tenant_id": 69,
              "auth": {"type": "bearer", "token": {"env": "TEST_DX_PASSWORD"}}},
    "mi": {"provider": "metric_insights", "base_url": NOWHERE,
           "auth": {"type": "bearer", "token": {"env": "TEST_DX_PASSWORD"}}},
    "c1": {"provider": "clinical_one", "base_url": NOWHERE,
           "auth": {"type": "oauth_password", "username": "api", "password": {"env": "TEST_DX_PASSWORD"}}},
    "mr": {"provider": "myreports", "base_url": NOWHERE,
           "auth": {"type": "bearer", "token": {"env": "TEST_DX_PASSWORD"}}},
}  # fmt: skip


def job(connection: str, report: dict, format: str) -> dict:
    return {"connection": connection, "report": report, "format": format}


def c1(**report) -> dict:
    return {"report_id": C1_REPORT, "study_id": C1_STUDY, "mode": "active", **report}


def mr(**dates) -> dict:
    return {"workspace_id": GUID, "report_id": GUID, "date_filter": dates or {"preset": "ThisQuarter"}}


@pytest.mark.parametrize(
    ("request_body", "words"),
    [
        pytest.param(job("dx", {"document_id": "ten"}, "pdf"),
                     "request.report.document_id: Input should be a valid integer", id="devexpress-bad-id"),
        pytest.param(job("dx", {"document_id": 10}, "csv"),
                     "'csv' is not available for a DevExpress report", id="devexpress-unknown-format"),
        pytest.param(job("torus", {"report_id": "x"}, "xlsx"),
                     "request.report.report_id: Input should be a valid integer", id="torus-bad-id"),
        pytest.param(job("torus", {"name": "MI_Report"}, "pdf"),
                     "'pdf' is not available for a Torus merged report", id="torus-unknown-format"),
        pytest.param(job("mi", {"element_id": "abc", "dimension_id": 0}, "pdf"),
                     "request.report.element_id: Input should be a valid integer", id="mi-bad-id"),
        pytest.param(job("mi", {"element_id": 1042, "dimension_id": 0}, "docx2"),
                     "request.format: 'docx2' is not available for Metric Insights reports; choose one of",
                     id="mi-unknown-format"),
        pytest.param(job("c1", c1(report_id="not-hex"), "csv"),
                     "request.report.report_id: String should match pattern", id="c1-bad-id"),
        pytest.param(job("c1", c1(mode="live"), "csv"),
                     "request.report.mode: Input should be 'active', 'test' or 'training'", id="c1-bad-mode"),
        pytest.param(job("c1", c1(), "docx"), "'docx' is not available for a Clinical One report",
                     id="c1-unknown-format"),
        pytest.param(job("mr", mr(start="2025-13-45", end="2025-01-01"), "json"),
                     "'2025-13-45' is not an ISO 8601 date", id="myreports-invalid-date"),
        pytest.param(job("mr", mr(start="2025-03-01", end="2025-01-01"), "json"),
                     "must not be after 'end'", id="myreports-dates-reversed"),
        pytest.param(job("mr", mr(), "pdf"), "'pdf' is not available for MyReports results",
                     id="myreports-unknown-format"),
        pytest.param({**REQUEST, "deadline_seconds": 5},
                     "request.deadline_seconds: Input should be greater than", id="deadline-too-short"),
        pytest.param({**REQUEST, "connection": ""},
                     "request.connection: String should have at least 1", id="empty-connection"),
        pytest.param(["dx", 10, "pdf"], "the job request must be a JSON object", id="request-not-an-object"),
    ],
)  # fmt: skip
def test_bad_job_requests_exit_2_with_a_message_naming_the_problem(files, capsys, request_body, words):
    # given connections to every provider, and a request that cannot work
    tmp_path, _, request = files
    connections = write_connections(tmp_path, ALL_PROVIDERS)
    request.write_text(json.dumps(request_body))
    # when it is run, then it exits 2 saying what is wrong, before contacting any provider
    assert run(connections, request, tmp_path / "out") == 2
    assert words in one_line_error(capsys)


def test_a_request_file_that_is_not_json_exits_2(files, capsys):
    tmp_path, connections, request = files
    request.write_text('{"connection": "dx",')
    assert run(connections, request, tmp_path / "out") == 2
    assert "JSON" in one_line_error(capsys)


@pytest.mark.parametrize(
    ("document", "words"),
    [
        pytest.param({"dx": devexpress_connection("not a url")}, "connections.dx.base_url",
                     id="bad-base-url"),
        pytest.param({"dx": devexpress_connection(NOWHERE, poll={"initial_seconds": 0})},
                     "connections.dx.poll.initial_seconds", id="bad-poll"),
        pytest.param({"dx": devexpress_connection(NOWHERE, timeouts={"read_seconds": -1})},
                     "connections.dx.timeouts.read_seconds", id="bad-timeout"),
        pytest.param({"dx": devexpress_connection(NOWHERE, deadline_seconds=5)},
                     "connections.dx.deadline_seconds", id="deadline-too-short"),
        pytest.param({"dx": devexpress_connection(NOWHERE, max_concurrent_jobs=0)},
                     "connections.dx.max_concurrent_jobs", id="bad-concurrency-limit"),
        pytest.param({"dx": "devexpress"}, "connections.dx: must be an object", id="not-an-object"),
        pytest.param({"dx": {"provider": "devexpress", "base_url": NOWHERE}},
                     "connections.dx.auth: Field required", id="missing-auth"),
    ],
)  # fmt: skip
def test_malformed_connections_exit_2_naming_the_field(files, capsys, document, words):
    tmp_path, _, request = files
    connections = write_connections(tmp_path, document)
    assert run(connections, request, tmp_path / "out") == 2
    assert words in one_line_error(capsys)


def test_a_connections_file_without_connections_exits_2(files, capsys):
    tmp_path, connections, request = files
    connections.write_text(json.dumps({"dx": devexpress_connection(NOWHERE)}))
    assert run(connections, request, tmp_path / "out") == 2
    assert 'must be a JSON object {"connections": {...}}' in one_line_error(capsys)


# ---- reportrelay validate


def test_validate_accepts_good_files_and_runs_nothing(tmp_path, capsys):
    # given an access policy and an identities file as a deployment and a laptop would have them
    access = tmp_path / "access.json"
    access.write_text(
        '{"admin_team": "platform", "roles": {"arn:aws:iam::123456789012:role/r": ["finance"]}}'
    )
    identities = tmp_path / "identities.json"
    LocalIdentities.generate({"arn:aws:iam::123456789012:user/ci": ["finance"]}).write(identities)
    # when they are validated
    code = main(["validate", "--access", str(access), "--identities", str(identities)])
    # then both are reported valid
    assert code == 0
    out = capsys.readouterr().out
    assert "admin team platform" in out and "1 identit" in out


def test_validate_names_the_file_and_field_of_a_wrong_team_mapping(tmp_path, capsys):
    # given an access policy whose role maps to a team name that cannot be
    access = tmp_path / "access.json"
    access.write_text('{"roles": {"arn:aws:iam::123456789012:role/r": ["Finance Team"]}}')
    # when it is validated, then the command exits 2 naming the file and the field, in one line
    assert main(["validate", "--access", str(access)]) == 2
    error = capsys.readouterr().err.strip()
    assert str(access) in error and "roles" in error and "\n" not in error


def test_validate_names_the_file_and_field_of_a_wrong_identities_file(tmp_path, capsys):
    # given an identities file whose principal is not an IAM ARN
    identities = tmp_path / "identities.json"
    identities.write_text(
        '{"identities": {"AKIAEXAMPLE000000001": {"secret_access_key": "s", "principal": "alice"}}}'
    )
    # when it is validated, then it exits 2 naming the file and the identity's principal field
    assert main(["validate", "--identities", str(identities)]) == 2
    error = capsys.readouterr().err.strip()
    assert str(identities) in error and "principal" in error and "\n" not in error


def _deployment_files(tmp_path, schedule_team="finance"):
    """A connections file, a request and a schedules file as a deployment's config/ would hold them."""
    connections = write_connections(
        tmp_path,
        {"dx": devexpress_connection("https://reports.example.com", teams=["finance"])},
    )
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"connection": "dx", "report": {"document_id": 10}, "format": "pdf"}))
    schedules = tmp_path / "schedules.json"
    daily = {
        "schedule": "cron(0 6 * * ? *)",
        "team": schedule_team,
        "request": {"connection": "dx", "report": {"document_id": 10}, "format": "xlsx"},
    }
    schedules.write_text(json.dumps({"schedules": {"daily": daily}}))
    return connections, request, schedules


def test_validate_checks_requests_and_schedules_against_the_connections(tmp_path, capsys):
    # given a connections file, a request and a schedules file that fit together
    connections, request, schedules = _deployment_files(tmp_path)
    # when they are validated
    files = ["--connections", str(connections), "--request", str(request), "--schedules", str(schedules)]
    code = main(["validate", *files])
    # then each is reported valid, and nothing ran (no provider was reachable at reports.example.com)
    assert code == 0
    out = capsys.readouterr().out
    assert f"{request}: valid; pdf from connection dx (devexpress)" in out
    assert f"{schedules}: 1 schedule(s) valid, 1 enabled" in out


def test_validate_names_the_request_file_and_what_its_provider_refuses(tmp_path, capsys):
    # given a request for a format DevExpress does not export
    connections, request, _ = _deployment_files(tmp_path)
    request.write_text(json.dumps({"connection": "dx", "report": {"document_id": 10}, "format": "mp4"}))
    # when it is validated, then it exits 2 with one line naming the file and the format
    assert main(["validate", "--connections", str(connections), "--request", str(request)]) == 2
    error = capsys.readouterr().err.strip()
    assert str(request) in error and "mp4" in error and "\n" not in error


def test_validate_names_the_schedule_whose_team_may_not_use_its_connection(tmp_path, capsys):
    # given a schedule run for a team its connection is not shared with
    connections, _, schedules = _deployment_files(tmp_path, schedule_team="sales")
    # when the schedules are validated
    code = main(["validate", "--connections", str(connections), "--schedules", str(schedules)])
    # then it exits 2 naming the schedule's team field and the team
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert "schedules.daily.team" in error and "'sales'" in error and "\n" not in error


def test_validate_needs_the_connections_to_check_a_request_against(tmp_path, capsys):
    _, request, _ = _deployment_files(tmp_path)
    assert main(["validate", "--request", str(request)]) == 2
    assert "give --connections too" in capsys.readouterr().err


# ---- quiet, early, exact


def test_version_says_which_reportrelay_this_is(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"reportrelay {reportrelay.__version__}"


def test_an_out_that_is_a_file_exits_2_before_anything_runs(files, capsys, monkeypatch):
    # given --out naming a file, and an emulation that must not even start
    tmp_path, connections, request = files
    (tmp_path / "taken").write_text("not a folder")
    monkeypatch.setattr("reportrelay_cli.local.aws.LocalAws.__enter__", lambda self: pytest.fail("it ran"))
    # when the job is run, then it stops at once, saying what to change
    assert run(connections, request, tmp_path / "taken") == 2
    assert one_line_error(capsys) == (
        f"reportrelay: error: --out {tmp_path / 'taken'} is a file, not a folder: "
        "give a folder for the report"
    )


def test_an_out_that_cannot_be_made_exits_2_naming_why(files, capsys):
    tmp_path, connections, request = files
    (tmp_path / "taken").write_text("not a folder")
    assert run(connections, request, tmp_path / "taken" / "below") == 2
    assert "cannot be written to: Not a directory" in one_line_error(capsys)


def test_a_failed_run_shows_no_library_internals_on_stderr(devexpress_sim, files):
    # given a report the provider fails to generate
    tmp_path, _, request = files
    devexpress_sim.fail_reports = "Data source unavailable"
    connections = write_connections(tmp_path, {"dx": devexpress_connection(devexpress_sim.base_url)})
    # when the command runs in a terminal-like process
    finished = subprocess.run(
        [sys.executable, "-m", "reportrelay_cli.main", "run", "--connections", str(connections),
         "--request", str(request), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    # then it fails with exit 1, and stderr holds none of moto's interpreter dump
    assert finished.returncode == 1
    assert "Report Failed" in finished.stdout
    for internal in ("moto", "FailureEventException", "object at 0x", "Traceback"):
        assert internal not in finished.stderr, finished.stderr[-2000:]
