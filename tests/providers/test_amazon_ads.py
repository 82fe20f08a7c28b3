"""Amazon Ads reporting v3, run from its provider spec by the declarative provider, against the simulator
over real HTTP: the API on one port, the presigned file links on another."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from infra.constants import REPO_ROOT
from reportrelay.config import Connections, JobRequest, SecretResolver
from reportrelay.errors import BadRequest, ConfigurationError, ProviderProtocolError, ProviderRejected
from reportrelay.providers import open_provider, provider_class
from reportrelay.providers.base import ReportState
from reportrelay.providers.declarative import DeclarativeProvider
from reportrelay_cli.sandbox.amazon_ads import CREATE_TYPE, AmazonAdsSimulator
from tests.clock import SkippingClock

CLIENT_ID = "amzn1.application-oa2-client.test0001"
CLIENT_SECRET = "ads-client-Secret-5b1e"
REFRESH_TOKEN = "Atzr|ads-refresh-Token-77c2"
PROFILE = "3141592653"
SECRETS = {"TEST_ADS_CLIENT_SECRET": CLIENT_SECRET, "TEST_ADS_REFRESH_TOKEN": REFRESH_TOKEN}
API_HEADERS = ("Authorization", "Amazon-Advertising-API-ClientId", "Amazon-Advertising-API-Scope", "Cookie")


@pytest.fixture
def ads_sim(vendor_clock: SkippingClock) -> Iterator[AmazonAdsSimulator]:
    with AmazonAdsSimulator(
        clock=vendor_clock,
        clients={CLIENT_ID: CLIENT_SECRET},
        refresh_tokens=[REFRESH_TOKEN],
        profiles=[PROFILE],
        generation_seconds=0.4,
        rows=30,
    ) as simulator:
        yield simulator


def ads_connection(simulator: AmazonAdsSimulator, **overrides: Any) -> dict[str, Any]:
    """A connection to the simulator; its file host is allowed as a redirect host (no credentials)."""
    body = {
        "provider": "amazon_ads",
        "base_url": simulator.base_url,
        "profile_id": PROFILE,
        "redirect_hosts": [simulator.storage.base_url.removeprefix("http://")],
        "auth": {
            "type": "oauth_refresh_token",
            "token_url": f"{simulator.base_url}/auth/o2/token",
            "client_id": CLIENT_ID,
            "client_secret": {"env": "TEST_ADS_CLIENT_SECRET"},
            "refresh_token": {"env": "TEST_ADS_REFRESH_TOKEN"},
        },
        "poll": {"initial_seconds": 1, "max_seconds": 2},
    }
    body.update(overrides)
    return body


def provider_for(connection: dict[str, Any]) -> DeclarativeProvider:
    connections = Connections.from_document({"connections": {"ads": connection}})
    provider = open_provider(connections.get("ads"), SecretResolver(environ=SECRETS))
    assert isinstance(provider, DeclarativeProvider)
    return provider


@pytest.fixture
def provider(ads_sim: AmazonAdsSimulator) -> DeclarativeProvider:
    return provider_for(ads_connection(ads_sim))


def request(**overrides: Any) -> JobRequest:
    body: dict[str, Any] = {
        "connection": "ads",
        "report": {
            "reportTypeId": "spCampaigns",
            "adProduct": "SPONSORED_PRODUCTS",
            "groupBy": ["campaign"],
            "columns": ["campaignId", "impressions", "clicks", "cost", "startDate", "endDate"],
            "timeUnit": "SUMMARY",
        },
        "format": "gzip_json",
        "parameters": {"startDate": "2026-11-01", "endDate": "2026-11-07"},
    }
    body.update(overrides)
    return JobRequest.model_validate(body)


def ready(provider: DeclarativeProvider, simulator: AmazonAdsSimulator, job: JobRequest) -> dict[str, Any]:
    """Queue the report, wait out its generation, and return the handle with the link the status gave."""
    submitted = provider.submit(job)
    simulator.clock.advance(simulator.generation_seconds)
    status = provider.check(job, submitted.handle)
    assert status.state is ReportState.READY, status
    return {**submitted.handle, **(status.handle or {})}


def download(provider: DeclarativeProvider, job: JobRequest, handle: dict[str, Any]) -> tuple[Any, bytes]:
    with provider.open_result(job, handle) as result:
        return result, b"".join(result.chunks)


def test_the_registry_runs_amazon_ads_from_its_spec_with_no_python_of_its_own() -> None:
    # given the provider registry
    cls = provider_class("amazon_ads")
    # then the class is the declarative provider made from the packaged spec, sealing the status's link
    assert issubclass(cls, DeclarativeProvider) and cls.key == "amazon_ads"
    assert cls.spec.title == "Amazon Ads"
    assert cls.sealed_handle_fields == frozenset({"download_url"})


def test_a_report_is_queued_with_the_documented_body_and_headers(ads_sim, provider) -> None:
    # given a campaign report request with a filter
    job = request(
        report={
            **request().report,
            "filters": [{"field": "campaignStatus", "values": ["ENABLED", "PAUSED"]}],
            "name": "Weekly SP campaigns",
        }
    )
    # when it is submitted
    status = provider.submit(job)
    # then the vendor's reportId is the handle, and the report waits at Amazon
    assert status.state is ReportState.PENDING
    (report_id,) = ads_sim.reports
    assert status.handle == {"id": report_id}
    # and the body is the CreateAsyncReportRequest the documents describe, lists kept as lists
    body = ads_sim.reports[report_id]["_body"]
    assert body == {
        "name": "Weekly SP campaigns",
        "startDate": "2026-11-01",
        "endDate": "2026-11-07",
        "configuration": {
            "adProduct": "SPONSORED_PRODUCTS",
            "reportTypeId": "spCampaigns",
            "groupBy": ["campaign"],
            "columns": ["campaignId", "impressions", "clicks", "cost", "startDate", "endDate"],
            "filters": [{"field": "campaignStatus", "values": ["ENABLED", "PAUSED"]}],
            "timeUnit": "SUMMARY",
            "format": "GZIP_JSON",
        },
    }
    # and the call carried the v3 media type, the client id, the profile and a Login with Amazon token
    (create,) = ads_sim.calls("POST", "/reporting/reports")
    assert create.headers["Content-Type"] == CREATE_TYPE
    assert create.headers["Amazon-Advertising-API-ClientId"] == CLIENT_ID
    assert create.headers["Amazon-Advertising-API-Scope"] == PROFILE
    assert create.headers["Authorization"].startswith("Bearer Atza|")


def test_an_optional_field_left_out_is_left_out_of_the_body(ads_sim, provider) -> None:
    # given a request without a name or filters
    provider.submit(request())
    # then the body has no name and no filters key (rather than nulls Amazon might refuse)
    (report,) = ads_sim.reports.values()
    assert "name" not in report["_body"]
    assert "filters" not in report["_body"]["configuration"]


def test_the_documented_statuses_are_read_until_the_report_is_completed(ads_sim, provider, vendor_clock):
    # given a report that takes a second to generate
    ads_sim.generation_seconds = 1.0
    job = request()
    submitted = provider.submit(job)
    # when its status is checked early, midway and after generation
    seen = [provider.check(job, submitted.handle).state]
    vendor_clock.advance(0.5)
    seen.append(provider.check(job, submitted.handle).state)
    vendor_clock.advance(0.5)
    done = provider.check(job, submitted.handle)
    # then PENDING, PROCESSING and COMPLETED read as pending, running and ready
    assert seen == [ReportState.PENDING, ReportState.RUNNING]
    assert done.state is ReportState.READY
    # and the ready status carries the link and when it expires (about an hour away)
    assert done.handle is not None
    assert done.handle["download_url"].startswith(ads_sim.storage.base_url + "/")
    assert 3500 < done.handle["download_url_expires_at"] - vendor_clock() <= 3600


def test_the_file_is_the_served_gzip_json_fetched_without_any_of_our_credentials(ads_sim, provider) -> None:
    # given a completed report
    job = request()
    handle = ready(provider, ads_sim, job)
    # when its file is downloaded
    result, content = download(provider, job, handle)
    # then the bytes are exactly those the file host served, under the spec's name and content type
    assert hashlib.sha256(content).hexdigest() == ads_sim.served[handle["id"]]
    assert result.filename == f"spCampaigns-{handle['id']}.json.gz"
    assert result.content_type == "application/gzip"
    assert result.content_length == len(content)
    # and the file is gzip JSON with a row of the requested columns per campaign
    rows = json.loads(gzip.decompress(content))
    assert len(rows) == 30 and set(rows[0]) == set(job.report["columns"])
    # and the file host, another origin, saw no token, client id, profile or cookie
    assert ads_sim.storage.credentials_seen == 0
    (get,) = ads_sim.storage.request_log
    assert not set(get.headers) & set(API_HEADERS)


def test_a_link_that_has_expired_is_replaced_by_a_fresh_one_from_the_status(ads_sim, provider) -> None:
    # given a completed report whose link stops working before the download (the file host says 403)
    job = request()
    handle = ready(provider, ads_sim, job)
    ads_sim.expire_links()
    checks_before = len(ads_sim.calls("GET", "/reporting/reports/{id}"))
    # when the file is downloaded
    _, content = download(provider, job, handle)
    # then the refused link was followed by one more status check and a download with the fresh link
    assert hashlib.sha256(content).hexdigest() == ads_sim.served[handle["id"]]
    assert len(ads_sim.calls("GET", "/reporting/reports/{id}")) == checks_before + 1
    gets = ads_sim.storage.request_log
    assert len(gets) == 2 and gets[0].query["X-Amz-Signature"] != gets[1].query["X-Amz-Signature"]


def test_a_link_about_to_expire_is_not_used(ads_sim, provider) -> None:
    # given links that live 30 seconds, less than the margin a download is given
    ads_sim.url_lifetime_seconds = 30
    job = request()
    handle = ready(provider, ads_sim, job)
    checks_before = len(ads_sim.calls("GET", "/reporting/reports/{id}"))
    # when the file is downloaded
    download(provider, job, handle)
    # then the status was checked for a fresh link first, and the file host was asked once, successfully
    assert len(ads_sim.calls("GET", "/reporting/reports/{id}")) == checks_before + 1
    assert len(ads_sim.storage.request_log) == 1


def test_a_link_to_a_host_neither_the_spec_nor_the_connection_names_is_refused(ads_sim) -> None:
    # given a connection that does not list the file host (loopback is no *.amazonaws.com)
    provider = provider_for(ads_connection(ads_sim, redirect_hosts=[]))
    job = request()
    handle = ready(provider, ads_sim, job)
    # when the file is downloaded, then it is refused, saying where to allow the host, and nothing is fetched
    with pytest.raises(ProviderProtocolError, match="redirect_hosts") as refused:
        download(provider, job, handle)
    assert "download.hosts" in str(refused.value)
    assert ads_sim.storage.request_log == []


def test_a_failed_report_carries_amazons_failure_reason(ads_sim, provider, vendor_clock) -> None:
    # given reports that fail to generate
    ads_sim.fail_reports = "Report generation failed due to an internal error. Please retry."
    job = request()
    submitted = provider.submit(job)
    vendor_clock.advance(ads_sim.generation_seconds)
    # when the status is checked
    status = provider.check(job, submitted.handle)
    # then it failed, in Amazon's words, naming the report
    assert status.state is ReportState.FAILED
    assert status.message == (
        f"Amazon Ads report {submitted.handle['id']} failed: "
        "Report generation failed due to an internal error. Please retry."
    )


def test_a_duplicate_request_is_refused_in_amazons_words(ads_sim, provider) -> None:
    # given a report being generated
    ads_sim.generation_seconds = 30
    first = provider.submit(request())
    # when the same report is asked for again, then Amazon's 425 and its detail say which report it duplicates
    with pytest.raises(ProviderRejected) as refused:
        provider.submit(request())
    message = str(refused.value)
    assert "POST /reporting/reports answered HTTP 425" in message
    assert f"[425] The Request is a duplicate of : {first.handle['id']}" in message


def test_a_token_revoked_mid_job_is_renewed_from_the_refresh_token(ads_sim, provider) -> None:
    # given a queued report, and then every token revoked
    job = request()
    submitted = provider.submit(job)
    ads_sim.revoke_tokens()
    # when the status is checked, then the 401 led to a new sign-in and the check succeeded
    assert provider.check(job, submitted.handle).state in (ReportState.PENDING, ReportState.RUNNING)
    assert ads_sim.tokens_issued == 2 and ads_sim.tokens_refused == 1


def test_a_pending_report_is_cancelled_and_a_finished_one_is_not(ads_sim, provider) -> None:
    # given one report still pending
    ads_sim.generation_seconds = 30
    job = request()
    pending = provider.submit(job)
    # when it is cancelled, then Amazon deleted it
    assert provider.cancel(job, pending.handle) is True
    assert pending.handle["id"] in ads_sim.deleted
    # given another that has completed, when it is cancelled, then Amazon refuses and nothing was cancelled
    ads_sim.generation_seconds = 0.1
    other = request(parameters={"startDate": "2026-11-08", "endDate": "2026-11-09"})
    handle = ready(provider, ads_sim, other)
    assert provider.cancel(other, handle) is False
    assert handle["id"] in ads_sim.reports


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        pytest.param({"format": "csv"}, "request.format: 'csv' is not available for Amazon Ads reports",
                     id="unknown-format"),
        pytest.param({"report": {**request().report, "timeUnit": "WEEKLY"}},
                     "request.report.timeUnit: Input should be 'SUMMARY' or 'DAILY'", id="bad-time-unit"),
        pytest.param({"report": {**request().report, "columns": []}},
                     "request.report.columns: List should have at least 1 item", id="no-columns"),
        pytest.param({"report": {**request().report, "colums": ["x"]}},
                     "request.report.colums: Extra inputs are not permitted", id="misspelt-field"),
        pytest.param({"parameters": {"startDate": "1 Nov 2026", "endDate": "2026-11-07"}},
                     "request.parameters.startDate: String should match pattern", id="bad-date"),
        pytest.param({"parameters": {"startDate": "2026-11-01"}},
                     "request.parameters.endDate: Field required", id="missing-end-date"),
    ],
)  # fmt: skip
def test_a_request_the_spec_does_not_allow_is_refused_before_anything_is_sent(ads_sim, overrides, words):
    # given a request that breaks the spec's request rules
    job = request(**overrides)
    # when it is validated, then it is refused naming the field, and Amazon heard nothing
    with pytest.raises(BadRequest, match=r"^request\.") as refused:
        provider_class("amazon_ads").validate(job)
    assert words in str(refused.value)
    assert ads_sim.request_log == []


def test_a_connection_without_a_profile_or_with_another_sign_in_is_refused(ads_sim) -> None:
    # given connections missing the profile id, signing in another way, or without the client id
    no_profile = {key: value for key, value in ads_connection(ads_sim).items() if key != "profile_id"}
    bearer = ads_connection(ads_sim, auth={"type": "bearer", "token": {"env": "TEST_ADS_REFRESH_TOKEN"}})
    no_client = ads_connection(ads_sim)
    no_client["auth"] = {key: value for key, value in no_client["auth"].items() if key != "client_id"}
    # then each is a configuration error naming what is wrong
    with pytest.raises(ConfigurationError, match=r"connections\.ads\.profile_id: Field required"):
        provider_for(no_profile)
    with pytest.raises(ConfigurationError, match="Amazon Ads takes oauth_refresh_token, not 'bearer'"):
        provider_for(bearer)
    with pytest.raises(ConfigurationError, match="Amazon Ads needs client_id"):
        provider_for(no_client)


def test_the_examples_are_a_valid_connection_and_request() -> None:
    # given the example connections (a real account's shape, and the sandbox's) and the demo's request
    examples = REPO_ROOT / "examples"
    document = json.loads((examples / "amazon_ads-connections.json").read_text(encoding="utf-8"))
    account = Connections.from_document(document).get("acme-ads")
    sandbox = Connections.from_file(examples / "connections.json").get("sandbox-amazon_ads")
    job = JobRequest.model_validate(
        json.loads((examples / "amazon_ads-report.json").read_text(encoding="utf-8"))
    )
    # then both connections suit the spec, and the request is one the spec accepts, on the sandbox's
    for connection in (account, sandbox):
        cls = provider_class(connection.provider)
        assert cls.parse_settings(connection).profile_id == "1234567890"  # type: ignore[attr-defined]
    cls.validate(job)
    assert job.connection == "sandbox-amazon_ads"
