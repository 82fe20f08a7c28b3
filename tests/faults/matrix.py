"""The fault matrix: every fault, for every provider it applies to, run through the state machine at once.

Each case gets its own simulator (so one case's fault counters cannot touch another's) and its own
connection, all in one emulated AWS, and every execution runs concurrently: the matrix takes about as
long as its slowest case, not the sum of them all. The deadline cases do not wait out their minute: the
functions run on a clock the matrix moves forward to that deadline once every other case has ended. And
the state machine's own retry waits (a Fetch retried after its download broke: 2, 6, 18 and 54 s at most,
with full jitter) pass at a fifth of their length, ``STATE_RETRY_SCALE``: what the matrix checks is which
outcome each fault ends in, and a case that retries until it gives up no longer decides its length.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reportrelay.auth import forget_cached_tokens
from reportrelay.observability import logger
from reportrelay.runtime import Runtime
from reportrelay_cli.local.aws import LocalAws
from reportrelay_cli.local.runner import completion_event
from reportrelay_cli.sandbox.server import Simulator
from tests.clock import SkippingClock
from tests.conftest import STATE_RETRY_SCALE, describe_when_ended, state_retries_scaled, write_connections
from tests.faults.kits import KITS, Kit

DEADLINE_SECONDS = 60  # the shortest deadline a request or connection may ask for
READ_TIMEOUT_SECONDS = 2.5  # the connections' read timeout: stalls outlast it, a loaded machine does not
STALL_SECONDS = 6.0
FAILURE_WORDS = "Parameter 'Year' is out of range (fault matrix)"
CANCEL_WORDS = "Cancelled by an administrator (fault matrix)"
NEVER = 1e9  # generation seconds of a report that never finishes


@dataclass(frozen=True)
class Expect:
    """A Report Ready with the served bytes, or a Report Failed with this code and these words."""

    code: str | None = None  # None: Report Ready
    words: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return self.code is None


READY = Expect()


@dataclass(frozen=True)
class Fault:
    name: str
    what: str  # one line for docs/reliability.md
    arrange: Callable[[Any, Kit], None]
    expect: Callable[[Kit], Expect]
    applies: Callable[[Kit], bool] = lambda kit: True
    request: dict[str, Any] = field(default_factory=dict)
    report: Callable[[Kit], dict[str, Any]] | None = None  # replaces the kit's usual report
    connection: Callable[[Kit], dict[str, Any]] = lambda kit: {}

    def deadline(self) -> float | None:
        """The request's own deadline, if the fault sets one."""
        seconds = self.request.get("deadline_seconds")
        return None if seconds is None else float(seconds)


def _set(**knobs: Any) -> Callable[[Any, Kit], None]:
    def arrange(sim: Any, kit: Kit) -> None:
        for name, value in knobs.items():
            setattr(sim.faults, name, value)

    return arrange


def _aimed(phase: str, **knobs: Any) -> Callable[[Any, Kit], None]:
    """Fault knobs that only hit one phase's requests: submit, poll or download."""

    def arrange(sim: Any, kit: Kit) -> None:
        _set(**knobs)(sim, kit)
        sim.faults.only_paths = getattr(kit, f"{phase}_path")

    return arrange


def _sim(**attributes: Any) -> Callable[[Any, Kit], None]:
    def arrange(sim: Any, kit: Kit) -> None:
        for name, value in attributes.items():
            setattr(sim, name, value)

    return arrange


def _slow_download(sim: Any, kit: Kit) -> None:
    # Three stalls outlast one fetch's own retries, so the state machine retries the fetch. A single-use
    # result is lost with each stalled answer (the provider serves it to a client that gave up), and each
    # loss regenerates it: one stall there, or the job rightly gives up after its restarts.
    stalls = 1 if kit.restarts_on_lost_result else 3
    _aimed("download", stall_next=stalls, stall_seconds=STALL_SECONDS)(sim, kit)


def _server_error_on_submit_expect(kit: Kit) -> Expect:
    if kit.submit_is_read_only:
        return READY
    # The provider may have queued the report before failing: the job fails rather than queue it twice.
    return Expect("ProviderServerError", ("answered HTTP 500",))


def _slow_submit_expect(kit: Kit) -> Expect:
    if kit.submit_is_read_only:
        return READY
    # A POST that timed out may have queued the report: asking again could queue a second one.
    return Expect("ProviderTimeout", ("got no answer in time",))


FAULTS: tuple[Fault, ...] = (
    Fault(
        "throttled_with_retry_after",
        "429 with Retry-After on the first calls",
        _set(throttle_next=2, throttle_retry_after=1),
        lambda kit: READY,
    ),
    Fault(
        "throttled_without_retry_after",
        "429 without Retry-After on the first calls",
        _set(throttle_next=2, throttle_retry_after=None),
        lambda kit: READY,
    ),
    Fault(
        "throttled_status_checks",
        "429 on every retry of a status check",
        _aimed("poll", throttle_next=4, throttle_retry_after=1),
        lambda kit: READY,
    ),
    Fault(
        "unavailable_burst_on_submit",
        "503 burst on the submit call (more than the client's own retries)",
        _aimed("submit", server_errors_next=4),
        lambda kit: READY,
    ),
    Fault(
        "server_error_on_submit",
        "500 on the queue call (which may or may not have queued the report)",
        _aimed("submit", server_errors_next=1, server_error_status=500),
        _server_error_on_submit_expect,
    ),
    Fault(
        "server_error_burst_on_status",
        "500 burst on status checks",
        _aimed("poll", server_errors_next=4, server_error_status=500),
        lambda kit: READY,
    ),
    Fault(
        "slow_status_checks",
        "status checks answered after the client's read timeout",
        _aimed("poll", stall_next=3, stall_seconds=STALL_SECONDS),
        lambda kit: READY,
    ),
    Fault(
        "slow_download",
        "download answered after the client's read timeout",
        _slow_download,
        lambda kit: READY,
    ),
    Fault(
        "slow_submit",
        "submit answered after the client's read timeout",
        _aimed("submit", stall_next=1, stall_seconds=STALL_SECONDS),
        _slow_submit_expect,
    ),
    Fault(
        "connection_reset_mid_download",
        "connection reset (TCP RST) mid-download",
        _set(reset_downloads_next=1),
        lambda kit: READY,
    ),
    Fault(
        "truncated_download",
        "body shorter than its Content-Length, connection closed cleanly",
        _set(truncate_downloads_next=1),
        lambda kit: READY,
    ),
    Fault(
        "sign_in_page_on_download",
        "an SSO proxy answers the download with its HTML sign-in page (200)",
        _aimed("download", sign_in_pages_next=1),
        lambda kit: Expect(
            "ProviderProtocolError", ("answered with an HTML page", "check base_url and auth")
        ),
    ),
    Fault(
        "download_always_breaks",
        "every download cut half-way",
        _set(break_downloads_next=1000),
        lambda kit: (
            Expect("DownloadFailed", ("nothing was stored", "serves each result once"))
            if kit.restarts_on_lost_result
            else Expect("DownloadInterrupted", ("download broke off", "nothing was stored"))
        ),
    ),
    Fault(
        "token_expires_mid_job",
        "every issued token revoked after the first API answer",
        _set(expire_tokens_after=1),
        lambda kit: (
            READY
            if kit.renewable_tokens
            else Expect("ProviderAuthFailed", ("HTTP 401", "check the connection's credentials"))
        ),
    ),
    Fault(
        "report_fails",
        "the provider reports that generation failed",
        _sim(fail_reports=FAILURE_WORDS),
        lambda kit: Expect("ReportGenerationFailed", (FAILURE_WORDS,)),
    ),
    Fault(
        "report_cancelled",
        "the provider reports the report cancelled",
        _sim(cancel_reports=CANCEL_WORDS),
        lambda kit: Expect("ReportCancelled", (CANCEL_WORDS,)),
        applies=lambda kit: kit.cancel_statuses,
    ),
    Fault(
        "invalid_report_in_request",
        "a request with an invalid report id or date reaches the state machine",
        _set(),
        lambda kit: Expect("BadRequest", (kit.bad_report[1],)),
        report=lambda kit: kit.bad_report[0],
    ),
    Fault(
        "report_never_finishes",
        "the report never finishes (request deadline 60 s)",
        _sim(generation_seconds=NEVER),
        lambda kit: Expect("DeadlineExceeded", ("not ready by its deadline",)),
        request={"deadline_seconds": DEADLINE_SECONDS},
    ),
)
#: The connection's default deadline, once (the request's own deadline is in the matrix above).
CONNECTION_DEADLINE = Fault(
    "report_never_finishes_connection_deadline",
    "the report never finishes (connection deadline 60 s)",
    _sim(generation_seconds=NEVER),
    lambda kit: Expect("DeadlineExceeded", ("not ready by its deadline",)),
    connection=lambda kit: {"deadline_seconds": DEADLINE_SECONDS},
)


@dataclass(frozen=True)
class Case:
    fault: Fault
    kit: Kit

    @property
    def id(self) -> str:
        return f"{self.fault.name}-{self.kit.provider}"

    @property
    def expect(self) -> Expect:
        return self.fault.expect(self.kit)

    @property
    def deadline(self) -> float | None:
        """The deadline the case sets (request, else connection); None for the default of 24 hours."""
        seconds = self.fault.connection(self.kit).get("deadline_seconds")
        return self.fault.deadline() if seconds is None else float(seconds)


CASES: tuple[Case, ...] = (
    *(Case(fault, kit) for fault in FAULTS for kit in KITS.values() if fault.applies(kit)),
    Case(CONNECTION_DEADLINE, KITS["devexpress"]),
)


@dataclass
class CaseResult:
    case: Case
    simulator: Simulator
    execution_arn: str
    execution: dict[str, Any]
    event: dict[str, Any] | None
    objects: list[dict[str, Any]]
    seconds: float  # from start to stop on the functions' clock (real time plus what the matrix skipped)


@contextlib.contextmanager
def functions_on(clock: SkippingClock) -> Iterator[None]:
    """Every step's ``Runtime`` (built afresh per invocation, as in Lambda) reads ``clock``."""
    built = Runtime.from_env

    def from_env(environ: Any = None) -> Runtime:
        runtime = built(environ)
        runtime.clock = clock
        return runtime

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Runtime, "from_env", staticmethod(from_env))
        yield


@dataclass
class MatrixRun:
    aws: LocalAws
    results: dict[str, CaseResult]
    events: list[dict[str, Any]]
    log_records: list[str]
    environment: dict[str, str]
    seconds: float
    skipped: float = 0.0  # seconds the functions' clock jumped, once every case without a deadline had ended
    skipped_at: datetime | None = None

    def clock_at(self, moment: datetime) -> float:
        """What the functions' clock read at ``moment`` (a real time, as in an execution's history)."""
        jumped = self.skipped_at is not None and moment >= self.skipped_at
        return moment.timestamp() + (self.skipped if jumped else 0.0)


class _Capture(logging.Handler):
    """Every log record, with its extras, as text (what CloudWatch would receive)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []

    #: Loggers of the AWS emulation itself, which does not exist where the functions really run:
    #: ``responses`` (moto's HTTP interception) logs every URL it lets through to the simulators.
    emulation = ("responses",)

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] in self.emulation:
            return
        text = json.dumps(record.__dict__, default=str) + "\n" + record.getMessage()
        with contextlib.suppress(Exception):  # as the function's log would print it
            text += "\n" + str(logger.registered_formatter.format(record))
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.records.append(text)


@contextlib.contextmanager
def _captured_logs() -> Iterator[_Capture]:
    capture = _Capture()
    root, ours = logging.getLogger(), logging.getLogger("reportrelay")
    # Everything at INFO, and DEBUG where requests, URLs and our own details are logged (botocore's DEBUG
    # output is huge, and the execution history test already reads every payload it would show).
    chatty = {name: logging.DEBUG for name in ("reportrelay", "urllib3", "requests")}
    levels = {name: logging.getLogger(name).level for name in (*chatty, "")}
    root.addHandler(capture)
    if not ours.propagate:  # Powertools may keep its records to itself
        ours.addHandler(capture)
    root.setLevel(logging.INFO)
    for name, level in chatty.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        ours.removeHandler(capture)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _request(case: Case) -> dict[str, Any]:
    return {
        "connection": case.id,
        "report": case.fault.report(case.kit) if case.fault.report else case.kit.report,
        "format": case.kit.format,
        "parameters": case.kit.parameters,
        "output": {"key_prefix": f"{case.id}/"},
        **case.fault.request,
    }


def run_matrix(cases: tuple[Case, ...], tmp_path: Path, timeout_seconds: float = 420) -> Iterator[MatrixRun]:
    """Start every case's simulator, deploy one LocalAws, run all jobs at once, collect what they left."""
    forget_cached_tokens()
    with contextlib.ExitStack() as stack:
        simulators: dict[str, Simulator] = {}
        connections: dict[str, Any] = {}
        environment: dict[str, str] = {}
        for case in cases:
            simulator = stack.enter_context(case.kit.make_simulator())
            case.fault.arrange(simulator, case.kit)
            body, values = case.kit.connection(simulator, case.id)
            body.update(
                poll={"initial_seconds": 1, "max_seconds": 2},
                timeouts={"connect_seconds": 2, "read_seconds": READ_TIMEOUT_SECONDS},
                **case.fault.connection(case.kit),
            )
            simulators[case.id], connections[case.id] = simulator, body
            environment.update(values)
        path = write_connections(tmp_path, connections)
        monkeypatch = stack.enter_context(pytest.MonkeyPatch.context())
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        capture = stack.enter_context(_captured_logs())
        clock = SkippingClock()
        stack.enter_context(functions_on(clock))
        stack.enter_context(state_retries_scaled(STATE_RETRY_SCALE))
        aws = stack.enter_context(
            LocalAws({"REPORTRELAY_CONNECTIONS_FILE": str(path), "POWERTOOLS_LOG_LEVEL": "DEBUG"})
        )
        started, started_at = time.monotonic(), clock()
        arns = {case.id: aws.start(_request(case), f"{case.id}-{uuid.uuid4().hex[:8]}") for case in cases}
        undated = [arns[case.id] for case in cases if case.deadline is None]
        describe_when_ended(aws, undated, timeout_seconds)
        # every other case has ended: the deadline cases' minute (or what is left of it) passes at once
        deadlines = [case.deadline for case in cases if case.deadline is not None]
        clock.advance_to(started_at + max(deadlines, default=0))
        skipped_at = datetime.now(UTC)
        executions = describe_when_ended(aws, list(arns.values()), timeout_seconds)
        seconds = time.monotonic() - started
        s3 = aws.client("s3")
        results = {}
        for case in cases:
            arn = arns[case.id]
            execution = executions[arn]
            event = completion_event(aws, arn) if execution["status"] != "RUNNING" else None
            listed = s3.list_objects_v2(Bucket=aws.bucket, Prefix=f"{case.id}/").get("Contents", [])
            results[case.id] = CaseResult(
                case=case,
                simulator=simulators[case.id],
                execution_arn=arn,
                execution=execution,
                event=event,
                objects=listed,
                seconds=_clock_seconds(execution, clock.skipped, skipped_at),
            )
        yield MatrixRun(
            aws, results, aws.events(), capture.records, environment, seconds, clock.skipped, skipped_at
        )


def _clock_seconds(execution: dict[str, Any], skipped: float, skipped_at: datetime) -> float:
    """How long the execution ran on the functions' clock: what was skipped counts if it was still running."""
    stopped = execution.get("stopDate")
    if stopped is None:
        return float("inf")
    return (stopped - execution["startDate"]).total_seconds() + (skipped if stopped >= skipped_at else 0.0)


def stored_bytes(aws: LocalAws, stored: dict[str, Any]) -> bytes:
    return aws.client("s3").get_object(Bucket=stored["bucket"], Key=stored["key"])["Body"].read()
