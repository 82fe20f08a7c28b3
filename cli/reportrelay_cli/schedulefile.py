"""The schedules file (``config/schedules.json``): each schedule checked as the scheduler and Submit read it.

Used at synthesis (``infra.configuration``) and by ``reportrelay validate``; the functions never read the
file (each schedule's target carries its request), so it is left out of the Lambda package. A schedule
runs for its ``team``, which must be one its connection is shared with, or the admin team; its request
template is rendered once for a trial date and checked as Submit would check it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reportrelay.config import TEAM_PATTERN, Connections, parse_job_request
from reportrelay.errors import ConfigurationError, ReportRelayError
from reportrelay.providers import provider_class
from reportrelay.schedules import render, resolve_window, zone

_SCHEDULE_NAME = re.compile(r"^[0-9A-Za-z_.-]{1,64}$")
_RATE = re.compile(r"^rate\(\s*[1-9]\d*\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\(([^()]+)\)$")
_AT = re.compile(r"^at\(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\)$")
MAX_SCHEDULE_INPUT = 8192  # characters EventBridge Scheduler accepts as a target's input
# Any time will do to try a template out; this one is near a month end, in winter.
_TRIAL_TIME = datetime(2025, 1, 31, 23, 30, tzinfo=UTC)


class ScheduleFileError(ConfigurationError):
    """The schedules file is wrong; the message names the file, the schedule and the field."""


@dataclass(frozen=True)
class Schedule:
    """One entry of ``config/schedules.json``: when to run, and the job request template to run."""

    name: str
    expression: str
    timezone: str
    window: str
    request: dict[str, Any]
    team: str
    enabled: bool = True
    description: str = ""

    @property
    def job_request(self) -> dict[str, Any]:
        """The request template the job runs, for the schedule's team (``request.team``)."""
        return {**self.request, "team": self.team}

    def target_input(self) -> str:
        """What Scheduler passes ``start_scheduled``; it fills in ``<aws.scheduler.scheduled-time>``."""
        return json.dumps(
            {
                "schedule": self.name,
                "scheduled_time": "<aws.scheduler.scheduled-time>",
                "window": {"window": self.window, "timezone": self.timezone},
                "request": self.job_request,
            },
            separators=(",", ":"),
        )


_SCHEDULE_FIELDS = {"description", "schedule", "timezone", "enabled", "window", "team", "request"}


def load_schedules(path: Path, connections: Connections, admin_team: str | None = None) -> list[Schedule]:
    """The schedules, each tried out once against the connections; a missing file means none.

    Each runs for its ``team``, which must be one its connection is shared with, or ``admin_team``.
    """
    if not path.exists():
        return []
    document = _read_json(path)
    if not isinstance(document, Mapping) or not isinstance(document.get("schedules"), Mapping):
        raise ScheduleFileError(f'{path}: expected {{"schedules": {{"<name>": {{...}}}}}}')
    known = connections
    schedules = []
    for name, body in document["schedules"].items():
        where = f"{path}: schedules.{name}"
        if not _SCHEDULE_NAME.match(name):
            raise ScheduleFileError(f"{where}: a name is 1-64 letters, digits, '.', '-' or '_'")
        if not isinstance(body, Mapping):
            raise ScheduleFileError(f"{where}: must be an object")
        unknown = set(body) - _SCHEDULE_FIELDS
        if unknown:
            raise ScheduleFileError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        schedule = Schedule(
            name=name,
            expression=_expression(body.get("schedule"), where),
            timezone=str(body.get("timezone") or "UTC"),
            window=str(body.get("window") or "today"),
            request=_request(body.get("request"), where),
            team=_team(body.get("team"), where),
            enabled=_enabled(body.get("enabled", True), where),
            description=str(body.get("description") or ""),
        )
        _try_out(schedule, known, where)
        _check_team(schedule, known, admin_team, where)
        if len(schedule.target_input()) > MAX_SCHEDULE_INPUT:
            raise ScheduleFileError(
                f"{where}: the request is longer than Scheduler's {MAX_SCHEDULE_INPUT} characters"
            )
        schedules.append(schedule)
    return schedules


def _expression(value: Any, where: str) -> str:
    text = str(value or "").strip()
    cron = _CRON.match(text)
    if cron and len(cron.group(1).split()) == 6:
        return text
    if _RATE.match(text) or _AT.match(text):
        return text
    raise ScheduleFileError(
        f"{where}.schedule: expected cron(min hour day-of-month month day-of-week year), "
        "rate(<n> minutes|hours|days) or at(yyyy-mm-ddThh:mm:ss), e.g. cron(0 6 * * ? *)"
    )


def _request(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ScheduleFileError(f"{where}.request: expected a job request object")
    if "team" in value:
        raise ScheduleFileError(
            f"{where}.request.team: name the schedule's team once, in the schedule's 'team'"
        )
    return dict(value)


def _team(value: Any, where: str) -> str:
    if value is None:
        raise ScheduleFileError(
            f"{where}.team: required: the team the scheduled jobs run for (and belong to)"
        )
    if not isinstance(value, str) or not re.match(TEAM_PATTERN, value):
        raise ScheduleFileError(
            f"{where}.team: {value!r} is not a team name (a-z, 0-9, '-', '_'; 1-63 characters)"
        )
    return value


def _check_team(schedule: Schedule, connections: Connections, admin_team: str | None, where: str) -> None:
    """The scheduler acts for the schedule's team: it may use only the connections that team may."""
    connection = connections.get(str(schedule.request["connection"]))
    if schedule.team == admin_team or schedule.team in connection.teams:
        return
    shared = ", ".join(connection.teams) or "no team"
    raise ScheduleFileError(
        f"{where}.team: team '{schedule.team}' may not use connection '{connection.name}' (it is shared "
        f"with {shared}); add the team to the connection's 'teams' or run the schedule for one of them"
    )


def _enabled(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ScheduleFileError(f"{where}.enabled: expected true or false")
    return value


def _try_out(schedule: Schedule, connections: Connections, where: str) -> None:
    """Resolve the template once and check the result as the submit step would."""
    try:
        zone(schedule.timezone)
        window = resolve_window({"window": schedule.window, "timezone": schedule.timezone}, _TRIAL_TIME)
        request = parse_job_request(render(schedule.job_request, window))
        provider_class(connections.get(request.connection).provider).validate(request)
    except ReportRelayError as error:
        raise ScheduleFileError(f"{where}: {error}") from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ScheduleFileError(f"cannot read {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ScheduleFileError(f"{path} is not valid JSON (line {error.lineno}): {error.msg}") from None
