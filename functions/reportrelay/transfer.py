"""Stream a byte iterator into one S3 object: either the whole, verified file is stored or nothing is.

Transfer knows streams and S3 only. It does not know providers or HTTP requests; it only has to
recognise the exceptions an HTTP body iterator raises when the connection breaks, so that a broken
download becomes a retryable ``DownloadInterrupted`` rather than an internal error.

Why a multipart upload: reports can be far larger than the Lambda's memory, and their size is often not
announced, so the body is cut into parts as it arrives and memory stays at about one part whatever the
file size. Why "nothing is stored" matters: S3 only makes a multipart upload visible when it is
completed, so every failure before completion is undone by aborting the upload. A bucket lifecycle rule
(AbortIncompleteMultipartUpload) should still clean up after a Lambda that is killed mid-transfer, where
no code gets to run the abort.

Integrity needs no step after completion (which could fail, and whose failure could only be undone by a
delete the Fetch role is rightly not allowed): every part carries its SHA-256, which S3 checks as it
receives it and combines into the object's own composite checksum at completion; the whole file's
SHA-256 and size are checked before the upload is completed, so an object that exists is a verified one.
Completion is conditional (``If-None-Match: *``): of two uploads racing for one key, one stores.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

import requests
import urllib3.exceptions
from botocore.exceptions import ClientError

from reportrelay.errors import DownloadInterrupted, TransferOutOfTime
from reportrelay.objectkeys import clean_filename

log = logging.getLogger(__name__)

DEFAULT_PART_SIZE = 8 * 1024 * 1024
"""Bytes per uploaded part. S3 requires at least 5 MiB for every part but the last."""

MAX_PARTS = 10_000
"""S3's limit on parts per multipart upload."""

CHECKSUM_ALGORITHM = "SHA256"
"""S3's own checksum on every part, and so the object's composite checksum."""

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
    checksum_sha256: str = ""  # S3's composite checksum of the object, as HeadObject reports it

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
    checksum_sha256: str
    content_type: str
    filename: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ObjectExists(Exception):
    """Completion was refused because the key already holds an object (another run stored it first)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"s3 key {key} already holds an object")
        self.key = key


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
) -> StoredObject:
    """Upload ``chunks`` to ``s3://bucket/key`` as one new object, checksummed part by part.

    The object only appears once every byte has arrived and matches ``expected_size`` and
    ``expected_sha256`` (lower-case or upper-case hex) when those are given. Any failure aborts the
    upload, so no partial object and no open multipart upload is left behind. A stream that breaks
    off raises ``DownloadInterrupted``; reaching ``stop_at`` (a ``clock`` time) before the end raises
    ``TransferOutOfTime``; a key that already holds an object raises ``ObjectExists``; every other error
    propagates unchanged. ``before_completion`` is told what is about to be stored (and may refuse).
    """
    if part_size <= 0:
        raise ValueError(f"part_size must be positive, not {part_size}")
    filename = clean_filename(filename)  # the name people see: no bidi, zero-width or control characters
    if expected_size is not None:
        # A larger file than 10,000 parts can hold needs larger parts; S3 allows up to 5 GiB each.
        part_size = max(part_size, -(-expected_size // MAX_PARTS))

    upload_id = s3_client.create_multipart_upload(
        Bucket=bucket,
        Key=key,
        ContentType=content_type,
        ContentDisposition=_content_disposition(filename),
        ChecksumAlgorithm=CHECKSUM_ALGORITHM,
    )["UploadId"]
    try:
        size, sha256, parts, part_digests = _upload_parts(
            chunks,
            s3_client=s3_client,
            bucket=bucket,
            key=key,
            upload_id=upload_id,
            part_size=part_size,
            expected_size=expected_size,
            expected_sha256=expected_sha256,
            stop_at=stop_at,
            clock=clock,
        )
        checksum = composite_checksum(part_digests)
        if before_completion is not None:
            before_completion(PendingObject(key, upload_id, size, sha256, checksum, content_type, filename))
        try:
            s3_client.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except ClientError as error:
            if _error_code(error) in ("PreconditionFailed", "412"):
                raise ObjectExists(key) from None
            raise
    except BaseException:
        _abort(s3_client, bucket, key, upload_id)
        raise

    return StoredObject(
        bucket=bucket,
        key=key,
        size=size,
        sha256=sha256,
        content_type=content_type,
        filename=filename,
        checksum_sha256=checksum,
    )


def composite_checksum(part_digests: list[bytes]) -> str:
    """S3's checksum of a multipart object: the SHA-256 of its parts' SHA-256s, base64, ``-<parts>``."""
    combined = hashlib.sha256(b"".join(part_digests)).digest()
    return f"{base64.b64encode(combined).decode()}-{len(part_digests)}"


def same_checksum(reported: str | None, expected: str) -> bool:
    """Whether S3's reported composite checksum is ``expected`` (some S3 servers omit the ``-<parts>``)."""
    if not reported:
        return False
    return reported == expected or reported == expected.rsplit("-", 1)[0]


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _upload_parts(
    chunks: Iterable[bytes],
    *,
    s3_client: Any,
    bucket: str,
    key: str,
    upload_id: str,
    part_size: int,
    expected_size: int | None,
    expected_sha256: str | None,
    stop_at: float | None,
    clock: Callable[[], float],
) -> tuple[int, str, list[dict[str, Any]], list[bytes]]:
    """Read the stream into part-sized buffers and upload them; return size, SHA-256, parts and their
    SHA-256 digests.

    Each byte is copied into a preallocated buffer, and a full buffer once more into the immutable bytes
    the SDK sends with a checksum (it does not take a bytearray then); the buffer is let go before the
    next is made, so memory stays at about one part, two while a part is handed over.
    """
    digest = hashlib.sha256()
    parts: list[dict[str, Any]] = []
    part_digests: list[bytes] = []
    buffer = bytearray(part_size)
    filled = 0
    size = 0
    started = clock()

    def upload(body: bytearray) -> None:
        number = len(parts) + 1
        if number > MAX_PARTS:
            raise ValueError(f"the file needs more than {MAX_PARTS} parts of {part_size} bytes")
        part_digest = hashlib.sha256(body).digest()
        checksum = base64.b64encode(part_digest).decode()
        response = s3_client.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=bytes(body),
            ChecksumSHA256=checksum,
        )
        parts.append({"ETag": response["ETag"], "PartNumber": number, "ChecksumSHA256": checksum})
        part_digests.append(part_digest)

    iterator = iter(chunks)
    while True:
        if stop_at is not None and clock() >= stop_at:
            raise _out_of_time(size, expected_size, clock() - started)
        try:
            chunk = next(iterator)
        except StopIteration:
            break
        except _NETWORK_ERRORS as error:
            raise DownloadInterrupted(
                f"download broke off after {size} bytes: {_short_reason(error)}; nothing was stored"
            ) from error
        if not chunk:
            continue
        size += len(chunk)
        if expected_size is not None and size > expected_size:
            # Stop now rather than upload a body that can only be rejected at the end.
            raise DownloadInterrupted(
                f"download delivered more than the announced {expected_size} bytes; nothing was stored"
            )
        digest.update(chunk)
        view = memoryview(chunk)
        while view:
            take = min(part_size - filled, len(view))
            buffer[filled : filled + take] = view[:take]
            filled += take
            view = view[take:]
            if filled == part_size:
                upload(buffer)
                del buffer  # let go of the sent part before taking the next: one part in memory, not two
                buffer = bytearray(part_size)
                filled = 0

    if expected_size is not None and size != expected_size:
        raise DownloadInterrupted(f"download ended after {size} of {expected_size} bytes; nothing was stored")
    sha256 = digest.hexdigest()
    if expected_sha256 is not None and sha256 != expected_sha256.strip().lower():
        raise DownloadInterrupted(
            f"download's SHA-256 {sha256} differs from the announced {expected_sha256}; nothing was stored"
        )
    if filled or not parts:
        # The last part may be short; an empty stream still needs one (empty) part to make an object.
        del buffer[filled:]
        upload(buffer)
    return size, sha256, parts, part_digests


def _out_of_time(size: int, expected_size: int | None, seconds: float) -> TransferOutOfTime:
    rate = size / seconds if seconds > 0 else 0.0
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
    except Exception:
        log.warning("could not abort the multipart upload to s3://%s/%s", bucket, key, exc_info=True)
