"""The job store: what the job API answers from, kept in one DynamoDB table. The only module that talks to it.

Jobs are created by the API (``queued``, before their execution starts) or by the scheduler, and every
workflow step records how far the job got, so ``GET /reports/{id}`` never has to read execution history.
Terminal states (``ready``, ``failed``, ``cancelled``) are final: every write that could overwrite one is
conditional, so a cancel racing the workflow's last step cannot be undone by it, nor the other way round.

Idempotency: a ``client_token`` (scoped by the caller) is an item of its own, written in the same
transaction as the job it names and only if absent; so two concurrent requests with one token create
one job, and the loser reads the winner's job id.

Table layout (for infrastructure code): partition key ``id`` (string); TTL attribute ``expires_at``;
global secondary indexes ``recent`` (``kind``, ``created_key``), ``by-connection`` (``connection``,
``created_key``) and ``by-team`` (``team``, ``created_key``), all projecting all attributes. Token and
share-link items carry none of ``kind``, ``connection`` and ``team``, so they never appear in a listing.
A fourth, sparse index ``outbox`` (``outbox``, ``announce_since``) holds only the jobs whose outcome
waits to be announced (see ``Announcement``), projecting the ``announce_*`` attributes.

A job's activity (``reportrelay.activity``, ``GET /reports/{id}/events``) is an item of its own,
``activity#<job id>``, so the job item stays small: a counter ``seq`` numbers every entry, and each entry
is a JSON string in one of two rings of slots, overwritten oldest first: ``m0``... for milestones
(``ACTIVITY_MILESTONE_SLOTS``: the job moving on, restarts) and ``c0``... for the chatter between them
(``ACTIVITY_CHATTER_SLOTS``: retries, waits, progress). A storm of retries thus keeps its latest entries
and the story's milestones, and the item stays far below DynamoDB's 400 KB whatever happens. Writes are
UpdateItems only, so every step that records progress may record activity without reading.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from reportrelay.awsclients import aws_client, aws_error_code
from reportrelay.errors import BadRequest, ReportRelayError
from reportrelay.names import (
    ANNOUNCE_ATTEMPTS_ATTRIBUTE,
    ANNOUNCE_DETAIL_ATTRIBUTE,
    ANNOUNCE_DETAIL_TYPE_ATTRIBUTE,
    ANNOUNCE_EVENT_ATTRIBUTE,
    ANNOUNCE_RESOURCES_ATTRIBUTE,
    ANNOUNCE_SINCE_ATTRIBUTE,
    CONNECTION_INDEX,
    JOB_CONNECTION_ATTRIBUTE,
    JOB_CREATED_ATTRIBUTE,
    JOB_INDEXES,
    JOB_KEY_ATTRIBUTE,
    JOB_KIND_ATTRIBUTE,
    JOB_TEAM_ATTRIBUTE,
    JOB_TTL_ATTRIBUTE,
    JOBS_TABLE_ENV,
    OUTBOX_ATTRIBUTE,
    OUTBOX_INDEX,
    OUTBOX_PROJECTED,
    RECENT_INDEX,
    TEAM_INDEX,
)
from reportrelay.poll_policy import HISTORY_LENGTH
from reportrelay.timestamps import iso_timestamp

KIND_JOB = "job"
OUTBOX_PENDING = "pending"
TOKEN_PREFIX = "client-token#"
LINK_PREFIX = "link#"
DEFAULT_RETENTION_SECONDS = 90 * 24 * 3600
"""As long as reports are kept in the bucket by default: a job outlives its file by no more than that."""
MAX_REQUEST_JSON = 32 * 1024
_MAX_QUERIES_PER_PAGE = 8
ACTIVITY_PREFIX = "activity#"
ACTIVITY_MILESTONE_SLOTS = 40
ACTIVITY_CHATTER_SLOTS = 200
MAX_ACTIVITY_ENTRY_BYTES = 1024
"""At most 240 entries of at most 1 KiB each: about 240 KiB, well within an item's 400 KB."""


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobState.READY, JobState.FAILED, JobState.CANCELLED})


class JobStoreUnavailable(ReportRelayError):
    """The job store could not be asked or answered an error; nothing was changed that we know of."""

    retryable = True


class TokenReused(ReportRelayError):
    """A client token already named a job whose request was different."""

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


@dataclass(frozen=True)
class Job:
    """One job as the store keeps it. ``handle`` is the provider handle with its credentials sealed."""

    job_id: str
    state: JobState
    created_at: str
    updated_at: str
    source: str = "workflow"
    connection: str | None = None
    provider: str | None = None
    request: dict[str, Any] | None = None
    execution_arn: str | None = None
    started: bool = False
    provider_status: str | None = None
    progress: float | None = None
    message: str | None = None
    polls: int = 0
    queued_at: str | None = None
    ready_at: str | None = None
    stored_at: str | None = None
    finished_at: str | None = None
    object: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    handle: dict[str, Any] | None = None
    owner: str | None = None
    team: str | None = None
    object_key: str | None = None  # fixed by the first Fetch, before its first byte is stored
    pending_objects: tuple[dict[str, Any], ...] = ()  # uploads Fetch was about to complete
    container_error: dict[str, Any] | None = None  # why a container fetch stored nothing (code, message)
    transfer_checkpoint: dict[str, Any] | None = None  # how far a transfer over invocations got (transfer.py)
    cost: dict[str, Any] | None = None  # what the finished job used and its estimate (reportrelay.costs)


@dataclass(frozen=True)
class ClientToken:
    """An idempotency key as the store keys it: scoped by who asked, bound to what was asked."""

    scope: str
    token: str
    fingerprint: str

    @property
    def key(self) -> str:
        digest = hashlib.sha256(f"{self.scope}\0{self.token}".encode()).hexdigest()
        return TOKEN_PREFIX + digest


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    cursor: str | None = None


@dataclass
class DynamoDbJobs:
    """Jobs as DynamoDB items (low-level client, so nothing here depends on boto3's resource layer)."""

    table_name: str
    client: Callable[[], Any]
    clock: Callable[[], float] = time.time
    retention_seconds: int = DEFAULT_RETENTION_SECONDS

    # ---- creating

    def create(self, job: Job, token: ClientToken | None = None) -> tuple[Job, bool]:
        """Store a new ``queued`` job; with a token, the job the token already names (and False) instead.

        Raises TokenReused when the token names a job that was asked for with a different request.
        """
        item = self._item(job)
        writes: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.table_name,
                    "Item": item,
                    "ConditionExpression": "attribute_not_exists(#key)",
                    "ExpressionAttributeNames": {"#key": JOB_KEY_ATTRIBUTE},
                }
            }
        ]
        if token is not None:
            writes.insert(
                0,
                {
                    "Put": {
                        "TableName": self.table_name,
                        "Item": {
                            JOB_KEY_ATTRIBUTE: {"S": token.key},
                            "job_id": {"S": job.job_id},
                            "fingerprint": {"S": token.fingerprint},
                            JOB_TTL_ATTRIBUTE: {"N": str(self._expiry())},
                        },
                        "ConditionExpression": "attribute_not_exists(#key)",
                        "ExpressionAttributeNames": {"#key": JOB_KEY_ATTRIBUTE},
                    }
                },
            )
        try:
            self._call("transact_write_items", TransactItems=writes)
        except _Conditional:
            if token is None:
                raise JobStoreUnavailable(f"job {job.job_id} already exists") from None
            return self._job_for_token(token), False
        return job, True

    def _job_for_token(self, token: ClientToken) -> Job:
        found = self._get_item(token.key)
        if not found:
            raise JobStoreUnavailable("the client token is being used by another request; try again")
        job_id = found["job_id"]["S"]
        if found["fingerprint"]["S"] != token.fingerprint:
            raise TokenReused(
                f"client_token '{token.token}' was already used for job {job_id} with a different request; "
                "send the same request to get that job again, or a new token for a new job",
                job_id,
            )
        job = self.get(job_id)
        if job is None:
            raise JobStoreUnavailable(f"job {job_id} named by the client token is not stored yet; try again")
        return job

    def mark_started(self, job_id: str) -> None:
        self._update(job_id, {"started": True}, only_if_unfinished=False)

    # ---- reading

    def get(self, job_id: str) -> Job | None:
        found = self._get_item(job_id)
        if not found or found.get(JOB_KIND_ATTRIBUTE, {}).get("S") != KIND_JOB:
            return None
        return _job(found)

    def list(
        self,
        *,
        teams: Sequence[str] | None = None,
        connection: str | None = None,
        state: JobState | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> Page:
        """Newest first, ``limit`` at a time: of ``teams`` only (None: every team's), by connection/state.

        Every team is a partition of the ``by-team`` index; several teams' pages are merged by creation
        time, and the cursor remembers where each team's listing stands (only the caller's teams).
        """
        filters = {"connection": connection, "state": state.value if state else None}
        if teams is not None:
            return self._list_teams(sorted(set(teams)), filters, limit, cursor)
        index = CONNECTION_INDEX if connection else RECENT_INDEX
        partition = connection or KIND_JOB
        start = _decode_cursor(cursor, index, partition) if cursor else None
        found, resume = self._query(index, partition, {**filters, "connection": None}, limit, start)
        return Page([job for job, _ in found], _encode_cursor(index, resume) if resume else None)

    def _list_teams(
        self, teams: list[str], filters: Mapping[str, str | None], limit: int, cursor: str | None
    ) -> Page:
        starts = _decode_team_cursor(cursor, teams, filters) if cursor else dict.fromkeys(teams)
        candidates: list[tuple[str, Job, dict[str, Any]]] = []
        resumes: dict[str, dict[str, Any] | None] = {}
        for team, start in starts.items():
            found, resumes[team] = self._query(TEAM_INDEX, team, filters, limit, start)
            candidates += [(team, job, item) for job, item in found]
        candidates.sort(key=lambda entry: entry[2][JOB_CREATED_ATTRIBUTE]["S"], reverse=True)
        taken = candidates[:limit]
        positions: dict[str, dict[str, Any] | None] = {}
        for team, start in starts.items():
            mine = [item for owner, _, item in taken if owner == team]
            if any(owner == team for owner, _, _ in candidates[limit:]):
                positions[team] = _index_key(mine[-1], TEAM_INDEX) if mine else start
            elif resumes[team]:
                positions[team] = resumes[team]
        return Page(
            [job for _, job, _ in taken], _encode_team_cursor(positions, filters) if positions else None
        )

    def _query(
        self,
        index: str,
        partition: str,
        filters: Mapping[str, str | None],
        limit: int,
        start: dict[str, Any] | None,
    ) -> tuple[list[tuple[Job, dict[str, Any]]], dict[str, Any] | None]:
        """Up to ``limit`` jobs of one index partition, and the key to resume after them (None: no more)."""
        query: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": index,
            "ScanIndexForward": False,
            "Limit": max(limit, 25),
            "ExpressionAttributeNames": {"#pk": JOB_INDEXES[index]},
            "ExpressionAttributeValues": {":pk": {"S": partition}},
            "KeyConditionExpression": "#pk = :pk",
        }
        conditions = []
        for position, (name, value) in enumerate(sorted(filters.items())):
            if value is not None:
                query["ExpressionAttributeNames"][f"#w{position}"] = name
                query["ExpressionAttributeValues"][f":w{position}"] = {"S": value}
                conditions.append(f"#w{position} = :w{position}")
        if conditions:
            query["FilterExpression"] = " AND ".join(conditions)
        found: list[tuple[Job, dict[str, Any]]] = []
        last_key: dict[str, Any] | None = start
        for _ in range(_MAX_QUERIES_PER_PAGE):
            if last_key:
                query["ExclusiveStartKey"] = last_key
            answer = self._call("query", **query)
            items = answer.get("Items", [])
            last_key = answer.get("LastEvaluatedKey")
            for position, item in enumerate(items, start=1):
                found.append((_job(item), item))
                if len(found) == limit:
                    more = position < len(items) or last_key
                    return found, _index_key(item, index) if more else None
            if not last_key:
                return found, None
        return found, last_key

    # ---- share links

    def put_link(self, record: Mapping[str, Any]) -> None:
        """A share link's record (see reportrelay.links); it expires from the table with the link."""
        item = {
            JOB_KEY_ATTRIBUTE: {"S": LINK_PREFIX + str(record["link_id"])},
            JOB_TTL_ATTRIBUTE: {"N": str(int(record["expires_at"]) + 86400)},
        }
        for name, value in record.items():
            encoded = _encode(name, value)
            if encoded is not None and name != "link_id":
                item[f"link_{name}"] = encoded
        self._call("put_item", TableName=self.table_name, Item=item)

    def link(self, link_id: str) -> dict[str, Any] | None:
        found = self._get_item(LINK_PREFIX + link_id)
        if not found:
            return None
        record: dict[str, Any] = {"link_id": link_id}
        for name, value in found.items():
            if name.startswith("link_"):
                record[name[5:]] = value.get("S", value.get("N", value.get("BOOL")))
        return record

    def revoke_link(self, link_id: str, when: str) -> bool:
        """Mark a link revoked; False when there is no such link."""
        try:
            self._call(
                "update_item",
                TableName=self.table_name,
                Key={JOB_KEY_ATTRIBUTE: {"S": LINK_PREFIX + link_id}},
                UpdateExpression="SET #revoked = :when",
                ConditionExpression="attribute_exists(#key)",
                ExpressionAttributeNames={"#revoked": "link_revoked_at", "#key": JOB_KEY_ATTRIBUTE},
                ExpressionAttributeValues={":when": {"S": when}},
            )
        except _Conditional:
            return False
        return True

    # ---- the outbox (see ``Announcement``; reportrelay.outbox sends what waits there)

    def pending_announcement(self, job_id: str) -> Announcement | None:
        """The job's announcement still waiting to be put on the bus; None when none waits."""
        found = self._get_item(job_id)
        return _announcement(found) if found else None

    def pending_announcements(self, limit: int = 100) -> list[Announcement]:
        """Up to ``limit`` announcements waiting in the outbox, oldest first (the sparse ``outbox`` index)."""
        query: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": OUTBOX_INDEX,
            "KeyConditionExpression": "#outbox = :pending",
            "ExpressionAttributeNames": {"#outbox": OUTBOX_ATTRIBUTE},
            "ExpressionAttributeValues": {":pending": {"S": OUTBOX_PENDING}},
            "ScanIndexForward": True,
        }
        found: list[Announcement] = []
        while len(found) < limit:
            answer = self._call("query", **query, Limit=limit - len(found))
            found += [each for each in map(_announcement, answer.get("Items", [])) if each is not None]
            if not answer.get("LastEvaluatedKey"):
                break
            query["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return found

    def clear_announcement(self, job_id: str, event_id: str) -> bool:
        """Take the job's announcement out of the outbox once EventBridge took it; False when the outbox
        holds no announcement with this event id (already cleared, or a different outcome's)."""
        try:
            self._call(
                "update_item",
                TableName=self.table_name,
                Key={JOB_KEY_ATTRIBUTE: {"S": job_id}},
                UpdateExpression=(
                    "SET #announced = :at REMOVE #outbox, #since, #type, #detail, #resources, #error"
                ),
                ConditionExpression="#outbox = :pending AND #event = :event",
                ExpressionAttributeNames={
                    **{name: value for name, value in _ANNOUNCE_NAMES.items() if name != "#attempts"},
                    "#announced": "announced_at",
                },
                ExpressionAttributeValues={
                    ":at": {"S": iso_timestamp(self.clock())},
                    ":pending": {"S": OUTBOX_PENDING},
                    ":event": {"S": event_id},
                },
            )
        except _Conditional:
            return False
        return True

    def note_announce_failed(self, job_id: str, event_id: str, error: str) -> bool:
        """Count a failed attempt to announce and keep its error code; the announcement stays pending."""
        try:
            self._call(
                "update_item",
                TableName=self.table_name,
                Key={JOB_KEY_ATTRIBUTE: {"S": job_id}},
                UpdateExpression="SET #attempts = if_not_exists(#attempts, :zero) + :one, #error = :error",
                ConditionExpression="#outbox = :pending AND #event = :event",
                ExpressionAttributeNames={
                    name: _ANNOUNCE_NAMES[name] for name in ("#attempts", "#error", "#outbox", "#event")
                },
                ExpressionAttributeValues={
                    ":zero": {"N": "0"},
                    ":one": {"N": "1"},
                    ":error": {"S": error[:256] or "unknown"},
                    ":pending": {"S": OUTBOX_PENDING},
                    ":event": {"S": event_id},
                },
            )
        except _Conditional:
            return False
        return True

    # ---- recording progress

    def record(self, job_id: str, fields: Mapping[str, Any], *, created_at: str | None = None) -> bool:
        """Update an unfinished job (creating it if the API never did); False when it had finished."""
        now = iso_timestamp(self.clock())
        return self._update(job_id, fields, only_if_unfinished=True, created_at=created_at or now)

    def finish(
        self,
        job_id: str,
        fields: Mapping[str, Any],
        *,
        created_at: str | None = None,
        announcement: Announcement | None = None,
    ) -> bool:
        """Move an unfinished job to a terminal state; False when it had already finished.

        With an ``announcement``, the outcome's event waits in the job's outbox, written in the same
        update as the outcome: recorded and to-be-announced are one fact (``reportrelay.outbox``).
        """
        now = iso_timestamp(self.clock())
        outbox = announcement.fields() if announcement is not None else {}
        return self.record(job_id, {"finished_at": now, **fields, **outbox}, created_at=created_at or now)

    # ---- the submit intent (see ``SubmitIntent``)

    def open_intent(self, job_id: str, attempt: int, at: str) -> SubmitIntent | None:
        """Open the intent of submit attempt ``attempt``; the intent already there (and no change) when this
        attempt's intent was opened before and not closed as "not queued" (a re-entry of the same attempt).
        """
        try:
            self._call(
                "update_item",
                TableName=self.table_name,
                Key={JOB_KEY_ATTRIBUTE: {"S": job_id}},
                UpdateExpression=(
                    "SET #attempt = :attempt, #opened = :at "
                    "REMOVE #queuing, #hint, #outcome, #closed, #result"
                ),
                ConditionExpression=(
                    "attribute_not_exists(#attempt) OR #attempt <> :attempt OR #outcome = :none"
                ),
                ExpressionAttributeNames=_INTENT_NAMES,
                ExpressionAttributeValues={
                    ":attempt": {"N": str(attempt)},
                    ":at": {"S": at},
                    ":none": {"S": INTENT_NOT_QUEUED},
                },
            )
        except _Conditional:
            found = self._get_item(job_id) or {}
            return _intent(found) or SubmitIntent(attempt, at)
        return None

    def mark_queuing(self, job_id: str, attempt: int, at: str, hint: Mapping[str, Any]) -> bool:
        """Note that the attempt is about to call the provider's queue endpoint, with what the adapter needs
        to find the report again; False when this attempt is not open, or another run of it got there first.
        """
        try:
            self._call(
                "update_item",
                TableName=self.table_name,
                Key={JOB_KEY_ATTRIBUTE: {"S": job_id}},
                UpdateExpression="SET #queuing = :at, #hint = :hint",
                ConditionExpression=(
                    "#attempt = :attempt AND attribute_not_exists(#queuing) "
                    "AND attribute_not_exists(#outcome)"
                ),
                ExpressionAttributeNames={
                    name: _INTENT_NAMES[name] for name in ("#attempt", "#queuing", "#hint", "#outcome")
                },
                ExpressionAttributeValues={
                    ":attempt": {"N": str(attempt)},
                    ":at": {"S": at},
                    ":hint": {"S": _intent_json(hint, "hint")},
                },
            )
        except _Conditional:
            return False
        return True

    def close_intent(
        self, job_id: str, attempt: int, outcome: str, *, result: Mapping[str, Any] | None = None
    ) -> bool:
        """Close the attempt's intent: ``INTENT_NOT_QUEUED`` (the provider certainly queued nothing) or
        ``INTENT_QUEUED`` with the step's ``result`` (the job as Submit returns it, sealed handle included),
        which a re-entry of the same attempt returns instead of queueing again. False when not open."""
        names = {name: _INTENT_NAMES[name] for name in ("#attempt", "#outcome", "#closed")}
        values: dict[str, Any] = {
            ":attempt": {"N": str(attempt)},
            ":outcome": {"S": outcome},
            ":closed": {"S": iso_timestamp(self.clock())},
        }
        sets = ["#outcome = :outcome", "#closed = :closed"]
        if result is not None:
            names["#result"] = _INTENT_NAMES["#result"]
            values[":result"] = {"S": _intent_json(result, "result")}
            sets.append("#result = :result")
            if result.get("handle"):
                names["#handle"] = "handle"
                values[":handle"] = {"S": _intent_json(result["handle"], "handle")}
                sets.append("#handle = :handle")
        try:
            self._call(
                "update_item",
                TableName=self.table_name,
                Key={JOB_KEY_ATTRIBUTE: {"S": job_id}},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="#attempt = :attempt",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except _Conditional:
            return False
        return True

    # ---- the job's object (reportrelay.workflow.fetch)

    def fix_object_key(self, job_id: str, key: str) -> str:
        """The job's object key: ``key`` if the job has none yet, else the one fixed by an earlier Fetch."""
        answer = self._call(
            "update_item",
            TableName=self.table_name,
            Key={JOB_KEY_ATTRIBUTE: {"S": job_id}},
            UpdateExpression="SET #key = if_not_exists(#key, :key)",
            ExpressionAttributeNames={"#key": "object_key"},
            ExpressionAttributeValues={":key": {"S": key}},
            ReturnValues="ALL_NEW",  # UPDATED_NEW leaves out a key that if_not_exists kept
        )
        fixed: str = answer["Attributes"]["object_key"]["S"]
        return fixed

    def add_pending_object(self, job_id: str, pending: Mapping[str, Any]) -> bool:
        """Note an upload about to be completed, so a later Fetch recognises the object it made.

        False, and nothing noted, when the job has finished meanwhile (cancelled while Fetch ran): the
        upload must then not be completed.
        """
        entry = json.dumps(dict(pending), separators=(",", ":"), sort_keys=True)
        done = {f":done{n}": {"S": state.value} for n, state in enumerate(sorted(FINISHED))}
        try:
            self._call(
                "update_item",
                TableName=self.table_name,
                Key={JOB_KEY_ATTRIBUTE: {"S": job_id}},
                UpdateExpression="SET #pending = list_append(if_not_exists(#pending, :none), :entry)",
                ConditionExpression=f"attribute_not_exists(#state) OR NOT (#state IN ({', '.join(done)}))",
                ExpressionAttributeNames={"#pending": "pending_objects", "#state": "state"},
                ExpressionAttributeValues={":none": {"L": []}, ":entry": {"L": [{"S": entry}]}, **done},
            )
        except _Conditional:
            return False
        return True

    # ---- how long reports took (reportrelay.poll_policy.expected_window)

    def durations(self, key: str) -> list[float]:
        """The recent durations (seconds, oldest first) of the report ``key`` names (``duration_key``)."""
        return [duration for _, duration in self.duration_bounds(key)]

    def duration_bounds(self, key: str) -> list[tuple[float, float]]:
        """The recent runs' ``(earliest, duration)`` (oldest first): each run took more than ``earliest``
        (when it was last seen unfinished) and at most ``duration`` (when it was seen ready, or what the
        vendor reported). A run recorded before both bounds were kept counts as exactly its duration."""
        item = self._get_item(_DURATIONS_PREFIX + key) or {}
        durations = [float(entry["N"]) for entry in item.get("durations", {}).get("L", []) if "N" in entry]
        earliest = [float(entry["N"]) for entry in item.get("earliest", {}).get("L", []) if "N" in entry]
        earliest = earliest[-len(durations) :] if durations else []
        missing = len(durations) - len(earliest)
        return list(zip(durations[:missing] + earliest, durations, strict=True))

    def record_duration(self, key: str, seconds: float, earliest: float = 0.0) -> None:
        """Add one successful run's duration (and when it was last seen unfinished); only the most recent
        ``HISTORY_LENGTH`` are kept.

        Two jobs concluding at once may keep only one of their two durations: a sample lost, not a
        wrong one.
        """
        recent = [*self.duration_bounds(key), (min(earliest, seconds), seconds)][-HISTORY_LENGTH:]
        self._call(
            "update_item",
            TableName=self.table_name,
            Key={JOB_KEY_ATTRIBUTE: {"S": _DURATIONS_PREFIX + key}},
            UpdateExpression="SET #durations = :durations, #earliest = :earliest, #expires = :expires",
            ExpressionAttributeNames={
                "#durations": "durations",
                "#earliest": "earliest",
                "#expires": JOB_TTL_ATTRIBUTE,
            },
            ExpressionAttributeValues={
                ":durations": {"L": [{"N": f"{duration:.3f}"} for _, duration in recent]},
                ":earliest": {"L": [{"N": f"{low:.3f}"} for low, _ in recent]},
                ":expires": {"N": str(self._expiry())},
            },
        )

    # ---- the job's activity (reportrelay.activity; the layout is in the module's docstring)

    def add_activity(self, job_id: str, entry: Mapping[str, Any], *, milestone: bool) -> int:
        """Keep one activity entry (without ``n``); returns its number, 1 for the job's first.

        Two UpdateItems: one takes the next number and the next slot of the entry's ring, the other
        writes the entry there. An entry is at most ``MAX_ACTIVITY_ENTRY_BYTES`` of JSON (the caller
        keeps messages short; a longer one is refused rather than let the item grow).
        """
        ring, slots = ("m", ACTIVITY_MILESTONE_SLOTS) if milestone else ("c", ACTIVITY_CHATTER_SLOTS)
        key = {JOB_KEY_ATTRIBUTE: {"S": ACTIVITY_PREFIX + job_id}}
        answer = self._call(
            "update_item",
            TableName=self.table_name,
            Key=key,
            UpdateExpression="SET #seq = if_not_exists(#seq, :zero) + :one, "
            "#ring = if_not_exists(#ring, :zero) + :one, #expires = :expires",
            ExpressionAttributeNames={"#seq": "seq", "#ring": f"{ring}seq", "#expires": JOB_TTL_ATTRIBUTE},
            ExpressionAttributeValues={
                ":zero": {"N": "0"},
                ":one": {"N": "1"},
                ":expires": {"N": str(self._expiry())},
            },
            ReturnValues="UPDATED_NEW",
        )
        number = int(answer["Attributes"]["seq"]["N"])
        in_ring = int(answer["Attributes"][f"{ring}seq"]["N"])
        text = json.dumps({**entry, "n": number}, separators=(",", ":"), ensure_ascii=False)
        if len(text.encode()) > MAX_ACTIVITY_ENTRY_BYTES:
            raise BadRequest(f"an activity entry of {len(text.encode())} bytes is too large to keep")
        self._call(
            "update_item",
            TableName=self.table_name,
            Key=key,
            UpdateExpression="SET #slot = :entry",
            ExpressionAttributeNames={"#slot": f"{ring}{(in_ring - 1) % slots}"},
            ExpressionAttributeValues={":entry": {"S": text}},
        )
        return number

    def activity(self, job_id: str) -> list[dict[str, Any]]:
        """The job's kept activity entries, oldest first, each with its number ``n``."""
        item = self._get_item(ACTIVITY_PREFIX + job_id) or {}
        entries = []
        for name, value in item.items():
            if name[:1] in ("m", "c") and name[1:].isdigit() and "S" in value:
                try:
                    entry = json.loads(value["S"])
                except ValueError:
                    continue
                if isinstance(entry, dict) and isinstance(entry.get("n"), int):
                    entries.append(entry)
        return sorted(entries, key=lambda entry: int(entry["n"]))

    def count_step_failure(self, job_id: str, step: str, visit: str) -> int:
        """How many times in a row ``step`` has now failed on this ``visit`` (the same input state, which
        the state machine's Retry sends again unchanged); a new visit counts from 1."""
        key = {JOB_KEY_ATTRIBUTE: {"S": ACTIVITY_PREFIX + job_id}}
        names = {"#failed": f"failed_{step}"}
        try:
            self._call(
                "update_item",
                TableName=self.table_name,
                Key=key,
                UpdateExpression="SET #failed = :first, #expires = :expires",
                ConditionExpression="attribute_not_exists(#failed) OR #failed.#visit <> :visit",
                ExpressionAttributeNames={**names, "#visit": "visit", "#expires": JOB_TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":first": {"M": {"visit": {"S": visit}, "count": {"N": "1"}}},
                    ":visit": {"S": visit},
                    ":expires": {"N": str(self._expiry())},
                },
            )
            return 1
        except _Conditional:
            pass
        answer = self._call(
            "update_item",
            TableName=self.table_name,
            Key=key,
            UpdateExpression="SET #failed.#count = #failed.#count + :one",
            ExpressionAttributeNames={**names, "#count": "count"},
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )
        return int(answer["Attributes"][f"failed_{step}"]["M"]["count"]["N"])

    # ---- DynamoDB plumbing

    def _update(
        self,
        job_id: str,
        fields: Mapping[str, Any],
        *,
        only_if_unfinished: bool,
        created_at: str | None = None,
    ) -> bool:
        names = {"#updated": "updated_at", "#expires": JOB_TTL_ATTRIBUTE}
        values: dict[str, Any] = {
            ":updated": {"S": iso_timestamp(self.clock())},
            ":expires": {"N": str(self._expiry())},
        }
        sets = ["#updated = :updated", "#expires = :expires"]
        removes = []
        for position, (name, value) in enumerate(sorted(fields.items())):
            names[f"#f{position}"] = name
            encoded = _encode(name, value)
            if encoded is None:
                removes.append(f"#f{position}")
            else:
                values[f":f{position}"] = encoded
                sets.append(f"#f{position} = :f{position}")
        if created_at is not None:
            names.update(
                {"#kind": JOB_KIND_ATTRIBUTE, "#created": "created_at", "#ckey": JOB_CREATED_ATTRIBUTE}
            )
            values.update(
                {
                    ":kind": {"S": KIND_JOB},
                    ":created": {"S": created_at},
                    ":ckey": {"S": f"{created_at}#{job_id}"},
                }
            )
            sets += [
                "#kind = :kind",
                "#created = if_not_exists(#created, :created)",
                "#ckey = if_not_exists(#ckey, :ckey)",
            ]
            if "state" not in fields:  # a job first heard of from its starter is queued
                names["#state"] = "state"
                values[":queued"] = {"S": JobState.QUEUED.value}
                sets.append("#state = if_not_exists(#state, :queued)")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {JOB_KEY_ATTRIBUTE: {"S": job_id}},
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if only_if_unfinished:
            names["#state"] = "state"
            values.update({f":done{n}": {"S": state.value} for n, state in enumerate(sorted(FINISHED))})
            finished = ", ".join(f":done{n}" for n in range(len(FINISHED)))
            request["ConditionExpression"] = f"attribute_not_exists(#state) OR NOT (#state IN ({finished}))"
        else:
            names["#key"] = JOB_KEY_ATTRIBUTE
            request["ConditionExpression"] = "attribute_exists(#key)"
        try:
            self._call("update_item", **request)
        except _Conditional:
            return False
        return True

    def _item(self, job: Job) -> dict[str, Any]:
        item: dict[str, Any] = {
            JOB_KEY_ATTRIBUTE: {"S": job.job_id},
            JOB_KIND_ATTRIBUTE: {"S": KIND_JOB},
            JOB_CREATED_ATTRIBUTE: {"S": f"{job.created_at}#{job.job_id}"},
            JOB_TTL_ATTRIBUTE: {"N": str(self._expiry())},
        }
        for name in _FIELDS:
            encoded = _encode(name, getattr(job, name))
            if encoded is not None:
                item[name] = encoded
        return item

    def _get_item(self, key: str) -> dict[str, Any] | None:
        answer = self._call(
            "get_item", TableName=self.table_name, Key={JOB_KEY_ATTRIBUTE: {"S": key}}, ConsistentRead=True
        )
        item: dict[str, Any] | None = answer.get("Item")
        return item

    def _expiry(self) -> int:
        return int(self.clock()) + self.retention_seconds

    def _call(self, operation: str, **request: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer: dict[str, Any] = getattr(self.client(), operation)(**request)
        except ClientError as error:
            code = aws_error_code(error)
            if code == "ConditionalCheckFailedException":
                raise _Conditional() from None
            if code == "TransactionCanceledException":
                reasons = [reason.get("Code") for reason in error.response.get("CancellationReasons", [])]
                if "ConditionalCheckFailed" in reasons or not reasons:
                    raise _Conditional() from None
            raise JobStoreUnavailable(f"job store {self.table_name} answered {code or 'an error'}") from None
        except BotoCoreError as error:
            raise JobStoreUnavailable(
                f"job store {self.table_name} could not be reached ({type(error).__name__})"
            ) from None
        return answer


class _Conditional(Exception):
    """A conditional write found its condition false."""


# ---- the submit intent

INTENT_QUEUED = "queued"
INTENT_NOT_QUEUED = "not_queued"
_INTENT_NAMES = {
    "#attempt": "submit_intent_attempt",
    "#opened": "submit_intent_opened_at",
    "#queuing": "submit_intent_queuing_at",
    "#hint": "submit_intent_hint",
    "#outcome": "submit_intent_outcome",
    "#closed": "submit_intent_closed_at",
    "#result": "submit_intent_result",
}


@dataclass(frozen=True)
class SubmitIntent:
    """What one submit attempt said it was about to do, kept on the job's item (``submit_intent_*``
    attributes, which the job view never reads) so that a re-entry of the same attempt never queues twice.

    ``attempt`` counts the job's restarts (a restart is a new attempt). ``queuing_at`` is set just before
    the provider's queue call, with the adapter's ``hint`` for finding the report again; ``outcome`` is
    set when the attempt knows: ``queued`` (with ``result``, what the step returned) or ``not_queued``.
    """

    attempt: int
    opened_at: str
    queuing_at: str | None = None
    hint: dict[str, Any] | None = None
    outcome: str | None = None
    result: dict[str, Any] | None = None

    @property
    def may_have_queued(self) -> bool:
        """The attempt reached the queue call and never learned how it ended."""
        return self.queuing_at is not None and self.outcome is None


def _intent(item: Mapping[str, Any]) -> SubmitIntent | None:
    def text(name: str) -> str | None:
        value = item.get(_INTENT_NAMES[name], {}).get("S")
        return str(value) if value is not None else None

    attempt = item.get(_INTENT_NAMES["#attempt"], {}).get("N")
    if attempt is None:
        return None
    hint, result = text("#hint"), text("#result")
    return SubmitIntent(
        attempt=int(float(attempt)),
        opened_at=text("#opened") or "",
        queuing_at=text("#queuing"),
        hint=json.loads(hint) if hint else None,
        outcome=text("#outcome"),
        result=json.loads(result) if result else None,
    )


def _intent_json(value: Mapping[str, Any], what: str) -> str:
    text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    if len(text) > MAX_REQUEST_JSON:
        raise JobStoreUnavailable(f"the submit intent's {what} is too large to store ({len(text)} bytes)")
    return text


_JSON_FIELDS = frozenset(
    {"request", "object", "error", "handle", "container_error", "transfer_checkpoint", "cost"}
)
_FIELDS = (
    "state",
    "created_at",
    "updated_at",
    "source",
    "connection",
    "provider",
    "request",
    "execution_arn",
    "started",
    "provider_status",
    "progress",
    "message",
    "polls",
    "queued_at",
    "ready_at",
    "stored_at",
    "finished_at",
    "object",
    "error",
    "handle",
    "owner",
    "team",
    "object_key",
    "container_error",
    "transfer_checkpoint",
    "cost",
)


def _encode(name: str, value: Any) -> dict[str, Any] | None:
    """One attribute value; None means "no such attribute" (index keys must never be NULL)."""
    if value is None:
        return None
    if name in _JSON_FIELDS:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
        return {"S": text} if len(text) <= MAX_REQUEST_JSON else None
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": repr(value) if isinstance(value, float) else str(value)}
    text = str(value)
    return {"S": text} if text else None


def _job(item: Mapping[str, Any]) -> Job:
    values: dict[str, Any] = {}
    for name in _FIELDS:
        raw = item.get(name)
        if raw is None:
            continue
        if "S" in raw:
            values[name] = json.loads(raw["S"]) if name in _JSON_FIELDS else raw["S"]
        elif "N" in raw:
            number = float(raw["N"])
            values[name] = int(number) if name == "polls" else number
        elif "BOOL" in raw:
            values[name] = raw["BOOL"]
    values["state"] = JobState(values.get("state", JobState.QUEUED))
    pending = item.get("pending_objects", {}).get("L", [])
    values["pending_objects"] = tuple(json.loads(entry["S"]) for entry in pending if "S" in entry)
    created = values.get("created_at") or ""
    values.setdefault("created_at", created)
    values.setdefault("updated_at", created)
    return Job(job_id=item[JOB_KEY_ATTRIBUTE]["S"], **values)


def _index_key(item: Mapping[str, Any], index: str) -> dict[str, Any]:
    return {name: item[name] for name in (JOB_KEY_ATTRIBUTE, JOB_INDEXES[index], JOB_CREATED_ATTRIBUTE)}


def _encode_cursor(index: str, key: Mapping[str, Any]) -> str:
    plain = {"i": index, **{name: value["S"] for name, value in key.items()}}
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


_INVALID_CURSOR = "cursor: not a cursor from this listing; leave it out to start from the newest job"


def _decode_cursor(cursor: str, index: str, partition_value: str) -> dict[str, Any]:
    """The key a cursor stands for, checked to belong to the same listing; BadRequest otherwise."""
    plain = _cursor_document(cursor)
    if not isinstance(plain, dict) or plain.get("i") != index:
        raise BadRequest(_INVALID_CURSOR)
    return _checked_key({name: value for name, value in plain.items() if name != "i"}, index, partition_value)


def _checked_key(plain: Any, index: str, partition_value: str) -> dict[str, Any]:
    partition = JOB_INDEXES[index]
    if (
        not isinstance(plain, dict)
        or set(plain) != {JOB_KEY_ATTRIBUTE, partition, JOB_CREATED_ATTRIBUTE}
        or not all(isinstance(value, str) and 0 < len(value) <= 1024 for value in plain.values())
        or plain[partition] != partition_value
    ):
        raise BadRequest(_INVALID_CURSOR)
    return {name: {"S": plain[name]} for name in (JOB_KEY_ATTRIBUTE, partition, JOB_CREATED_ATTRIBUTE)}


def _cursor_document(cursor: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadRequest(_INVALID_CURSOR) from None


def _encode_team_cursor(
    positions: Mapping[str, Mapping[str, Any] | None], filters: Mapping[str, str | None]
) -> str:
    plain = {
        "i": TEAM_INDEX,
        "f": dict(filters),
        "t": {
            team: {name: value["S"] for name, value in key.items()} if key else None
            for team, key in positions.items()
        },
    }
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_team_cursor(
    cursor: str, teams: list[str], filters: Mapping[str, str | None]
) -> dict[str, dict[str, Any] | None]:
    """Where each team's listing stands, for the same filters; only the caller's own teams may appear."""
    plain = _cursor_document(cursor)
    same_listing = (
        isinstance(plain, dict) and plain.get("i") == TEAM_INDEX and plain.get("f") == dict(filters)
    )
    positions = plain.get("t") if same_listing else None
    if not isinstance(positions, dict) or not positions or not set(positions) <= set(teams):
        raise BadRequest(_INVALID_CURSOR)
    return {
        team: None if key is None else _checked_key(key, TEAM_INDEX, team) for team, key in positions.items()
    }


# ---- the outbox

_ANNOUNCE_NAMES = {
    "#outbox": OUTBOX_ATTRIBUTE,
    "#since": ANNOUNCE_SINCE_ATTRIBUTE,
    "#event": ANNOUNCE_EVENT_ATTRIBUTE,
    "#type": ANNOUNCE_DETAIL_TYPE_ATTRIBUTE,
    "#detail": ANNOUNCE_DETAIL_ATTRIBUTE,
    "#resources": ANNOUNCE_RESOURCES_ATTRIBUTE,
    "#attempts": ANNOUNCE_ATTEMPTS_ATTRIBUTE,
    "#error": "announce_error",
}
#: What the ``outbox`` index projects besides the keys: all an announcement needs to be sent.


@dataclass(frozen=True)
class Announcement:
    """An outcome's event, kept on its job's item from the moment the outcome is recorded until EventBridge
    has taken it: the job's outbox. ``event_id`` (also in the event's detail) is the same on every
    attempt, so consumers drop the duplicates at-least-once delivery allows.

    On the item: ``outbox`` = "pending" and ``announce_since`` (the sparse index's keys, removed once
    announced), ``announce_event_id``, ``announce_detail_type``, ``announce_detail`` (JSON),
    ``announce_resources`` (JSON), ``announce_attempts`` and ``announce_error`` (failed attempts), and
    ``announced_at`` once announced.
    """

    job_id: str
    event_id: str
    detail_type: str
    detail: dict[str, Any]
    since: str
    resources: tuple[str, ...] = ()
    attempts: int = 0

    def fields(self) -> dict[str, Any]:
        """The attributes that put it in the outbox, for the write that records the outcome."""
        return {
            OUTBOX_ATTRIBUTE: OUTBOX_PENDING,
            ANNOUNCE_SINCE_ATTRIBUTE: self.since,
            "announce_event_id": self.event_id,
            "announce_detail_type": self.detail_type,
            "announce_detail": json.dumps(self.detail, separators=(",", ":"), sort_keys=True),
            "announce_resources": json.dumps(list(self.resources)) if self.resources else None,
            "announce_attempts": 0,
            "announce_error": None,
        }


def _announcement(item: Mapping[str, Any]) -> Announcement | None:
    def text(name: str) -> str | None:
        value = item.get(_ANNOUNCE_NAMES[name], {}).get("S")
        return str(value) if value is not None else None

    event_id, detail = text("#event"), text("#detail")
    if text("#outbox") != OUTBOX_PENDING or not event_id or not detail:
        return None
    resources = text("#resources")
    return Announcement(
        job_id=item[JOB_KEY_ATTRIBUTE]["S"],
        event_id=event_id,
        detail_type=text("#type") or "",
        detail=json.loads(detail),
        since=text("#since") or "",
        resources=tuple(json.loads(resources)) if resources else (),
        attempts=int(float(item.get(_ANNOUNCE_NAMES["#attempts"], {}).get("N", "0"))),
    )


#: Durations live beside the jobs, under keys no job id can have ('#' is not allowed in one).
_DURATIONS_PREFIX = "durations#"


def duration_key(connection: str, report: Any, report_format: str) -> str:
    """Which durations a job adds to and learns from: its connection, its report and its format (not its
    parameters: the same report for another day usually takes as long)."""
    canonical = json.dumps(report, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(f"{canonical}\n{report_format}".encode()).hexdigest()[:32]
    return f"{connection}#{digest}"


def request_fingerprint(request: Mapping[str, Any]) -> str:
    """What makes two requests "the same" for idempotency: their canonical JSON, client token left out."""
    canonical = {key: value for key, value in request.items() if key != "client_token"}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ---- what the workflow records


def progress_fields(state: Mapping[str, Any]) -> tuple[str | None, dict[str, Any], str | None]:
    """``(job id, fields, accepted_at)`` for a job still under way, from the workflow state."""
    job = state.get("job") if isinstance(state.get("job"), Mapping) else {}
    request = state.get("request") if isinstance(state.get("request"), Mapping) else {}
    provider_status = job.get("status")
    # Queued until the provider works on it (waiting for a concurrency slot counts as queued too).
    queued = provider_status in (None, "PENDING", "WAITING_FOR_SLOT")
    fields: dict[str, Any] = {
        "state": JobState.QUEUED if queued else JobState.RUNNING,
        "provider": job.get("provider"),
        "provider_status": provider_status,
        "progress": job.get("progress"),
        "message": job.get("message"),
        "polls": job.get("polls", 0),
        "queued_at": job.get("queued_at"),
        "ready_at": job.get("ready_at"),
        "stored_at": job.get("stored_at"),
        "handle": job.get("handle") or None,
    }
    if job.get("object"):
        fields["object"] = job["object"]  # stored by Fetch: the store says so before anything else does
    fields.update(_request_fields(request))
    return job.get("job_id"), fields, job.get("accepted_at")


def outcome_fields(detail: Mapping[str, Any]) -> dict[str, Any]:
    """The terminal fields from a completion event's detail (``Report Ready`` or ``Report Failed``)."""
    ready = detail.get("status") == "READY"
    fields: dict[str, Any] = {
        "state": JobState.READY if ready else JobState.FAILED,
        "provider": detail.get("provider"),
        "polls": detail.get("polls") or 0,
        "queued_at": detail.get("queued_at"),
        "ready_at": detail.get("ready_at"),
        "stored_at": detail.get("stored_at"),
        "object": detail.get("object"),
        "error": detail.get("error"),
    }
    if isinstance(detail.get("cost"), dict):
        fields["cost"] = detail["cost"]
    if isinstance(detail.get("connection"), str):
        fields["connection"] = detail["connection"]
    return fields


def _request_fields(request: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    connection = request.get("connection")
    if isinstance(connection, str) and 0 < len(connection) <= 128:
        fields["connection"] = connection
    team = request.get("team")
    if isinstance(team, str) and 0 < len(team) <= 63:
        fields["team"] = team
    if request:
        fields["request"] = {key: value for key, value in request.items() if key != "client_token"}
    return fields


def jobs_from_env(environ: Mapping[str, str] | None = None) -> DynamoDbJobs | None:
    """The deployment's job store when ``REPORTRELAY_JOBS_TABLE`` is set (for functions without a Runtime)."""
    import os

    table = (os.environ if environ is None else environ).get(JOBS_TABLE_ENV)
    if not table:
        return None
    return DynamoDbJobs(table, lambda: aws_client("dynamodb"))


def execution_arn_for(state_machine_arn: str, job_id: str) -> str:
    """``arn:...:stateMachine:<sm>`` -> ``arn:...:execution:<sm>:<job id>``: jobs name their executions."""
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{job_id}"


def started_fields(source: str, request: Mapping[str, Any], execution_arn: str) -> dict[str, Any]:
    """What a starter other than the API records: who started it and what it asked (never the state)."""
    return {"source": source, "started": True, "execution_arn": execution_arn, **_request_fields(request)}


def create_table_request(table_name: str) -> dict[str, Any]:
    """``CreateTable`` arguments for the layout above (the local runner and tests; CDK builds the same)."""
    return {
        "TableName": table_name,
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": "S"}
            for name in (
                JOB_KEY_ATTRIBUTE,
                JOB_KIND_ATTRIBUTE,
                JOB_CONNECTION_ATTRIBUTE,
                JOB_TEAM_ATTRIBUTE,
                JOB_CREATED_ATTRIBUTE,
                OUTBOX_ATTRIBUTE,
                ANNOUNCE_SINCE_ATTRIBUTE,
            )
        ],
        "KeySchema": [{"AttributeName": JOB_KEY_ATTRIBUTE, "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": index,
                "KeySchema": [
                    {"AttributeName": partition, "KeyType": "HASH"},
                    {"AttributeName": JOB_CREATED_ATTRIBUTE, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
            for index, partition in JOB_INDEXES.items()
        ]
        + [
            {
                "IndexName": OUTBOX_INDEX,
                "KeySchema": [
                    {"AttributeName": OUTBOX_ATTRIBUTE, "KeyType": "HASH"},
                    {"AttributeName": ANNOUNCE_SINCE_ATTRIBUTE, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(OUTBOX_PROJECTED)},
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
