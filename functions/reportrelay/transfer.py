"""Stream a byte iterator into one S3 object: either the whole, verified file is stored or nothing is.

Transfer knows streams and S3 only. It does not know providers or HTTP requests; it only has to
recognise the exceptions an HTTP body iterator raises when the connection breaks, so that a broken
download becomes a retryable ``DownloadInterrupted`` rather than an internal error.

Why a multipart upload: reports can be far larger than the Lambda's memory, and their size is often not
announced, so the body is cut into parts as it arrives. Why "nothing is stored" matters: S3 only makes
a multipart upload visible when it is completed, so every failure before completion is undone by
aborting the upload. A bucket lifecycle rule (AbortIncompleteMultipartUpload) should still clean up
after a Lambda that is killed mid-transfer, where no code gets to run the abort.

Download and upload overlap, in a bounded pipeline: the calling thread reads the stream into part
buffers, and ``UPLOAD_THREADS`` (4) threads upload full parts, each as soon as it is full. At most
``PARTS_IN_MEMORY`` (5) buffers exist at once, the one being filled and the four being sent; when all
are taken the reader waits for an upload to finish before it reads on (backpressure), so a slow S3
slows the download instead of filling memory. Memory is therefore about 5 parts plus one chunk:
40 MiB with the default 8 MiB parts, whatever the file size (the Fetch function has 1,024 MiB). Parts
are 8 MiB, or larger when an announced size needs it to fit in S3's 10,000 parts; for a stream of
unknown size they double every 1,000 parts (8 MiB, then 16 MiB, ..., up to 4 GiB), so 10,000 parts hold
7.8 TiB, more than S3's 5 TiB object limit (a Lambda's 15 minutes end long before parts grow past
64 MiB, 320 MiB in memory).

Integrity needs no step after completion (which could fail, and whose failure could only be undone by a
delete the Fetch role is rightly not allowed). The upload is a CRC64NVME full-object one: every part
carries its CRC64NVME, which S3 checks as it receives it; completion carries the whole object's
CRC64NVME (the parts' checksums combined in order), which S3 checks against what it stored before it
makes the object, and then reports as the object's checksum. The whole file's SHA-256 and size (and a
provider's own SHA-256 or length, when it announced them) are checked before the upload is completed,
so an object that exists is a verified one. Completion is conditional (``If-None-Match: *``): of two
uploads racing for one key, one stores.

A transfer may span invocations (``resumable``): when the vendor serves byte ranges of an unchanged file,
the upload is not aborted when time runs out or the download breaks. The parts in flight are finished,
and a ``Checkpoint`` is handed to the caller: the upload id, how many parts S3 holds and the bytes they
make, the SHA-256 state after them (``rehashes``: hashlib's state cannot be saved) and their combined
CRC64NVME. Checkpoints are also handed over as parts are stored (every ``CHECKPOINT_EVERY_SECONDS``),
so a function killed without warning loses at most that much. A later run restores the checkpoint
(``restore``; S3's own list of the parts is the truth, and gives the part ETags) and goes on from the
next byte with a ``Range`` request. What is re-read per resume is the one part that was being filled.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import io
import itertools
import logging
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

import rehashes
import requests
import urllib3.exceptions
from awscrt import checksums
from botocore import httpsession
from botocore.exceptions import ClientError

from reportrelay.awsclients import aws_error_code
from reportrelay.errors import DownloadInterrupted, ReportRelayError, TransferOutOfTime
from reportrelay.objectkeys import clean_filename

log = logging.getLogger(__name__)

DEFAULT_PART_SIZE = 8 * 1024 * 1024
"""Bytes per uploaded part. S3 requires at least 5 MiB for every part but the last."""

MAX_PART_SIZE = 5 * 1024 * 1024 * 1024
"""S3's limit on one part."""

MAX_PARTS = 10_000
"""S3's limit on parts per multipart upload."""

PARTS_PER_DOUBLING = 1_000
"""For a stream of unknown size, the part size doubles after every this many parts."""

UPLOAD_THREADS = 4
"""Parts uploaded at once: several hide each request's latency behind the others' bytes."""

PARTS_IN_MEMORY = UPLOAD_THREADS + 1
"""Part buffers that exist at once: the one the download fills and one per upload thread."""

SDK_SEND_BYTES = getattr(httpsession, "BUFFER_SIZE", 128 * 1024)
"""What the SDK asks of a body at a time when it sends it (botocore's socket write size)."""

SDK_CHUNK_BYTES = SDK_SEND_BYTES - len(b"1fff7\r\n\r\n")
"""The most a part body hands over per read: with its aws-chunked framing (hex length and two CRLFs), one
chunk is then exactly one of the SDK's socket writes. botocore's ``AwsChunkedWrapper`` asks for 1 MiB and
keeps what it has not sent yet as ``bytes``, slicing a copy of the rest at every 128 KiB write (4.5 copies
of each byte); with chunks of one write each it copies none (measured: 0.8 GiB/s against 12 GiB/s)."""

CHECKSUM_ALGORITHM = "CRC64NVME"
CHECKSUM_TYPE = "FULL_OBJECT"
"""S3's own checksum: CRC64NVME on every part, and of the whole object, checked at completion."""

# What an HTTP body iterator raises when the connection breaks or the body cannot be read:
# requests wraps most urllib3 errors (ChunkedEncodingError, ConnectionError, ...; all RequestException,
# which is an OSError), but urllib3's ProtocolError/ReadTimeoutError and plain socket errors can also
# surface directly from a raw stream.
_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    ConnectionError,
    OSError,
)


@dataclass(frozen=True)
class StoredObject:
    """Where a report was stored, and what was stored there."""

    bucket: str
    key: str
    size: int
    sha256: str
    content_type: str
    filename: str
    checksum_crc64nvme: str = ""  # S3's full-object CRC64NVME of the object, as it reports it (base64)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-able dict for the workflow state."""
        return asdict(self)


@dataclass(frozen=True)
class PendingObject:
    """An upload about to be completed: what the object will be, so a later run can recognise it."""

    key: str
    upload_id: str
    size: int
    sha256: str
    checksum_crc64nvme: str
    content_type: str
    filename: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class UploadedPart:
    """One part S3 accepted: what completion lists, and what the object's checksum is combined from."""

    number: int
    etag: str
    size: int
    crc64nvme: int

    def completion_entry(self) -> dict[str, Any]:
        return {
            "ETag": self.etag,
            "PartNumber": self.number,
            "ChecksumCRC64NVME": crc64nvme_base64(self.crc64nvme),
        }


class ObjectExists(Exception):
    """Completion was refused because the key already holds an object (another run stored it first)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"s3 key {key} already holds an object")
        self.key = key


CHECKPOINT_EVERY_SECONDS = 10.0
"""How often a resumable transfer hands over a checkpoint as parts are stored: what a killed run loses."""

ESTIMATE_AFTER_SECONDS = 5.0
"""A transfer that cannot resume stops as soon as, after this long, its rate says it cannot finish."""


@dataclass(frozen=True)
class Checkpoint:
    """How far a resumable upload got: parts 1..``parts`` are in S3 and hold the file's first ``size`` bytes.

    ``sha256_state`` is the SHA-256 state after those bytes (base64 of ``rehashes``' serialisation) and
    ``crc64nvme`` their CRC64NVME (base64); ``validator`` is the vendor's ETag (or Last-Modified) of the
    file, sent as ``If-Range`` so that a changed file is served whole rather than spliced.
    """

    key: str
    upload_id: str
    parts: int
    size: int
    sha256_state: str
    crc64nvme: str
    validator: str
    expected_size: int | None
    part_size: int
    content_type: str
    filename: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Checkpoint | None:
        """The checkpoint a ``to_dict`` made; None for anything else (an older or damaged record)."""
        if not isinstance(data, Mapping):
            return None
        try:
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except (KeyError, TypeError):
            return None


@dataclass(frozen=True)
class Resumption:
    """A checkpoint whose upload S3 still holds, with its parts' completion entries as S3 listed them."""

    checkpoint: Checkpoint
    entries: tuple[dict[str, Any], ...] = field(default=())


class TransferPaused(Exception):
    """A resumable transfer stopped before its function's time ran out; its upload stays open.

    The ``checkpoint`` was handed to ``on_checkpoint``; a later run restores it (``restore``) and goes on.
    """

    def __init__(self, checkpoint: Checkpoint, read: int) -> None:
        super().__init__(
            f"paused after {_mib(checkpoint.size)} to go on in a new invocation (this one read {_mib(read)})"
        )
        self.checkpoint = checkpoint
        self.read = read


def stream_to_s3(
    chunks: Iterable[bytes],
    *,
    s3_client: Any,
    bucket: str,
    key: str,
    content_type: str,
    filename: str,
    expected_size: int | None = None,
    part_size: int = DEFAULT_PART_SIZE,
    expected_sha256: str | None = None,
    stop_at: float | None = None,
    before_completion: Callable[[PendingObject], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    validator: str | None = None,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
    resume: Resumption | None = None,
    checkpoint_every: float | None = None,
    give_up_early: bool = False,
) -> StoredObject:
    """Upload ``chunks`` to ``s3://bucket/key`` as one new object, checksummed part by part.

    The object only appears once every byte has arrived and matches ``expected_size`` and
    ``expected_sha256`` (lower-case or upper-case hex) when those are given. Any failure, of the
    download or of any part's upload, stops the download, waits for the parts in flight and aborts the
    upload, so no partial object and no open multipart upload is left behind; the first error is
    raised. A stream that breaks off raises ``DownloadInterrupted``; reaching ``stop_at`` (a ``clock``
    time) before the end, or learning early that it will not be reached, raises ``TransferOutOfTime``;
    a key that already holds an object raises ``ObjectExists``; every other error propagates unchanged.
    ``before_completion`` is told what is about to be stored (and may refuse). Learning early applies
    only with ``give_up_early`` (a caller that can hand the transfer to something with more time).

    Resumable (a ``validator`` and an ``on_checkpoint``): at ``stop_at`` the transfer pauses instead,
    raising ``TransferPaused``, and a broken download raises ``DownloadInterrupted``; in both cases the
    upload is kept open, and its checkpoint handed to ``on_checkpoint`` first. Every other failure
    aborts it, as always. With ``resume``, ``chunks`` are the file from byte
    ``resume.checkpoint.size`` on, and the upload goes on where it stopped.

    ``part_size`` is the smallest part; S3 (and ``s3_client``, which is shared by the upload threads)
    must accept it for every part but the last.
    """
    if part_size <= 0:
        raise ValueError(f"part_size must be positive, not {part_size}")
    resumable = validator is not None and on_checkpoint is not None
    if resume is not None:
        start = resume.checkpoint
        if not resumable or start.key != key:
            raise ValueError("a transfer can only be resumed as a resumable transfer of the same key")
        if (
            expected_size is not None
            and start.expected_size is not None
            and expected_size != start.expected_size
        ):
            _abort(s3_client, bucket, key, start.upload_id)  # the parts are of another file
            raise DownloadInterrupted(
                f"the file is now {expected_size} bytes, not the {start.expected_size} it was when the "
                "transfer began"
            )
        expected_size = start.expected_size if expected_size is None else expected_size
        part_size, upload_id = start.part_size, start.upload_id
        filename, content_type = start.filename, start.content_type
    else:
        filename = clean_filename(filename)  # the name people see: no bidi, zero-width or control characters
        upload_id = s3_client.create_multipart_upload(
            Bucket=bucket,
            Key=key,
            ContentType=content_type,
            ContentDisposition=_content_disposition(filename),
            ChecksumAlgorithm=CHECKSUM_ALGORITHM,
            ChecksumType=CHECKSUM_TYPE,
        )["UploadId"]
    progress = _Progress(
        key=key,
        upload_id=upload_id,
        validator=validator or "",
        expected_size=expected_size,
        part_size=part_size,
        content_type=content_type,
        filename=filename,
        resume=resume,
        on_checkpoint=on_checkpoint if resumable else None,
        checkpoint_every=CHECKPOINT_EVERY_SECONDS if checkpoint_every is None else checkpoint_every,
        clock=clock,
    )
    keep_upload = False
    try:
        pipeline = _PartPipeline(s3_client, bucket=bucket, key=key, upload_id=upload_id, progress=progress)
        try:
            with pipeline:
                size, sha256 = _read_into_parts(
                    chunks,
                    pipeline,
                    progress,
                    expected_sha256=expected_sha256,
                    stop_at=stop_at,
                    clock=clock,
                    give_up_early=give_up_early and not resumable,
                )
        except _Stopped as stopped:
            if not resumable:
                raise stopped.error from stopped.error.__cause__
            checkpoint = progress.checkpoint()  # the pipeline has drained: every part sent is stored
            assert on_checkpoint is not None
            on_checkpoint(checkpoint)
            keep_upload = True
            if isinstance(stopped.error, TransferOutOfTime):
                raise TransferPaused(checkpoint, progress.read) from None
            raise stopped.error from stopped.error.__cause__
        checksum = crc64nvme_base64(progress.crc64nvme())
        if before_completion is not None:
            before_completion(PendingObject(key, upload_id, size, sha256, checksum, content_type, filename))
        try:
            s3_client.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": progress.completion_entries(pipeline.uploaded())},
                ChecksumCRC64NVME=checksum,
                ChecksumType=CHECKSUM_TYPE,
                IfNoneMatch="*",
            )
        except ClientError as error:
            if aws_error_code(error) in ("PreconditionFailed", "412"):
                raise ObjectExists(key) from None
            raise
    except BaseException:
        if not keep_upload:
            _abort(s3_client, bucket, key, upload_id)
        raise

    return StoredObject(
        bucket=bucket,
        key=key,
        size=size,
        sha256=sha256,
        content_type=content_type,
        filename=filename,
        checksum_crc64nvme=checksum,
    )


def restore(s3_client: Any, bucket: str, checkpoint: Checkpoint) -> Resumption | None:
    """The checkpoint, if S3 still holds its upload with every part it counts; None if not.

    S3's list of the upload's parts is the truth: it gives the ETags completion needs, and a part
    missing or of another size than the checkpoint counted means the checkpoint cannot be trusted (the
    upload is then aborted, so a fresh start leaves nothing behind). An upload S3 no longer has (aborted,
    completed, or cleaned up by the lifecycle rule) gives None.
    """
    listed: dict[int, dict[str, Any]] = {}
    marker = 0
    try:
        while True:
            page = s3_client.list_parts(
                Bucket=bucket, Key=checkpoint.key, UploadId=checkpoint.upload_id, PartNumberMarker=marker
            )
            for part in page.get("Parts", []):
                listed[int(part["PartNumber"])] = part
            if not page.get("IsTruncated"):
                break
            marker = int(page["NextPartNumberMarker"])
    except ClientError as error:
        if aws_error_code(error) in ("NoSuchUpload", "404", "NoSuchKey"):
            return None
        raise
    sizes = part_sizes(checkpoint.expected_size, checkpoint.part_size)
    entries, total = [], 0
    for number in range(1, checkpoint.parts + 1):
        part, wanted = listed.get(number), next(sizes)
        if part is None or int(part["Size"]) != wanted:
            break
        entry = {"ETag": part["ETag"], "PartNumber": number}
        if part.get("ChecksumCRC64NVME"):
            entry["ChecksumCRC64NVME"] = part["ChecksumCRC64NVME"]
        entries.append(entry)
        total += wanted
    if len(entries) != checkpoint.parts or total != checkpoint.size:
        log.warning("a checkpoint does not match its upload's parts; the transfer starts again")
        _abort(s3_client, bucket, checkpoint.key, checkpoint.upload_id)
        return None
    return Resumption(checkpoint, tuple(entries))


def abandon(s3_client: Any, bucket: str, checkpoint: Checkpoint) -> None:
    """Abort a checkpoint's upload (the file changed, or the job ended): nothing of it stays in S3."""
    _abort(s3_client, bucket, checkpoint.key, checkpoint.upload_id)


def part_sizes(expected_size: int | None, part_size: int = DEFAULT_PART_SIZE) -> Iterator[int]:
    """The size of each part in turn (the last part of a stream may be shorter).

    With an announced size: ``part_size``, or the size over 10,000 when that is larger. Unknown: the
    part size doubles every ``PARTS_PER_DOUBLING`` parts, up to S3's 5 GiB.
    """
    if expected_size is not None:
        size = min(MAX_PART_SIZE, max(part_size, -(-expected_size // MAX_PARTS)))
        while True:
            yield size
    number = 0
    while True:
        yield min(MAX_PART_SIZE, part_size << (number // PARTS_PER_DOUBLING))
        number += 1


def crc64nvme_base64(crc: int) -> str:
    """A CRC64NVME as S3 writes it: base64 of its 8 bytes, big-endian."""
    return base64.b64encode(crc.to_bytes(8, "big")).decode()


def full_object_crc64nvme(parts: Sequence[UploadedPart]) -> int:
    """The CRC64NVME of the parts' bytes end to end, combined from each part's own (in part order).

    The parts may come from different runs of an upload: only their checksums and sizes are needed.
    """
    crc = 0  # the CRC64NVME of no bytes
    for part in sorted(parts, key=lambda part: part.number):
        crc = checksums.combine_crc64nvme(crc, part.crc64nvme, part.size)
    return crc


def same_checksum(reported: str | None, expected: str) -> bool:
    """Whether S3's reported checksum is ``expected`` (a composite one may lack its ``-<parts>``)."""
    if not reported:
        return False
    return reported == expected or reported == expected.rsplit("-", 1)[0]


class _PartPipeline:
    """Uploads full part buffers on ``UPLOAD_THREADS`` threads; at most ``PARTS_IN_MEMORY`` buffers live.

    The reader takes a buffer with ``take`` (waiting while all are in use: backpressure) and hands it
    over with ``send``. The first upload error is kept and raised by the reader's next ``take`` or
    ``send``; leaving the ``with`` block waits for every upload in flight either way, so that nothing is
    still being sent when the upload is completed or aborted.
    """

    def __init__(self, s3_client: Any, *, bucket: str, key: str, upload_id: str, progress: _Progress) -> None:
        self._s3 = s3_client
        self._progress = progress
        self._target = {"Bucket": bucket, "Key": key, "UploadId": upload_id}
        self._slots = threading.Semaphore(PARTS_IN_MEMORY)
        self._spare: list[bytearray] = []  # buffers whose upload is done, to be filled again
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._futures: list[Future[UploadedPart]] = []
        self._executor = ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="s3-part")

    def __enter__(self) -> _PartPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            for future in self._futures:
                future.cancel()  # not started yet: never will be
        self._executor.shutdown(wait=True)

    def take(self, size: int) -> bytearray:
        """An empty buffer of ``size`` bytes, once fewer than ``PARTS_IN_MEMORY`` are in use."""
        self._slots.acquire()
        self._raise_failure()
        with self._lock:
            while self._spare:
                buffer = self._spare.pop()
                if len(buffer) == size:
                    return buffer
        return bytearray(size)

    def send(self, number: int, buffer: bytearray, filled: int) -> None:
        """Upload the first ``filled`` bytes of ``buffer`` as part ``number``; the buffer is then reused."""
        self._submit(number, buffer, _PartBody(buffer, filled))

    def start(self, number: int, buffer: bytearray, length: int) -> _PartBody:
        """Start uploading part ``number`` (``length`` bytes) while the reader still fills ``buffer``.

        The SDK reads the returned body as the reader fills it (``_PartBody.grew``), so the part's bytes
        go to S3 as they arrive rather than once the part is full; its checksum is S3's own, computed by
        the SDK as it sends (a trailer over HTTPS).
        """
        body = _PartBody(buffer, length, filled=0)
        self._submit(number, buffer, body)
        return body

    def _submit(self, number: int, buffer: bytearray, body: _PartBody) -> None:
        try:
            self._raise_failure()
        except BaseException:
            self._slots.release()
            raise
        # In the caller's context (contextvars: its log and trace context), as if it made the call itself.
        context = contextvars.copy_context()
        self._futures.append(self._executor.submit(context.run, self._upload, number, buffer, body))

    def give_back(self) -> None:
        """Release a buffer taken but not sent (the reader stopped)."""
        self._slots.release()

    def uploaded(self) -> list[UploadedPart]:
        """Every part, in order; only once the ``with`` block is left (all uploads have finished)."""
        self._raise_failure()
        return sorted((future.result() for future in self._futures), key=lambda part: part.number)

    def _upload(self, number: int, buffer: bytearray, body: _PartBody) -> UploadedPart:
        try:
            # S3's checksum of the part is the SDK's, computed as it sends: over HTTPS a trailer, so the
            # part is sent unsigned (a CRC64NVME header of our own would make the SDK hash the whole body
            # for its signature first, SHA-256 in the upload thread, and wait for a part still filling).
            # Our own CRC of the part, for the full-object checksum, is the reader's or computed here.
            response = self._s3.upload_part(
                **self._target, PartNumber=number, Body=body, ChecksumAlgorithm=CHECKSUM_ALGORITHM
            )
            crc = checksums.crc64nvme(memoryview(buffer)[: len(body)]) if body.crc is None else body.crc
            part = UploadedPart(number, response["ETag"], len(body), crc)
            self._progress.stored(part)
            return part
        except BaseException as error:
            with self._lock:
                if self._error is None:
                    self._error = error
            raise
        finally:
            body.close()
            with self._lock:
                self._spare.append(buffer)
            self._slots.release()

    def _raise_failure(self) -> None:
        with self._lock:
            error = self._error
        if error is not None:
            raise error


class _PartAbandoned(Exception):
    """The reader stopped before it filled the part being sent: that part is not to be stored."""


class _PartBody(io.RawIOBase):
    """The first ``length`` bytes of a part buffer as a seekable file, so the SDK streams (and on a
    retry, resends) them without a copy: a sized ``read`` returns a view into the buffer.

    While the reader is still filling the buffer (``filled`` below ``length``), a read waits for the
    bytes it asks for; ``fail`` makes waiting reads raise, so the part's upload ends.
    """

    def __init__(self, buffer: bytearray, length: int, filled: int | None = None) -> None:
        super().__init__()
        self._view = memoryview(buffer)[:length]
        self._position = 0
        self._filled = length if filled is None else filled
        self._failed = False
        self._arrived = threading.Condition()
        self.crc: int | None = None  # the part's CRC64NVME, given by the reader that filled it (``finish``)

    @property
    def complete(self) -> bool:
        return self._filled == len(self._view)

    def grew(self, filled: int) -> None:
        with self._arrived:
            self._filled = filled
            self._arrived.notify_all()

    def finish(self, crc: int) -> None:
        with self._arrived:
            self.crc = crc
            self._filled = len(self._view)
            self._arrived.notify_all()

    def fail(self) -> None:
        with self._arrived:
            self._failed = True
            self._arrived.notify_all()

    def __len__(self) -> int:
        return len(self._view)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> Any:
        """All that is left (as ``bytes``), or at most ``size`` bytes, and never more than one SDK write
        (``SDK_CHUNK_BYTES``): a view into the buffer, so nothing is copied here."""
        whole = size is None or size < 0
        end = len(self._view) if whole else min(len(self._view), self._position + min(size, SDK_CHUNK_BYTES))
        self._wait_for(end)
        piece = self._view[self._position : end]
        self._position = end
        return bytes(piece) if whole else piece

    def readinto(self, target: Any) -> int:
        end = min(len(self._view), self._position + len(target))
        self._wait_for(end)
        count = end - self._position
        target[:count] = self._view[self._position : end]
        self._position = end
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, min(len(self._view), base + offset))
        return self._position

    def tell(self) -> int:
        return self._position

    def _wait_for(self, end: int) -> None:
        if self._filled >= end:
            return
        with self._arrived:
            while self._filled < end and not self._failed:
                self._arrived.wait()
            if self._failed:
                raise _PartAbandoned("the transfer stopped before this part was complete")


class _Stopped(Exception):
    """Internal: the transfer stopped where a resumable one may go on later (out of time, broken download)."""

    def __init__(self, error: ReportRelayError) -> None:
        super().__init__(str(error))
        self.error = error


class _Progress:
    """What this run has read and S3 has stored: the material of checkpoints and of the completion list.

    The reader notes the SHA-256 state after each part it sends; the upload threads note each part S3
    stored. The *frontier* is the last part up to which every part is stored: a checkpoint describes it.
    """

    def __init__(
        self,
        *,
        key: str,
        upload_id: str,
        validator: str,
        expected_size: int | None,
        part_size: int,
        content_type: str,
        filename: str,
        resume: Resumption | None,
        on_checkpoint: Callable[[Checkpoint], None] | None,
        checkpoint_every: float,
        clock: Callable[[], float],
    ) -> None:
        self.key, self.upload_id, self.validator = key, upload_id, validator
        self._on_checkpoint, self._checkpoint_every, self._clock = on_checkpoint, checkpoint_every, clock
        self._last_emitted = (0, clock())  # (parts, when) of the last periodic checkpoint
        self._emitting = threading.Lock()
        self.expected_size, self.part_size = expected_size, part_size
        self.content_type, self.filename = content_type, filename
        start = resume.checkpoint if resume is not None else None
        self.prior_entries: list[dict[str, Any]] = list(resume.entries) if resume is not None else []
        self.first_part = (start.parts if start else 0) + 1
        self.start_size = start.size if start else 0
        # A resumable transfer's SHA-256 must be saved at part ends (rehashes); any other uses hashlib,
        # which lets go of the GIL while it hashes, so the upload threads go on meanwhile.
        self.resumable = on_checkpoint is not None
        self.digest: Any = hashlib.sha256()
        if self.resumable:
            self.digest = rehashes.PySha256()
        if start:
            self.digest = rehashes.PySha256.deserialize(base64.b64decode(start.sha256_state))
        self.read = 0  # bytes this run read from the stream
        self._lock = threading.Lock()
        self._stored: dict[int, UploadedPart] = {}
        self._frontier = (
            (start.parts, start.size, int.from_bytes(base64.b64decode(start.crc64nvme), "big"))
            if start
            else (0, 0, 0)
        )
        self._states: dict[int, str] = {self._frontier[0]: self._state()}

    def sent(self, number: int) -> None:
        """The reader has hashed every byte up to the end of part ``number``."""
        state = self._state()
        with self._lock:
            self._states[number] = state

    def stored(self, part: UploadedPart) -> None:
        """S3 stored ``part``: move the frontier over every part now stored in a row."""
        with self._lock:
            self._stored[part.number] = part
            number, size, crc = self._frontier
            while number + 1 in self._stored:
                done = self._stored.pop(number + 1)
                crc = checksums.combine_crc64nvme(crc, done.crc64nvme, done.size)
                number, size = number + 1, size + done.size
                self._states = {n: state for n, state in self._states.items() if n >= number}
            self._frontier = (number, size, crc)
        self._checkpoint_if_due()

    def _checkpoint_if_due(self) -> None:
        """Hand over a checkpoint, every ``checkpoint_every`` seconds, as the frontier moves on.

        Called by the upload threads, one at a time and never going back. A failure that may pass (the job
        store briefly unavailable) costs only this checkpoint; any other (the job was cancelled) stops
        the transfer.
        """
        if self._on_checkpoint is None:
            return
        with self._emitting:
            parts, when = self._last_emitted
            if self.frontier() <= max(parts, self.first_part - 1):
                return
            if self._clock() - when < self._checkpoint_every:
                return
            checkpoint = self.checkpoint()
            try:
                self._on_checkpoint(checkpoint)
            except Exception as error:
                if not getattr(error, "retryable", False):
                    raise
                log.warning("a transfer checkpoint was not kept: %s", error)
            self._last_emitted = (checkpoint.parts, self._clock())

    def frontier(self) -> int:
        with self._lock:
            return self._frontier[0]

    def checkpoint(self) -> Checkpoint:
        with self._lock:
            number, size, crc = self._frontier
            state = self._states[number]
        return Checkpoint(
            key=self.key,
            upload_id=self.upload_id,
            parts=number,
            size=size,
            sha256_state=state,
            crc64nvme=crc64nvme_base64(crc),
            validator=self.validator,
            expected_size=self.expected_size,
            part_size=self.part_size,
            content_type=self.content_type,
            filename=self.filename,
        )

    def crc64nvme(self) -> int:
        """The whole object's CRC64NVME; once every part is stored."""
        with self._lock:
            return self._frontier[2]

    def completion_entries(self, uploaded: Sequence[UploadedPart]) -> list[dict[str, Any]]:
        return [*self.prior_entries, *(part.completion_entry() for part in uploaded)]

    def hexdigest(self) -> str:
        return str(self.digest.finalize() if self.resumable else self.digest.hexdigest())

    def _state(self) -> str:
        if not self.resumable:
            return ""
        return base64.b64encode(self.digest.serialize()).decode()


def _read_into_parts(
    chunks: Iterable[bytes],
    pipeline: _PartPipeline,
    progress: _Progress,
    *,
    expected_sha256: str | None,
    stop_at: float | None,
    clock: Callable[[], float],
    give_up_early: bool,
) -> tuple[int, str]:
    """Read the stream into part buffers and upload each part; return size and SHA-256.

    Each byte is copied into a part buffer, which the SDK reads as a file (``_PartBody``) as it sends.
    With an announced size every part's length is known before its first byte, so each part's upload
    starts with it and sends its bytes as they arrive (``_PartPipeline.start``); without one, a part
    is uploaded once full. The digest is fed part by part, so that its state at every part's end can
    go into a checkpoint.
    """
    expected_size = progress.expected_size
    sizes = itertools.islice(part_sizes(expected_size, progress.part_size), progress.first_part - 1, None)
    digest = progress.digest
    number = progress.first_part
    size = start_size = progress.start_size
    part_size = next(sizes)
    length = part_size if expected_size is None else min(part_size, expected_size - size)
    buffer: bytearray | None = pipeline.take(part_size)
    body = pipeline.start(number, buffer, length) if expected_size is not None else None
    filled = crc = 0
    if body is not None and length == 0:  # an empty file: one empty part makes the object
        body.finish(0)
        progress.sent(number)
        buffer, body = None, None
    started = clock()
    try:
        iterator = iter(chunks)
        while True:
            if stop_at is not None:
                now = clock()
                if now >= stop_at:
                    raise _Stopped(_out_of_time(size, expected_size, size - start_size, now - started))
                if give_up_early and expected_size is not None:
                    _check_it_fits(size, start_size, expected_size, started, now, stop_at)
            try:
                chunk = next(iterator)
            except StopIteration:
                break
            except _NETWORK_ERRORS as error:
                broke = DownloadInterrupted(
                    f"download broke off after {size} bytes: {_short_reason(error)}; nothing was stored"
                )
                broke.__cause__ = error
                raise _Stopped(broke) from error
            if not chunk:
                continue
            if not isinstance(chunk, bytes):
                chunk = bytes(chunk)
            progress.read += len(chunk)
            size += len(chunk)
            if expected_size is not None and size > expected_size:
                # Stop now rather than upload a body that can only be rejected at the end.
                raise DownloadInterrupted(
                    f"download delivered more than the announced {expected_size} bytes; nothing was stored"
                )
            offset = 0
            while offset < len(chunk):
                if number > MAX_PARTS:
                    raise ValueError(f"the file needs more than {MAX_PARTS} parts")
                assert buffer is not None
                take = min(length - filled, len(chunk) - offset)
                piece = chunk if take == len(chunk) else chunk[offset : offset + take]
                digest.update(piece)
                buffer[filled : filled + take] = piece
                filled += take
                offset += take
                if body is not None:
                    crc = checksums.crc64nvme(piece, crc)
                    if filled < length:
                        body.grew(filled)
                        continue
                    body.finish(crc)
                    progress.sent(number)
                elif filled == length:
                    progress.sent(number)
                    pipeline.send(number, buffer, filled)
                else:
                    continue
                buffer = body = None
                number, part_size, filled, crc = number + 1, next(sizes), 0, 0
                done = size - len(chunk) + offset
                if expected_size is not None and done == expected_size:
                    continue  # that was the last part
                length = part_size if expected_size is None else min(part_size, expected_size - done)
                buffer = pipeline.take(part_size)
                if expected_size is not None:
                    body = pipeline.start(number, buffer, length)

        if expected_size is not None and size != expected_size:
            raise _Stopped(
                DownloadInterrupted(
                    f"download ended after {size} of {expected_size} bytes; nothing was stored"
                )
            )
        sha256 = progress.hexdigest()
        if expected_sha256 is not None and sha256 != expected_sha256.strip().lower():
            raise DownloadInterrupted(
                f"download's SHA-256 {sha256} differs from the announced {expected_sha256}; "
                "nothing was stored"
            )
        if buffer is not None and (filled or number == 1):
            # The last part may be short; an empty stream still needs one (empty) part to make an object.
            last, buffer = buffer, None
            progress.sent(number)
            pipeline.send(number, last, filled)
        return size, sha256
    finally:
        if body is not None:
            body.fail()  # its upload was started: it ends now, and gives its buffer back itself
        elif buffer is not None:
            pipeline.give_back()


def _check_it_fits(
    size: int, start_size: int, expected_size: int, started: float, now: float, stop_at: float
) -> None:
    """Stop early when, at the rate so far, the rest of the file would arrive well after ``stop_at``."""
    elapsed = now - started
    if elapsed < ESTIMATE_AFTER_SECONDS or size <= start_size:
        return
    rate = (size - start_size) / elapsed
    finish = now + (expected_size - size) / rate
    if finish > stop_at + 0.2 * (stop_at - started):
        raise _Stopped(
            TransferOutOfTime(
                f"the download had reached {_mib(size)} of {_mib(expected_size)} at "
                f"{rate / 1048576:.1f} MiB/s after {elapsed:.0f} s: at this rate it needs about "
                f"{(finish - now) / 60:.0f} more minutes, more than its function has left; the upload was "
                "aborted and nothing was stored"
            )
        )


def _out_of_time(size: int, expected_size: int | None, read: int, seconds: float) -> TransferOutOfTime:
    rate = read / seconds if seconds > 0 else 0.0
    done = f"{_mib(size)} of {_mib(expected_size)}" if expected_size is not None else _mib(size)
    return TransferOutOfTime(
        f"the download had reached {done} at {rate / 1048576:.1f} MiB/s when Fetch had to stop to finish "
        "within its function's time limit; the upload was aborted and nothing was stored. At this rate "
        "the report cannot be fetched in one run"
    )


def _mib(size: int) -> str:
    return f"{size / 1048576:.1f} MiB"


def _content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII ``filename`` and, when that is not exact, an RFC 5987 ``filename*``.

    HTTP header values must be ASCII, so the plain ``filename`` is an approximation: accents are
    dropped, and other non-ASCII characters, controls, quotes, backslashes and percent signs (which
    some browsers misread, RFC 6266 appendix D) become ``_``. Browsers prefer ``filename*``, which
    carries the exact name percent-encoded as UTF-8.
    """
    decomposed = unicodedata.normalize("NFKD", filename)
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    fallback = "".join(char if " " <= char <= "~" and char not in '"\\%' else "_" for char in stripped)
    header = f'attachment; filename="{fallback}"'
    if fallback != filename:
        # attr-char (RFC 5987): ALPHA / DIGIT / "!#$&+-.^_`|~"; everything else is percent-encoded.
        header += f"; filename*=UTF-8''{quote(filename, safe='!#$&+-.^_`|~')}"
    return header


_URL = re.compile(r"(?:https?://|url: )\S*|\?\S*")


def _short_reason(error: BaseException) -> str:
    """The error's type and a one-line message without URLs or query strings (they may hold secrets)."""
    lines = str(error).strip().splitlines()
    message = _URL.sub("<url>", lines[0]) if lines else ""
    reason = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return reason if len(reason) <= 160 else reason[:157] + "..."


def _abort(s3_client: Any, bucket: str, key: str, upload_id: str) -> None:
    """Best effort: a failed abort is logged, never raised, so the original error is what the caller sees."""
    try:
        s3_client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except ClientError as error:
        if aws_error_code(error) != "NoSuchUpload":  # already aborted or completed: nothing to undo
            log.warning("could not abort the multipart upload to s3://%s/%s", bucket, key, exc_info=True)
    except Exception:
        log.warning("could not abort the multipart upload to s3://%s/%s", bucket, key, exc_info=True)
