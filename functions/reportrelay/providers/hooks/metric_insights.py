"""Metric Insights (``specs/metric_insights.json``): the download session's life, which data cannot say.

``init`` opens a session that lives ``session_lifetime_seconds``; when it runs out the file is discarded
(the seed: "If the token expires before run finishes, the file is discarded"). So the held ``run``, the
``check`` and the single ``get`` that find the session gone, or a ``check`` still answering IN PROGRESS
past its lifetime, fail naming the expiry instead of polling until the job's deadline. ``get`` answers a
JSON status instead of the file when there is none: that is a failure, never the file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import TYPE_CHECKING

from reportrelay.config import JobRequest
from reportrelay.errors import ProviderProtocolError, ProviderRejected, ReportGenerationFailed
from reportrelay.providers.base import Handle, ReportState, ReportStatus, ResultStream, ResumeFrom
from reportrelay.providers.hooks import hook

if TYPE_CHECKING:
    from reportrelay.providers.declarative import DeclarativeProvider


@hook("hold")
def session_hold(
    provider: DeclarativeProvider, request: JobRequest, handle: Handle, *, default: Callable[..., None]
) -> None:
    """The held ``run``: a refusal after the session's lifetime is its expiry."""
    with _expiry_named(provider, request, handle, downloading=False):
        default(request, handle)


@hook("check")
def session_check(
    provider: DeclarativeProvider,
    request: JobRequest,
    handle: Handle,
    *,
    default: Callable[..., ReportStatus],
) -> ReportStatus:
    """The status, unless the session has outlived its lifetime: its file is then gone."""
    with _expiry_named(provider, request, handle, downloading=False):
        status = default(request, handle)
    if status.state is ReportState.RUNNING and _age(provider, handle) >= _lifetime(provider):
        raise ReportGenerationFailed(_expired(provider, request, handle, "still answered IN PROGRESS"))
    return status


@hook("open_result")
@contextmanager
def session_result(
    provider: DeclarativeProvider,
    request: JobRequest,
    handle: Handle,
    resume_from: ResumeFrom | None = None,
    *,
    default: Callable[..., AbstractContextManager[ResultStream]],
) -> Iterator[ResultStream]:
    """The one download a session allows; a JSON status in its place is the reason there is no file."""
    with ExitStack() as opened:
        with _expiry_named(provider, request, handle, downloading=True):
            result = opened.enter_context(default(request, handle, resume_from))
        if "json" in result.content_type.lower():
            raise _instead_of_the_file(provider, request, result)
        yield result


@contextmanager
def _expiry_named(
    provider: DeclarativeProvider, request: JobRequest, handle: Handle, *, downloading: bool
) -> Iterator[None]:
    """A vendor refusal once the session has outlived its lifetime says the session expired."""
    try:
        yield
    except (ProviderRejected, ReportGenerationFailed) as refused:
        if refused.vendor_words is None or _age(provider, handle) < _lifetime(provider):
            raise
        said = f"answered '{refused.vendor_words}'"
        raise ReportGenerationFailed(_expired(provider, request, handle, said, downloading)) from None


def _expired(
    provider: DeclarativeProvider, request: JobRequest, handle: Handle, said: str, downloading: bool = False
) -> str:
    why = (
        "the file was ready but was not downloaded in time"
        if downloading
        else "the report takes longer to generate than a download session allows"
    )
    age, lifetime = _age(provider, handle), _lifetime(provider)
    return (
        f"the Metric Insights download session for {provider.report_label(request)} expired: the server "
        f"{said} {round(age, 1 if age < 10 else None)} s after init, and sessions last "
        f"{round(lifetime, 1 if lifetime < 10 else None)} s, so the file was discarded; {why}"
    )


def _instead_of_the_file(
    provider: DeclarativeProvider, request: JobRequest, result: ResultStream
) -> Exception:
    """The error ``get`` meant when it answered a status: generation failed, or the file is not there yet."""
    instead = f"instead of the file for {provider.report_label(request)}"
    try:
        body = json.loads(b"".join(result.chunks))
    except ValueError:
        body = None
    status = body.get("status") if isinstance(body, dict) else body
    if str(status).upper() != "ERROR":
        return ProviderProtocolError(
            f"download report: Metric Insights answered {status!r} {instead} although check said READY"
        )
    words = body.get("message") if isinstance(body, dict) else None
    return ReportGenerationFailed(
        f"download report: Metric Insights answered ERROR {instead}"
        + (f": {words}" if words else "; generation failed")
    )


def _age(provider: DeclarativeProvider, handle: Handle) -> float:
    """Seconds since ``init`` (the handle's ``submit.queued_at_field``); 0 for a handle without it."""
    opened = handle.get(provider.spec.submit.queued_at_field)
    return provider.clock() - float(opened) if isinstance(opened, int | float) else 0.0


def _lifetime(provider: DeclarativeProvider) -> float:
    return float(provider.settings.session_lifetime_seconds)
