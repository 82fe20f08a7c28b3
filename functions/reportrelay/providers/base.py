"""What every provider adapter implements, and the small types they exchange with the workflow.

An adapter speaks one vendor's HTTP protocol and nothing else: it does not know Lambda, S3 or Step
Functions. Its *handle* is the small JSON it needs to find the report again on the next call (an export
id, a queue entry id); it goes into the state machine's state, so it must never hold a secret.
"""

from __future__ import annotations

import mimetypes
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

import requests
from pydantic import BaseModel, ConfigDict, ValidationError

from reportrelay.claims import ClaimStore
from reportrelay.config import Connection, JobRequest, describe_validation_error
from reportrelay.errors import BadRequest, ConfigurationError, ProviderProtocolError
from reportrelay.httpclient import ProviderHttp
from reportrelay.objectkeys import clean_filename

Handle = dict[str, Any]


class ReportState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    READY = "READY"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        return self in (ReportState.READY, ReportState.FAILED, ReportState.CANCELLED)


@dataclass(frozen=True)
class ReportStatus:
    state: ReportState
    progress: float | None = None
    message: str | None = None
    handle: Handle | None = None
    """A replacement handle, when checking taught the adapter something it needs later."""
    started_at: float | None = None
    finished_at: float | None = None
    """When the vendor says it started and finished generating (epoch seconds), where it says so: its own
    generation time, which the learned wait prefers to queued -> ready (our polls add to that)."""


@dataclass
class ResultStream:
    """The finished report as a byte stream, with what the provider said about it.

    ``offset`` is where in the file the stream starts (not 0 only when a ``ResumeFrom`` was honoured);
    ``validator`` is set when the provider serves byte ranges of this very file, naming it for a later
    ``ResumeFrom`` (its strong ETag, else its Last-Modified); ``content_length`` is the whole file's.
    """

    chunks: Iterator[bytes]
    filename: str
    content_type: str
    content_length: int | None = None
    sha256: str | None = None
    offset: int = 0
    validator: str | None = None


@dataclass(frozen=True)
class ResumeFrom:
    """Ask for the file from byte ``offset`` on, if it is still the file ``validator`` names.

    Sent as ``Range`` with ``If-Range`` (RFC 9110 section 13.1.5): a server whose file changed answers
    with the whole new file (200), never a splice of two versions. Asked without content coding, since
    ranges count the bytes as sent.
    """

    offset: int
    validator: str

    def headers(self) -> dict[str, str]:
        return {"Range": f"bytes={self.offset}-", "If-Range": self.validator, "Accept-Encoding": "identity"}


def range_headers(resume_from: ResumeFrom | None) -> dict[str, str]:
    """The headers that ask for the rest of a file (none for a whole one)."""
    return resume_from.headers() if resume_from is not None else {}


class ProviderSettings(BaseModel):
    """Connection settings specific to one provider; none by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Provider(ABC):
    """One vendor's report API: submit, check, open the result, cancel.

    Class attributes describe the vendor's protocol to the workflow:
    - ``reauth_statuses``: answers that mean "sign in again" (401 everywhere; some vendors add others).
    - ``sealed_handle_fields``: handle fields that are credentials (a download session token, say);
      the workflow encrypts them before the handle enters the state machine's state.
    - ``holds_request``: the vendor generates the report only while one request stays open; the
      workflow then calls ``hold`` from a separate, asynchronously invoked function after ``submit``.
    - ``single_use_result``: the result can be downloaded once; if storing it fails, the workflow
      starts the job again from ``submit`` (a bounded number of times) instead of retrying the download.

    ``clock`` is the wall clock (epoch seconds) the adapter measures the vendor's lifetimes on: a download
    session's age, a link's expiry, how long a queued report may stay unlisted. Tests move it on.

    ``claims`` is the shared claim store (``reportrelay.claims``) for vendors whose queue hands back no id,
    so that concurrent jobs can agree which queue entry is whose; None where none was given.

    Submitting exactly once: ``submit`` calls ``queuing(hint)`` right before the request that queues the
    report, and nothing else in it may queue one. The workflow records the hint first (its submit intent)
    and, when a run of the step died after that point, asks ``find_submitted`` with the same hint instead
    of submitting again. ``lost_submission`` words where a person would look when the adapter cannot.
    """

    key: ClassVar[str]
    settings_model: ClassVar[type[ProviderSettings]] = ProviderSettings
    reauth_statuses: ClassVar[tuple[int, ...]] = (401,)
    sealed_handle_fields: ClassVar[frozenset[str]] = frozenset()
    holds_request: ClassVar[bool] = False
    single_use_result: ClassVar[bool] = False
    claims: ClaimStore | None = None
    clock: Callable[[], float] = staticmethod(time.time)
    before_queue: Callable[[Handle], None] | None = None
    """Set by the workflow: records the submit intent's hint; raising stops the queue call."""

    def __init__(self, connection: Connection, http: ProviderHttp) -> None:
        self.connection = connection
        self.http = http
        self.settings = self.parse_settings(connection)

    @classmethod
    def parse_settings(cls, connection: Connection) -> ProviderSettings:
        try:
            return cls.settings_model.model_validate(connection.provider_settings)
        except ValidationError as error:
            raise ConfigurationError(
                describe_validation_error(error, f"connections.{connection.name}")
            ) from None

    @classmethod
    @abstractmethod
    def validate(cls, request: JobRequest) -> None:
        """Raise BadRequest when the request's report, format or parameters cannot work."""

    @abstractmethod
    def submit(self, request: JobRequest) -> ReportStatus:
        """Ask the provider to generate the report; the status carries the handle that finds it again."""

    @abstractmethod
    def check(self, request: JobRequest, handle: Handle) -> ReportStatus:
        """Where the report stands now."""

    @abstractmethod
    def open_result(
        self, request: JobRequest, handle: Handle, resume_from: ResumeFrom | None = None
    ) -> AbstractContextManager[ResultStream]:
        """Open the finished report for streaming; the context closes the connection.

        With ``resume_from``, ask for the rest of the file (``range_headers``); a provider that cannot
        ask for part of a result ignores it and serves the whole file (``offset`` 0).
        """

    def hold(self, request: JobRequest, handle: Handle) -> None:
        """Make the long-lived request that keeps generation going (only when ``holds_request``)."""
        raise NotImplementedError(f"{self.key} does not hold a request open")

    def cancel(self, request: JobRequest, handle: Handle) -> bool:
        """Cancel at the provider where the API allows; False when it does not."""
        return False

    def queuing(self, hint: Handle) -> None:
        """Say the next request queues the report; ``hint`` is what ``find_submitted`` needs (no secrets)."""
        if self.before_queue is not None:
            self.before_queue(hint)

    def find_submitted(self, request: JobRequest, hint: Handle, since: float) -> ReportStatus | None:
        """The report an earlier run of this submit attempt may have queued (``since``: epoch seconds of
        its ``queuing`` call), found at the provider with ``hint``; None when it cannot be found (the
        default: the vendor's API offers no way to look)."""
        return None

    def lost_submission(self, request: JobRequest) -> str:
        """Where a person finds a report that may have been queued and could not be found here."""
        return f"look for it among {self.key}'s queued or recent reports"


def parse_report(model: type[BaseModel], request: JobRequest) -> Any:
    """Validate the provider-specific ``report`` object of a request."""
    try:
        return model.model_validate(request.report)
    except ValidationError as error:
        raise BadRequest(describe_validation_error(error, "request.report")) from None


def require_format(request: JobRequest, allowed: tuple[str, ...], what: str) -> None:
    if request.format not in allowed:
        raise BadRequest(
            f"request.format: '{request.format}' is not available for {what}; "
            f"choose one of {', '.join(allowed)}"
        )


_FILENAME_IN_DISPOSITION = re.compile(r"filename\*=(?:UTF-8'')?([^;]+)|filename=\"?([^\";]+)\"?", re.I)


def filename_from_response(response: requests.Response, fallback: str) -> str:
    """The provider's filename from Content-Disposition, else the fallback; always a safe base name.

    Safe: cleaned by ``objectkeys.clean_filename`` (no controls, bidi or zero-width characters, at most
    255 bytes); a name that cleans to nothing gives the fallback.
    """
    disposition = response.headers.get("Content-Disposition", "")
    name = None
    for star, plain in _FILENAME_IN_DISPOSITION.findall(disposition):
        name = requests.utils.unquote(star.strip()) if star else plain.strip()
        if star:
            break
    return clean_filename(name or fallback, fallback)


def content_type_of(response: requests.Response, filename: str) -> str:
    declared = response.headers.get("Content-Type", "").split(";")[0].strip()
    if declared and declared != "application/octet-stream":
        return declared
    return mimetypes.guess_type(filename)[0] or declared or "application/octet-stream"


def decoded_length(response: requests.Response) -> int | None:
    """How many bytes the decoded body should have: Content-Length, unless the answer is content-encoded.

    A gzip answer's Content-Length counts the encoded bytes, not the decoded ones a stream yields, so it
    says nothing about the stored size (urllib3 still checks the encoded length as it reads).
    """
    if response.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
        return None
    length = response.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


def streamed(response: requests.Response, filename: str, chunk_size: int = 1024 * 1024) -> ResultStream:
    """A ResultStream reading a ``stream=True`` response as it arrives (a 206 one from its offset)."""
    offset, length = 0, decoded_length(response)
    if response.status_code == 206:
        offset, length = served_range(response)
    return ResultStream(
        chunks=response.iter_content(chunk_size=chunk_size),
        filename=filename,
        content_type=content_type_of(response, filename),
        content_length=length,
        offset=offset,
        validator=range_validator(response),
    )


_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.I)


def served_range(response: requests.Response) -> tuple[int, int | None]:
    """Where a 206 answer starts in the file, and the whole file's size (None when not given)."""
    header = response.headers.get("Content-Range", "")
    match = _CONTENT_RANGE.match(header)
    if match is None:
        raise ProviderProtocolError(
            f"the provider answered part of the file (206) with an unreadable Content-Range {header[:60]!r}"
        )
    start, _, total = match.groups()
    return int(start), None if total == "*" else int(total)


def range_validator(response: requests.Response) -> str | None:
    """What names this file for a later ``ResumeFrom``: only when the provider serves byte ranges of it.

    A GET answered without content coding, with ``Accept-Ranges: bytes`` (or a 206), and a strong ETag
    (weak ones may not be used in ``If-Range``) or a Last-Modified date.
    """
    if response.request is None or response.request.method != "GET":
        return None
    if response.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
        return None
    ranges = "bytes" in response.headers.get("Accept-Ranges", "").lower()
    if not ranges and response.status_code != 206:
        return None
    etag = response.headers.get("ETag", "").strip()
    if etag and not etag.startswith("W/"):
        return etag
    return response.headers.get("Last-Modified", "").strip() or None
