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
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

import requests
import urllib3.exceptions

from reportrelay.errors import DownloadInterrupted
from reportrelay.objectkeys import clean_filename

log = logging.getLogger(__name__)

DEFAULT_PART_SIZE = 8 * 1024 * 1024
"""Bytes per uploaded part. S3 requires at least 5 MiB for every part but the last."""

MAX_PARTS = 10_000
"""S3's limit on parts per multipart upload."""

SHA256_TAG = "sha256"
"""The object tag that records the stored bytes' SHA-256 (lower-case hex)."""

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

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-able dict for the workflow state."""
        return asdict(self)


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
) -> StoredObject:
    """Upload ``chunks`` to ``s3://bucket/key`` as one object and tag it with its SHA-256.

    The object only appears once every byte has arrived and matches ``expected_size`` and
    ``expected_sha256`` (lower-case or upper-case hex) when those are given. Any failure aborts the
    upload, so no partial object and no open multipart upload is left behind. A stream that breaks
    off raises ``DownloadInterrupted``; every other error propagates unchanged.
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
    )["UploadId"]
    try:
        size, sha256, parts = _upload_parts(
            chunks,
            s3_client=s3_client,
            bucket=bucket,
            key=key,
            upload_id=upload_id,
            part_size=part_size,
            expected_size=expected_size,
            expected_sha256=expected_sha256,
        )
        completed = s3_client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        _abort(s3_client, bucket, key, upload_id)
        raise

    try:
        s3_client.put_object_tagging(
            Bucket=bucket,
            Key=key,
            Tagging={"TagSet": [{"Key": SHA256_TAG, "Value": sha256}]},
        )
    except BaseException:
        # An object without its checksum tag must not pass for a verified one.
        _delete(s3_client, bucket, key, completed.get("VersionId"))
        raise

    return StoredObject(
        bucket=bucket, key=key, size=size, sha256=sha256, content_type=content_type, filename=filename
    )


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
) -> tuple[int, str, list[dict[str, Any]]]:
    """Read the stream into part-sized buffers and upload them; return size, SHA-256 and parts.

    Each byte is copied once, into a preallocated buffer. A full buffer is handed to S3 as it is and a
    new one takes its place, so the uploader never sees a buffer that is later overwritten, and memory
    stays at about one part plus one chunk.
    """
    digest = hashlib.sha256()
    parts: list[dict[str, Any]] = []
    buffer = bytearray(part_size)
    filled = 0
    size = 0

    def upload(body: bytearray) -> None:
        number = len(parts) + 1
        if number > MAX_PARTS:
            raise ValueError(f"the file needs more than {MAX_PARTS} parts of {part_size} bytes")
        response = s3_client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
        )
        parts.append({"ETag": response["ETag"], "PartNumber": number})

    iterator = iter(chunks)
    while True:
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
    return size, sha256, parts


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


def _delete(s3_client: Any, bucket: str, key: str, version_id: str | None) -> None:
    """Best effort: remove the object just completed (only that version, in a versioned bucket)."""
    try:
        if version_id:
            s3_client.delete_object(Bucket=bucket, Key=key, VersionId=version_id)
        else:
            s3_client.delete_object(Bucket=bucket, Key=key)
    except Exception:
        log.warning("could not delete untagged object s3://%s/%s", bucket, key, exc_info=True)
