"""Who may see what, over real HTTP: every route x {own team, other team, admin, no team}.

Machines sign with botocore's SigV4 signer against the IAM API (checked against their identities; their
teams are IAM tags); people send JWTs from the sandbox's OIDC issuer to the people API (verified by the
function against the issuer's JWKS). Three principals of each kind in two teams plus the admin team,
and one of each with no team: none of them reads, lists, cancels, downloads or shares another team's job.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import jwt
import pytest
import requests

from reportrelay import console, links
from tests.api.access import ADMINS, CLIENT_ID, MACHINES, PEOPLE, TEAM_OF, Deployment, deployment

CALLERS = [*MACHINES, *PEOPLE]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(tmp_path_factory.mktemp("access")) as running:
        yield running


@pytest.fixture(scope="module")
def jobs(site: Deployment) -> dict[str, str]:
    """One ready job per team: finance's started by a machine, sales' by a person."""
    started = {
        "finance": _start(site, "alice", site.request("finance")),
        "sales": _start(site, "dave", site.request("sales")),
    }
    for team, job_id in started.items():
        owner = "alice" if team == "finance" else "dave"
        _wait(site, owner, job_id)
    return started


def _start(site: Deployment, who: str, request: dict[str, Any]) -> str:
    answer = site.call(who, "POST", "/reports", request)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["job_id"])


def _wait(
    site: Deployment, who: str, job_id: str, until: tuple[str, ...] = ("ready", "failed", "cancelled")
) -> dict:
    deadline = time.monotonic() + 60
    while True:
        job = site.call(who, "GET", f"/reports/{job_id}").json()
        if job.get("state") in until or time.monotonic() > deadline:
            assert job.get("state") in until, job
            return dict(job)
        time.sleep(0.1)


def _sees(who: str, team: str) -> bool:
    return who in ADMINS or TEAM_OF.get(who) == team


def _unknown_answer(site: Deployment, who: str, method: str, suffix: str) -> tuple[int, dict]:
    """What the caller gets for a job id that does not exist, with the id taken out of the message."""
    missing = "0d6f7f38-9a0e-4c4b-9a7e-000000000000"
    answer = site.call(who, method, f"/reports/{missing}{suffix}")
    return answer.status_code, {**answer.json(), "message": answer.json()["message"].replace(missing, "<id>")}


@pytest.mark.parametrize("who", CALLERS)
def test_reading_a_job_answers_only_its_team_and_the_admins(site, jobs, who):
    for team, job_id in jobs.items():
        # when the caller reads, follows, downloads and lists
        read = site.call(who, "GET", f"/reports/{job_id}")
        followed = site.call(who, "GET", f"/reports/{job_id}/events")
        download = site.call(who, "GET", f"/reports/{job_id}/download")
        if _sees(who, team):
            # then its own team's job (and, for the admins, every job) is there
            assert read.status_code == 200 and read.json()["state"] == "ready", (who, team)
            assert read.json()["object"]["key"].startswith(f"{team}/{job_id}/")
            # and the job says whose it is: its team, and who started it (a machine's session, a person)
            owner = MACHINES["alice"][0] if team == "finance" else "person:dave"
            assert (read.json()["team"], read.json()["owner"]) == (team, owner)
            assert download.status_code == 302 and download.headers["Location"].startswith("https://")
            # and its events tell the story to the end
            assert followed.status_code == 200, (who, team, followed.text)
            assert followed.json()["events"][-1]["message"].startswith("stored "), followed.json()
        else:
            # and another team's job answers exactly as a job that does not exist
            for answer, suffix in ((read, ""), (followed, "/events"), (download, "/download")):
                seen = {**answer.json(), "message": answer.json()["message"].replace(job_id, "<id>")}
                assert (answer.status_code, seen) == _unknown_answer(site, who, "GET", suffix), (who, team)


@pytest.mark.parametrize("who", CALLERS)
def test_the_listing_holds_only_the_callers_teams_jobs(site, jobs, who):
    # when the caller lists jobs, one at a time, following the cursor to the end
    listed, cursor = [], None
    while True:
        query = {"limit": "1", **({"cursor": cursor} if cursor else {})}
        page = site.call(who, "GET", "/reports?" + "&".join(f"{k}={v}" for k, v in query.items()))
        assert page.status_code == 200, page.text
        listed += [job["job_id"] for job in page.json()["jobs"]]
        cursor = page.json()["next_cursor"]
        if not cursor:
            break
    # then it holds every job of its teams and none of another team's
    visible = {job_id for team, job_id in jobs.items() if _sees(who, team)}
    assert visible <= set(listed), who
    assert not {job_id for team, job_id in jobs.items() if not _sees(who, team)} & set(listed), who


@pytest.mark.parametrize("who", CALLERS)
def test_cancelling_and_sharing_another_teams_job_is_a_404(site, jobs, who):
    for team, job_id in jobs.items():
        cancel = site.call(who, "DELETE", f"/reports/{job_id}")
        share = site.call(who, "POST", f"/reports/{job_id}/links", {})
        if _sees(who, team):
            # then a finished job of its own cannot be cancelled, but may be shared
            assert cancel.status_code == 409, (who, cancel.text)
            assert share.status_code == 201, (who, share.text)
            revoke = site.call(who, "DELETE", f"/reports/{job_id}/links/{share.json()['link_id']}")
            assert revoke.status_code == 200 and revoke.json()["revoked"] is True
        else:
            assert cancel.status_code == 404 and cancel.json()["code"] == "JobNotFound", (who, team)
            assert share.status_code == 404 and share.json()["code"] == "JobNotFound", (who, team)


def test_nobody_revokes_another_teams_link(site, jobs):
    # given a share link finance minted
    link = site.call("carol", "POST", f"/reports/{jobs['finance']}/links", {}).json()
    for who in ("bob", "dave", "nobody", "frank"):
        # when another team tries to revoke it
        answer = site.call(who, "DELETE", f"/reports/{jobs['finance']}/links/{link['link_id']}")
        # then it does not know the job, and the link still works
        assert answer.status_code == 404, who
    assert requests.get(link["url"], allow_redirects=False, timeout=10).status_code == 302


@pytest.mark.parametrize("who", CALLERS)
def test_starting_a_job_on_a_connection_needs_one_of_its_teams(site, jobs, who):
    for team in ("finance", "sales"):
        answer = site.call(who, "POST", "/reports", site.request(team, client_token=f"start-{who}-{team}"))
        if _sees(who, team):
            assert answer.status_code == 202, (who, team, answer.text)
        else:
            # then the caller is refused with 403 naming the connection
            assert answer.status_code == 403, (who, team, answer.text)
            assert answer.json()["code"] == "NotAllowed"
            assert f"'dx-{team}'" in answer.json()["message"]


def test_the_server_assigns_the_key_and_no_prefix_leaves_the_team(site):
    # given finance asking for a prefix that names another team
    job_id = _start(site, "alice", site.request("finance", output={"key_prefix": "sales/"}))
    job = _wait(site, "alice", job_id)
    # then the object is stored in finance's space all the same
    assert job["object"]["key"] == f"finance/sales/{job_id}/{job['object']['filename']}"
    # and a caller cannot name another team for the job
    refused = site.call("alice", "POST", "/reports", site.request("finance", team="sales"))
    assert refused.status_code == 403 and "team 'sales'" in refused.json()["message"]


def test_a_running_job_is_cancelled_only_by_its_team_through_the_workflows_function(site):
    # given a finance job that takes a while
    site.simulator.generation_seconds = 30
    try:
        job_id = _start(site, "carol", site.request("finance"))
        _wait(site, "carol", job_id, until=("running",))
        # when sales tries to cancel it, then it does not know the job
        assert site.call("bob", "DELETE", f"/reports/{job_id}").status_code == 404
        # when finance cancels it
        answer = site.call("alice", "DELETE", f"/reports/{job_id}")
    finally:
        site.simulator.generation_seconds = 0.2
    # then it is cancelled; the workflow's cancel function (the API holds no vendor secret) answered
    # for the provider: DevExpress offers no cancel (had the function not answered, it would say "failed")
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "cancelled"
    assert "the provider offers no way to cancel" in answer.json()["error"]["message"]


# ---- the web console (people only: it is served on the people API)


def _console(site: Deployment, person: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {site.token(person)}"
    return session


@pytest.mark.parametrize("who", list(PEOPLE))
def test_the_console_shows_and_acts_on_only_the_callers_teams_jobs(site, jobs, who):
    session = _console(site, who)
    # when the person opens the console's list
    listing = session.get(f"{site.people_url}/console", allow_redirects=False, timeout=30)
    assert listing.status_code == 200, listing.text
    token = re.search(rf'name="{console.CSRF_FIELD}" value="([^"]+)"', listing.text).group(1)
    for team, job_id in jobs.items():
        page = session.get(f"{site.people_url}/console/reports/{job_id}", allow_redirects=False, timeout=30)
        actions = {
            action: session.post(
                f"{site.people_url}/console/reports/{job_id}/{action}",
                data={console.CSRF_FIELD: token},
                allow_redirects=False,
                timeout=30,
            )
            for action in ("cancel",)
        }
        if _sees(who, team):
            # then its own team's jobs (every job, for the admins) are listed and open
            assert job_id in listing.text and page.status_code == 200, (who, team)
            # and a finished job cannot be cancelled (409), though it is theirs
            assert actions["cancel"].status_code == 409, (who, team)
        else:
            # and another team's job is neither listed nor opened nor acted on: 404, as for no job
            assert job_id not in listing.text, (who, team)
            assert page.status_code == 404 and job_id in page.text and "sha256" not in page.text.lower()
            assert actions["cancel"].status_code == 404, (who, team)
            rerun = session.post(
                f"{site.people_url}/console/reports/{job_id}/rerun",
                data={console.CSRF_FIELD: token},
                allow_redirects=False,
                timeout=30,
            )
            assert rerun.status_code == 404, (who, team)


# ---- people's tokens


def _claims(site: Deployment, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": site.issuer.issuer,
        "sub": "carol",
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 600,
        "cognito:groups": ["finance"],
    }
    claims.update(overrides)
    return claims


def _bad_tokens(site: Deployment) -> dict[str, str]:
    good = site.issuer.sign(_claims(site))
    head, _, signature = good.split(".")
    unsigned = jwt.encode(_claims(site), key=None, algorithm="none")
    other_key = site.issuer.sign(_claims(site), key=site.issuer.other_key())
    forged = site.issuer.sign(_claims(site, **{"cognito:groups": ["sales"]})).split(".")[1]
    return {
        "expired": site.issuer.sign(_claims(site, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)),
        "another audience": site.issuer.sign(_claims(site, aud="someone-else")),
        "another issuer": site.issuer.sign(_claims(site, iss="https://evil.example")),
        "unsigned": unsigned,
        "another key": other_key,
        "tampered": f"{head}.{forged}.{signature}",
        "not a jwt": "hello",
    }


@pytest.mark.parametrize(
    "kind, says",
    [
        ("expired", "expired"),
        ("another audience", "another audience"),
        ("another issuer", "another issuer"),
        ("unsigned", "not accepted"),
        ("another key", "signature does not verify"),
        ("tampered", "signature does not verify"),
        ("not a jwt", "not a JWT"),
    ],
)
def test_a_bad_token_is_a_401_with_one_line(site, jobs, kind, says):
    token = _bad_tokens(site)[kind]
    answer = requests.get(
        f"{site.people_url}/reports/{jobs['finance']}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 401, answer.text
    body = answer.json()
    assert body["code"] == "Unauthenticated" and says in body["message"] and "\n" not in body["message"]
    assert "Traceback" not in answer.text


# ---- share links


def _link_key(site: Deployment) -> bytes:
    secret = site.aws.function_environment["REPORTRELAY_LINK_KEY_SECRET"]
    return site.aws.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"].encode()


def test_a_share_link_opens_without_sign_in_until_revoked(site, jobs):
    # given a link carol shared
    link = site.call("carol", "POST", f"/reports/{jobs['finance']}/links", {"expires_in": 3600}).json()
    # when anyone opens it, with no credential at all
    opened = requests.get(link["url"], allow_redirects=False, timeout=10)
    # then it redirects to a freshly presigned URL of the report
    assert opened.status_code == 302 and "X-Amz-Signature=" in opened.headers["Location"]
    # when it is revoked, then it stops working at once, with a page a person understands
    assert (
        site.call("carol", "DELETE", f"/reports/{jobs['finance']}/links/{link['link_id']}").status_code == 200
    )
    gone = requests.get(link["url"], allow_redirects=False, timeout=10)
    assert gone.status_code == 410 and "text/html" in gone.headers["Content-Type"]
    assert "revoked" in gone.text


def test_a_tampered_or_expired_link_says_so(site, jobs):
    link = site.call("carol", "POST", f"/reports/{jobs['finance']}/links", {}).json()
    # given the link with its job changed (sales' job), and one that expired a minute ago
    token = link["url"].rsplit("/", 1)[1]
    claims = links.verify(token, _link_key(site), time.time())
    other_job = links.sign(links.LinkClaims(claims.link_id, jobs["sales"], claims.expires_at), b"x" * 32)
    tampered = requests.get(f"{site.people_url}/links/{other_job}", allow_redirects=False, timeout=10)
    expired_token = links.sign(
        links.LinkClaims(claims.link_id, claims.job_id, int(time.time()) - 60), _link_key(site)
    )
    expired = requests.get(f"{site.people_url}/links/{expired_token}", allow_redirects=False, timeout=10)
    # then each answers a plain page: 403 for the changed link, 410 for the expired one
    assert tampered.status_code == 403 and "not valid" in tampered.text
    assert expired.status_code == 410 and "expired" in expired.text


def test_links_live_at_most_seven_days(site, jobs):
    answer = site.call("carol", "POST", f"/reports/{jobs['finance']}/links", {"expires_in": 8 * 24 * 3600})
    assert answer.status_code == 400 and "expires_in" in answer.json()["message"]


def test_a_link_lives_a_day_by_default_and_minting_and_every_use_are_logged(site, jobs, caplog):
    # given carol sharing finance's report without saying for how long
    with caplog.at_level(logging.INFO, logger="reportrelay"):
        link = site.call("carol", "POST", f"/reports/{jobs['finance']}/links", {}).json()
        # when the link is followed twice
        for _ in range(2):
            assert requests.get(link["url"], allow_redirects=False, timeout=10).status_code == 302
    # then it expires in 24 hours
    expires = datetime.fromisoformat(link["expires_at"].replace("Z", "+00:00")).timestamp()
    assert abs(expires - (time.time() + links.DEFAULT_LINK_SECONDS)) < 60
    # and the mint and both uses are logged with who minted it and which job
    logged = [record for record in caplog.records if record.getMessage().startswith("share link")]
    assert [record.getMessage() for record in logged] == ["share link minted"] + ["share link used"] * 2
    for record in logged:
        assert (record.job_id, record.link_id, record.minted_by) == (
            jobs["finance"],
            link["link_id"],
            "person:carol",
        )
