"""Date windows for scheduled jobs: "yesterday", "last month", ... turned into dates when the schedule fires.

A schedule cannot hold a fixed date range, so its job request is a *template*: any string in it may hold
placeholders that are filled from the date window the run covers, in the schedule's time zone, when the
schedule fires (not when it was deployed). Pure logic: no AWS, no clock of its own.

The event EventBridge Scheduler hands the ``start_scheduled`` function (CDK builds it from
``config/schedules.json``)::

    {"schedule": "daily-sales",
     "scheduled_time": "2025-03-01T06:00:00Z",
     "window": {"window": "yesterday", "timezone": "Europe/London"},
     "request": {"connection": "acme-dx", "report": {"document_id": 10}, "format": "pdf",
                 "parameters": {"From": "{{ first }}", "To": "{{ last }}", "Year": "{{ year }}"},
                 "output": {"key_prefix": "sales/{{ first:%Y/%m }}/"}}}

``scheduled_time`` is Scheduler's ``<aws.scheduler.scheduled-time>``: the window is worked out from the
time the run was *due*, so a retried or late run covers the same dates and gets the same job id.

Windows (``window.window``), for the local day D on which the run is due in ``window.timezone``
(an IANA name, default ``UTC``); weeks start on Monday (ISO 8601):

======================  ==================================================
``today``               D
``yesterday``           D - 1
``this_week``           Monday..Sunday of D's week
``last_week``           the week before
``this_month``          the whole calendar month of D
``last_month``          the month before
``this_quarter``        the whole calendar quarter of D
``last_quarter``        the quarter before
``this_year``           the whole calendar year of D
``last_year``           the year before
``week_to_date``        Monday of D's week..D (likewise ``month_to_date``, ``quarter_to_date``,
                        ``year_to_date``)
``last_<N>_days``       the N whole days before D, e.g. ``last_7_days`` (D itself excluded)
======================  ==================================================

Placeholders: ``{{ name }}`` or ``{{ name:<strftime format> }}``, anywhere in any string of the request:

=============  ===========================================================  ===================
``first``      first day of the window                                      ``2025-02-01``
``last``       last day of the window (inclusive)                           ``2025-02-28``
``start``      midnight starting the first day, in the window's time zone   ``2025-02-01T00:00:00+00:00``
``end``        midnight after the last day (exclusive end)                  ``2025-03-01T00:00:00+00:00``
``year``       year of the first day                                        ``2025``
``month``      month (1-12) of the first day                                ``2``
``quarter``    quarter (1-4) of the first day                               ``1``
=============  ===========================================================  ===================

A format applies to ``first``, ``last``, ``start`` and ``end``: ``{{ first:%d.%m.%Y }}`` gives
``01.02.2025``. A string that is exactly one ``year``, ``month`` or ``quarter`` placeholder becomes a JSON
number (``"{{ year }}"`` -> ``2025``); every other placeholder becomes text. Strings without ``{{`` are left
alone, so a request with no placeholders runs unchanged on every run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reportrelay.errors import ConfigurationError

WINDOWS = (
    "today",
    "yesterday",
    "this_week",
    "last_week",
    "this_month",
    "last_month",
    "this_quarter",
    "last_quarter",
    "this_year",
    "last_year",
    "week_to_date",
    "month_to_date",
    "quarter_to_date",
    "year_to_date",
    "last_<N>_days",
)
PLACEHOLDERS = ("first", "last", "start", "end", "year", "month", "quarter")
MAX_LAST_DAYS = 366
# Step Functions execution names: 1-80 characters of letters, digits, '-' and '_'.
_JOB_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*(?::([^}]*?))?\s*\}\}")
_LAST_DAYS = re.compile(r"^last_(\d+)_days$")


@dataclass(frozen=True)
class DateWindow:
    """The days one run covers: ``first`` to ``last`` inclusive, in ``zone``."""

    first: date
    last: date
    zone: ZoneInfo

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(0), self.zone)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(0), self.zone)

    def value(self, name: str, fmt: str | None = None) -> str | int:
        """The value of one placeholder; ``fmt`` is a strftime format for the date and time ones."""
        if name in ("year", "month", "quarter"):
            if fmt:
                raise ConfigurationError(f"placeholder '{name}' takes no format; use e.g. {{{{ first:%m }}}}")
            return {"year": self.first.year, "month": self.first.month, "quarter": _quarter(self.first)}[name]
        moment: date | datetime
        if name == "first":
            moment = self.first
        elif name == "last":
            moment = self.last
        elif name == "start":
            moment = self.start
        elif name == "end":
            moment = self.end
        else:
            known = ", ".join(PLACEHOLDERS)
            raise ConfigurationError(f"unknown placeholder '{{{{ {name} }}}}' (known: {known})")
        return moment.strftime(fmt) if fmt else moment.isoformat()


def zone(name: str | None) -> ZoneInfo:
    """The IANA time zone called ``name`` (``UTC`` when not given), or a ConfigurationError."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"unknown time zone '{name}': use an IANA name such as 'Europe/London' or 'UTC'"
        ) from None


def resolve_window(spec: Mapping[str, Any], at: datetime) -> DateWindow:
    """The window ``{"window": ..., "timezone": ...}`` for a run due at ``at`` (an aware datetime)."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("window"), str):
        raise ConfigurationError(
            'a schedule window must look like {"window": "yesterday", "timezone": "Europe/London"}'
        )
    unknown = set(spec) - {"window", "timezone"}
    if unknown:
        raise ConfigurationError(f"unknown field(s) in the schedule window: {', '.join(sorted(unknown))}")
    tz = zone(spec.get("timezone"))
    today = at.astimezone(tz).date()
    return DateWindow(*_days(spec["window"], today), tz)


def _days(name: str, today: date) -> tuple[date, date]:
    day = timedelta(days=1)
    if name == "today":
        return today, today
    if name == "yesterday":
        return today - day, today - day
    if match := _LAST_DAYS.match(name):
        count = int(match.group(1))
        if not 1 <= count <= MAX_LAST_DAYS:
            raise ConfigurationError(f"window '{name}': the number of days must be 1 to {MAX_LAST_DAYS}")
        return today - count * day, today - day
    if name.endswith("_to_date"):
        first, _ = _period(name.removesuffix("_to_date"), today, name)
        return first, today
    relation, _, unit = name.partition("_")
    if relation == "this":
        return _period(unit, today, name)
    if relation == "last":
        first, _ = _period(unit, today, name)
        return _period(unit, first - day, name)
    raise _unknown_window(name)


def _period(unit: str, day: date, window: str) -> tuple[date, date]:
    """First and last day of the week, month, quarter or year holding ``day``."""
    if unit == "week":
        first = day - timedelta(days=day.weekday())
        return first, first + timedelta(days=6)
    if unit == "month":
        first = day.replace(day=1)
        return first, _next_month(first) - timedelta(days=1)
    if unit == "quarter":
        first = date(day.year, 3 * (_quarter(day) - 1) + 1, 1)
        return first, _next_month(_next_month(_next_month(first))) - timedelta(days=1)
    if unit == "year":
        return date(day.year, 1, 1), date(day.year, 12, 31)
    raise _unknown_window(window)


def _next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def _quarter(day: date) -> int:
    return (day.month - 1) // 3 + 1


def _unknown_window(name: str) -> ConfigurationError:
    return ConfigurationError(f"unknown window '{name}' (known: {', '.join(WINDOWS)})")


def render(template: Any, window: DateWindow) -> Any:
    """``template`` with every placeholder in every string (at any depth) filled from ``window``."""
    if isinstance(template, str):
        return _render_text(template, window)
    if isinstance(template, Mapping):
        return {key: render(value, window) for key, value in template.items()}
    if isinstance(template, list):
        return [render(item, window) for item in template]
    return template


def _render_text(text: str, window: DateWindow) -> str | int:
    if "{{" not in text:
        return text
    whole = _PLACEHOLDER.fullmatch(text.strip())
    if whole:
        return window.value(whole.group(1), whole.group(2) or None)
    rendered = _PLACEHOLDER.sub(lambda match: str(window.value(match.group(1), match.group(2) or None)), text)
    if "{{" in rendered:
        raise ConfigurationError(
            f"'{text}': write a placeholder as {{{{ first }}}} or {{{{ first:%d.%m.%Y }}}}"
        )
    return rendered


def parse_scheduled_time(value: Any, now: datetime) -> datetime:
    """Scheduler's ``<aws.scheduler.scheduled-time>`` as an aware datetime; ``now`` when absent.

    A run started by hand (a test invoke, the console) has no scheduled time: it covers the window
    as of now.
    """
    if not isinstance(value, str) or not value or value.startswith("<aws."):
        return now
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(f"scheduled_time '{value}' is not an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def job_id(schedule: str, at: datetime) -> str:
    """``<schedule>-<due time, UTC>``: the same run always gets the same id, so it starts only once."""
    name = _JOB_ID_UNSAFE.sub("-", schedule).strip("-")[:63] or "schedule"
    return f"{name}-{at.astimezone(UTC):%Y%m%dT%H%M%SZ}"


@dataclass(frozen=True)
class ScheduledJob:
    job_id: str
    request: dict[str, Any]
    window: DateWindow


def scheduled_job(event: Mapping[str, Any], now: datetime) -> ScheduledJob:
    """The job one scheduler event asks for: its id and its request with the window filled in."""
    if not isinstance(event, Mapping):
        raise ConfigurationError("the scheduler event must be a JSON object")
    schedule = event.get("schedule")
    request = event.get("request")
    if not isinstance(schedule, str) or not schedule:
        raise ConfigurationError("the scheduler event has no 'schedule' name")
    if not isinstance(request, Mapping):
        raise ConfigurationError(f"schedule '{schedule}': the event has no job 'request' object")
    at = parse_scheduled_time(event.get("scheduled_time"), now)
    window = resolve_window(event.get("window") or {"window": "today"}, at)
    return ScheduledJob(job_id=job_id(schedule, at), request=render(dict(request), window), window=window)
