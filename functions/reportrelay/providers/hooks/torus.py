"""Torus (seed 000, ``specs/torus.json``): finding our own run in a download queue shared with others.

The queue call answers with no id, so submit lists the queue first (the *snapshot*: every run of this
report already there, finished or not, is never ours), queues once, and lists again. A new run of the
report is ours only once the shared claim store says so (first writer wins, oldest run first), so two
jobs queueing the same report at once never take the same run. A run not listed yet is looked for again
by check, and one that never appears fails the job after ``queue_entry_grace_seconds``.

Once the report is queued nothing in submit may fail in a way the state machine retries (that would queue
it again): listing or claiming problems leave the run to check. The queue filter takes minutes and the
server's dates carry no time zone, so every bound comes from a date the server wrote: one minute before
the snapshot's newest run, then one minute before our run's own ``dateQueued``. The snapshot and the claim
owner are the submit intent's hint, so ``find_submitted`` finds a run exactly as submit would have.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from reportrelay.claims import ClaimsUnavailable
from reportrelay.config import JobRequest
from reportrelay.errors import (
    ConfigurationError,
    ProviderProtocolError,
    ProviderRejected,
    ProviderServerError,
    ProviderTimeout,
    ReportRelayError,
)
from reportrelay.providers.base import Handle, ReportState, ReportStatus
from reportrelay.providers.declarative import DeclarativeProvider, listed
from reportrelay.providers.hooks import hook

RUN_ID, QUEUED, MINUTE = "scheduledTaskRunNowId", "dateQueued", "%Y-%m-%dT%H:%M"


@hook("submit")
def queue_and_find_own_run(
    provider: DeclarativeProvider, request: JobRequest, *, default: Callable[..., ReportStatus]
) -> ReportStatus:
    """Snapshot the queue, queue the report once, and take our run if it is listed already."""
    report_id, report_name = _merged_report(provider, request)
    snapshot = _valid_runs(provider, provider.check_answer(request, {}))
    handle: Handle = {
        "report_id": report_id,
        "report_name": report_name,
        "known": sorted(str(run[RUN_ID]) for run in snapshot if _same_report(provider, run, report_name)),
        "since": _minute_before(max((run.get(QUEUED) or "" for run in snapshot), default=None)),
        "owner": uuid.uuid4().hex,
    }
    provider.queuing(handle)  # the snapshot and owner let a later run of this step find the run exactly
    assert provider.spec.submit is not None
    try:
        provider.call(provider.spec.submit, request, handle, "queue merged report").close()  # no id in it
    except (ProviderServerError, ProviderTimeout) as error:
        raise type(error)(
            f"{error}; Torus may have queued the report all the same, so reportrelay does not queue it "
            "again: look for the run in Torus's download queue before retrying the job"
        ) from None
    handle["queued_at"] = provider.clock()
    try:
        return _submitted(provider, request, handle)
    except ReportRelayError:
        return ReportStatus(ReportState.PENDING, message=_unlisted(handle), handle=handle)


@hook("find_submitted")
def find_queued_run(
    provider: DeclarativeProvider,
    request: JobRequest,
    hint: Handle,
    since: float,
    *,
    default: Callable[..., ReportStatus | None],
) -> ReportStatus:
    """The run an earlier run of submit queued, found as submit finds its own (same snapshot and owner)."""
    return _submitted(provider, request, {**hint, "queued_at": since})


@hook("check")
def check_own_run(
    provider: DeclarativeProvider,
    request: JobRequest,
    handle: Handle,
    *,
    default: Callable[..., ReportStatus],
) -> ReportStatus:
    """The spec's check once the run is ours; until then, look for it (and give up after the grace)."""
    if "run_id" in handle:
        return default(request, handle)
    try:
        status = _own_run(provider, request, handle)
    except ClaimsUnavailable:
        status = None  # nothing is decided yet; the next check asks again
    if status is not None:
        return status
    grace = provider.settings.queue_entry_grace_seconds  # type: ignore[attr-defined]
    if provider.clock() - float(handle.get("queued_at") or 0) > grace:
        raise ProviderProtocolError(
            f"Torus accepted the queue call for merged report {handle['report_id']} "
            f"'{handle['report_name']}', but no new run of it appeared in the download queue within "
            f"{grace} seconds"
        )
    return ReportStatus(ReportState.PENDING, message=_unlisted(handle))


def _submitted(provider: DeclarativeProvider, request: JobRequest, handle: Handle) -> ReportStatus:
    """Submit's status: the whole handle, with our run once it is ours."""
    status = _own_run(provider, request, handle)
    if status is None:
        return ReportStatus(ReportState.PENDING, message=_unlisted(handle), handle=handle)
    return replace(status, handle={**handle, **(status.handle or {})})


def _own_run(provider: DeclarativeProvider, request: JobRequest, handle: Handle) -> ReportStatus | None:
    """Our run's status, with the handle fields that pin the job to it: a run of this report that the
    snapshot did not have, claimed by this submission; None while there is none."""
    answer = provider.check_answer(request, handle)
    known = set(handle["known"])
    candidates = sorted(
        (
            run
            for run in _valid_runs(provider, answer)
            if _same_report(provider, run, handle["report_name"]) and str(run[RUN_ID]) not in known
        ),
        key=lambda run: (run.get(QUEUED) or "", str(run[RUN_ID]).zfill(20)),
    )
    ours = _claimed(provider, handle, candidates)
    if ours is None:
        return None
    owned = {"run_id": ours[RUN_ID], "since": _minute_before(ours.get(QUEUED)) or handle.get("since")}
    status = provider.read_status(request, {**handle, **owned}, answer)
    return replace(status, handle={**owned, **(status.handle or {})})


def _claimed(
    provider: DeclarativeProvider, handle: Handle, candidates: list[Any]
) -> Mapping[str, Any] | None:
    """The oldest candidate this submission claims (an older run is a candidate for fewer jobs, so taking
    it never starves another); without a claim store only a lone candidate can be ours."""
    if not candidates:
        return None
    if provider.claims is None:
        if len(candidates) == 1:
            return candidates[0]
        ids = ", ".join(str(run[RUN_ID]) for run in candidates)
        raise ConfigurationError(
            f"several new Torus runs of '{handle['report_name']}' appeared at once (ids {ids}) and no "
            "claim store is configured (REPORTRELAY_CLAIMS_TABLE) to tell which one this job queued"
        )
    host = urlsplit(provider.connection.base_url).netloc.lower()
    namespace = f"torus:{host}:tenant-{provider.settings.tenant_id}:run"  # type: ignore[attr-defined]
    return next(
        (run for run in candidates if provider.claims.claim(namespace, str(run[RUN_ID]), handle["owner"])),
        None,
    )


def _merged_report(provider: DeclarativeProvider, request: JobRequest) -> tuple[int, str]:
    """The merged report's id and name (the queue lists runs by name), by name or by id."""
    tenant = provider.settings.tenant_id  # type: ignore[attr-defined]
    name, report_id = request.report.get("name"), request.report.get("report_id")
    answer = provider.call_json(provider.spec.calls["merged_reports"], request, {}, "find merged report")
    reports = [
        (item["id"], str(item.get("name") or ""))
        for item in listed(answer, _list_paths(provider), "find merged report")
        if isinstance(item, Mapping) and _is_id(item.get("id")) and item.get("isDeleted") is not True
    ]
    # The name is checked here too: a server that ignored the filter would answer with every report.
    if name is not None:
        found, wanted = [each for each in reports if _fold(each[1]) == _fold(name)], f"named '{name}'"
    else:
        found, wanted = [each for each in reports if each[0] == report_id], f"with id {report_id}"
    if not found:
        raise ProviderRejected(f"Torus tenant {tenant} has no merged report {wanted}")
    if len(found) > 1:
        ids = ", ".join(str(each[0]) for each in found)
        raise ProviderRejected(
            f"Torus tenant {tenant} has several merged reports {wanted} (ids {ids}); ask for one by report_id"
        )
    return found[0]


def _valid_runs(provider: DeclarativeProvider, answer: Any) -> list[Mapping[str, Any]]:
    """The queue's runs that have a run id (nothing could ever be matched to one without)."""
    runs = listed(answer, _list_paths(provider), "list download queue")
    return [run for run in runs if isinstance(run, Mapping) and _is_id(run.get(RUN_ID))]


def _list_paths(provider: DeclarativeProvider) -> str | tuple[str, ...]:
    """Where Torus's lists are in its answers (a JSON array or an OData envelope), as the spec says."""
    assert provider.spec.check is not None and provider.spec.check.entry is not None
    return provider.spec.check.entry.items


def _same_report(provider: DeclarativeProvider, run: Mapping[str, Any], report_name: str) -> bool:
    tenant = run.get("tenantId")
    ours = tenant is None or tenant == provider.settings.tenant_id  # type: ignore[attr-defined]
    return ours and _fold(str(run.get("name") or "")) == _fold(report_name)


def _minute_before(date: str | None) -> str | None:
    """A ``gt`` bound that still includes this server date: its minute, less one (no time zone assumed)."""
    try:
        minute = datetime.strptime((date or "")[:16].replace(" ", "T"), MINUTE)
    except ValueError:
        return None
    return (minute - timedelta(minutes=1)).strftime(MINUTE)


def _is_id(value: Any) -> bool:
    return value is not None and not isinstance(value, bool)


def _fold(name: str) -> str:
    return name.strip().lower()


def _unlisted(handle: Handle) -> str:
    return f"queued merged report '{handle['report_name']}'; waiting for its run to appear in the queue"
