"""A vendor added without Python: a spec file dropped in ``vendors/`` beside the connections file, named
as a connection's provider, runs end to end through statemachines/report.asl.json on moto; a bad one
stops ``reportrelay validate`` with one line naming the file and the field."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reportrelay.vendors import forget_user_specs
from reportrelay_cli.local.aws import LocalAws
from reportrelay_cli.local.runner import run_job
from reportrelay_cli.main import main
from tests.conftest import write_connections
from tests.providers.test_provider_spec import PlaintextExports

#: The seventh vendor, written here: the id in a Location header, the status as one word of text, and
#: the file under a path relative to the API (nothing of it is in reportrelay's package).
ACME_SPEC: dict[str, Any] = {
    "spec_version": 1,
    "key": "acme_exports",
    "title": "Acme Exports",
    "auth": ["header"],
    "request": {
        "formats": {"csv": "text/csv"},
        "report": {"dataset": {"type": "string", "required": True, "pattern": "[a-z]+"}},
    },
    "submit": {
        "method": "POST",
        "path": "/exports",
        "query": {"dataset": "{report.dataset}", "type": "{format}"},
        "id": {"header": "Location", "pattern": "/exports/([^/]+)$"},
    },
    "check": {
        "path": "/exports/{job.id}/state",
        "answer": "text",
        "states": {"queued": "PENDING", "working*": "RUNNING", "done": "READY", "broken": "FAILED"},
    },
    "download": {
        "source": "call",
        "call": {"path": "/exports/{job.id}/file"},
        "filename": "{report.dataset}-{job.id}",
        "extension": "csv",
        "server_filename": False,
    },
}


@pytest.fixture(autouse=True)
def _no_user_specs_left() -> Iterator[None]:
    """Vendor specs registered by one test (a process-wide registry) do not reach the next."""
    forget_user_specs()
    yield
    forget_user_specs()


@pytest.fixture
def acme() -> Iterator[PlaintextExports]:
    with PlaintextExports() as simulator:
        yield simulator


def write_vendor(folder: Path, spec: dict[str, Any], name: str | None = None) -> Path:
    path = folder / "vendors" / f"{name or spec['key']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    return path


def acme_connection(simulator: PlaintextExports) -> dict[str, Any]:
    return {
        "provider": "acme_exports",
        "base_url": simulator.base_url,
        "auth": {"type": "header", "header": "X-Api-Key", "value": {"env": "TEST_ACME_KEY"}},
        "poll": {"initial_seconds": 1, "max_seconds": 2},
    }


def acme_request(**overrides: Any) -> dict[str, Any]:
    return {
        "connection": "acme",
        "report": {"dataset": "orders"},
        "format": "csv",
        "output": {"key_prefix": "acme/"},
        **overrides,
    }


def test_a_spec_file_beside_the_connections_runs_a_job_through_the_state_machine(
    tmp_path: Path, acme: PlaintextExports, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a spec for a vendor reportrelay does not ship, dropped in vendors/ beside the connections file,
    # and a connection naming it as its provider
    write_vendor(tmp_path, ACME_SPEC)
    connections = write_connections(tmp_path, {"acme": acme_connection(acme)})
    monkeypatch.setenv("TEST_ACME_KEY", "plain-key")
    environment = {"REPORTRELAY_CONNECTIONS_FILE": str(connections), "POWERTOOLS_LOG_LEVEL": "WARNING"}
    # when a job on that connection runs through the state machine
    with LocalAws(environment) as aws:
        outcome = run_job(aws, acme_request(), out_dir=tmp_path / "out")
        stored = outcome.detail["object"]
        content = aws.client("s3").get_object(Bucket=stored["bucket"], Key=stored["key"])["Body"].read()
    # then it is announced ready, queued once, with the id the Location header gave
    assert outcome.detail_type == "Report Ready", outcome.detail
    assert outcome.execution_status == "SUCCEEDED"
    assert outcome.detail["provider"] == "acme_exports"
    (export_id,) = acme.exports
    assert acme.exports[export_id]["query"] == {"dataset": "orders", "type": "text/csv"}
    assert len(acme.calls("POST", "/exports")) == 1
    # and the file stored is exactly the one the vendor served, under the spec's file name
    assert stored["filename"] == f"orders-{export_id}.csv"
    assert hashlib.sha256(content).hexdigest() == stored["sha256"] == acme.served[export_id]
    assert outcome.local_file is not None and outcome.local_file.read_bytes() == content


def test_a_request_the_spec_refuses_fails_before_anything_is_sent(
    tmp_path: Path, acme: PlaintextExports, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the same vendor, and a request whose dataset breaks the spec's pattern
    write_vendor(tmp_path, ACME_SPEC)
    connections = write_connections(tmp_path, {"acme": acme_connection(acme)})
    monkeypatch.setenv("TEST_ACME_KEY", "plain-key")
    environment = {"REPORTRELAY_CONNECTIONS_FILE": str(connections), "POWERTOOLS_LOG_LEVEL": "WARNING"}
    # when it runs
    with LocalAws(environment) as aws:
        outcome = run_job(aws, acme_request(report={"dataset": "Orders 2025"}))
    # then it fails naming the field, and the vendor was never called
    assert outcome.detail_type == "Report Failed"
    assert outcome.detail["error"]["code"] == "BadRequest"
    assert "request.report.dataset: String should match pattern" in outcome.detail["error"]["message"]
    assert acme.request_log == []


# ---- reportrelay validate: a bad spec is one line naming the file and the field, exit 2


def _validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    connections = write_connections(
        tmp_path,
        {"acme": {**acme_connection_at("http://127.0.0.1:9"), "auth": {"type": "none"}}},
    )
    code = main(["validate", "--connections", str(connections)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def acme_connection_at(base_url: str) -> dict[str, Any]:
    return {"provider": "acme_exports", "base_url": base_url, "auth": {"type": "none"}}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        pytest.param(
            lambda spec: spec["submit"].update(method="FETCH"),
            "submit.method: Input should be 'GET', 'POST', 'PUT', 'PATCH' or 'DELETE'",
            id="a-method-http-has-not",
        ),
        pytest.param(
            lambda spec: spec["check"].update(path="/exports/{job.number}/state"),
            "check: '{job.number}' is not a known value",
            id="a-placeholder-with-no-value",
        ),
        pytest.param(
            lambda spec: spec.pop("download"), "download: Field required", id="no-download-section"
        ),
    ],
)  # fmt: skip
def test_a_bad_spec_stops_validate_with_one_line_naming_the_file_and_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: Any, words: str
) -> None:
    # given a vendor spec beside the connections that cannot work
    spec = copy.deepcopy(ACME_SPEC)
    change(spec)
    spec_file = write_vendor(tmp_path, spec)
    # when the connections are validated
    code, out, err = _validate(tmp_path, capsys)
    # then validate exits 2 with one line naming the spec file and the field, and nothing else
    assert code == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith(f"reportrelay: error: {spec_file}: "), line
    assert words in line, line


def test_a_spec_named_otherwise_than_its_key_or_as_a_shipped_vendor_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a spec whose file name is not its key
    misnamed = write_vendor(tmp_path, ACME_SPEC, name="acme")
    code, _, err = _validate(tmp_path, capsys)
    # then validate names the file and its key
    assert code == 2
    assert err.strip() == (
        f"reportrelay: error: {misnamed}: key: 'acme_exports' must be the file's name ('acme')"
    )
    # given instead a spec that takes a shipped vendor's key
    misnamed.unlink()
    shipped = write_vendor(tmp_path, {**ACME_SPEC, "key": "torus"})
    code, _, err = _validate(tmp_path, capsys)
    # then it is refused, naming the file
    assert code == 2
    assert err.strip().startswith(
        f"reportrelay: error: {shipped}: key: 'torus' is a vendor reportrelay ships"
    )


def test_a_good_spec_validates_and_an_unknown_provider_lists_the_users_vendors_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a good spec beside the connections, and a request naming its connection
    write_vendor(tmp_path, ACME_SPEC)
    connections = write_connections(tmp_path, {"acme": acme_connection_at("http://127.0.0.1:9")})
    request = tmp_path / "request.json"
    request.write_text(json.dumps(acme_request()), encoding="utf-8")
    # when both are validated, then they pass, the request checked by the user's vendor
    assert main(["validate", "--connections", str(connections), "--request", str(request)]) == 0
    assert "valid; csv from connection acme (acme_exports)" in capsys.readouterr().out
    # and a connection naming a vendor nobody has is told the vendors there are, the user's among them
    write_connections(tmp_path, {"acme": {**acme_connection_at("http://127.0.0.1:9"), "provider": "acme"}})
    request.write_text(json.dumps(acme_request()), encoding="utf-8")
    assert main(["validate", "--connections", str(connections), "--request", str(request)]) == 2
    error = capsys.readouterr().err
    assert "unknown provider 'acme'" in error and "acme_exports" in error
