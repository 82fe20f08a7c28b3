"""The web console over real HTTP, as a person's browser speaks to it (the browser itself: test_browser.py).

The deployment is ``tests.api.access``'s: people bring tokens from the sandbox's issuer to the people
API. Pages are HTML; forms are POSTs with the console's CSRF token, which must match its cookie.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from html import unescape
from typing import Any

import pytest
import requests

from reportrelay import console
from reportrelay.console import CONTENT_SECURITY_POLICY, CSRF_COOKIE
from tests.api.access import Deployment, deployment

FINISHED = ("ready", "failed", "cancelled")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(tmp_path_factory.mktemp("console")) as running:
        yield running


class Browser:
    """A person's session with the console: their token on every request, cookies kept, no redirects."""

    def __init__(self, site: Deployment, person: str) -> None:
        self.site = site
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {site.token(person)}"

    def get(self, path: str, **params: str) -> requests.Response:
        return self.session.get(self.site.people_url + path, params=params, allow_redirects=False, timeout=30)

    def post(self, path: str, form: dict[str, str], **headers: str) -> requests.Response:
        return self.session.post(
            self.site.people_url + path, data=form, headers=headers, allow_redirects=False, timeout=30
        )

    def csrf(self) -> str:
        """The token the console's forms carry (from the list page, which also sets its cookie)."""
        page = self.get("/console")
        assert page.status_code == 200, page.text
        return _field(page.text, console.CSRF_FIELD)


def _field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no {name} field in the page"
    return unescape(found.group(1))


def _wait(site: Deployment, person: str, job_id: str, until: tuple[str, ...] = FINISHED) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while (job := site.call(person, "GET", f"/reports/{job_id}").json())["state"] not in until:
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return dict(job)


@pytest.fixture(scope="module")
def jobs(site: Deployment) -> dict[str, str]:
    """A ready job of each team (finance by carol, sales by dave)."""
    started = {}
    for team, person in (("finance", "carol"), ("sales", "dave")):
        answer = site.call(person, "POST", "/reports", site.request(team, parameters={"Year": 2025}))
        assert answer.status_code == 202, answer.text
        started[team] = answer.json()["job_id"]
    for team, person in (("finance", "carol"), ("sales", "dave")):
        assert _wait(site, person, started[team])["state"] == "ready"
    return started


def test_the_job_view_shows_the_request_and_the_deadline(site, jobs):
    # when carol reads her job through the API
    job = site.call("carol", "GET", f"/reports/{jobs['finance']}").json()
    # then it shows the request it ran with (team set by the API, no client token) to run it again
    assert job["request"] == {**site.request("finance", parameters={"Year": 2025}), "team": "finance"}
    # and its deadline: created plus the connection's default of 24 hours
    created = time.mktime(time.strptime(job["created_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    deadline = time.mktime(time.strptime(job["deadline_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert deadline - created == 24 * 3600


def test_a_signed_out_browser_is_sent_to_sign_in_and_back_to_the_page(site):
    # when a browser with no credential opens the console, filtered
    answer = requests.get(
        f"{site.people_url}/console", params={"state": "ready"}, allow_redirects=False, timeout=30
    )
    # then it goes to the issuer's sign-in, remembering to come back to that very page
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith(f"{site.issuer.issuer}/authorize?")
    assert "reportrelay_sign_in=" in answer.headers["Set-Cookie"]


def test_the_list_shows_the_teams_jobs_with_a_strict_policy_and_none_of_another_teams(site, jobs):
    browser = Browser(site, "carol")
    # when carol opens the console
    page = browser.get("/console")
    # then it is a page with a strict policy: scripts, styles and fetches from this origin only
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert (
        "script-src 'self'" in CONTENT_SECURITY_POLICY and "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    )
    assert "<script>" not in page.text and " style=" not in page.text and "http" not in _external(page.text)
    # and a CSRF cookie the forms' token must match (HttpOnly, SameSite=Strict)
    cookie = page.headers["Set-Cookie"]
    assert cookie.startswith(f"{CSRF_COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    # and it lists finance's job, never sales'
    assert jobs["finance"] in page.text and jobs["sales"] not in page.text
    # and the form offers finance's connection only
    assert 'value="dx-finance"' in page.text and 'value="dx-sales"' not in page.text
    # and the ready job has its download button through the download route
    assert f'href="{site.people_url}/reports/{jobs["finance"]}/download"' in page.text


def _external(html: str) -> str:
    """Every src/href of the page that is not this API's own."""
    return " ".join(re.findall(r'(?:src|href)="(http[^"]*)"', html)).replace("http://127.0.0.1", "")


def test_the_filters_narrow_the_list_and_a_bad_date_says_which_field(site, jobs):
    browser = Browser(site, "erin")  # the admin team sees both jobs
    assert {jobs["finance"], jobs["sales"]} <= set(
        re.findall(r'data-job="([^"]+)"', browser.get("/console").text)
    )
    # when the admin filters by connection, by state, and by day
    by_connection = browser.get("/console", connection="dx-sales").text
    failed_only = browser.get("/console", state="failed").text
    today = time.strftime("%Y-%m-%d", time.gmtime())
    from_tomorrow = browser.get("/console", since="2999-01-01").text
    today_only = browser.get("/console", since=today, until=today).text
    # then each holds what it asks for
    assert jobs["sales"] in by_connection and jobs["finance"] not in by_connection
    assert jobs["finance"] not in failed_only and "No jobs match these filters." in failed_only
    assert jobs["finance"] not in from_tomorrow and jobs["finance"] in today_only
    # when a date is not one, then the page says which field and keeps working
    bad = browser.get("/console", since="yesterday")
    assert bad.status_code == 400 and "since: &#x27;yesterday&#x27; is not a date (YYYY-MM-DD)" in bad.text


def test_the_job_page_shows_the_file_the_request_and_the_events(site, jobs):
    # when carol opens her job's page
    page = Browser(site, "carol").get(f"/console/reports/{jobs['finance']}")
    job = site.call("carol", "GET", f"/reports/{jobs['finance']}").json()
    # then it shows the state, the stored file's SHA-256, the request and what happened
    assert page.status_code == 200
    assert 'id="state" class="state ready"' in page.text
    assert job["object"]["sha256"] in page.text and job["object"]["filename"] in page.text
    assert "&quot;Year&quot;: 2025" in page.text
    events = site.call("carol", "GET", f"/reports/{jobs['finance']}/events").json()["events"]
    assert events and all(unescape_in(event["message"], page.text) for event in events)
    # and it says where the script follows the job from (the events' cursor)
    assert f'data-job="{jobs["finance"]}"' in page.text and 'data-final="true"' in page.text


def unescape_in(text: str, html: str) -> bool:
    return text in unescape(html)


def test_another_teams_job_page_is_a_404_as_for_no_job(site, jobs):
    browser = Browser(site, "carol")
    # when carol opens sales' job and a job that does not exist
    other = browser.get(f"/console/reports/{jobs['sales']}")
    missing = browser.get("/console/reports/0d6f7f38-9a0e-4c4b-9a7e-000000000000")
    # then both answer 404 with the same page but for the id
    assert other.status_code == missing.status_code == 404
    assert other.text.replace(jobs["sales"], "<id>") == missing.text.replace(
        "0d6f7f38-9a0e-4c4b-9a7e-000000000000", "<id>"
    )
    assert "sha256" not in other.text.lower()


def test_starting_from_the_form_runs_the_request_and_opens_its_page(site, jobs):
    browser = Browser(site, "carol")
    token = browser.csrf()
    form = {
        console.CSRF_FIELD: token,
        "client_token": "console-form-1",
        "connection": "dx-finance",
        "request": '{"report": {"document_id": 10}, "format": "pdf", "parameters": {"Year": 2024}}',
    }
    # when carol submits the start form
    answer = browser.post("/console/reports", form)
    # then she is sent to the new job's page (303)
    assert answer.status_code == 303, answer.text
    job_id = answer.headers["Location"].rsplit("/", 1)[1]
    assert answer.headers["Location"] == f"{site.people_url}/console/reports/{job_id}"
    # and the job runs her request on the connection chosen, for finance
    job = _wait(site, "carol", job_id)
    assert job["state"] == "ready" and job["team"] == "finance" and job["owner"] == "person:carol"
    assert job["request"]["parameters"] == {"Year": 2024}
    # when the same form is sent again (a double click), then it is the same job
    again = browser.post("/console/reports", form)
    assert again.status_code == 303 and again.headers["Location"].endswith(job_id)


@pytest.mark.parametrize(
    "request_text, says",
    [
        ('{"report": {"document_id": 10}, "format": "csv"}', "request.format: &#x27;csv&#x27;"),
        ('{"report": {"document_id": 10}, "format": ', "request: not JSON"),
        ('["not", "an", "object"]', "request: must be a JSON object"),
        ('{"report": {"document_id": 10}, "format": "pdf", "colour": "red"}', "request.colour"),
    ],
)
def test_a_bad_request_in_the_form_is_named_and_kept_for_fixing(site, request_text, says):
    browser = Browser(site, "carol")
    form = {console.CSRF_FIELD: browser.csrf(), "connection": "dx-finance", "request": request_text}
    # when carol sends a request the provider cannot run
    answer = browser.post("/console/reports", form)
    # then the page says which field, and the form still holds what she wrote
    assert answer.status_code == 400, answer.text
    assert says in answer.text
    assert unescape(re.search(r'id="start-request"[^>]*>([^<]*)<', answer.text).group(1)) == request_text


def test_the_form_cannot_start_a_job_on_another_teams_connection(site):
    browser = Browser(site, "carol")
    form = {
        console.CSRF_FIELD: browser.csrf(),
        "connection": "dx-sales",
        "request": '{"report": {"document_id": 10}, "format": "pdf"}',
    }
    answer = browser.post("/console/reports", form)
    assert answer.status_code == 403 and "dx-sales" in answer.text and "not shared" in answer.text


def test_a_form_without_the_token_or_from_another_site_changes_nothing(site):
    browser = Browser(site, "carol")
    # given a running finance job
    site.simulator.generation_seconds = 30
    try:
        started = site.call("carol", "POST", "/reports", site.request("finance"))
        job_id = started.json()["job_id"]
        token = browser.csrf()
        # when its cancel form comes without the token, with another token, or from another site
        missing = browser.post(f"/console/reports/{job_id}/cancel", {})
        wrong = browser.post(f"/console/reports/{job_id}/cancel", {console.CSRF_FIELD: "x" * 43})
        elsewhere = browser.post(
            f"/console/reports/{job_id}/cancel", {console.CSRF_FIELD: token}, Origin="https://evil.example"
        )
        # then each is refused with a page saying what to do, and the job is still going
        for answer in (missing, wrong, elsewhere):
            assert answer.status_code == 403 and "refused" in answer.text, answer.text
        assert "reload the page" in missing.text and "another site" in elsewhere.text
        assert site.call("carol", "GET", f"/reports/{job_id}").json()["state"] in ("queued", "running")
        # when the console's own form cancels it, then it is cancelled and the page shows it
        cancelled = browser.post(
            f"/console/reports/{job_id}/cancel", {console.CSRF_FIELD: token}, Origin=_origin(site)
        )
        assert cancelled.status_code == 303
        assert site.call("carol", "GET", f"/reports/{job_id}").json()["state"] == "cancelled"
        # and cancelling it again says it already finished
        again = browser.post(f"/console/reports/{job_id}/cancel", {console.CSRF_FIELD: token})
        assert again.status_code == 409 and "already cancelled" in again.text
    finally:
        site.simulator.generation_seconds = 0.2


def _origin(site: Deployment) -> str:
    return site.people_url.rsplit("/", 1)[0]


def test_rerun_starts_the_same_request_again(site, jobs):
    browser = Browser(site, "carol")
    # when carol re-runs her finance job with the re-run button of its page, twice (a double click)
    page = browser.get(f"/console/reports/{jobs['finance']}").text
    form = {
        console.CSRF_FIELD: _field(page, console.CSRF_FIELD),
        "client_token": _field(page, "client_token"),
    }
    answer = browser.post(f"/console/reports/{jobs['finance']}/rerun", form)
    twice = browser.post(f"/console/reports/{jobs['finance']}/rerun", form)
    # then a new job runs the very request, parameters included
    assert answer.status_code == 303, answer.text
    new_id = answer.headers["Location"].rsplit("/", 1)[1]
    assert new_id != jobs["finance"] and twice.headers["Location"] == answer.headers["Location"]
    earlier = site.call("carol", "GET", f"/reports/{jobs['finance']}").json()
    assert _wait(site, "carol", new_id)["request"] == earlier["request"]


def test_nobody_cancels_or_reruns_another_teams_job_from_the_console(site, jobs):
    browser = Browser(site, "carol")
    token = browser.csrf()
    for action in ("cancel", "rerun"):
        answer = browser.post(f"/console/reports/{jobs['sales']}/{action}", {console.CSRF_FIELD: token})
        assert answer.status_code == 404 and "No such job" in answer.text, action


def test_values_are_escaped(site):
    # given a job whose request carries markup in a parameter
    browser = Browser(site, "carol")
    markup = '<img src=x onerror="alert(1)">'
    form = {
        console.CSRF_FIELD: browser.csrf(),
        "connection": "dx-finance",
        "request": json.dumps(
            {"report": {"document_id": 10}, "format": "pdf", "parameters": {"Note": markup}}
        ),
    }
    answer = browser.post("/console/reports", form)
    assert answer.status_code == 303, answer.text
    page = browser.get(answer.headers["Location"].removeprefix(site.people_url))
    # then the page shows it as text, never as markup
    assert "<img" not in page.text and "&lt;img src=x onerror=" in page.text


def test_the_console_files_are_served_and_bundled(site):
    # when the page's script and styles are fetched, with no credential
    script = requests.get(f"{site.people_url}/console/static/console.js", timeout=30)
    styles = requests.get(f"{site.people_url}/console/static/console.css", timeout=30)
    unknown = requests.get(f"{site.people_url}/console/static/secrets.txt", timeout=30)
    # then they come from this API with their types, and nothing else does
    assert script.status_code == 200 and script.headers["Content-Type"].startswith("text/javascript")
    assert styles.status_code == 200 and styles.headers["Content-Type"].startswith("text/css")
    assert unknown.status_code == 404
    # and the Lambda asset carries them
    from infra.bundling import package_files

    bundled = {path.name for path in package_files()}
    assert {"console.js", "console.css"} <= bundled
