"""The generic fault knobs of sandbox/server.py, seen from a plain HTTP client (DevExpress as the example)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from reportrelay_cli.sandbox.devexpress import DevExpressSimulator
from reportrelay_cli.sandbox.server import Simulator, _RequestHandler

PASSWORD = "knobs-password"


@pytest.fixture
def sim() -> Iterator[DevExpressSimulator]:
    with DevExpressSimulator(users={"api": PASSWORD}, generation_seconds=0) as simulator:
        yield simulator


def signed_in(sim: DevExpressSimulator) -> requests.Session:
    session = requests.Session()
    form = {"grant_type": "password", "username": "api", "password": PASSWORD}
    token = session.post(f"{sim.base_url}/oauth/token", data=form, timeout=5).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def export(
    session: requests.Session, sim: DevExpressSimulator, timeout: float | tuple[float, float] = 5
) -> requests.Response:
    body = {"exportOptions": {"exportFormat": "pdf"}}
    return session.post(f"{sim.base_url}/api/documents/export/report/10", json=body, timeout=timeout)


def test_only_paths_aims_request_faults_at_matching_paths(sim: DevExpressSimulator) -> None:
    # given 503s aimed at status checks only
    sim.faults.server_errors_next, sim.faults.server_error_status = 1, 500
    sim.faults.only_paths = r"/export/status/"
    session = signed_in(sim)
    # when an export is queued and then checked
    export_id = export(session, sim).json()["exportId"]
    first = session.get(f"{sim.base_url}/api/documents/export/status/{export_id}", timeout=5)
    second = session.get(f"{sim.base_url}/api/documents/export/status/{export_id}", timeout=5)
    # then the queue call was spared, the first check failed with the chosen status, the next one did not
    assert (first.status_code, second.status_code) == (500, 200)


def test_a_stalled_answer_arrives_after_the_client_gave_up(sim: DevExpressSimulator) -> None:
    # given the next API answer held for a second
    sim.faults.stall_next, sim.faults.stall_seconds = 1, 1.0
    session = signed_in(sim)
    started = time.monotonic()
    # when a call is made with a shorter read timeout than the stall, it times out
    with pytest.raises(requests.ReadTimeout):
        export(session, sim, timeout=(2, 0.3))
    assert time.monotonic() - started < 1.0
    # and the next request is answered at once
    assert export(session, sim).status_code == 200


def test_tokens_expire_after_the_given_number_of_api_answers(sim: DevExpressSimulator) -> None:
    # given tokens that stop working after one more API answer
    sim.faults.expire_tokens_after = 1
    session = signed_in(sim)
    # when two calls are made with the same token
    assert export(session, sim).status_code == 200
    # then the second is refused as a client would see an expired token, and the knob is spent
    assert export(session, sim).status_code == 401
    assert sim.faults.expire_tokens_after is None
    assert export(signed_in(sim), sim).status_code == 200


def test_a_simulator_without_tokens_says_so() -> None:
    with pytest.raises(NotImplementedError, match="no tokens to revoke"):
        Simulator().revoke_tokens()


def test_slow_answers_delay_every_api_request_but_not_sign_in(sim: DevExpressSimulator) -> None:
    # given every API answer delayed by 0.4 s
    sim.faults.slow_seconds = 0.4
    # when a client signs in and then queues two exports
    started = time.monotonic()
    session = signed_in(sim)
    signed_in_after = time.monotonic() - started
    first, second = export(session, sim), export(session, sim)
    total = time.monotonic() - started
    # then the sign-in was not delayed, both API calls were, and both succeeded
    assert signed_in_after < 0.4
    assert total >= 0.8
    assert (first.status_code, second.status_code) == (200, 200)


def test_sign_in_is_spared_request_faults_unless_included(sim: DevExpressSimulator) -> None:
    # given the next request throttled, sign-in spared by default
    sim.faults.throttle_next, sim.faults.throttle_retry_after = 1, 7
    # when a client signs in and queues an export
    session = signed_in(sim)
    queued = export(session, sim)
    # then the sign-in worked and the export took the 429
    assert (queued.status_code, queued.headers["Retry-After"]) == (429, "7")
    # given the next request throttled with sign-in included
    sim.faults.throttle_next, sim.faults.include_sign_in = 1, True
    # when a client signs in
    form = {"grant_type": "password", "username": "api", "password": PASSWORD}
    refused = requests.post(f"{sim.base_url}/oauth/token", data=form, timeout=5)
    # then the sign-in took the 429, and the next one works
    assert (refused.status_code, refused.headers["Retry-After"]) == (429, "7")
    assert export(signed_in(sim), sim).status_code == 200


def test_a_slow_reader_gets_the_whole_file(sim: DevExpressSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # given an 8 MiB report, and a server that gives up on a client stalled for half a second
    monkeypatch.setattr(_RequestHandler, "timeout", 0.5)
    sim.report_size = 8 * 2**20
    session = signed_in(sim)
    export_id = export(session, sim).json()["exportId"]
    # when it is read slowly, taking longer in all than that timeout but never stalling that long
    url = f"{sim.base_url}/api/documents/export/result/{export_id}"
    received = 0
    with session.get(url, stream=True, timeout=5) as answer:
        for chunk in answer.iter_content(256 * 1024):
            received += len(chunk)
            time.sleep(0.05)
    # then every byte arrived
    assert received == 8 * 2**20
