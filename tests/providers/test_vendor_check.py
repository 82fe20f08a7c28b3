"""``reportrelay vendor check``: a spec walked through one real job against a live server (the simulators,
over HTTP), saying where the spec and the server disagree; run through a parser built here, as the
command line registers it (``add_vendor_commands``)."""

from __future__ import annotations

import argparse
import copy
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reportrelay.auth import forget_cached_tokens
from reportrelay.providers.spec import SPECS_DIR
from reportrelay_cli.main import BadInput
from reportrelay_cli.sandbox.amazon_ads import AmazonAdsSimulator
from reportrelay_cli.vendorcheck import EXIT_AGREE, EXIT_DISAGREE, add_vendor_commands
from tests.providers.test_amazon_ads import (
    CLIENT_ID,
    CLIENT_SECRET,
    PROFILE,
    REFRESH_TOKEN,
    SECRETS,
    ads_connection,
)
from tests.providers.test_provider_spec import PlaintextExports
from tests.workflow.test_user_vendor_workflow import ACME_SPEC

ADS_SPEC: dict[str, Any] = json.loads((SPECS_DIR / "amazon_ads.json").read_text(encoding="utf-8"))
ADS_REQUEST = {
    "connection": "whatever the file says",
    "report": {
        "reportTypeId": "spCampaigns",
        "adProduct": "SPONSORED_PRODUCTS",
        "groupBy": ["campaign"],
        "columns": ["campaignId", "impressions", "clicks"],
        "timeUnit": "SUMMARY",
    },
    "format": "gzip_json",
    "parameters": {"startDate": "2026-11-01", "endDate": "2026-11-07"},
}


@pytest.fixture
def ads_sim() -> Iterator[AmazonAdsSimulator]:
    forget_cached_tokens()
    with AmazonAdsSimulator(
        clients={CLIENT_ID: CLIENT_SECRET},
        refresh_tokens=[REFRESH_TOKEN],
        profiles=[PROFILE],
        generation_seconds=0.5,
        rows=5,
    ) as simulator:
        yield simulator


def parser() -> argparse.ArgumentParser:
    """The ``reportrelay`` parser's shape, with only the vendor commands registered."""
    root = argparse.ArgumentParser(prog="reportrelay")
    add_vendor_commands(root.add_subparsers(required=True, metavar="COMMAND"))
    return root


def vendor_check(
    tmp_path: Path,
    spec: dict[str, Any],
    connection: dict[str, Any],
    request: dict[str, Any],
    timeout: float = 20,
) -> tuple[int, list[str]]:
    """``reportrelay vendor check SPEC --connection server --request FILE`` on files written here."""
    (tmp_path / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    (tmp_path / "connections.json").write_text(json.dumps({"connections": {"server": connection}}), "utf-8")
    (tmp_path / "request.json").write_text(json.dumps(request), encoding="utf-8")
    args = parser().parse_args(
        ["vendor", "check", str(tmp_path / "spec.json"), "--connection", "server",
         "--request", str(tmp_path / "request.json"), "--connections", str(tmp_path / "connections.json"),
         "--every", "0.3", "--timeout", str(timeout)]
    )  # fmt: skip
    out = io.StringIO()
    code = args.command(args, out=out)
    return code, out.getvalue().splitlines()


@pytest.fixture
def ads_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def test_a_spec_that_matches_the_server_walks_every_step_and_agrees(tmp_path, ads_sim, ads_secrets) -> None:
    # given the packaged Amazon Ads spec and a connection to the simulator
    # when it is checked against the live server
    code, lines = vendor_check(tmp_path, ADS_SPEC, ads_connection(ads_sim), ADS_REQUEST)
    # then every step says what the server answered, and the last line says they agree
    assert code == EXIT_AGREE, lines
    text = "\n".join(lines)
    assert "sign in   ok: POST /auth/o2/token at 127.0.0.1:" in text
    (report_id,) = ads_sim.reports
    assert (
        f"submit    ok: POST /reporting/reports answered 200; the report id '{report_id}' from 'reportId'"
        in text
    )
    assert "check     READY (the server said 'COMPLETED')" in text
    storage = ads_sim.storage.base_url.removeprefix("http://")
    assert f"at {storage} (no credentials sent) served application/gzip" in text
    assert "first 64 bytes: 1f 8b" in text  # gzip, shown in hex
    assert lines[-1] == (
        f"AGREE     the spec and the server agree on every step: a job on server would store "
        f"spCampaigns-{report_id}.json.gz"
    )
    # and nothing of the presigned link (a credential) was printed
    assert "X-Amz-Signature" not in text


def _change(where: str, **values: Any) -> Callable[[dict[str, Any]], None]:
    def change(spec: dict[str, Any]) -> None:
        spec[where].update(values)

    return change


@pytest.mark.parametrize(
    ("change", "words"),
    [
        pytest.param(
            _change("check", status="reportStatus"),
            "at check: check.status reads 'reportStatus', which the answer does not have (its fields: "
            "configuration, createdAt, endDate, failureReason, fileSize, generatedAt, name, reportId, "
            "startDate, status, updatedAt, url, urlExpiresAt)",
            id="status-at-the-wrong-path",
        ),
        pytest.param(
            _change("check", states={"PENDING": "PENDING", "COMPLETED": "READY", "FAILED": "FAILED"}),
            "at check: the server says 'PROCESSING', which check.states does not map (it maps 'PENDING', "
            "'COMPLETED', 'FAILED'): add it",
            id="a-status-not-mapped",
        ),
        pytest.param(
            _change("check", states={"pending": "PENDING", "processing": "RUNNING", "completed": "READY"}),
            "check.states is case_sensitive, and the server writes it otherwise",
            id="a-status-in-the-wrong-case",
        ),
        pytest.param(
            _change("submit", id={"json": "id"}),
            "at submit: submit.id says the id is at 'id', which the answer of POST /reporting/reports does "
            "not have (its fields: ",
            id="the-id-at-the-wrong-path",
        ),
        pytest.param(
            _change("submit", path="/reporting/report"),
            "at submit: POST /reporting/report answered 404: the server has no such call; check submit.path "
            "and submit.method ('POST /reporting/report')",
            id="a-wrong-submit-path",
        ),
        pytest.param(
            _change("submit", content_type="application/json"),
            "at submit: POST /reporting/reports answered 415: the server does not take submit.content_type "
            "'application/json'",
            id="a-wrong-content-type",
        ),
        pytest.param(
            _change("check", download_url="location"),
            "at check: check.download_url reads 'location', which the ready answer does not have",
            id="the-link-at-the-wrong-path",
        ),
    ],
)  # fmt: skip
def test_a_deliberately_wrong_spec_is_told_where_it_and_the_server_disagree(
    tmp_path, ads_sim, ads_secrets, change, words
) -> None:
    # given the Amazon Ads spec with one thing wrong
    spec = copy.deepcopy(ADS_SPEC)
    change(spec)
    # when it is checked against the server
    code, lines = vendor_check(tmp_path, spec, ads_connection(ads_sim), ADS_REQUEST)
    # then it exits 1, and its last line names the step, the part of the spec, and what the server said
    assert code == EXIT_DISAGREE, lines
    assert lines[-1].startswith("DISAGREE  at "), lines
    assert words in lines[-1], lines[-1]


def test_a_made_up_vendor_whose_location_the_pattern_misses_is_told_so(tmp_path) -> None:
    # given a plain-text vendor, and a spec whose id pattern expects /jobs/ where the server says /exports/
    spec = copy.deepcopy(ACME_SPEC)
    spec["submit"]["id"] = {"header": "Location", "pattern": "/jobs/([^/]+)$"}
    with PlaintextExports() as server:
        connection = {
            "provider": "acme_exports",
            "base_url": server.base_url,
            "auth": {"type": "header", "header": "X-Api-Key", "value": {"env": "TEST_PLAIN_KEY"}},
        }
        with pytest.MonkeyPatch.context() as monkeypatch:
            monkeypatch.setenv("TEST_PLAIN_KEY", "plain-key")
            request = {"connection": "x", "report": {"dataset": "orders"}, "format": "csv"}
            code, lines = vendor_check(tmp_path, spec, connection, request)
            (export_id,) = server.exports
    # then the disagreement quotes the header the server sent and the pattern that missed it
    assert code == EXIT_DISAGREE
    assert "sign in   ok: header, sent with every call (no sign-in call)" in lines
    assert lines[-1] == (
        f"DISAGREE  at submit: the Location header is '/exports/{export_id}', which submit.id.pattern "
        "'/jobs/([^/]+)$' does not match"
    )


def test_a_made_up_vendor_that_matches_agrees_with_a_text_status(tmp_path) -> None:
    # given the plain-text vendor and its right spec
    with PlaintextExports() as server, pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("TEST_PLAIN_KEY", "plain-key")
        connection = {
            "provider": "acme_exports",
            "base_url": server.base_url,
            "auth": {"type": "header", "header": "X-Api-Key", "value": {"env": "TEST_PLAIN_KEY"}},
        }
        request = {"connection": "x", "report": {"dataset": "orders"}, "format": "csv"}
        code, lines = vendor_check(tmp_path, ACME_SPEC, connection, request)
    # then the text status is quoted as the server wrote it, and they agree
    assert code == EXIT_AGREE, lines
    assert "check     RUNNING (the server said 'working (42%)')" in lines
    assert "check     READY (the server said 'done')" in lines
    assert lines[-1].startswith("AGREE ")


def test_a_spec_that_cannot_be_loaded_is_bad_input_naming_the_file_and_field(tmp_path, ads_sim) -> None:
    # given a spec whose submit method is not an HTTP method
    spec = copy.deepcopy(ADS_SPEC)
    spec["submit"]["method"] = "SEND"
    # when it is checked, then it is bad input naming the file and the field, before any call
    with pytest.raises(BadInput, match=r"spec\.json: submit\.method: Input should be 'GET'"):
        vendor_check(tmp_path, spec, ads_connection(ads_sim), ADS_REQUEST)
    assert ads_sim.request_log == []


def test_a_request_the_spec_refuses_is_bad_input_before_any_call(tmp_path, ads_sim, ads_secrets) -> None:
    request = {**ADS_REQUEST, "format": "csv"}
    with pytest.raises(BadInput, match="the request does not suit the spec: "):
        vendor_check(tmp_path, ADS_SPEC, ads_connection(ads_sim), request)
    assert ads_sim.request_log == []


def test_a_report_that_fails_at_the_vendor_is_read_and_said_so(tmp_path, ads_sim, ads_secrets) -> None:
    # given a server that fails every report
    ads_sim.fail_reports = "Report generation failed due to an internal error"
    # when the spec is checked, then the failure is read from the spec's message field, and it exits 1
    code, lines = vendor_check(tmp_path, ADS_SPEC, ads_connection(ads_sim), ADS_REQUEST)
    assert code == EXIT_DISAGREE
    assert "check     FAILED (the server said 'FAILED')" in lines
    assert lines[-1].startswith(
        "DISAGREE  at check: the server reports the report failed: Amazon Ads report "
    )
    assert lines[-1].endswith(
        "failed: Report generation failed due to an internal error; "
        "the spec read it, but no file came of this job"
    )


def test_a_report_not_ready_in_time_is_cancelled_at_the_vendor(tmp_path, ads_sim, ads_secrets) -> None:
    # given a report that takes far longer than the check waits
    ads_sim.generation_seconds = 600
    # when the spec is checked with a one-second timeout
    code, lines = vendor_check(tmp_path, ADS_SPEC, ads_connection(ads_sim), ADS_REQUEST, timeout=1)
    # then it says how far it got, and the report was cancelled at the vendor (the spec's cancel call)
    assert code == EXIT_DISAGREE
    assert lines[-1].startswith("DISAGREE  at check: still PENDING after ")
    assert lines[-1].endswith("the spec and the server agree so far; the report was cancelled at the vendor")
    assert ads_sim.reports == {} and len(ads_sim.deleted) == 1
