"""Clinical One (``specs/clinical_one.json``): what its reporting service needs that data cannot say.

- ``find_submitted``: a start call whose answer was lost is looked for in the download list: the one run
  of the report (study, mode, format where listed) kicked off around then that no other job claimed.
- ``retry_after``: a 429 states its wait in the body (a field, or words such as "retry after 4 seconds"),
  often without Retry-After.

``describe_base_response`` is how the spec's ``errors`` read the service's BaseResponse, in either
spelling of its error object ("REPT_401: <errorMessage> (<details>)"), for code that holds a body.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from reportrelay.config import JobRequest
from reportrelay.providers.base import Handle, ReportState, ReportStatus
from reportrelay.providers.hooks import hook
from reportrelay.providers.spec import vendor_time

if TYPE_CHECKING:
    from reportrelay.providers.declarative import DeclarativeProvider

API = "/ec-reporting-svc/rest"
START_REPORT = f"{API}/v1.0/reports"
DOWNLOAD_LIST = f"{API}/v2.0/reportmetadata/downloadList"
DOWNLOAD = f"{API}/v2.0/reports/download"

#: A job that an earlier run of submit may have started is looked for among runs kicked off from this long
#: before its start call (clocks disagree) to this long after it (the call may wait in the service).
KICKOFF_SLACK_SECONDS = 120
KICKOFF_WINDOW_SECONDS = 300
_ERROR_OBJECTS = ("errorData", "ErrorResponseData", "errorResponseData")
_RETRY_WORDS = re.compile(r"retry\D{0,20}?(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|sec|secs|seconds?)?\b", re.I)
_RETRY_KEYS = ("retryAfter", "retryAfterSeconds", "retry_after", "retryAfterSecs")


@hook("find_submitted")
def find_run_kicked_off_then(
    provider: DeclarativeProvider,
    request: JobRequest,
    hint: Handle,
    since: float,
    *,
    default: Callable[..., ReportStatus | None],
) -> ReportStatus | None:
    """The one run of this report kicked off within a few minutes of the lost start call and claimed by no
    other job; None when there is none, or several."""
    check = provider.spec.check
    assert check is not None and check.entry is not None
    wanted_format = provider.spec.request.formats[request.format]
    earliest, latest = since - KICKOFF_SLACK_SECONDS, since + KICKOFF_WINDOW_SECONDS
    candidates = []
    for run in provider.check_answer(request, {}):  # every page: no job id to stop at
        if not isinstance(run, Mapping) or not run.get(check.entry.key):
            continue
        kickoff = vendor_time(_first(run, check.keep["kickoff"]))
        listed_format = _first(run, ("rptFormat", "format"))
        if kickoff is None or not earliest <= kickoff <= latest:
            continue
        if listed_format is not None and listed_format.upper() != wanted_format:
            continue
        candidates.append(run)
    if provider.claims is not None:
        namespace = f"clinical_one:{urlsplit(provider.connection.base_url).netloc.lower()}:run"
        owner = str(hint.get("owner") or "")
        candidates = [
            run for run in candidates if provider.claims.claim(namespace, _id(run[check.entry.key]), owner)
        ]
    if len(candidates) != 1:
        return None
    run = candidates[0]
    handle: Handle = {"job_id": str(run[check.entry.key])}
    kickoff = _first(run, check.keep["kickoff"])
    if kickoff:
        handle["kickoff"] = kickoff
    return ReportStatus(ReportState.PENDING, message="found the job in the download list", handle=handle)


@hook("retry_after")
def wait_stated_in_body(provider: DeclarativeProvider, body: Any) -> float | None:
    """The wait a 429's BaseResponse states, for the shared client's Retry-After."""
    return retry_seconds_in(body)


def describe_base_response(body: Any) -> str | None:
    """ "REPT_401: <errorMessage> (<details>)" from a BaseResponse, in either of its two spellings."""
    from reportrelay.providers.declarative import packaged_provider, vendor_words

    if not isinstance(body, Mapping) or not any(
        isinstance(body.get(key), Mapping) and body[key] for key in _ERROR_OBJECTS
    ):
        return None
    return vendor_words(packaged_provider("clinical_one").spec.errors, body) or "no error message"


def retry_seconds_in(body: Any) -> float | None:
    """Seconds to wait, from a numeric retry field or words like "retry after 2 seconds" anywhere in it."""
    if isinstance(body, Mapping):
        for key in _RETRY_KEYS:
            value = body.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                return float(value)
        for value in body.values():
            found = retry_seconds_in(value)
            if found is not None:
                return found
        return None
    if isinstance(body, str):
        match = _RETRY_WORDS.search(body)
        if match:
            amount = float(match.group(1))
            unit = (match.group(2) or "s").lower()
            return amount / 1000 if unit.startswith("m") else amount
    return None


def _first(entry: Mapping[str, Any], fields: str | tuple[str, ...]) -> str | None:
    for field in (fields,) if isinstance(fields, str) else fields:
        value = entry.get(field)
        if value is not None and str(value).strip():
            return str(value)
    return None


def _id(value: Any) -> str:
    return str(value).replace("-", "").strip().upper()


def __getattr__(name: str) -> Any:
    """``ClinicalOne``: the adapter the provider registry builds from the spec (made on first use, as
    the spec names this module's hooks)."""
    if name == "ClinicalOne":
        from reportrelay.providers.declarative import packaged_provider

        return packaged_provider("clinical_one")
    raise AttributeError(name)
