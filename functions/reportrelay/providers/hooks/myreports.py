"""MyReports' date filter: a preset, or a range whose ends are ISO 8601 dates in order.

Each field's own rules are the spec's data; what spans fields (one of two shapes, ends in order, both
with a UTC offset or neither) and the API's wish for date-times rather than bare dates are these hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from reportrelay.config import JobRequest
from reportrelay.errors import BadRequest
from reportrelay.providers.base import Provider, ReportStatus
from reportrelay.providers.hooks import hook

WHERE = "request.report.date_filter"


@hook("validate")
def date_filter_shape(
    provider: type[Provider], request: JobRequest, *, default: Callable[[JobRequest], None]
) -> None:
    """The spec's field rules first, then the rules between the date filter's fields."""
    default(request)
    dates: dict[str, Any] = request.report["date_filter"]
    if "preset" in dates:
        if "start" in dates or "end" in dates:
            raise BadRequest(f"{WHERE}: give either 'preset' or 'start' and 'end', not both")
        return
    if "start" not in dates or "end" not in dates:
        raise BadRequest(f"{WHERE}: give either 'preset' (such as ThisQuarter) or both 'start' and 'end'")
    start, end = _moment(dates, "start"), _moment(dates, "end")
    if (start.tzinfo is None) != (end.tzinfo is None):
        raise BadRequest(f"{WHERE}: give 'start' and 'end' both with a UTC offset or both without one")
    if start > end:
        raise BadRequest(f"{WHERE}: 'start' ({dates['start']}) must not be after 'end' ({dates['end']})")


@hook("submit")
def range_as_date_times(
    provider: Provider, request: JobRequest, *, default: Callable[[JobRequest], ReportStatus]
) -> ReportStatus:
    """The range's ends go as ISO date-times: a bare date is midnight in the report's time zone."""
    dates: dict[str, Any] = request.report["date_filter"]
    if "preset" in dates:
        return default(request)
    ends = {name: _moment(dates, name).isoformat() for name in ("start", "end")}
    report = {**request.report, "date_filter": {**dates, **ends}}
    return default(request.model_copy(update={"report": report}))


def _moment(dates: dict[str, Any], name: str) -> datetime:
    try:
        return datetime.fromisoformat(dates[name])
    except ValueError:
        raise BadRequest(
            f"{WHERE}.{name}: '{dates[name]}' is not an ISO 8601 date or date-time, "
            "such as 2025-07-01 or 2025-07-01T09:00:00+01:00"
        ) from None
