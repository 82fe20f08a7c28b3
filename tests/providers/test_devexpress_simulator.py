"""The DevExpress simulator over real HTTP: the seed document's flow plus the shared fault knobs."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from reportrelay_cli.sandbox.devexpress import DevExpressSimulator
from reportrelay_cli.sandbox.server import run_simulators
from tests.clock import SkippingClock

EXPORT_SALES = "/api/documents/export/report/10"
PDF = {"exportOptions": {"exportFormat": "pdf"}, "documentParameters": [{"name": "year", "value": 2024}]}


@pytest.fixture
def sim(vendor_clock: SkippingClock) -> Iterator[DevExpressSimulator]:
    with DevExpressSimulator(clock=vendor_clock, generation_seconds=0.5, report_size=4096) as simulator:
        yield simulator


def sign_in(sim: DevExpressSimulator, username: str = "api", password: str = "sandbox-password") -> str:
    answer = requests.post(
        f"{sim.base_url}/oauth/token",
        data={"grant_type": "password", "username": username, "password": password},
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


def api(
    sim: DevExpressSimulator, method: str, path: str, token: str | None, **kwargs: Any
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, f"{sim.base_url}{path}", headers=headers, timeout=5, **kwargs)


def queue_export(sim: DevExpressSimulator, token: str, body: dict = PDF) -> str:
    answer = api(sim, "POST", EXPORT_SALES, token, json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["exportId"]


def test_password_and_guest_accounts_get_bearer_tokens(sim: DevExpressSimulator) -> None:
    # given the default account and the guest account with a blank password (19.1.5+)
    # when each asks for a token with the password grant
    answer = requests.post(
        f"{sim.base_url}/oauth/token",
        data={"grant_type": "password", "username": "api", "password": "sandbox-password"},
        timeout=5,
    )
    guest = sign_in(sim, "guest", "")

    # then both get the seed's token shape
    body = answer.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 1199 and body["access_token"]
    assert guest != body["access_token"]
    assert sim.tokens_issued == 2


def test_bad_credentials_and_other_grants_are_oauth_errors(sim: DevExpressSimulator) -> None:
    # given a wrong password and a grant type the server does not support
    url = f"{sim.base_url}/oauth/token"
    # when they ask for tokens
    wrong_password = requests.post(
        url, data={"grant_type": "password", "username": "api", "password": "nope"}, timeout=5
    )
    other_grant = requests.post(url, data={"grant_type": "client_credentials"}, timeout=5)
    # then both are OAuth2 400 errors
    assert wrong_password.status_code == 400 and wrong_password.json()["error"] == "invalid_grant"
    assert other_grant.status_code == 400 and other_grant.json()["error"] == "unsupported_grant_type"


def test_api_needs_a_live_token(sim: DevExpressSimulator) -> None:
    # given no token at all
    # when the API is called
    missing = api(sim, "POST", EXPORT_SALES, None, json=PDF)
    # then it is refused
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")

    # given a token that worked, then was revoked as if it expired mid-job
    token = sign_in(sim)
    assert api(sim, "POST", EXPORT_SALES, token, json=PDF).status_code == 200
    sim.revoke_tokens()
    # when it is used again
    revoked = api(sim, "POST", EXPORT_SALES, token, json=PDF)
    # then the server says the token is invalid, and a fresh one works
    assert revoked.status_code == 401
    assert revoked.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert api(sim, "POST", EXPORT_SALES, sign_in(sim), json=PDF).status_code == 200


def test_token_expires_after_its_lifetime(sim: DevExpressSimulator, vendor_clock: SkippingClock) -> None:
    # given tokens that live 1,199 seconds, as the vendor's do
    sim.token_lifetime_seconds = 1199
    token = sign_in(sim)
    # when one is used after that
    vendor_clock.advance(1199)
    # then it is refused
    assert api(sim, "POST", EXPORT_SALES, token, json=PDF).status_code == 401


def test_report_export_runs_from_queue_to_download(
    sim: DevExpressSimulator, vendor_clock: SkippingClock
) -> None:
    # given a signed-in client that queued a PDF export of report 10
    token = sign_in(sim)
    export_id = queue_export(sim, token)
    status_path = f"/api/documents/export/status/{export_id}"
    result_path = f"/api/documents/export/result/{export_id}"

    # when it polls and downloads before and after generation
    early_status = api(sim, "GET", status_path, token).json()
    early_result = api(sim, "GET", result_path, token)
    vendor_clock.advance(0.5)
    late_status = api(sim, "GET", status_path, token).json()
    result = api(sim, "GET", result_path, token)
    again = api(sim, "GET", result_path, token)

    # then the task goes InProgress -> Complete and the file is the one the simulator recorded
    assert len(export_id) == 32 and export_id == export_id.lower()
    assert early_status == {"taskStatus": "InProgress"}
    assert early_result.status_code == 400 and "not complete" in early_result.json()["Message"]
    assert late_status == {"taskStatus": "Complete"}
    assert result.status_code == 200
    assert result.headers["Content-Type"] == "application/pdf"
    assert result.headers["Content-Disposition"] == 'attachment; filename="Sales.pdf"'
    assert int(result.headers["Content-Length"]) == len(result.content) == 4096
    assert result.content.startswith(b"%PDF-1.7\n")
    assert hashlib.sha256(result.content).hexdigest() == sim.served[export_id]
    assert again.content == result.content
    assert sim.exports[export_id]["parameters"] == [{"name": "year", "value": 2024}]
    # and the log shows one export queued, every API call carrying the current token
    assert len(sim.calls("POST", "/api/documents/export/report/{documentId}")) == 1
    api_calls = [entry for entry in sim.request_log if entry.path.startswith("/api/")]
    assert all(entry.headers["Authorization"] == f"Bearer {token}" for entry in api_calls)


@pytest.mark.parametrize(
    ("status_form", "in_progress", "complete"),
    [
        ("object", {"taskStatus": "InProgress"}, {"taskStatus": "Complete"}),
        ("string", "InProgress", "Complete"),
        ("integer", 1, 2),
    ],
)
def test_each_status_form(
    sim: DevExpressSimulator,
    vendor_clock: SkippingClock,
    status_form: str,
    in_progress: object,
    complete: object,
) -> None:
    # given a server answering the status in one of its known shapes
    sim.status_form = status_form  # type: ignore[assignment]
    token = sign_in(sim)
    export_id = queue_export(sim, token)
    # when the status is read before and after generation
    before = api(sim, "GET", f"/api/documents/export/status/{export_id}", token).json()
    vendor_clock.advance(0.5)
    after = api(sim, "GET", f"/api/documents/export/status/{export_id}", token).json()
    # then it has that shape
    assert (before, after) == (in_progress, complete)


def test_fail_reports_ends_tasks_in_fault(sim: DevExpressSimulator) -> None:
    # given a server whose exports fail
    sim.fail_reports = "Data source is unavailable"
    sim.generation_seconds = 0
    token = sign_in(sim)
    export_id = queue_export(sim, token)
    # when the status and the result are asked for
    status = api(sim, "GET", f"/api/documents/export/status/{export_id}", token).json()
    result = api(sim, "GET", f"/api/documents/export/result/{export_id}", token)
    sim.status_form = "integer"
    bare = api(sim, "GET", f"/api/documents/export/status/{export_id}", token).json()
    # then the task is a Fault with the message (object form only), and there is no file
    assert status == {"taskStatus": "Fault", "errorMessage": "Data source is unavailable"}
    assert bare == 0
    assert result.status_code == 400 and result.json()["Message"] == "Data source is unavailable"


def test_bad_export_requests_are_refused(sim: DevExpressSimulator) -> None:
    # given a signed-in client
    token = sign_in(sim)
    # when it exports a missing document, a dashboard as a report, and an unsupported format
    missing = api(sim, "POST", "/api/documents/export/report/99", token, json=PDF)
    dashboard = api(sim, "POST", "/api/documents/export/report/20", token, json=PDF)
    csv = api(sim, "POST", EXPORT_SALES, token, json={"exportOptions": {"exportFormat": "csv"}})
    unknown_task = api(sim, "GET", "/api/documents/export/status/" + "0" * 32, token)
    # then each gets the matching error, and nothing was queued
    assert missing.status_code == 404
    assert dashboard.status_code == 400
    assert csv.status_code == 400 and "pdf, html, xlsx, docx" in csv.json()["Message"]
    assert unknown_task.status_code == 404
    assert sim.exports == {}


@pytest.mark.parametrize(("retry_after", "header"), [(3, "3"), (None, None)])
def test_throttle_next_answers_429(
    sim: DevExpressSimulator, retry_after: int | None, header: str | None
) -> None:
    # given the next two API calls are throttled
    sim.faults.throttle_next = 2
    sim.faults.throttle_retry_after = retry_after
    # when the client signs in and calls the API three times
    token = sign_in(sim)
    answers = [api(sim, "POST", EXPORT_SALES, token, json=PDF) for _ in range(3)]
    # then sign-in was spared, two calls got 429 (with or without Retry-After), the third went through
    assert [answer.status_code for answer in answers] == [429, 429, 200]
    assert answers[0].headers.get("Retry-After") == header
    assert answers[0].json()["Message"]
    assert len(sim.exports) == 1


def test_server_errors_next_answers_503(sim: DevExpressSimulator) -> None:
    # given the next API call fails on the server side
    token = sign_in(sim)
    sim.faults.server_errors_next = 1
    # when the client queues twice
    answers = [api(sim, "POST", EXPORT_SALES, token, json=PDF) for _ in range(2)]
    # then the first got 503 and only the second queued an export
    assert [answer.status_code for answer in answers] == [503, 200]
    assert len(sim.exports) == 1


def test_break_downloads_next_cuts_the_body_half_way(sim: DevExpressSimulator) -> None:
    # given a finished export and the next download set to break
    sim.generation_seconds = 0
    token = sign_in(sim)
    export_id = queue_export(sim, token)
    sim.faults.break_downloads_next = 1
    # when it is downloaded twice
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        api(sim, "GET", f"/api/documents/export/result/{export_id}", token)
    retry = api(sim, "GET", f"/api/documents/export/result/{export_id}", token)
    # then the first broke off and the second is whole
    assert hashlib.sha256(retry.content).hexdigest() == sim.served[export_id]


def test_broken_download_sends_the_headers_and_half_the_body(sim: DevExpressSimulator) -> None:
    # given a finished export and the next download set to break
    sim.generation_seconds = 0
    token = sign_in(sim)
    export_id = queue_export(sim, token)
    sim.faults.break_downloads_next = 1
    # when it is streamed
    answer = api(sim, "GET", f"/api/documents/export/result/{export_id}", token, stream=True)
    received = bytearray()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for chunk in answer.iter_content(1024):
            received += chunk
    # then the full length was announced but only half arrived
    assert answer.status_code == 200 and answer.headers["Content-Length"] == "4096"
    assert len(received) == 2048


def test_dashboard_export_answers_with_the_file(sim: DevExpressSimulator) -> None:
    # given a signed-in client
    token = sign_in(sim)
    body = {"exportOptions": {"exportFormat": "image", "format": "png", "resolution": 96}}
    # when it exports dashboard 20 as an image, and a report through the dashboard route
    answer = api(sim, "POST", "/api/documents/export/dashboard/20", token, json=body)
    report = api(sim, "POST", "/api/documents/export/dashboard/10", token, json=body)
    # then the file comes back at once, as recorded; the report is refused
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "image/png"
    assert answer.headers["Content-Disposition"] == 'attachment; filename="Operations.png"'
    digest = hashlib.sha256(answer.content).hexdigest()
    assert digest == sim.served["dashboard-20-1"] == sim.served_last_dashboard
    assert report.status_code == 400
    assert sim.exports == {}


def test_run_simulators_announces_and_stops() -> None:
    # given a simulator run by the command-line loop in a background thread
    simulator = DevExpressSimulator()
    announced: list[tuple[str, str]] = []
    stop = threading.Event()
    loop = threading.Thread(
        target=run_simulators,
        args=([simulator],),
        kwargs={"announce": lambda name, url: announced.append((name, url)), "until": stop},
    )
    loop.start()
    deadline = time.monotonic() + 5
    while not announced and time.monotonic() < deadline:
        time.sleep(0.01)
    # when it is reachable and then told to stop
    name, url = announced[0]
    reachable = requests.post(f"{url}/oauth/token", data={"grant_type": "password"}, timeout=5).status_code
    stop.set()
    loop.join(timeout=5)
    # then it announced itself, answered, and shut down
    assert name == "devexpress" and reachable == 400
    assert not loop.is_alive()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{url}/api/documents/export/status/x", timeout=2)
