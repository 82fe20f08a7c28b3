"""A job's activity in a user's words, recorded as it happens: what ``GET /reports/{id}/events`` answers.

Every workflow step makes a ``Recorder`` for its job and says what it did: the report queued, generating,
ready, stored; each wait before the next check; each retry, with its cause, its wait and the attempt
numbers; a restart after a lost single-use download. The HTTP client tells the recorder of its own
retries through ``ProviderHttp.on_retry`` (it knows nothing of jobs). The job store keeps the entries
(``DynamoDbJobs.add_activity``: bounded, whatever a storm of retries does).

Recording is best effort: a store that fails loses an entry, never the report. No secret reaches an
entry: messages are our own words, numbers, and our errors' messages, which name paths but never query
strings or credentials; any other exception is named by its type only. ``plain`` also drops every query
string and cuts a message to ``MAX_MESSAGE_CHARS``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from reportrelay.errors import (
    DownloadInterrupted,
    ProviderServerError,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnavailable,
    ReportRelayError,
)
from reportrelay.httpclient import RetryNotice, without_query_strings
from reportrelay.observability import logger
from reportrelay.timestamps import iso_timestamp

if TYPE_CHECKING:
    from reportrelay.jobs import DynamoDbJobs

Kind = Literal["state", "wait", "retry", "restart", "progress"]
KINDS: tuple[Kind, ...] = ("state", "wait", "retry", "restart", "progress")
#: Kept apart from the chatter between them, so a storm of retries never pushes them out.
MILESTONE_KINDS = frozenset({"state", "restart"})
MAX_MESSAGE_CHARS = 300
MAX_MESSAGE_BYTES = 600  # of UTF-8: with its other fields an entry stays within the store's 1 KiB
_OPTIONAL = ("attempt", "attempts", "wait_seconds", "percent")


@dataclass(frozen=True)
class Entry:
    """One thing the job did; the optional figures only where they apply (None is left out)."""

    step: str
    kind: Kind
    message: str
    attempt: int | None = None
    attempts: int | None = None
    wait_seconds: float | None = None
    percent: float | None = None

    def document(self, at: str) -> dict[str, Any]:
        """The entry as kept and answered: ``at``, ``step``, ``kind``, ``message`` and its figures."""
        document: dict[str, Any] = {
            "at": at,
            "step": self.step,
            "kind": self.kind,
            "message": plain(self.message),
        }
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                document[name] = float(value) if name in ("wait_seconds", "percent") else int(value)
        return document


class Recorder:
    """Records one step's activity for one job; does nothing without a job store or a job id."""

    def __init__(
        self,
        store: DynamoDbJobs | None,
        job_id: str | None,
        step: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store if job_id else None
        self.job_id = str(job_id or "")
        self.step = step
        self.clock = clock

    def add(self, entry: Entry) -> None:
        if self.store is None:
            return
        try:
            self.store.add_activity(
                self.job_id,
                entry.document(iso_timestamp(self.clock())),
                milestone=entry.kind in MILESTONE_KINDS,
            )
        except Exception as error:  # the report matters more than its story
            logger.warning(
                "job activity not recorded", extra={"job_id": self.job_id, "error": type(error).__name__}
            )

    def state(self, message: str) -> None:
        self.add(Entry(self.step, "state", message))

    def wait(self, message: str, seconds: float, percent: float | None = None) -> None:
        self.add(Entry(self.step, "wait", message, wait_seconds=seconds, percent=percent))

    def retry(self, message: str, attempt: int, attempts: int, seconds: float) -> None:
        self.add(Entry(self.step, "retry", message, attempt=attempt, attempts=attempts, wait_seconds=seconds))

    def restart(self, message: str, attempt: int, attempts: int) -> None:
        self.add(Entry(self.step, "restart", message, attempt=attempt, attempts=attempts))

    def progress(self, message: str, percent: float | None) -> None:
        self.add(Entry(self.step, "progress", message, percent=percent))

    def http_retry(self, notice: RetryNotice) -> None:
        """The HTTP client's hook (``ProviderHttp.on_retry``): one entry per retry, as it happens."""
        message = retry_words(notice.cause, notice.wait_seconds, notice.attempt, notice.attempts)
        self.retry(message, notice.attempt, notice.attempts, notice.wait_seconds)


# ---- the words


def plain(text: str) -> str:
    """One line, no query string, at most ``MAX_MESSAGE_CHARS`` characters and ``MAX_MESSAGE_BYTES``."""
    folded = " ".join(without_query_strings(str(text)).split())
    if len(folded) > MAX_MESSAGE_CHARS:
        folded = folded[: MAX_MESSAGE_CHARS - 1] + "…"
    while len(folded.encode()) > MAX_MESSAGE_BYTES:
        folded = folded[: len(folded) * MAX_MESSAGE_BYTES // len(folded.encode()) - 1] + "…"
    return folded


def seconds_words(seconds: float) -> str:
    """ "0.5 s", "8 s", "4 min", "2.5 h": as a person says a wait."""
    if seconds < 10:
        return f"{round(seconds, 1):g} s"
    if seconds < 120:
        return f"{round(seconds):g} s"
    if seconds < 7200:
        return f"{round(seconds / 60, 1):g} min"
    return f"{round(seconds / 3600, 1):g} h"


def size_words(size: int) -> str:
    """ "900 B", "64 KiB", "412 MiB", "1.2 GiB"."""
    value, unit = float(size), "B"
    for larger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    if unit == "B":
        return f"{size} B"
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"


def retry_words(cause: str, seconds: float, attempt: int, attempts: int) -> str:
    """ "vendor answered 429, retrying in 8 s (attempt 2 of 5)"."""
    return f"{cause}, retrying in {seconds_words(seconds)} (attempt {attempt} of {attempts})"


def cause_words(error: BaseException) -> str:
    """Why a step failed, in a few words: "vendor answered 429", "download broke", or the error's name."""
    if isinstance(error, ReportRelayError):
        status = _answered_status(str(error))
        if status is not None:
            return f"vendor answered {status}"
        if isinstance(error, DownloadInterrupted):
            return "download broke"
        if isinstance(error, ProviderTimeout):
            return "the vendor sent no answer in time"
        if isinstance(error, ProviderThrottled):
            return "the vendor asked to slow down"
        if isinstance(error, ProviderUnavailable):
            return "could not reach the vendor"
        if isinstance(error, ProviderServerError):
            return "the vendor failed to answer"
        return error.code
    return type(error).__name__


def _answered_status(message: str) -> int | None:
    marker = "answered HTTP "
    at = message.find(marker)
    digits = message[at + len(marker) : at + len(marker) + 3] if at >= 0 else ""
    return int(digits) if len(digits) == 3 and digits.isdigit() else None


def queued_words(handle: Mapping[str, Any] | None, sealed: frozenset[str]) -> str:
    """ "queued at the vendor as export 1234": the vendor's own id of the report, where it gave one.

    Only a plain ``<name>_id`` field of the handle is named (never a sealed one, never a long value).
    """
    for name, value in (handle or {}).items():
        if name in sealed or not name.endswith("_id") or isinstance(value, bool):
            continue
        text = str(value) if isinstance(value, int | str) else ""
        if 0 < len(text) <= 64 and all(char.isalnum() or char in "-_.:" for char in text):
            return f"queued at the vendor as {name[:-3].replace('_', ' ')} {text}"
    return "queued at the vendor"


def check_words(state: str, percent: float | None, seconds: float) -> str:
    """ "report is generating (40 %), next check in 30 s"."""
    where = "report is generating" if state == "RUNNING" or percent else "report is queued at the vendor"
    if percent is not None:
        where += f" ({percent:g} %)"
    return f"{where}, next check in {seconds_words(seconds)}"


def stored_words(size: int, bucket: str, key: str) -> str:
    return f"stored {size_words(size)} in s3://{bucket}/{key}"


def failed_words(message: str) -> str:
    return f"failed: {message}"


def restart_words(error: BaseException, read: int, restart: int, restarts: int) -> str:
    """ "download broke at 412 MiB, regenerating at the vendor (restart 1 of 2)": a download that had begun
    broke; one that never began says why ("vendor answered 503 before the download began, ...")."""
    if read or isinstance(error, DownloadInterrupted):
        lost = f"download broke at {size_words(read)}" if read else "download broke before its first byte"
    else:
        lost = f"{cause_words(error)} before the download began"
    return f"{lost}, regenerating at the vendor (restart {restart} of {restarts})"
