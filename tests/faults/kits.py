"""One kit per vendor of the registry (reportrelay.vendors): a simulator signed in with recognisable
secrets, its connection, a request, and where its submit, status and download calls go (so a fault can be
aimed at one of them). ``KITS`` follows the registry; a vendor without a kit here is an error naming it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reportrelay.vendors import VENDORS
from reportrelay_cli.sandbox.amazon_ads import BUCKET_PATH, DEFAULT_PROFILE, AmazonAdsSimulator
from reportrelay_cli.sandbox.clinical_one import DEFAULT_STUDY_ID, SUBJECT_DATA_EXTRACT, ClinicalOneSimulator
from reportrelay_cli.sandbox.devexpress import DevExpressSimulator
from reportrelay_cli.sandbox.metric_insights import MetricInsightsSimulator
from reportrelay_cli.sandbox.myreports import DEFAULT_REPORT, DEFAULT_WORKSPACE, MyReportsSimulator
from reportrelay_cli.sandbox.server import Simulator
from reportrelay_cli.sandbox.torus import API_USER, TorusSimulator

#: Every secret value in the matrix starts with this, so one search finds any of them anywhere.
SECRET_MARK = "RRSECRET"
#: What a fresh simulator of each kind uses for generation; small, so the matrix stays fast.
GENERATION_SECONDS = 0.3


def secret(provider: str, field: str) -> str:
    return f"{SECRET_MARK}-{provider}-{field}-9qZt"


def env_name(case_id: str, field: str) -> str:
    return f"FAULTS_{case_id.upper().replace('-', '_')}_{field.upper()}"


@dataclass(frozen=True)
class Kit:
    provider: str
    make_simulator: Callable[[], Simulator]
    #: (simulator, case id) -> connection body (secrets as env references) and {env name: value}
    connection: Callable[[Simulator, str], tuple[dict[str, Any], dict[str, str]]]
    report: dict[str, Any]
    format: str
    submit_path: str  # regexes (re.search) of the paths of each phase
    poll_path: str
    download_path: str
    #: How many reports the simulator has queued (runs started by the client, not seeded ones).
    queued: Callable[[Any], int]
    cancel_statuses: bool  # the vendor has a cancelled status
    renewable_tokens: bool  # the client can sign in again when a token expires
    restarts_on_lost_result: bool = False  # single-use result: a lost download means a new report
    submit_is_read_only: bool = False  # its submit calls are GETs: a failed one is retried without risk
    #: A report the provider's validation refuses (an invalid id or date), and words of the refusal.
    bad_report: tuple[dict[str, Any], str] = ({}, "")
    #: The request's ``parameters``, for a vendor that requires some.
    parameters: dict[str, Any] = field(default_factory=dict)

    def request(self, connection: str) -> dict[str, Any]:
        """A job request for the kit's report on ``connection``, with the parameters its vendor requires."""
        request = {"connection": connection, "report": self.report, "format": self.format}
        return {**request, "parameters": self.parameters} if self.parameters else request


def _dx_connection(sim: Any, case_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    password = env_name(case_id, "password")
    body = {
        "provider": "devexpress",
        "base_url": sim.base_url,
        "auth": {"type": "oauth_password", "username": "api", "password": {"env": password}},
    }
    return body, {password: secret("devexpress", "password")}


def _torus_connection(sim: Any, case_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    token = env_name(case_id, "token")
    body = {
        "provider": "torus",
        "base_url": sim.base_url,
        "tenant_id": 69,
        "auth": {"type": "bearer", "token": {"env": token}},
    }
    return body, {token: secret("torus", "token")}


def _mi_connection(sim: Any, case_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    key = env_name(case_id, "app_key")
    body = {
        "provider": "metric_insights",
        "base_url": sim.base_url,
        "auth": {
            "type": "app_token",
            "application_id": "reportrelay",
            "application_key": {"env": key},
            "user": "api",
        },
    }
    return body, {key: secret("metric_insights", "app_key")}


def _c1_connection(sim: Any, case_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    password, client_secret = env_name(case_id, "password"), env_name(case_id, "client_secret")
    body = {
        "provider": "clinical_one",
        "base_url": sim.base_url,
        "auth": {
            "type": "oauth_password",
            "token_url": f"{sim.base_url}/oauth2/v1/token",
            "client_id": "reportrelay",
            "client_secret": {"env": client_secret},
            "client_auth": "basic",
            "username": "api",
            "password": {"env": password},
        },
    }
    values = {password: secret("clinical_one", "password"), client_secret: secret("clinical_one", "client")}
    return body, values


def _mr_connection(sim: Any, case_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    client_secret, refresh = env_name(case_id, "client_secret"), env_name(case_id, "refresh_token")
    body = {
        "provider": "myreports",
        "base_url": sim.base_url,
        "auth": {
            "type": "oauth_refresh_token",
            "token_url": f"{sim.base_url}/connect/token",
            "client_id": "reportrelay",
            "client_secret": {"env": client_secret},
            "refresh_token": {"env": refresh},
        },
    }
    values = {client_secret: secret("myreports", "client"), refresh: secret("myreports", "refresh")}
    return body, values


def _ads_connection(sim: Any, case_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    client_secret, refresh = env_name(case_id, "client_secret"), env_name(case_id, "refresh_token")
    body = {
        "provider": "amazon_ads",
        "base_url": sim.base_url,
        "profile_id": DEFAULT_PROFILE,
        "redirect_hosts": [sim.storage.base_url.removeprefix("http://")],  # the file host's origin
        "auth": {
            "type": "oauth_refresh_token",
            "token_url": f"{sim.base_url}/auth/o2/token",
            "client_id": ADS_CLIENT_ID,
            "client_secret": {"env": client_secret},
            "refresh_token": {"env": refresh},
        },
    }
    values = {client_secret: secret("amazon_ads", "client"), refresh: secret("amazon_ads", "refresh")}
    return body, values


ADS_CLIENT_ID = "amzn1.application-oa2-client.faults"
ADS_REPORT: dict[str, Any] = {
    "reportTypeId": "spCampaigns",
    "adProduct": "SPONSORED_PRODUCTS",
    "groupBy": ["campaign"],
    "columns": ["date", "campaignId", "impressions", "clicks", "cost"],
    "timeUnit": "DAILY",
}

_KITS: dict[str, Kit] = {
    "devexpress": Kit(
        provider="devexpress",
        make_simulator=lambda: DevExpressSimulator(
            users={"api": secret("devexpress", "password")}, generation_seconds=GENERATION_SECONDS
        ),
        connection=_dx_connection,
        report={"document_id": 10},
        format="pdf",
        submit_path=r"/export/report/",
        poll_path=r"/export/status/",
        download_path=r"/export/result/",
        queued=lambda sim: len(sim.exports),
        cancel_statuses=False,
        renewable_tokens=True,
        bad_report=({"document_id": "ten"}, "request.report.document_id: Input should be a valid integer"),
    ),
    "torus": Kit(
        provider="torus",
        make_simulator=lambda: TorusSimulator(
            tokens={secret("torus", "token"): API_USER}, generation_seconds=GENERATION_SECONDS
        ),
        connection=_torus_connection,
        report={"name": "MI_Report"},
        format="xlsx",
        submit_path=r"/queuefordownload$",
        poll_path=r"/report/queue/list/get$",
        download_path=r"/file/download/report/",
        queued=lambda sim: len(sim.queued),
        cancel_statuses=True,
        renewable_tokens=False,  # a static bearer token: nothing to sign in with again
        bad_report=({"report_id": "x"}, "request.report.report_id: Input should be a valid integer"),
    ),
    "metric_insights": Kit(
        provider="metric_insights",
        make_simulator=lambda: MetricInsightsSimulator(
            applications={"reportrelay": secret("metric_insights", "app_key")},
            api_tokens={},
            generation_seconds=GENERATION_SECONDS,
        ),
        connection=_mi_connection,
        report={"element_id": 1042, "dimension_id": 0},
        format="pdf",
        submit_path=r"/state/(formats|init)$",
        poll_path=r"/state/check$",
        download_path=r"/state/get$",
        queued=lambda sim: sum(1 for session in sim.session_list() if session.run_calls),  # run generates
        cancel_statuses=False,
        renewable_tokens=True,
        restarts_on_lost_result=True,
        submit_is_read_only=True,
        bad_report=(
            {"element_id": "abc", "dimension_id": 0},
            "request.report.element_id: Input should be a valid integer",
        ),
    ),
    "clinical_one": Kit(
        provider="clinical_one",
        make_simulator=lambda: ClinicalOneSimulator(
            users={"api": secret("clinical_one", "password")},
            clients={"reportrelay": secret("clinical_one", "client")},
            generation_seconds=GENERATION_SECONDS,
        ),
        connection=_c1_connection,
        report={"report_id": SUBJECT_DATA_EXTRACT, "study_id": DEFAULT_STUDY_ID, "mode": "active"},
        format="csv",
        submit_path=r"/v1\.0/reports$",
        poll_path=r"/downloadList$",
        download_path=r"/reports/download$",
        queued=lambda sim: len(sim.started_runs),
        cancel_statuses=True,
        renewable_tokens=True,
        bad_report=(
            {"report_id": "not-hex", "study_id": DEFAULT_STUDY_ID, "mode": "active"},
            "request.report.report_id: String should match pattern",
        ),
    ),
    "myreports": Kit(
        provider="myreports",
        make_simulator=lambda: MyReportsSimulator(
            clients={"reportrelay": secret("myreports", "client")},
            refresh_tokens=[secret("myreports", "refresh")],
            generation_seconds=GENERATION_SECONDS,
        ),
        connection=_mr_connection,
        report={
            "workspace_id": DEFAULT_WORKSPACE,
            "report_id": DEFAULT_REPORT,
            "date_filter": {"preset": "ThisQuarter"},
        },
        format="json",
        submit_path=r"/requests$",
        poll_path=r"/(results|requests)/[^/]+$",
        download_path=r"/data$",
        queued=lambda sim: len(sim.requests),
        cancel_statuses=True,
        renewable_tokens=True,
        bad_report=(
            {
                "workspace_id": DEFAULT_WORKSPACE,
                "report_id": DEFAULT_REPORT,
                "date_filter": {"start": "2025-13-45", "end": "2025-01-01"},
            },
            "'2025-13-45' is not an ISO 8601 date",
        ),
    ),
    "amazon_ads": Kit(
        provider="amazon_ads",
        make_simulator=lambda: AmazonAdsSimulator(
            clients={ADS_CLIENT_ID: secret("amazon_ads", "client")},
            refresh_tokens=[secret("amazon_ads", "refresh")],
            profiles=[DEFAULT_PROFILE],
            generation_seconds=GENERATION_SECONDS,
        ),
        connection=_ads_connection,
        report=ADS_REPORT,
        parameters={"startDate": "2026-11-01", "endDate": "2026-11-30"},
        format="gzip_json",
        submit_path=r"^/reporting/reports$",
        poll_path=r"^/reporting/reports/[^/]+$",
        download_path=rf"^{BUCKET_PATH}/",  # on the file host, which shares the API's fault knobs
        queued=lambda sim: len(sim.reports),
        cancel_statuses=False,  # PENDING, PROCESSING, COMPLETED, FAILED: no cancelled status
        renewable_tokens=True,
        bad_report=(
            {**ADS_REPORT, "adProduct": "SPONSORED_RADIO"},
            "request.report.adProduct: Input should be",
        ),
    ),
}


def _by_registry() -> dict[str, Kit]:
    missing = [vendor.key for vendor in VENDORS if vendor.key not in _KITS]
    if missing:
        raise LookupError(f"no fault-matrix kit for {', '.join(missing)}: add one to tests/faults/kits.py")
    return {vendor.key: _KITS[vendor.key] for vendor in VENDORS}


#: The kits, in the registry's order.
KITS: dict[str, Kit] = _by_registry()
