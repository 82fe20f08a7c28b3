"""What the simulators' shared base adds to every download: a strong ETag, HTTP range requests
(``Faults.serve_ranges``), a file that changes between downloads (``change_downloads_next``), a paced body
(``download_bytes_per_second``), the cut faults on a 206, and the ``download_bytes_sent`` counter.

Exercised over real HTTP against the Torus simulator, whose download is one GET with a bearer token.
"""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator

import pytest
import requests

from reportrelay_cli.sandbox.server import Request, Response, Simulator, route
from reportrelay_cli.sandbox.torus import API_USER, TorusSimulator

TOKEN = "torus-range-token-3c1d"
QUEUE_LIST = "/api/tenant/report/queue/list/get"
SIZE = 256 * 1024


@pytest.fixture
def sim() -> Iterator[TorusSimulator]:
    with TorusSimulator(tokens={TOKEN: API_USER}, report_size=SIZE) as simulator:
        yield simulator


def get(sim: Simulator, path: str, **headers: str) -> requests.Response:
    sent = {"Authorization": f"Bearer {TOKEN}", **{name.replace("_", "-"): v for name, v in headers.items()}}
    return requests.get(f"{sim.base_url}{path}", headers=sent, timeout=10)


def finished_file(sim: TorusSimulator) -> tuple[str, int]:
    """The download path of a run that has finished, and the run's id (the key of ``sim.served``)."""
    run_id = sim.add_run(1087, generation_seconds=0)
    listing = get(sim, QUEUE_LIST)
    assert listing.status_code == 200
    run = next(run for run in listing.json() if run["scheduledTaskRunNowId"] == run_id)
    return f"/api/file/download/report/{run['fileGuid']}", run_id


def strong_etag(content: bytes) -> str:
    return f'"{hashlib.sha256(content).hexdigest()[:32]}"'


def received_before_the_cut(answer: requests.Response) -> bytes:
    """The bytes of a streamed body read until the connection broke off (or ended)."""
    pieces = []
    try:
        for piece in answer.iter_content(8192):
            pieces.append(piece)
    except requests.exceptions.RequestException:
        pass
    return b"".join(pieces)


def settled_count(sim: Simulator, within: float = 5.0) -> int:
    """``download_bytes_sent`` once it has stopped moving (two equal readings 0.3 s apart)."""
    deadline = time.monotonic() + within
    last = sim.download_bytes_sent
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = sim.download_bytes_sent
        if now == last:
            return now
        last = now
    raise AssertionError(f"download_bytes_sent was still moving after {within} s")


# ---------------------------------------------------------------------------------------------------
# Validators


def test_every_download_carries_a_strong_etag_of_its_bytes_that_is_stable(sim: TorusSimulator) -> None:
    # given a finished run
    path, run_id = finished_file(sim)
    # when it is downloaded twice
    first, second = get(sim, path), get(sim, path)
    # then both answers carry the same strong ETag: the first 32 hex digits of the body's SHA-256
    assert first.status_code == second.status_code == 200
    assert hashlib.sha256(first.content).hexdigest() == sim.served[str(run_id)]
    assert first.headers["ETag"] == strong_etag(first.content) == second.headers["ETag"]
    # and without range support nothing says ranges are accepted
    assert "Accept-Ranges" not in first.headers


class _OwnTags(Simulator):
    """A download whose handler sets its own (weak) ETag."""

    name = "own-tags"

    @route("GET", "/files/{name}", download=True)
    def file(self, request: Request) -> Response:
        return Response(
            200, bytes(range(100)), {"Content-Type": "application/octet-stream", "ETag": 'W/"v7"'}
        )


def test_an_etag_the_handler_set_is_kept_and_a_weak_one_never_satisfies_if_range() -> None:
    with _OwnTags() as own:
        own.faults.serve_ranges = True
        # when the file is downloaded whole, then asked for a range, then asked for it If-Range its weak tag
        whole = get(own, "/files/a")
        part = get(own, "/files/a", Range="bytes=90-")
        guarded = get(own, "/files/a", Range="bytes=90-", If_Range='W/"v7"')
    # then the handler's tag is what is sent, not one computed here
    assert whole.headers["ETag"] == part.headers["ETag"] == 'W/"v7"'
    assert part.status_code == 206 and part.content == bytes(range(90, 100))
    # and a weak tag cannot match strongly (RFC 9110 section 13.1.5), so the whole file comes back
    assert guarded.status_code == 200 and guarded.content == bytes(range(100))


# ---------------------------------------------------------------------------------------------------
# Ranges


def test_without_serve_ranges_a_range_request_gets_the_whole_file(sim: TorusSimulator) -> None:
    # given a simulator without range support (the default)
    path, _ = finished_file(sim)
    whole = get(sim, path).content
    # when a client asks for the second half
    answer = get(sim, path, Range=f"bytes={SIZE // 2}-")
    # then the Range is ignored: 200, the whole file, nothing about ranges
    assert answer.status_code == 200
    assert answer.content == whole and len(whole) == SIZE
    assert "Accept-Ranges" not in answer.headers and "Content-Range" not in answer.headers
    # and the request log shows the Range the client sent (Torus's own headers compose with the base's)
    logged = sim.calls("GET", "/api/file/download/report/{fileGuid}")[-1]
    assert logged.headers["Range"] == f"bytes={SIZE // 2}-"
    assert logged.headers["Authorization"] == f"Bearer {TOKEN}"


def test_with_serve_ranges_an_open_range_gets_206_with_exactly_that_slice(sim: TorusSimulator) -> None:
    # given range support and a finished run
    sim.faults.serve_ranges = True
    path, _ = finished_file(sim)
    whole = get(sim, path)
    # when the client resumes from byte 100000
    part = get(sim, path, Range="bytes=100000-")
    # then the 200 said ranges are accepted, and the 206 carries just those bytes and where they sit
    assert whole.status_code == 200 and whole.headers["Accept-Ranges"] == "bytes"
    assert part.status_code == 206
    assert part.content == whole.content[100000:]
    assert part.headers["Content-Range"] == f"bytes 100000-{SIZE - 1}/{SIZE}"
    assert part.headers["Content-Length"] == str(SIZE - 100000)
    # and otherwise it is headed as the 200 was
    for name in ("ETag", "Content-Disposition", "Content-Type", "Accept-Ranges"):
        assert part.headers[name] == whole.headers[name]


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=10-19", 10, 19),
        ("bytes=0-0", 0, 0),
        (f"bytes={SIZE - 5}-{SIZE * 4}", SIZE - 5, SIZE - 1),  # an end beyond the file is clamped
        ("bytes=-300", SIZE - 300, SIZE - 1),  # the last 300 bytes
        (f"BYTES = 7 - {SIZE - 1}", 7, SIZE - 1),
    ],
)
def test_closed_and_suffix_ranges_get_the_bytes_they_name(
    sim: TorusSimulator, header: str, first: int, last: int
) -> None:
    sim.faults.serve_ranges = True
    path, _ = finished_file(sim)
    whole = get(sim, path).content
    # when a range is asked for
    part = get(sim, path, Range=header)
    # then bytes first..last (inclusive) come back, and the Content-Range says so
    assert part.status_code == 206
    assert part.content == whole[first : last + 1]
    assert part.headers["Content-Range"] == f"bytes {first}-{last}/{SIZE}"


@pytest.mark.parametrize("header", ["bytes=0-9,20-29", "bytes=20-10", "bytes=-", "items=0-9", "bytes=x-"])
def test_several_or_malformed_ranges_get_the_whole_file(sim: TorusSimulator, header: str) -> None:
    sim.faults.serve_ranges = True
    path, _ = finished_file(sim)
    # when the Range header is not one range this simulator serves
    answer = get(sim, path, Range=header)
    # then it is ignored and the whole file is sent
    assert answer.status_code == 200
    assert len(answer.content) == SIZE and "Content-Range" not in answer.headers


def test_if_range_with_the_current_etag_gets_the_part_and_anything_else_the_whole_file(
    sim: TorusSimulator,
) -> None:
    sim.faults.serve_ranges = True
    path, _ = finished_file(sim)
    whole = get(sim, path)
    etag = whole.headers["ETag"]
    # when resuming with the ETag of the copy we hold, with another tag, and with a date
    same = get(sim, path, Range="bytes=5000-", If_Range=etag)
    other = get(sim, path, Range="bytes=5000-", If_Range='"0123456789abcdef0123456789abcdef"')
    dated = get(sim, path, Range="bytes=5000-", If_Range="Wed, 21 Oct 2015 07:28:00 GMT")
    # then only the matching tag gets the rest of the file; the others get it all again, 200
    assert same.status_code == 206 and same.content == whole.content[5000:]
    for answer in (other, dated):
        assert answer.status_code == 200
        assert answer.content == whole.content and "Content-Range" not in answer.headers
    # and the request log shows the If-Range sent
    assert sim.request_log[-1].headers["If-Range"] == "Wed, 21 Oct 2015 07:28:00 GMT"


def test_a_range_starting_beyond_the_end_is_416_unless_if_range_asks_for_the_new_file(
    sim: TorusSimulator,
) -> None:
    sim.faults.serve_ranges = True
    path, _ = finished_file(sim)
    before = sim.download_bytes_sent
    # when a range starts at the end of the file, then the same with an If-Range of another version
    beyond = get(sim, path, Range=f"bytes={SIZE}-")
    stale = get(sim, path, Range=f"bytes={SIZE}-", If_Range='"ffffffffffffffffffffffffffffffff"')
    # then the first is 416 naming the length, and sends no file bytes
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{SIZE}"
    assert "Message" in beyond.json()  # Torus's error shape
    # and the second, whose If-Range fails, gets the whole file (RFC 9110 section 13.2.2)
    assert stale.status_code == 200 and len(stale.content) == SIZE
    assert sim.download_bytes_sent - before == SIZE


# ---------------------------------------------------------------------------------------------------
# A file that changes


def test_change_downloads_next_serves_another_version_once_then_the_original(sim: TorusSimulator) -> None:
    path, _ = finished_file(sim)
    original = get(sim, path)
    # given the next download set to find the file changed
    sim.faults.change_downloads_next = 1
    # when it is downloaded twice more
    changed, again = get(sim, path), get(sim, path)
    # then the first is another version: as long, other bytes, another ETag
    assert len(changed.content) == len(original.content)
    assert changed.content != original.content
    assert changed.headers["ETag"] == strong_etag(changed.content) != original.headers["ETag"]
    # and the counter was used up, so the next is the original again
    assert again.content == original.content and again.headers["ETag"] == original.headers["ETag"]
    assert sim.faults.change_downloads_next == 0


def test_resuming_a_file_that_changed_gets_the_new_version_whole(sim: TorusSimulator) -> None:
    sim.faults.serve_ranges = True
    path, _ = finished_file(sim)
    original = get(sim, path)
    sim.faults.change_downloads_next = 1
    # when a client resumes with the ETag of the copy it started, after the file changed
    resumed = get(sim, path, Range="bytes=1000-", If_Range=original.headers["ETag"])
    # then it gets the new version whole, not the rest of it spliced onto the old bytes
    assert resumed.status_code == 200
    assert len(resumed.content) == SIZE and resumed.content != original.content
    assert resumed.headers["ETag"] == strong_etag(resumed.content)


# ---------------------------------------------------------------------------------------------------
# A paced body


def test_a_paced_download_takes_as_long_as_its_rate_says(sim: TorusSimulator) -> None:
    sim.report_size = 2 * 1024 * 1024
    path, run_id = finished_file(sim)
    # given bodies paced to 4 MiB/s
    sim.faults.download_bytes_per_second = 4 * 1024 * 1024
    # when the 2 MiB file is downloaded
    started = time.monotonic()
    answer = get(sim, path)
    elapsed = time.monotonic() - started
    # then it took about half a second and arrived whole
    assert answer.status_code == 200
    assert hashlib.sha256(answer.content).hexdigest() == sim.served[str(run_id)]
    assert 0.4 <= elapsed < 5


def test_a_paced_206_is_paced_too(sim: TorusSimulator) -> None:
    sim.report_size = 2 * 1024 * 1024
    sim.faults.serve_ranges = True
    path, _ = finished_file(sim)
    sim.faults.download_bytes_per_second = 2 * 1024 * 1024
    # when the second MiB is asked for at 2 MiB/s
    started = time.monotonic()
    part = get(sim, path, Range="bytes=1048576-")
    elapsed = time.monotonic() - started
    # then the slice took about half a second
    assert part.status_code == 206 and len(part.content) == 1024 * 1024
    assert 0.4 <= elapsed < 5


def test_a_client_hanging_up_on_a_paced_download_stops_the_writer_quietly(
    sim: TorusSimulator, capfd: pytest.CaptureFixture[str]
) -> None:
    sim.report_size = 4 * 1024 * 1024
    path, _ = finished_file(sim)
    sim.faults.download_bytes_per_second = 1024 * 1024  # 4 s for the whole file
    # when a client reads the start of the body and closes the connection
    address = ("127.0.0.1", int(sim.base_url.rsplit(":", 1)[1]))
    with socket.create_connection(address, timeout=5) as client:
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        assert client.recv(65536).startswith(b"HTTP/1.1 200")
    # then the server stops writing well before the end of the file
    assert 0 < settled_count(sim) < 4 * 1024 * 1024
    # and it printed no traceback and still serves
    sim.faults.download_bytes_per_second = None
    assert len(get(sim, path).content) == 4 * 1024 * 1024
    assert "Traceback" not in capfd.readouterr().err


# ---------------------------------------------------------------------------------------------------
# The cut faults on a 206, and the byte counter


@pytest.mark.parametrize("knob", ["break_downloads_next", "truncate_downloads_next"])
def test_a_cut_fault_cuts_a_206_half_way_through_its_slice(sim: TorusSimulator, knob: str) -> None:
    sim.faults.serve_ranges = True
    path, _ = finished_file(sim)
    whole = get(sim, path).content
    setattr(sim.faults, knob, 1)
    before = sim.download_bytes_sent
    # when a range of the file is asked for
    cut = requests.get(
        f"{sim.base_url}{path}",
        headers={"Authorization": f"Bearer {TOKEN}", "Range": "bytes=6000-"},
        stream=True,
        timeout=10,
    )
    received = received_before_the_cut(cut)
    # then it is a 206 announcing the slice but delivering only the first half of it
    assert cut.status_code == 206
    assert cut.headers["Content-Length"] == str(SIZE - 6000)
    assert len(received) < SIZE - 6000
    assert received == whole[6000 : 6000 + len(received)]
    assert sim.download_bytes_sent - before == (SIZE - 6000) // 2
    # and the next ranged request is whole
    retry = get(sim, path, Range="bytes=6000-")
    assert retry.status_code == 206 and retry.content == whole[6000:]


def test_download_bytes_sent_counts_file_bytes_written_and_nothing_else(sim: TorusSimulator) -> None:
    sim.faults.serve_ranges = True
    path, _ = finished_file(sim)
    start = sim.download_bytes_sent
    # when the file is downloaded whole, then a 1000-byte range, then a range beyond the end,
    # then the queue is listed (not a download)
    get(sim, path)
    get(sim, path, Range="bytes=0-999")
    get(sim, path, Range=f"bytes={SIZE + 1}-")
    get(sim, QUEUE_LIST)
    # then only the file bytes of the 200 and the 206 were counted
    assert sim.download_bytes_sent - start == SIZE + 1000
