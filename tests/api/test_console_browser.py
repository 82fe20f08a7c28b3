"""The web console in a real browser: headless Chromium (Debian's package) driven by Selenium over loopback.

carol, signed out, opens the console, signs in at the sandbox's issuer, lands on the list of finance's
jobs, starts one from the form with a saved request file, watches its page follow it to ready (the
page's own script, polling the JSON routes), downloads the file through the download route (SHA-256
checked), and cancels another job from the list. The deployment and the browser are test_browser.py's.
The same console on ``reportrelay serve`` (its own process, the sandbox alongside): the local person
signs in with the password serve printed, starts the README's example request and downloads its file.

Screenshots of the list and of a job page are taken at a fixed window size each run, into the test's
folder; with ``REPORTRELAY_SCREENSHOTS=docs`` they are written to ``docs/console-list.png`` and
``docs/console-job.png``, the ones the README shows:
``REPORTRELAY_SCREENSHOTS=docs make test`` (or this file alone with pytest).
"""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path
from typing import Any

from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.api.access import PASSWORD, Deployment
from tests.api.test_browser import (  # noqa: F401  (s3_url and site are fixtures used here)
    WAIT_SECONDS,
    chromium,
    downloaded,
    s3_url,
    sha256,
    site,
    traffic,
)
from tests.cli.test_serve import serving

WINDOW = (1280, 900)
REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
EXAMPLE_REQUEST = REPO / "examples" / "devexpress-report.json"
SLOW_SECONDS = 600.0
QUICK_SECONDS = 0.2
#: The console's pages redraw as the job moves: an element found a moment ago may be replaced by now.
LIVE_PAGE = (NoSuchElementException, StaleElementReferenceException)


def screenshots_folder(tmp_path: Path) -> Path:
    return DOCS if os.environ.get("REPORTRELAY_SCREENSHOTS") == "docs" else tmp_path


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def page_scripts_ready(driver: Any, wait: WebDriverWait[Any]) -> None:
    """Wait until the page's scripts have run their DOMContentLoaded set-up (the saved-request picker's
    listener among them): an element can be present before, and a file chosen then is never read."""
    wait.until(lambda _: driver.execute_script("return document.readyState") == "complete")


def start(running: Deployment, person: str, **overrides: object) -> str:
    answer = running.call(person, "POST", "/reports", running.request("finance", **overrides))
    assert answer.status_code == 202, answer.text
    return str(answer.json()["job_id"])


def wait_state(running: Deployment, job_id: str, states: tuple[str, ...]) -> dict:
    deadline = time.monotonic() + WAIT_SECONDS
    while (job := running.call("carol", "GET", f"/reports/{job_id}").json())["state"] not in states:
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return dict(job)


def test_a_person_lists_starts_watches_downloads_and_cancels_in_the_console(site, tmp_path):  # noqa: F811
    # given a finance job that is ready, and a saved request file on carol's disk
    earlier = start(site, "carol", parameters={"Year": 2025})
    wait_state(site, earlier, ("ready",))
    saved = tmp_path / "sales-2024.json"
    saved.write_text(
        json.dumps(
            {
                "connection": "dx-finance",
                "report": {"document_id": 10},
                "format": "pdf",
                "parameters": {"Year": 2024},
            }
        ),
        encoding="utf-8",
    )
    shots = screenshots_folder(tmp_path)
    with chromium(tmp_path / "browser") as (driver, downloads):
        driver.set_window_size(*WINDOW)
        driver.execute_cdp_cmd(  # the page's viewport exactly, whatever the window's frame takes
            "Emulation.setDeviceMetricsOverride",
            {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False},
        )
        wait = WebDriverWait(driver, WAIT_SECONDS, ignored_exceptions=LIVE_PAGE)
        # when carol, signed out, opens the console
        driver.get(f"{site.people_url}/console")
        # then she is asked to sign in at the issuer, and comes back to the list once she has
        wait.until(expected_conditions.presence_of_element_located((By.ID, "sign-in")))
        assert driver.current_url.startswith(f"{site.issuer.issuer}/authorize?")
        driver.find_element(By.ID, "username").send_keys("carol")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "sign-in").click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "jobs")))
        assert driver.current_url == f"{site.people_url}/console"
        # and the list holds finance's ready job, with its download button
        row = driver.find_element(By.CSS_SELECTOR, f'tr.job[data-job="{earlier}"]')
        assert row.find_element(By.CSS_SELECTOR, ".state").text == "ready"
        assert row.find_element(By.CSS_SELECTOR, "a.download").is_displayed()
        assert "signed in as carol" in driver.find_element(By.TAG_NAME, "header").text

        # when she loads the saved request into the form, picks the connection and starts it
        page_scripts_ready(driver, wait)
        Select(driver.find_element(By.ID, "start-connection")).select_by_value("dx-finance")
        driver.find_element(By.ID, "saved-request").send_keys(str(saved))
        wait.until(
            lambda _: '"Year": 2024' in driver.find_element(By.ID, "start-request").get_attribute("value")
        )
        driver.find_element(By.ID, "start-button").click()
        # then the new job's page opens, and follows the job to ready by itself
        wait.until(expected_conditions.presence_of_element_located((By.ID, "job-id")))
        job_id = driver.find_element(By.ID, "job-id").text
        assert driver.current_url == f"{site.people_url}/console/reports/{job_id}" and job_id != earlier
        wait.until(lambda _: driver.find_element(By.ID, "state").text == "ready")
        wait.until(lambda _: driver.find_element(By.CSS_SELECTOR, "a.download").is_displayed())
        job = site.call("carol", "GET", f"/reports/{job_id}").json()
        assert job["request"]["parameters"] == {"Year": 2024} and job["owner"] == "person:carol"
        # and the page shows the file's SHA-256 and the story, to the file stored
        assert driver.find_element(By.ID, "sha256").text == job["object"]["sha256"]
        events = [row.text for row in driver.find_elements(By.CSS_SELECTOR, "#events tbody tr")]
        assert events and "stored" in events[-1], events
        driver.save_screenshot(str(shots / "console-job.png"))

        # when she clicks Download
        traffic(driver)  # forget what came before
        driver.find_element(By.CSS_SELECTOR, "a.download").click()
        # then the browser saves the very bytes the provider served, through the download route
        file = downloaded(driver, downloads)
        assert sha256(file) == job["object"]["sha256"] and sha256(file) in site.simulator.served.values()
        assert file.name == job["object"]["filename"]
        assert f"{site.people_url}/reports/{job_id}/download" in traffic(driver).requested

        # given another job, still being generated, and a third left running for the picture
        site.simulator.generation_seconds = SLOW_SECONDS
        try:
            other = start(site, "carol")
            running = start(site, "carol", parameters={"Region": "EMEA"})
            wait_state(site, other, ("running",))
            wait_state(site, running, ("running",))
            # when she cancels it from the list
            driver.get(f"{site.people_url}/console")
            row = driver.find_element(By.CSS_SELECTOR, f'tr.job[data-job="{other}"]')
            assert row.find_element(By.CSS_SELECTOR, ".state").text == "running"
            row.find_element(By.CSS_SELECTOR, "button.cancel").click()
            # then its page says it is cancelled, with why, and offers no cancel any more
            wait.until(expected_conditions.presence_of_element_located((By.ID, "job-id")))
            assert driver.find_element(By.ID, "job-id").text == other
            assert driver.find_element(By.ID, "state").text == "cancelled"
            assert "Cancelled: the job was cancelled" in driver.find_element(By.ID, "error").text
            assert not driver.find_elements(By.CSS_SELECTOR, "button.cancel")
            assert site.call("carol", "GET", f"/reports/{other}").json()["state"] == "cancelled"
            # and the list shows each job as it stands: one running, one cancelled, two ready
            driver.get(f"{site.people_url}/console")
            states = {
                row.get_attribute("data-job"): row.find_element(By.CSS_SELECTOR, ".state").text
                for row in driver.find_elements(By.CSS_SELECTOR, "tr.job")
            }
            assert {earlier: "ready", job_id: "ready", other: "cancelled", running: "running"}.items() <= (
                states.items()
            )

            # and each row's last word: the file, why it stopped, or (followed live) the latest event
            def latest(job: str) -> str:
                return driver.find_element(By.CSS_SELECTOR, f'tr.job[data-job="{job}"] .latest').text

            assert latest(job_id) == f"{job['object']['filename']} · {job['object']['size']:,} bytes"
            assert latest(other).startswith("Cancelled: the job was cancelled through the job API")
            wait.until(lambda _: "next check in" in latest(running))
            driver.save_screenshot(str(shots / "console-list.png"))
        finally:
            site.simulator.generation_seconds = QUICK_SECONDS
        assert site.call("carol", "DELETE", f"/reports/{running}").status_code == 200
    # and the screenshots are PNGs of the window's size
    for name in ("console-list.png", "console-job.png"):
        assert png_size(shots / name) == WINDOW, name


def test_the_console_works_on_reportrelay_serve(tmp_path):
    # given reportrelay serve with the sandbox, as a user runs it, and its local person's password
    state = tmp_path / "state"
    with serving(state) as served:
        people_url = served.url.replace("/v1", "/people/v1")
        password = json.loads((state / "person.json").read_text(encoding="utf-8"))["password"]
        assert f"The console: {people_url}/console (sign in as local, password {password}" in served.greeting
        with chromium(tmp_path / "browser") as (driver, downloads):
            wait = WebDriverWait(driver, WAIT_SECONDS, ignored_exceptions=LIVE_PAGE)
            # when the local person opens the console it printed and signs in at serve's issuer
            driver.get(f"{people_url}/console")
            wait.until(expected_conditions.presence_of_element_located((By.ID, "sign-in")))
            driver.find_element(By.ID, "username").send_keys("local")
            driver.find_element(By.ID, "password").send_keys(password)
            driver.find_element(By.ID, "sign-in").click()
            wait.until(expected_conditions.presence_of_element_located((By.ID, "start-form")))
            # and starts the README's example request, loaded as a saved request
            page_scripts_ready(driver, wait)
            driver.find_element(By.ID, "saved-request").send_keys(str(EXAMPLE_REQUEST))
            wait.until(
                lambda _: (
                    Select(driver.find_element(By.ID, "start-connection")).first_selected_option.text
                    == "sandbox-devexpress"
                )
            )
            driver.find_element(By.ID, "start-button").click()
            # then its page follows it to ready, and the file downloads with the SHA-256 the page shows
            wait.until(expected_conditions.presence_of_element_located((By.ID, "job-id")))
            wait.until(lambda _: driver.find_element(By.ID, "state").text == "ready")
            shown = driver.find_element(By.ID, "sha256").text
            driver.find_element(By.CSS_SELECTOR, "a.download").click()
            file = downloaded(driver, downloads)
            assert sha256(file) == shown and file.name == driver.find_element(By.ID, "filename").text
            assert '"Region": "EMEA"' in driver.find_element(By.ID, "request").text
