"""A person's browser, for real: headless Chromium (Debian's package) driven by Selenium over loopback.

The deployment is ``tests.api.access``'s (IAM API, people API, the sandbox's OIDC issuer, DevExpress
simulator, LocalAws), with one addition a browser needs: S3 on a port it can reach. moto's threaded
server shares the in-process mock's state, so pointing the functions' S3 client at it
(``AWS_ENDPOINT_URL_S3``) makes every presigned URL ``http://127.0.0.1:<port>/<bucket>/<key>?...``.

Set-up: ``make test`` installs ``chromium`` and ``chromium-driver`` with apt when they are missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from moto.server import ThreadedMotoServer
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from reportrelay import links
from tests.api.access import CLIENT_ID, PASSWORD, Deployment, deployment

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        f"BROWSER TEST SKIPPED: {CHROMIUM} or {CHROMEDRIVER} is missing; install Debian's packages with "
        "`sudo apt-get install chromium chromium-driver` (`make test` does it where apt is available)",
        allow_module_level=True,
    )

WAIT_SECONDS = 30
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    """moto's S3 over HTTP on loopback, sharing the in-process mock's buckets."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, s3_url: str) -> Iterator[Deployment]:
    # Set before LocalAws opens, so the bucket, the fetch step's upload and the API's presigning client
    # all use it; ``reportrelay.awsclients`` keys its cache on this variable, so no older client is reused.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL_S3", s3_url)
        with deployment(tmp_path_factory.mktemp("browser")) as running:
            yield running


@pytest.fixture(scope="module")
def ready(site: Deployment) -> dict[str, Any]:
    """A finance job carol started, ready: ``{"job": <job view>, "event": <its Report Ready event>}``."""
    answer = site.call("carol", "POST", "/reports", site.request("finance"))
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    deadline = time.monotonic() + WAIT_SECONDS
    while (job := site.call("carol", "GET", f"/reports/{job_id}").json())["state"] not in ("ready", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["state"] == "ready", job
    # the job store reads ready once Conclude recorded the outcome; the event is put a moment later
    while not (
        announced := [
            event
            for event in site.aws.events()
            if event["detail-type"] == "Report Ready" and event["detail"]["job_id"] == job_id
        ]
    ):
        assert time.monotonic() < deadline, f"{job_id} is ready but no Report Ready was announced"
        time.sleep(0.1)
    return {"job": job, "event": announced[0]}


@contextlib.contextmanager
def chromium(directory: Path) -> Iterator[tuple[webdriver.Chrome, Path]]:
    """A fresh, signed-out headless Chromium (its own profile, no cookies); yields it and its downloads."""
    downloads = directory / "downloads"
    downloads.mkdir(parents=True)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (*CHROMIUM_ARGS, f"--user-data-dir={directory / 'profile'}"):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "plugins.always_open_pdf_externally": True,
        },
    )
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(WAIT_SECONDS)
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        yield driver, downloads
    finally:
        driver.quit()


def downloaded(driver: webdriver.Chrome, downloads: Path) -> Path:
    """The one file the browser saved, once it is complete."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        files = list(downloads.iterdir())
        if files and not any(path.suffix in (".crdownload", ".tmp") for path in files):
            assert len(files) == 1, files
            return files[0]
        if time.monotonic() > deadline:
            went = "\n  ".join(f"{status} {url[:160]}" for url, status in traffic(driver).answers)
            pytest.fail(f"nothing downloaded into {downloads}; the browser's answers:\n  {went}")
        time.sleep(0.1)


@dataclass
class Traffic:
    requested: list[str]  # every http(s) URL requested, redirects included, oldest first
    answers: list[tuple[str, int]]  # (URL, status) of every answer, redirects included


def traffic(driver: webdriver.Chrome) -> Traffic:
    """What the browser requested and was answered since the last call (Chrome's performance log)."""
    seen = Traffic([], [])
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message["params"]
        if message["method"] == "Network.requestWillBeSent" and params["request"]["url"].startswith("http"):
            if redirect := params.get("redirectResponse"):
                seen.answers.append((redirect["url"], redirect["status"]))
            seen.requested.append(params["request"]["url"])
        elif message["method"] == "Network.responseReceived" and params["response"]["url"].startswith("http"):
            seen.answers.append((params["response"]["url"], params["response"]["status"]))
    return seen


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def served_sha256(site: Deployment) -> str:
    """What the DevExpress simulator served for the module's one export."""
    (export_id,) = site.simulator.exports
    return site.simulator.served[export_id]


def test_a_signed_out_person_clicks_the_events_link_signs_in_and_gets_the_file(site, ready, s3_url, tmp_path):
    # given the download_url of the job's Report Ready event: the people API's download route
    url = ready["event"]["detail"]["download_url"]
    assert url == f"{site.people_url}/reports/{ready['job']['job_id']}/download"
    with chromium(tmp_path) as (driver, downloads):
        # when a signed-out person opens it
        driver.get(url)
        # then the browser lands on the issuer's sign-in page
        WebDriverWait(driver, WAIT_SECONDS).until(
            expected_conditions.presence_of_element_located((By.ID, "sign-in"))
        )
        assert driver.current_url.startswith(f"{site.issuer.issuer}/authorize?")
        assert "code_challenge_method=S256" in driver.current_url
        assert not list(downloads.iterdir())
        # when carol signs in
        driver.find_element(By.ID, "username").send_keys("carol")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "sign-in").click()
        # then the browser receives the report: the very bytes the provider served
        saved = downloaded(driver, downloads)
        assert sha256(saved) == served_sha256(site) == ready["job"]["object"]["sha256"]
        assert saved.name == ready["job"]["object"]["filename"]
        # and it came back through the callback, to the download route, then to a presigned S3 URL
        path = [urlsplit(requested)._replace(query="").geturl() for requested in traffic(driver).requested]
    assert f"{site.people_url}/auth/callback" in path
    after_callback = path[path.index(f"{site.people_url}/auth/callback") + 1 :]
    assert after_callback[0] == url
    assert after_callback[1].startswith(f"{s3_url}/{site.aws.bucket}/finance/{ready['job']['job_id']}/")
    assert site.issuer.sign_ins[-1] == ("carol", CLIENT_ID, "form", True)


def test_a_share_link_opens_without_sign_in_until_it_is_revoked(site, ready, tmp_path):
    job_id = ready["job"]["job_id"]
    # given a share link carol minted
    link = site.call("carol", "POST", f"/reports/{job_id}/links", {"expires_in": 3600})
    assert link.status_code == 201, link.text
    url = link.json()["url"]
    with chromium(tmp_path / "first") as (driver, downloads):
        # when someone opens it in a fresh browser, never signed in
        driver.get(url)
        # then the file arrives with no sign-in page on the way
        assert sha256(downloaded(driver, downloads)) == served_sha256(site)
        assert not any(seen.startswith(site.issuer.issuer) for seen in traffic(driver).requested)
    # when carol revokes it
    revoked = site.call("carol", "DELETE", f"/reports/{job_id}/links/{link.json()['link_id']}")
    assert revoked.status_code == 200, revoked.text
    with chromium(tmp_path / "again") as (driver, downloads):
        # then the same link shows a page saying it no longer works, and nothing is downloaded
        driver.get(url)
        assert (url, 410) in traffic(driver).answers
        assert driver.title == "This link no longer works"
        assert "revoked" in driver.find_element(By.TAG_NAME, "body").text
        assert not list(downloads.iterdir())


def test_an_expired_share_link_says_so(site, ready, tmp_path):
    job_id = ready["job"]["job_id"]
    # given a link to carol's job, signed with the deployment's key, that expired a minute ago
    minted = site.call("carol", "POST", f"/reports/{job_id}/links", {}).json()
    secret = site.aws.function_environment["REPORTRELAY_LINK_KEY_SECRET"]
    key = site.aws.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"].encode()
    claims = links.verify(minted["url"].rsplit("/", 1)[1], key, time.time())
    token = links.sign(links.LinkClaims(claims.link_id, job_id, int(time.time()) - 60), key)
    with chromium(tmp_path) as (driver, downloads):
        # when someone opens it
        driver.get(f"{site.people_url}/links/{token}")
        # then the page says it expired (410), and nothing is downloaded
        assert (f"{site.people_url}/links/{token}", 410) in traffic(driver).answers
        assert driver.title == "This link no longer works"
        assert "expired" in driver.find_element(By.TAG_NAME, "body").text
        assert not list(downloads.iterdir())
