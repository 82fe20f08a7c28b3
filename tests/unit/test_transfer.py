"""Streaming a report into S3: the whole, verified file is stored, or nothing is."""

from __future__ import annotations

import base64
import hashlib
import itertools
import random
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest
import requests
import urllib3.exceptions
from awscrt import checksums
from botocore.exceptions import ClientError

from reportrelay import transfer
from reportrelay.errors import DownloadInterrupted, TransferOutOfTime
from reportrelay.providers.base import streamed
from reportrelay.transfer import (
    DEFAULT_PART_SIZE,
    MAX_PARTS,
    ObjectExists,
    PendingObject,
    StoredObject,
    UploadedPart,
    crc64nvme_base64,
    full_object_crc64nvme,
    part_sizes,
    same_checksum,
    stream_to_s3,
)
from reportrelay_cli.sandbox.server import Request, Response, Simulator, file_response, route

BUCKET = "reportrelay-test-reports"
KEY = "reports/job-1/report.pdf"
MiB = 1024 * 1024
TiB = 1024 * 1024 * MiB
PART = 5 * MiB  # the smallest part S3 (and moto) accepts for every part but the last


def random_bytes(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def in_chunks(data: bytes, *sizes: int) -> Iterator[bytes]:
    """``data`` cut into chunks of the given sizes (the last size repeats until the data runs out)."""
    position, index = 0, 0
    while position < len(data):
        size = sizes[min(index, len(sizes) - 1)]
        yield data[position : position + size]
        position += size
        index += 1


def breaking_after(data: bytes, error: BaseException, chunk_size: int = MiB) -> Iterator[bytes]:
    """Yields ``data`` and then, instead of ending, raises ``error`` like a dropped connection."""
    yield from in_chunks(data, chunk_size)
    raise error


def store(s3, chunks, **options) -> StoredObject:
    arguments = {
        "s3_client": s3,
        "bucket": BUCKET,
        "key": KEY,
        "content_type": "application/pdf",
        "filename": "report.pdf",
        "part_size": PART,
    }
    return stream_to_s3(chunks, **{**arguments, **options})


def stored_bytes(s3) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read()


def s3_checksum(s3) -> str | None:
    """S3's own full-object CRC64NVME of the stored object, as it reports it."""
    attributes = s3.get_object_attributes(Bucket=BUCKET, Key=KEY, ObjectAttributes=["Checksum"])
    assert attributes["Checksum"].get("ChecksumType") == "FULL_OBJECT"
    return attributes["Checksum"].get("ChecksumCRC64NVME")


def crc64nvme_of(data: bytes) -> str:
    """The base64 CRC64NVME of ``data`` computed in one go, as S3 computes it over the whole object."""
    return base64.b64encode(checksums.crc64nvme(data).to_bytes(8, "big")).decode()


def assert_nothing_stored(s3) -> None:
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def counting_part_uploads(s3, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records the size of every part the code under test uploads."""
    sizes: list[int] = []
    upload_part = s3.upload_part

    def spy(**kwargs):
        sizes.append(len(kwargs["Body"]))
        return upload_part(**kwargs)

    monkeypatch.setattr(s3, "upload_part", spy)
    return sizes


def test_a_multi_part_file_is_stored_byte_identical_with_size_checksums_and_content_type(s3, monkeypatch):
    # given an 11 MiB report arriving in 1 MiB chunks, with 5 MiB parts
    data = random_bytes(11 * MiB)
    part_sizes = counting_part_uploads(s3, monkeypatch)
    # when it is streamed into S3
    stored = store(s3, in_chunks(data, MiB), expected_size=len(data))
    # then the object holds exactly those bytes, uploaded as three parts
    assert stored_bytes(s3) == data
    assert part_sizes == [PART, PART, MiB]
    # and the result, S3's own checksum and the headers describe it
    digest = hashlib.sha256(data).hexdigest()
    crc = crc64nvme_of(data)
    assert stored == StoredObject(BUCKET, KEY, len(data), digest, "application/pdf", "report.pdf", crc)
    assert s3_checksum(s3) == crc
    head = s3.head_object(Bucket=BUCKET, Key=KEY)
    assert head["ContentLength"] == len(data)
    assert head["ContentType"] == "application/pdf"
    assert head["ContentDisposition"] == 'attachment; filename="report.pdf"'


def test_a_file_of_exactly_whole_parts_gets_no_empty_trailing_part(s3, monkeypatch):
    # given a report of exactly two parts
    data = random_bytes(2 * PART)
    part_sizes = counting_part_uploads(s3, monkeypatch)
    # when it is streamed into S3
    store(s3, in_chunks(data, 3 * MiB))
    # then it is uploaded as exactly those two parts
    assert part_sizes == [PART, PART]
    assert stored_bytes(s3) == data


def test_an_empty_stream_is_stored_as_an_empty_object(s3):
    # given a report with no bytes at all (and a provider that says so)
    # when it is streamed into S3
    stored = store(s3, iter([]), expected_size=0)
    # then an empty object exists, with the SHA-256 of nothing
    empty_digest = hashlib.sha256(b"").hexdigest()
    assert stored_bytes(s3) == b""
    assert (stored.size, stored.sha256) == (0, empty_digest)
    assert s3_checksum(s3) == stored.checksum_crc64nvme == crc64nvme_of(b"")
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_irregular_chunk_sizes_are_reassembled_exactly(s3):
    # given chunks of awkward sizes that straddle the part boundaries, including empty ones
    data = random_bytes(11 * MiB + 17)
    sizes = [1, 7 * MiB, 3, 0, PART - 5, 2 * MiB + 1, 0, 9]
    chunks, position = [], 0
    for size in sizes:
        chunks.append(data[position : position + size])
        position += size
    chunks.append(data[position:])
    # when they are streamed into S3
    stored = store(s3, iter(chunks))
    # then the object is the original bytes
    assert stored_bytes(s3) == data
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "error",
    [
        requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead(0 bytes read)"),
        requests.exceptions.ConnectionError("Connection aborted."),
        urllib3.exceptions.ProtocolError("Connection broken: InvalidChunkLength"),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_download_that_breaks_off_half_way_stores_nothing(s3, error):
    # given a 6 MiB download (more than one part already uploaded) whose connection then breaks
    chunks = breaking_after(random_bytes(6 * MiB), error)
    # when it is streamed into S3
    with pytest.raises(DownloadInterrupted) as raised:
        store(s3, chunks, expected_size=10 * MiB)
    # then a retryable DownloadInterrupted says how far it got, caused by the network error
    assert str(raised.value).startswith(f"download broke off after {6 * MiB} bytes: {type(error).__name__}")
    assert str(raised.value).endswith("; nothing was stored")
    assert raised.value.__cause__ is error
    assert raised.value.retryable
    # and there is no object and no open multipart upload
    assert_nothing_stored(s3)


def test_the_reason_for_a_broken_download_leaves_out_urls(s3):
    # given a connection error whose message names the URL, with its query string
    error = requests.exceptions.ConnectionError(
        "HTTPSConnectionPool(host='reports.example', port=443): Read timed out. "
        "(read timeout=30) url: /export?token=SECRET"
    )
    # when the download breaks with it
    with pytest.raises(DownloadInterrupted) as raised:
        store(s3, breaking_after(b"abc", error))
    # then the message keeps the reason but not the query string
    assert "Read timed out" in str(raised.value)
    assert "SECRET" not in str(raised.value)
    assert_nothing_stored(s3)


def test_fewer_bytes_than_announced_store_nothing(s3):
    # given a provider that announced 8 MiB but whose stream ends cleanly after 6 MiB
    chunks = in_chunks(random_bytes(6 * MiB), MiB)
    # when it is streamed into S3
    with pytest.raises(DownloadInterrupted, match=f"download ended after {6 * MiB} of {8 * MiB} bytes"):
        store(s3, chunks, expected_size=8 * MiB)
    # then there is no object and no open multipart upload
    assert_nothing_stored(s3)


def test_more_bytes_than_announced_store_nothing_and_stop_reading(s3):
    # given a provider that announced 1 MiB but keeps sending
    sent = []

    def endless() -> Iterator[bytes]:
        while True:
            sent.append(MiB)
            yield bytes(MiB)

    # when it is streamed into S3
    with pytest.raises(DownloadInterrupted, match="more than the announced"):
        store(s3, endless(), expected_size=MiB)
    # then reading stopped at the first surplus chunk, and nothing is stored
    assert len(sent) == 2
    assert_nothing_stored(s3)


def test_a_checksum_that_does_not_match_stores_nothing(s3):
    # given a provider that announced the SHA-256 of different bytes
    data = random_bytes(MiB)
    announced = hashlib.sha256(b"something else").hexdigest()
    # when the download is streamed into S3
    with pytest.raises(DownloadInterrupted, match="SHA-256"):
        store(s3, in_chunks(data, 4096), expected_size=len(data), expected_sha256=announced)
    # then nothing is stored
    assert_nothing_stored(s3)


def test_a_matching_checksum_is_accepted_in_any_case(s3):
    # given a provider that announced the right SHA-256 in upper case
    data = random_bytes(1000)
    announced = hashlib.sha256(data).hexdigest().upper()
    # when the download is streamed into S3
    stored = store(s3, iter([data]), expected_sha256=announced)
    # then it is stored
    assert stored.sha256 == announced.lower()
    assert stored_bytes(s3) == data


def test_an_s3_failure_during_a_part_upload_propagates_and_aborts_the_upload(s3, monkeypatch):
    # given an S3 that fails the second part
    upload_part = s3.upload_part
    failure = ClientError(
        {"Error": {"Code": "InternalError", "Message": "We encountered an error"}}, "UploadPart"
    )

    def flaky_upload_part(**kwargs):
        if kwargs["PartNumber"] == 2:
            raise failure
        return upload_part(**kwargs)

    monkeypatch.setattr(s3, "upload_part", flaky_upload_part)
    # when an 11 MiB report is streamed into S3
    with pytest.raises(ClientError) as raised:
        store(s3, in_chunks(random_bytes(11 * MiB), MiB))
    # then S3's own error reaches the caller, unwrapped, and the upload was aborted
    assert raised.value is failure
    assert_nothing_stored(s3)


def test_an_error_that_is_not_a_network_error_propagates_unchanged(s3):
    # given a stream that fails with a programming error
    failure = ValueError("decoder bug")
    # when it is streamed into S3
    with pytest.raises(ValueError) as raised:
        store(s3, breaking_after(random_bytes(100), failure))
    # then that very error reaches the caller, and nothing is stored
    assert raised.value is failure
    assert_nothing_stored(s3)


def test_a_failed_abort_does_not_hide_the_original_error(s3, monkeypatch):
    # given a broken download and an S3 that also refuses the abort
    def failing_abort(**kwargs):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "AbortMultipartUpload")

    monkeypatch.setattr(s3, "abort_multipart_upload", failing_abort)
    # when it is streamed into S3
    # then the caller still learns that the download broke off
    with pytest.raises(DownloadInterrupted, match="broke off after 3 bytes"):
        store(s3, breaking_after(b"abc", requests.exceptions.ChunkedEncodingError("broken")))


@pytest.mark.parametrize("announced", [False, True], ids=["size unknown", "size announced"])
def test_every_part_carries_its_crc64nvme_for_s3_to_check_and_is_sent_unsigned(s3, announced):
    # given a report of two parts
    data = random_bytes(PART + 3)
    sent: list[dict] = []

    def note(request, **kwargs):
        sent.append({name.lower(): value for name, value in request.headers.items()})

    s3.meta.events.register("before-send.s3.UploadPart", note)
    # when it is streamed into S3 (over HTTPS, as to AWS)
    stored = store(s3, in_chunks(data, MiB), expected_size=len(data) if announced else None)
    # then each part was sent with S3's CRC64NVME of its bytes in a trailer, which S3 verifies on receipt,
    # and its payload unsigned: the SDK did not read the whole part to hash it before sending any of it
    assert len(sent) == 2
    for headers in sent:
        assert headers["x-amz-trailer"] == b"x-amz-checksum-crc64nvme"
        assert headers["x-amz-content-sha256"] == b"STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    # and the parts' own checksums combine into the whole object's, which S3 checked on completion
    assert stored.checksum_crc64nvme == crc64nvme_of(data)


def test_completion_waits_for_the_caller_and_says_what_will_be_stored(s3):
    # given a caller that wants to note an upload before it completes
    seen: list[PendingObject] = []

    def note(pending: PendingObject) -> None:
        assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0  # not yet visible
        seen.append(pending)

    # when a report is stored
    stored = store(s3, iter([b"report"]), before_completion=note)
    # then the caller was told the key, size, SHA-256 and S3 checksum the object then had
    (pending,) = seen
    assert (pending.key, pending.size, pending.sha256) == (KEY, 6, stored.sha256)
    assert pending.checksum_crc64nvme == stored.checksum_crc64nvme == crc64nvme_of(b"report")
    assert (pending.content_type, pending.filename) == ("application/pdf", "report.pdf")


def test_a_caller_that_refuses_before_completion_leaves_nothing(s3):
    def refuse(pending: PendingObject) -> None:
        raise RuntimeError("job store unavailable")

    with pytest.raises(RuntimeError, match="job store unavailable"):
        store(s3, iter([b"report"]), before_completion=refuse)
    assert_nothing_stored(s3)


def test_a_key_that_already_holds_an_object_is_never_overwritten(s3):
    # given an earlier run that stored the report
    store(s3, iter([b"first"]))
    # when another run streams (other bytes) to the same key
    with pytest.raises(ObjectExists) as raised:
        store(s3, iter([b"second"]))
    # then the completion is refused, the first object stays, and the second upload is aborted
    assert raised.value.key == KEY
    assert stored_bytes(s3) == b"first"
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_a_transfer_stops_cleanly_at_its_time_limit(s3):
    # given a clock that runs one second per chunk, and a limit five seconds away
    now = [0.0]

    def slow_chunks() -> Iterator[bytes]:
        for _ in range(100):
            now[0] += 1.0
            yield b"x" * MiB

    # when the stream is stored with that limit
    with pytest.raises(TransferOutOfTime) as raised:
        store(s3, slow_chunks(), stop_at=5.0, clock=lambda: now[0], expected_size=100 * MiB)
    # then it stopped there, aborted the upload and says how far it got and why
    assert "reached 5.0 MiB of 100.0 MiB" in str(raised.value)
    assert "within its function's time limit" in str(raised.value)
    assert "nothing was stored" in str(raised.value)
    assert_nothing_stored(s3)


def test_without_a_time_limit_a_transfer_runs_to_the_end(s3):
    start = time.monotonic()
    stored = store(s3, in_chunks(b"y" * (2 * MiB), MiB), stop_at=start + 3600)
    assert stored.size == 2 * MiB


def test_a_non_ascii_file_name_is_offered_exactly_with_an_ascii_fallback(s3):
    # given a file name with accents, a non-Latin script, a quote and a percent sign
    filename = 'Umsätze "Q1" 100% 报告.xlsx'
    # when a report with that name is streamed into S3
    store(s3, iter([b"x"]), filename=filename)
    # then the header is ASCII, with an approximate filename and the exact name in filename*
    disposition = s3.head_object(Bucket=BUCKET, Key=KEY)["ContentDisposition"]
    assert disposition == (
        'attachment; filename="Umsatze _Q1_ 100_ __.xlsx"; '
        "filename*=UTF-8''Ums%C3%A4tze%20%22Q1%22%20100%25%20%E6%8A%A5%E5%91%8A.xlsx"
    )


def test_the_stored_object_is_described_by_a_plain_dict():
    # given a stored object
    stored = StoredObject("bucket", "key", 3, "ab" * 32, "text/csv", "a.csv", "Y3JjNjRudm0=")
    # when it is turned into workflow state
    # then it is a plain dict with exactly its fields
    assert stored.to_dict() == {
        "bucket": "bucket",
        "key": "key",
        "size": 3,
        "sha256": "ab" * 32,
        "content_type": "text/csv",
        "filename": "a.csv",
        "checksum_crc64nvme": "Y3JjNjRudm0=",
    }


# ---- over real HTTP: each way the simulators cut a download is caught, and nothing is stored


class _FileServer(Simulator):
    name = "file-server"
    content = random_bytes(3 * MiB, seed=7)

    @route("GET", "/file", download=True)
    def file(self, request: Request) -> Response:
        return file_response(self.content, "application/pdf", "report.pdf")


@pytest.mark.parametrize(
    ("knob", "reason"),
    [
        ("break_downloads_next", "IncompleteRead"),
        ("truncate_downloads_next", "IncompleteRead"),
        ("reset_downloads_next", "Connection"),
    ],
)
def test_a_download_cut_short_over_http_is_interrupted_and_stores_nothing(s3, knob, reason):
    # given a server that cuts the next download short (half the announced Content-Length)
    with _FileServer() as server:
        setattr(server.faults, knob, 1)
        response = requests.get(f"{server.base_url}/file", stream=True, timeout=10)
        result = streamed(response, "report.pdf", chunk_size=64 * 1024)
        # when it is streamed into S3 with the announced length
        with pytest.raises(DownloadInterrupted) as raised:
            store(s3, result.chunks, expected_size=result.content_length)
        # then the error says the download broke off, and there is no object and no open upload
        assert result.content_length == len(_FileServer.content)
        assert "download broke off" in str(raised.value) and reason in str(raised.value)
        assert "nothing was stored" in str(raised.value)
        assert_nothing_stored(s3)
        # and the next download, uncut, is stored whole with its SHA-256
        again = streamed(requests.get(f"{server.base_url}/file", stream=True, timeout=10), "report.pdf")
        stored = store(s3, again.chunks, expected_size=again.content_length)
        assert stored.sha256 == hashlib.sha256(_FileServer.content).hexdigest()
        assert same_checksum(s3_checksum(s3), stored.checksum_crc64nvme)


def test_a_content_encoded_download_is_not_measured_against_its_compressed_length():
    # given an answer whose Content-Length counts gzip-compressed bytes, which requests decodes
    response = requests.Response()
    response.headers.update({"Content-Length": "100", "Content-Encoding": "gzip"})
    # then the decoded stream is not held to the compressed length
    assert streamed(response, "report.csv").content_length is None


# ---- the pipeline: download and upload overlap, memory stays bounded, every failure leaves nothing


def test_the_next_part_is_downloaded_while_the_previous_one_uploads(s3, monkeypatch):
    # given an S3 whose first part upload only finishes once the download has gone on into the second part
    data = random_bytes(3 * PART)
    reading_on = threading.Event()
    upload_part = s3.upload_part

    def upload_part_waiting_for_the_reader(**kwargs):
        if kwargs["PartNumber"] == 1:
            assert reading_on.wait(timeout=10), "the download did not go on while part 1 was uploading"
        return upload_part(**kwargs)

    def source() -> Iterator[bytes]:
        for number, chunk in enumerate(in_chunks(data, MiB)):
            if number == 6:  # the second MiB of part 2
                reading_on.set()
            yield chunk

    monkeypatch.setattr(s3, "upload_part", upload_part_waiting_for_the_reader)
    # when the report is streamed into S3 (a sequential transfer would wait for part 1 forever)
    stored = store(s3, source(), expected_size=len(data))
    # then it was stored whole
    assert stored_bytes(s3) == data
    assert s3_checksum(s3) == stored.checksum_crc64nvme == crc64nvme_of(data)


def test_with_an_announced_size_a_part_is_sent_while_it_is_still_being_filled(s3, monkeypatch):
    # given a download of announced size that, after 2 MiB, waits until S3 has been sent the first MiB
    data = random_bytes(2 * PART)
    first_mib_sent = threading.Event()
    upload_part = s3.upload_part

    def upload_part_reading_as_it_sends(**kwargs):
        body = kwargs["Body"]
        if kwargs["PartNumber"] == 1:
            first = bytearray()
            while len(first) < MiB:  # what the SDK sends first, as it arrives (a read may be short)
                first += body.read(MiB - len(first))
            assert first == data[:MiB]
            first_mib_sent.set()
            body.seek(0)
        return upload_part(**kwargs)

    def source() -> Iterator[bytes]:
        for number, chunk in enumerate(in_chunks(data, MiB)):
            if number == 2:
                assert first_mib_sent.wait(timeout=10), "part 1 was not being sent while it was filled"
            yield chunk

    monkeypatch.setattr(s3, "upload_part", upload_part_reading_as_it_sends)
    # when the report is streamed into S3
    stored = store(s3, source(), expected_size=len(data))
    # then part 1's upload began with its first bytes, and the object is whole and checked by S3
    assert first_mib_sent.is_set()
    assert stored_bytes(s3) == data
    assert s3_checksum(s3) == stored.checksum_crc64nvme == crc64nvme_of(data)


class CountingS3:
    """A fake S3 that is slow to take each part and counts what is in memory: checks like S3, keeps sizes."""

    def __init__(self, *, seconds_per_part: float = 0.0, fail_part: int | None = None) -> None:
        self.seconds_per_part = seconds_per_part
        self.fail_part = fail_part
        self.lock = threading.Lock()
        self.parts: dict[int, int] = {}
        self.uploading = 0
        self.most_uploading = 0
        self.calls: list[str] = []
        self.completed: list[dict] | None = None
        self.aborted = False

    def create_multipart_upload(self, **kwargs):
        self.calls.append("create")
        assert (kwargs["ChecksumAlgorithm"], kwargs["ChecksumType"]) == ("CRC64NVME", "FULL_OBJECT")
        return {"UploadId": "upload-1"}

    def upload_part(self, *, PartNumber, Body, ChecksumAlgorithm, **_):
        with self.lock:
            self.uploading += 1
            self.most_uploading = max(self.most_uploading, self.uploading)
        try:
            time.sleep(self.seconds_per_part)
            if PartNumber == self.fail_part:
                raise ClientError({"Error": {"Code": "InternalError", "Message": "part lost"}}, "UploadPart")
            assert ChecksumAlgorithm == "CRC64NVME"
            size, block = 0, bytearray(64 * 1024)
            while count := Body.readinto(block):  # read it as the SDK does, without holding a copy
                size += count
            self.parts[PartNumber] = size
            return {"ETag": f'"{PartNumber}"'}
        finally:
            with self.lock:
                self.uploading -= 1
                self.calls.append(f"part {PartNumber}")

    def complete_multipart_upload(self, *, MultipartUpload, **_):
        assert self.uploading == 0
        self.calls.append("complete")
        self.completed = MultipartUpload["Parts"]
        return {}

    def abort_multipart_upload(self, **_):
        assert self.uploading == 0, "aborted while a part was still being uploaded"
        self.calls.append("abort")
        self.aborted = True
        return {}


def test_a_slow_s3_slows_the_download_instead_of_filling_memory():
    # given an S3 that takes 20 ms per part and a source that could deliver everything at once
    part, chunk = MiB, 256 * 1024
    s3 = CountingS3(seconds_per_part=0.02)
    read, ahead = [0], [0]
    block = random_bytes(chunk)

    def fast_source() -> Iterator[bytes]:
        for _ in range(40 * part // chunk):
            uploaded = sum(s3.parts.values())
            ahead[0] = max(ahead[0], read[0] - uploaded)
            read[0] += chunk
            yield block

    # when 40 parts are streamed
    tracemalloc.start()
    try:
        store(s3, fast_source(), part_size=part)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # then the download never ran more than the parts in memory ahead of the upload
    assert transfer.PARTS_IN_MEMORY == 5 and transfer.UPLOAD_THREADS == 4
    assert ahead[0] <= transfer.PARTS_IN_MEMORY * part
    assert peak <= (transfer.PARTS_IN_MEMORY + 1) * part
    # and parts were uploaded four at a time, all of them, in order at completion
    assert s3.most_uploading == transfer.UPLOAD_THREADS
    assert [entry["PartNumber"] for entry in s3.completed] == list(range(1, 41))
    assert set(s3.parts.values()) == {part}


def test_a_part_that_fails_while_others_upload_stops_the_download_and_aborts_after_them():
    # given an S3 that fails part 3 while parts 4 and on could still be read
    s3 = CountingS3(seconds_per_part=0.02, fail_part=3)
    read = [0]

    def source() -> Iterator[bytes]:
        for _ in range(100):
            read[0] += 1
            yield bytes(MiB)

    # when a 100-part stream is stored
    with pytest.raises(ClientError, match="part lost"):
        store(s3, source(), part_size=MiB)
    # then S3's error reached the caller, the download stopped soon after, and the upload was aborted
    # only once no part was being sent any more, and never completed
    assert read[0] <= 3 + transfer.PARTS_IN_MEMORY + 1
    assert s3.calls[-1] == "abort" and "complete" not in s3.calls


def test_a_part_that_fails_leaves_nothing_on_s3(s3, monkeypatch):
    # given an S3 that fails part 2 while part 1 is still being sent
    upload_part = s3.upload_part
    part_two_failed = threading.Event()

    def upload_part_failing_part_two(**kwargs):
        if kwargs["PartNumber"] == 2:
            part_two_failed.set()
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "Reduce your rate"}}, "UploadPart")
        part_two_failed.wait(timeout=10)
        return upload_part(**kwargs)

    monkeypatch.setattr(s3, "upload_part", upload_part_failing_part_two)
    # when a four-part report is streamed into S3
    with pytest.raises(ClientError, match="Reduce your rate"):
        store(s3, in_chunks(random_bytes(4 * PART), MiB))
    # then there is no object and no open upload
    assert_nothing_stored(s3)


def test_a_failed_completion_leaves_nothing_on_s3(s3, monkeypatch):
    # given an S3 that fails the completion
    def failing_completion(**kwargs):
        raise ClientError(
            {"Error": {"Code": "InternalError", "Message": "try again"}}, "CompleteMultipartUpload"
        )

    monkeypatch.setattr(s3, "complete_multipart_upload", failing_completion)
    # when a two-part report is streamed into S3
    with pytest.raises(ClientError, match="try again"):
        store(s3, in_chunks(random_bytes(PART + 1), MiB))
    # then there is no object and no open upload
    assert_nothing_stored(s3)


def test_a_download_that_breaks_while_parts_upload_leaves_nothing_on_s3(s3, monkeypatch):
    # given an S3 that is slow with every part, and a download that breaks in part 3
    upload_part = s3.upload_part

    def slow_upload_part(**kwargs):
        time.sleep(0.1)
        return upload_part(**kwargs)

    monkeypatch.setattr(s3, "upload_part", slow_upload_part)
    chunks = breaking_after(random_bytes(2 * PART + MiB), requests.exceptions.ChunkedEncodingError("broken"))
    # when it is streamed into S3
    with pytest.raises(DownloadInterrupted, match="broke off"):
        store(s3, chunks)
    # then the parts in flight finished before the abort: no object and no open upload (nor parts)
    assert_nothing_stored(s3)


def test_parts_fit_an_announced_size_into_10000_parts():
    assert next(part_sizes(128 * MiB)) == DEFAULT_PART_SIZE == 8 * MiB
    assert next(part_sizes(0)) == DEFAULT_PART_SIZE
    hundred_gib = 100 * 1024 * MiB
    assert next(part_sizes(hundred_gib)) * MAX_PARTS >= hundred_gib
    assert next(part_sizes(5 * TiB)) * MAX_PARTS >= 5 * TiB


def test_parts_of_a_stream_of_unknown_size_grow_so_that_5_tib_fits_in_10000_parts():
    # given the part sizes for a stream whose size nobody announced
    sizes = list(itertools.islice(part_sizes(None), MAX_PARTS))
    # then 10,000 of them hold more than S3's largest object, each within S3's limits, never shrinking
    assert sum(sizes) >= 5 * TiB
    assert all(5 * MiB <= size <= 5 * 1024 * MiB for size in sizes)
    assert sizes == sorted(sizes) and sizes[:1000] == [8 * MiB] * 1000 and sizes[1000] == 16 * MiB


def test_a_stream_of_unknown_size_is_cut_into_growing_parts(monkeypatch):
    # given parts that double every two parts
    monkeypatch.setattr(transfer, "PARTS_PER_DOUBLING", 2)
    s3 = CountingS3()
    # when 10 MiB of unannounced size are stored with 1 MiB parts
    store(s3, in_chunks(random_bytes(10 * MiB), 300 * 1024), part_size=MiB)
    # then the parts are 1, 1, 2, 2 and 4 MiB
    assert [s3.parts[number] for number in sorted(s3.parts)] == [MiB, MiB, 2 * MiB, 2 * MiB, 4 * MiB]


def test_the_object_checksum_combines_parts_uploaded_in_any_order_or_run():
    # given parts whose checksums were computed separately (in different threads, or runs)
    data = random_bytes(3 * MiB + 5)
    cuts = [0, MiB, 2 * MiB + 7, len(data)]
    parts = [
        UploadedPart(number, f'"{number}"', end - start, checksums.crc64nvme(data[start:end]))
        for number, (start, end) in enumerate(itertools.pairwise(cuts), start=1)
    ]
    # then their combination, in part order, is the CRC64NVME of the whole
    expected = checksums.crc64nvme(data)
    assert full_object_crc64nvme(parts) == full_object_crc64nvme(parts[::-1]) == expected
    assert crc64nvme_base64(expected) == crc64nvme_of(data)


def test_a_part_body_hands_the_sdk_one_socket_write_per_aws_chunk_and_the_bytes_arrive_whole():
    # given a part of 1 MiB + 3 bytes, read by botocore's aws-chunked encoder as it streams a part over HTTPS
    from botocore.httpchecksum import AwsChunkedWrapper, CrtCrc64NvmeChecksum

    data = random.Random(7).randbytes(1024 * 1024 + 3)
    body = transfer._PartBody(bytearray(data), len(data))
    wrapper = AwsChunkedWrapper(
        body, checksum_cls=CrtCrc64NvmeChecksum, checksum_name="x-amz-checksum-crc64nvme"
    )
    # when the SDK sends it a socket write at a time
    writes = list(iter(lambda: wrapper.read(transfer.SDK_SEND_BYTES), b""))
    # then every write but the last two is exactly one whole aws-chunk (so the encoder copies no remainder)
    for write in writes[:-2]:
        length, _, rest = bytes(write).partition(b"\r\n")
        assert len(rest) == int(length, 16) + 2 and rest.endswith(b"\r\n")
    # and the chunks decode to the part's bytes, with S3's checksum of them in the trailer
    stream, decoded = b"".join(bytes(write) for write in writes), bytearray()
    while True:
        length, _, stream = stream.partition(b"\r\n")
        if int(length, 16) == 0:
            break
        decoded += stream[: int(length, 16)]
        stream = stream[int(length, 16) + 2 :]
    assert bytes(decoded) == data
    expected = base64.b64encode(checksums.crc64nvme(data).to_bytes(8, "big")).decode()
    assert stream == f"x-amz-checksum-crc64nvme:{expected}\r\n\r\n".encode()
