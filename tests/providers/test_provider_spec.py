"""The provider spec format: its JSON Schema, its templates, its status maps, the mistakes it refuses when
loaded, and a made-up vendor written in the test itself run by the declarative provider over HTTP."""

from __future__ import annotations

import copy
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import pytest
import requests

from infra.constants import REPO_ROOT
from reportrelay.auth import build_auth
from reportrelay.config import Connections, JobRequest, SecretResolver
from reportrelay.errors import ConfigurationError, ProviderProtocolError, ProviderThrottled
from reportrelay.httpclient import ProviderHttp
from reportrelay.providers.base import ReportState
from reportrelay.providers.declarative import declarative_class
from reportrelay.providers.spec import (
    SPECS_DIR,
    CheckSpec,
    json_schema,
    packaged_spec,
    parse_spec,
    render,
    render_json,
)
from reportrelay_cli.sandbox.server import (
    HttpError,
    Request,
    Response,
    Simulator,
    deterministic_bytes,
    empty_response,
    route,
)
from tests.clock import SkippingClock

SCHEMA_FILE = REPO_ROOT / "schemas" / "provider-spec.schema.json"


# ---- the schema and the packaged specs


def test_the_schema_file_is_the_models_schema() -> None:
    # given the committed JSON Schema, then it is exactly what the typed model says
    committed = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert committed == json_schema(), (
        "schemas/provider-spec.schema.json is out of date: "
        "python -m reportrelay.providers.spec > schemas/provider-spec.schema.json"
    )
    jsonschema.Draft202012Validator.check_schema(committed)


@pytest.mark.parametrize("path", sorted(SPECS_DIR.glob("*.json")), ids=lambda path: path.stem)
def test_every_packaged_spec_meets_the_schema_and_the_model(path) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))).validate(document)
    assert packaged_spec(path.stem).key == path.stem


# ---- templates


def test_a_value_in_a_path_segment_is_encoded_as_one_segment() -> None:
    # given an id with a slash, a space and a query character
    context = {"job": {"id": "a/b c?d"}}
    # when it is put in a path, then it stays one segment
    assert render("/reports/{job.id}/status", context, "segment") == "/reports/a%2Fb%20c%3Fd/status"
    # and a query value or a text keeps it as it is (requests encodes query values itself)
    assert render("{job.id}", context, "query") == "a/b c?d"


def test_braces_can_be_written_and_line_breaks_cannot_reach_a_header() -> None:
    assert render("{{literal}} {format}", {"format": "csv"}, "text") == "{literal} csv"
    with pytest.raises(ValueError, match="line break"):
        render("{settings.tenant}", {"settings": {"tenant": "a\r\nX-Evil: 1"}}, "header")


def test_a_json_body_keeps_types_and_drops_what_is_absent() -> None:
    # given a body template with whole-value and embedded placeholders, and one absent optional value
    template = {
        "ids": "{report.ids}",
        "size": "{report.size}",
        "label": "Report {report.name} ({format})",
        "optional": "{report.missing}",
        "nested": [{"flag": "{report.flag}"}, "{report.missing}"],
    }
    context = {"report": {"ids": [1, 2], "size": 10, "name": "Q3", "flag": False}, "format": "CSV"}
    # then lists, numbers and booleans keep their type, text is interpolated and the absent key is gone
    assert render_json(template, context) == {
        "ids": [1, 2],
        "size": 10,
        "label": "Report Q3 (CSV)",
        "nested": [{"flag": False}],
    }


# ---- status maps


def check_spec(states: dict[str, str], **extra: Any) -> CheckSpec:
    return CheckSpec.model_validate({"path": "/status", "states": states, **extra})


def test_status_values_match_exactly_first_then_by_wildcard_ignoring_case() -> None:
    spec = check_spec({"Complete": "READY", "2": "READY", "in*": "RUNNING", "*": "PENDING"})
    assert spec.state_of("COMPLETE") == "READY"
    assert spec.state_of(2) == "READY"  # an integer status is compared as text
    assert spec.state_of("InProgress") == "RUNNING"
    assert spec.state_of("Queued") == "PENDING"
    assert spec.state_of({"nested": 1}) is None


def test_a_case_sensitive_map_names_nothing_it_was_not_told() -> None:
    spec = check_spec({"COMPLETED": "READY"}, case_sensitive=True)
    assert spec.state_of("COMPLETED") == "READY"
    assert spec.state_of("completed") is None


# ---- mistakes a spec is refused for when it is loaded


def amazon_document() -> dict[str, Any]:
    return json.loads((SPECS_DIR / "amazon_ads.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        pytest.param(lambda d: d["check"].update(path="/reporting/reports/{job.reportid}"),
                     "'{job.reportid}' is not a known value", id="unknown-job-field"),
        pytest.param(lambda d: d["submit"]["body"].update(extra="{report.nosuch}"),
                     "'{report.nosuch}' names no declared report field", id="undeclared-report-field"),
        pytest.param(lambda d: d["submit"].update(id=None),
                     "submit.id says the vendor gives no id", id="job-id-without-an-id"),
        pytest.param(lambda d: d["headers"].update(Secret="{auth.client_secret}"),
                     "'{auth.client_secret}' is not a known value", id="a-secret-in-a-template"),
        pytest.param(lambda d: d["check"].pop("download_url"),
                     "download.source 'from_status' needs check.download_url", id="no-link-to-follow"),
        pytest.param(lambda d: d["submit"].update(id={"json": "reportId", "header": "Location"}),
                     "give exactly one of 'json', 'header' or 'text'", id="two-places-for-the-id"),
        pytest.param(lambda d: d["check"].update(answer="text"),
                     "a text answer has no JSON paths: remove message, download_url", id="paths-in-text"),
        pytest.param(lambda d: d["check"].update(path="/reporting/reports?id={job.id}"),
                     "check.path: String should match pattern", id="query-in-a-path"),
    ],
)  # fmt: skip
def test_a_spec_that_cannot_work_is_refused_when_loaded(change, words) -> None:
    document = copy.deepcopy(amazon_document())
    change(document)
    with pytest.raises(ConfigurationError, match=r"^amazon_ads\.json") as refused:
        parse_spec(document, "amazon_ads.json")
    assert words in str(refused.value)


# ---- a made-up vendor, written here: an id in Location, a plain-text status, a relative download link


PLAIN_SPEC: dict[str, Any] = {
    "spec_version": 1,
    "key": "plaintext_exports",
    "title": "Plaintext Exports",
    "auth": ["header"],
    "request": {
        "formats": {"csv": "text/csv"},
        "report": {"dataset": {"type": "string", "required": True, "pattern": "[a-z]+"}},
        "other_parameters": True,
    },
    "submit": {
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


class PlaintextExports(Simulator):
    """The made-up vendor: 201 with a Location, status as one word of text, the file under the export."""

    name = "plaintext"

    generation_seconds = 0.3

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self.exports: dict[str, dict[str, Any]] = {}
        #: The next N status calls answer 429 with the wait in the body, and no Retry-After header.
        self.throttle_in_body_next = 0

    @route("POST", "/exports")
    def create(self, request: Request) -> Response:
        if request.header("x-api-key") != "plain-key":
            raise HttpError(401, "no key")
        export_id = uuid.uuid4().hex[:12]
        self.exports[export_id] = {"query": dict(request.query), "at": self.clock()}
        return empty_response(201, {"Location": f"/exports/{export_id}"})

    @route("GET", "/exports/{id}/state")
    def state(self, request: Request) -> Response:
        if self._take("throttle_in_body_next", owner=self):
            return Response(
                429, b'{"error": "slow down", "retryAfterSeconds": 42}', {"Content-Type": "application/json"}
            )
        export = self.exports[request.params["id"]]
        word = "done\n" if self.clock() - export["at"] >= self.generation_seconds else "working (42%)\n"
        return Response(200, word.encode(), {"Content-Type": "text/plain"})

    @route("GET", "/exports/{id}/file", download=True)
    def file(self, request: Request) -> Response:
        content = deterministic_bytes(request.params["id"], 2048, b"a,b\n")
        self.record_served(request.params["id"], content)
        return Response(200, content, {"Content-Type": "text/csv"})


@pytest.fixture
def plaintext(vendor_clock: SkippingClock) -> Iterator[PlaintextExports]:
    with PlaintextExports(vendor_clock) as simulator:
        yield simulator


def plaintext_provider(simulator: PlaintextExports, spec: dict[str, Any]) -> Any:
    """The declarative provider for ``spec``, signed in to the simulator with its API key header."""
    cls = declarative_class(parse_spec(spec, "plaintext_exports.json"))
    auth = {"type": "header", "header": "X-Api-Key", "value": {"env": "PLAIN_KEY"}}
    document = {"provider": "plaintext_exports", "base_url": simulator.base_url, "auth": auth}
    connection = Connections.from_document({"connections": {"plain": document}}).get("plain")
    session = requests.Session()
    signing = build_auth(connection, SecretResolver(environ={"PLAIN_KEY": "plain-key"}), session)
    return cls(connection, ProviderHttp.for_connection(connection, signing, session=session))


def plain_request(**overrides: Any) -> JobRequest:
    return JobRequest.model_validate(
        {"connection": "plain", "report": {"dataset": "orders"}, "format": "csv", **overrides}
    )


def test_a_vendor_written_in_the_test_runs_end_to_end_from_its_spec(plaintext, vendor_clock) -> None:
    # given a provider made from a spec written above, and a request it accepts
    provider = plaintext_provider(plaintext, PLAIN_SPEC)
    job = plain_request(parameters={"x": 1})
    type(provider).validate(job)
    # when it is submitted, checked until done and downloaded
    submitted = provider.submit(job)
    running = provider.check(job, submitted.handle)
    vendor_clock.advance(plaintext.generation_seconds)
    done = provider.check(job, submitted.handle)
    with provider.open_result(job, submitted.handle) as result:
        content = b"".join(result.chunks)
    # then the id came from the Location header, the plain-text words mapped to states, and the file is whole
    (export_id,) = plaintext.exports
    assert submitted.handle == {"id": export_id}
    assert plaintext.exports[export_id]["query"] == {"dataset": "orders", "type": "text/csv"}
    assert (running.state, done.state) == (ReportState.RUNNING, ReportState.READY)
    assert result.filename == f"orders-{export_id}.csv" and result.content_type == "text/csv"
    assert plaintext.served[export_id] == hashlib.sha256(content).hexdigest()


def test_a_status_word_the_spec_does_not_map_is_a_protocol_error_naming_it(plaintext) -> None:
    # given a spec that knows only "done"
    spec = copy.deepcopy(PLAIN_SPEC)
    spec["check"]["states"] = {"done": "READY"}
    provider = plaintext_provider(plaintext, spec)
    submitted = provider.submit(plain_request())
    # when the vendor says something else, then the check fails quoting it
    with pytest.raises(ProviderProtocolError, match=r"unknown report status 'working \(42%\)'"):
        provider.check(plain_request(), submitted.handle)


def test_the_packaged_specs_travel_with_the_package_into_lambda_and_wheels() -> None:
    # given the files the Lambda asset takes and the wheel's package data
    from infra.bundling import package_files

    bundled = {path.relative_to(SPECS_DIR.parent.parent).as_posix() for path in package_files()}
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    # then every spec file is in the asset, and the package data names them
    for spec_file in SPECS_DIR.glob("*.json"):
        assert f"providers/specs/{spec_file.name}" in bundled
    assert '"providers/specs/*.json"' in pyproject


def test_a_wait_the_vendor_gives_in_a_429_body_is_the_wait_the_workflow_gets(plaintext) -> None:
    # given a spec saying where a throttled answer puts its wait, and a vendor that throttles the next check
    spec = copy.deepcopy(PLAIN_SPEC)
    spec["check"]["retry_after"] = {"json": "retryAfterSeconds"}
    provider = plaintext_provider(plaintext, spec)
    submitted = provider.submit(plain_request())
    plaintext.throttle_in_body_next = 1
    # when the status is checked, then it is throttled for as long as the body says, with the vendor's words
    with pytest.raises(ProviderThrottled) as throttled:
        provider.check(plain_request(), submitted.handle)
    assert throttled.value.retry_after == 42
    assert "answered HTTP 429" in str(throttled.value) and "slow down" in str(throttled.value)
    # and the check after it answers for itself
    assert provider.check(plain_request(), submitted.handle).state is ReportState.RUNNING
