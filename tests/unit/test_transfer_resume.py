"""A transfer over several invocations: checkpoints, pauses, resumes, and a clean start when it must."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest

from reportrelay.errors import DownloadInterrupted, TransferOutOfTime
from reportrelay.transfer import (
    Checkpoint,
    StoredObject,
    TransferPaused,
    restore,
    stream_to_s3,
)
from tests.unit.test_transfer import (
    BUCKET,
    KEY,
    PART,
    MiB,
    assert_nothing_stored,
    crc64nvme_of,
    in_chunks,
    random_bytes,
    s3_checksum,
    stored_bytes,
)

VALIDATOR = '"etag-of-the-file"'


class ChunkClock:
    """A clock that reads the number of chunks taken so far: ``stop_at=n`` stops after n chunks."""

    def __init__(self) -> None:
        self.chunks = 0
        self.bytes = 0

    def __call__(self) -> float:
        return float(self.chunks)

    def counting(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.chunks += 1
            self.bytes += len(chunk)
            yield chunk


def resumable(s3_client, chunks, checkpoints: list[Checkpoint], **options: Any) -> StoredObject:
    arguments: dict[str, Any] = {
        "s3_client": s3_client,
        "bucket": BUCKET,
        "key": KEY,
        "content_type": "application/pdf",
        "filename": "report.pdf",
        "part_size": PART,
        "validator": VALIDATOR,
        "on_checkpoint": checkpoints.append,
    }
    return stream_to_s3(chunks, **{**arguments, **options})


def paused_after(s3_client, data: bytes, chunks: int, **options: Any) -> Checkpoint:
    """The checkpoint of a resumable transfer of ``data`` whose time ran out after ``chunks`` 1 MiB chunks."""
    clock = ChunkClock()
    with pytest.raises(TransferPaused) as paused:
        resumable(
            s3_client,
            clock.counting(in_chunks(data, MiB)),
            [],
            expected_size=len(data),
            stop_at=chunks,
            clock=clock,
            **options,
        )
    return paused.value.checkpoint


def fetch_in_invocations(s3_client, data: bytes, chunks_per_run: int) -> tuple[StoredObject, list[int]]:
    """Run the transfer as Fetch does, a budget of ``chunks_per_run`` 1 MiB chunks per invocation, each
    run restoring the last checkpoint; returns the stored object and the bytes each run read."""
    checkpoints: list[Checkpoint] = []
    reads: list[int] = []
    resumption = None
    for _ in range(100):
        start = resumption.checkpoint.size if resumption else 0
        clock = ChunkClock()
        try:
            stored = resumable(
                s3_client,
                clock.counting(in_chunks(data[start:], MiB)),
                checkpoints,
                expected_size=len(data),
                stop_at=chunks_per_run,
                clock=clock,
                resume=resumption,
            )
        except TransferPaused as paused:
            assert paused.read == clock.bytes
            reads.append(paused.read)
            resumption = restore(s3_client, BUCKET, paused.checkpoint)
            assert resumption is not None
            continue
        reads.append(clock.bytes)
        return stored, reads
    raise AssertionError("the transfer never finished")


def test_a_transfer_split_over_several_invocations_stores_exactly_the_served_bytes(s3) -> None:
    # Given a 23 MiB file (5 parts of 5 MiB) and a budget of 7 MiB of reading per invocation
    data = random_bytes(23 * MiB)

    # When Fetch runs until the file is stored, each run going on from the last one's checkpoint
    stored, reads = fetch_in_invocations(s3, data, chunks_per_run=7)

    # Then it took at least 3 invocations, and the object is the file, byte for byte
    assert len(reads) >= 3
    assert stored_bytes(s3) == data
    # and the SHA-256 carried across invocations is the file's, and S3's full-object checksum its CRC64NVME
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert s3_checksum(s3) == stored.checksum_crc64nvme == crc64nvme_of(data)
    # and each resume read again at most the one part that was being filled
    resumes = len(reads) - 1
    assert sum(reads) - len(data) <= resumes * PART
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_a_pause_keeps_the_upload_and_its_checkpoint_counts_only_stored_parts(s3) -> None:
    # Given a 12 MiB file and a budget of 8 chunks: one 5 MiB part stored, the second being filled
    data = random_bytes(12 * MiB)
    checkpoints: list[Checkpoint] = []
    clock = ChunkClock()

    # When time runs out
    with pytest.raises(TransferPaused) as paused:
        resumable(
            s3,
            clock.counting(in_chunks(data, MiB)),
            checkpoints,
            expected_size=len(data),
            stop_at=8,
            clock=clock,
        )

    # Then no object exists yet, the upload stays open, and the checkpoint names the stored part only
    checkpoint = paused.value.checkpoint
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
    assert [upload["UploadId"] for upload in s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]] == [
        checkpoint.upload_id
    ]
    assert (checkpoint.parts, checkpoint.size) == (1, PART)
    assert checkpoint.validator == VALIDATOR
    assert checkpoints[-1] == checkpoint
    assert Checkpoint.from_dict(checkpoint.to_dict()) == checkpoint


def test_a_resumable_download_that_breaks_keeps_its_upload_for_the_retry(s3) -> None:
    # Given a download that breaks off after 11 MiB of a 16 MiB file
    data = random_bytes(16 * MiB)
    checkpoints: list[Checkpoint] = []

    def breaking() -> Iterator[bytes]:
        yield from in_chunks(data[: 11 * MiB], MiB)
        raise ConnectionResetError("connection reset by peer")

    # When the transfer runs, it fails as a broken download
    with pytest.raises(DownloadInterrupted):
        resumable(s3, breaking(), checkpoints, expected_size=len(data))

    # Then the retry goes on from the checkpoint (two parts) and stores the whole file
    resumption = restore(s3, BUCKET, checkpoints[-1])
    assert resumption is not None and resumption.checkpoint.size == 2 * PART
    stored = resumable(
        s3, in_chunks(data[2 * PART :], MiB), checkpoints, expected_size=len(data), resume=resumption
    )
    assert stored_bytes(s3) == data and stored.sha256 == hashlib.sha256(data).hexdigest()


def test_a_transfer_killed_without_warning_resumes_from_its_last_periodic_checkpoint(s3) -> None:
    # Given a transfer that checkpoints as parts are stored, and a function killed at 18 MiB of 24:
    # after the kill no code of it runs, so nothing is aborted and no last checkpoint is written
    data = random_bytes(24 * MiB)
    checkpoints: list[Checkpoint] = []

    class Killed(BaseException):
        pass

    class DeadAfterKill:
        def __init__(self, client) -> None:
            self.client, self.dead = client, False

        def __getattr__(self, name: str) -> Any:
            if self.dead and name == "abort_multipart_upload":
                raise Killed()
            return getattr(self.client, name)

    dying = DeadAfterKill(s3)

    def killed_midway() -> Iterator[bytes]:
        yield from in_chunks(data[: 18 * MiB], MiB)
        dying.dead = True
        raise Killed()

    with pytest.raises(Killed):
        resumable(dying, killed_midway(), checkpoints, expected_size=len(data), checkpoint_every=0)

    # When the next invocation restores the last checkpoint that was written
    assert checkpoints, "no checkpoint was handed over while parts were stored"
    last = checkpoints[-1]
    resumption = restore(s3, BUCKET, last)
    assert resumption is not None
    stored = resumable(
        s3, in_chunks(data[last.size :], MiB), checkpoints, expected_size=len(data), resume=resumption
    )

    # Then it went on from there (not from zero) and stored exactly the file
    assert last.size >= 2 * PART
    assert stored_bytes(s3) == data
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert s3_checksum(s3) == crc64nvme_of(data)


def test_a_checkpoint_whose_upload_is_gone_or_incomplete_is_not_restored(s3) -> None:
    # Given a paused transfer
    data = random_bytes(12 * MiB)
    checkpoint = paused_after(s3, data, 11)
    assert checkpoint.parts == 2

    # When the checkpoint claims a part S3 does not hold, it is refused and its upload aborted
    claims_more = Checkpoint(**{**checkpoint.to_dict(), "parts": 3, "size": 3 * PART})
    assert restore(s3, BUCKET, claims_more) is None
    assert_nothing_stored(s3)

    # and a checkpoint whose upload was aborted (or cleaned up by the lifecycle rule) is refused too
    assert restore(s3, BUCKET, checkpoint) is None


def test_a_file_of_another_size_on_resume_aborts_the_upload(s3) -> None:
    # Given a paused transfer of a 12 MiB file
    data = random_bytes(12 * MiB)
    checkpoints: list[Checkpoint] = []
    resumption = restore(s3, BUCKET, paused_after(s3, data, 6))
    assert resumption is not None

    # When the rest is served as part of a file of another size
    with pytest.raises(DownloadInterrupted, match="not the 12582912"):
        resumable(
            s3, in_chunks(data[PART:], MiB), checkpoints, expected_size=len(data) + 1, resume=resumption
        )

    # Then nothing is stored and no upload is left open
    assert_nothing_stored(s3)


def test_a_resumed_file_whose_sha256_differs_from_the_announced_one_stores_nothing(s3) -> None:
    # Given a paused transfer, resumed with bytes that do not make the announced file
    data = random_bytes(12 * MiB)
    checkpoints: list[Checkpoint] = []
    announced = hashlib.sha256(data).hexdigest()
    resumption = restore(s3, BUCKET, paused_after(s3, data, 6, expected_sha256=announced))
    altered = data[PART:-1] + bytes([data[-1] ^ 0xFF])

    # When the rest arrives
    with pytest.raises(DownloadInterrupted, match="SHA-256"):
        resumable(
            s3,
            in_chunks(altered, MiB),
            checkpoints,
            expected_size=len(data),
            expected_sha256=announced,
            resume=resumption,
        )

    # Then the upload is aborted: a mismatch is not retried from the checkpoint
    assert_nothing_stored(s3)


def test_a_transfer_that_cannot_resume_gives_up_early_when_its_rate_says_it_will_not_fit(s3) -> None:
    # Given a 60 MiB file arriving at 1 MiB per second, a function with 20 s left, and no ranges
    data = random_bytes(60 * MiB)
    clock = ChunkClock()

    # When the transfer may hand over to something with more time
    with pytest.raises(TransferOutOfTime, match="more minutes") as stopped:
        stream_to_s3(
            clock.counting(in_chunks(data, MiB)),
            s3_client=s3,
            bucket=BUCKET,
            key=KEY,
            content_type="application/pdf",
            filename="report.pdf",
            part_size=PART,
            expected_size=len(data),
            stop_at=20,
            clock=clock,
            give_up_early=True,
        )

    # Then it stops after its first estimate, long before its time is up, and stores nothing
    assert clock.chunks <= 7, stopped.value
    assert_nothing_stored(s3)
