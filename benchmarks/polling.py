"""How many status checks, and how late, the wait policy takes to see a report ready: a simulated clock.

    python benchmarks/polling.py

Drives the real policy (``reportrelay.poll_policy.next_wait_seconds``, the default poll settings: 5 s,
x1.5, cap 300 s) with a simulated clock, for reports that take 10 s to 24 h to generate and give no
progress, in three cases: no history; three earlier runs at the same duration +-10 % (this run takes the
duration itself, and the worst of 0.9x, 1x and 1.1x is shown too); a run that takes twice its history. Side by
side: a fixed 30 s poller (the AWS job-poller sample) and today's backoff (the policy without history).
For each: checks, how late readiness was seen (seconds and % of the duration), and the execution's state
transitions (3 per check: WaitForReport, Check, IsReportReady; plus 8 on the way in and out).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "functions"))

from reportrelay.config import PollPolicy
from reportrelay.poll_policy import Expected, expected_window, next_wait_seconds

DURATIONS = (10, 60, 300, 1800, 3600, 4 * 3600, 24 * 3600)
POLICY = PollPolicy()
TRANSITIONS_PER_CHECK = 3
TRANSITIONS_AROUND = 8  # Begin, Accept, Submit, IsReportReady; Fetch, IsStored, DescribeReady, Done

Waits = Callable[[int, float], float]


def follow(duration: float, wait: Waits) -> tuple[int, float]:
    """(checks, seconds late) for a report ready ``duration`` s after queueing, polled with ``wait``."""
    clock, polls = 0.0, 0
    while True:
        clock += wait(polls, clock)
        polls += 1
        if clock >= duration:
            return polls, clock - duration


def policy(expected: Expected | None) -> Waits:
    return lambda polls, clock: next_wait_seconds(POLICY, polls, elapsed_seconds=clock, expected=expected)


def fixed(seconds: float) -> Waits:
    return lambda polls, clock: seconds


def _label(seconds: int) -> str:
    return (
        f"{seconds // 3600} h"
        if seconds >= 3600
        else f"{seconds // 60} min"
        if seconds >= 60
        else f"{seconds} s"
    )


def main() -> int:
    print(
        "checks / seen late (s, % of the duration) / state transitions; default policy 5 s x1.5 cap 300 s\n"
    )
    header = (
        f"{'report takes':>12}  {'fixed 30 s':>24}  {'backoff (no history)':>24}  {'history +-10 %':>24}"
        f"  {'worst of 0.9-1.1x':>18}  {'takes 2x its history':>24}"
    )
    print(header)
    worst = {"late_share": 0.0, "checks": 0, "late_without": 0.0}
    failed = False
    for duration in DURATIONS:
        history = expected_window([duration * 0.9, duration, duration * 1.1])
        cells = []
        for waits, actual in (
            (fixed(30), duration),
            (policy(None), duration),
            (policy(history), duration),
        ):
            checks, late = follow(actual, waits)
            cells.append(_cell(checks, late, actual))
        spread = [follow(duration * share, policy(history)) for share in (0.9, 1.0, 1.1)]
        worst_checks = max(checks for checks, _ in spread)
        worst_late = max(
            late / (duration * share) for (_, late), share in zip(spread, (0.9, 1.0, 1.1), strict=True)
        )
        cells.append(f"{worst_checks:>5} checks {100 * worst_late:>5.1f} %")
        checks, late = follow(2 * duration, policy(history))
        cells.append(_cell(checks, late, 2 * duration))
        print(f"{_label(duration):>12}  " + "  ".join(cells))
        worst["checks"] = max(worst["checks"], worst_checks)
        allowed = max(5.0, 0.05 * duration)
        failed |= any(late > allowed + 1 for _, late in spread)
        worst["late_share"] = max(worst["late_share"], worst_late)
        worst["late_without"] = max(worst["late_without"], follow(duration, policy(None))[1])
    half_hour_checks, _ = follow(1800, policy(expected_window([1620, 1800, 1980])))
    transitions = TRANSITIONS_AROUND + TRANSITIONS_PER_CHECK * half_hour_checks
    met = not failed and worst["checks"] <= 10 and transitions <= 40 and worst["late_without"] <= 300
    print(
        f"\nwith history: seen within max(5 s, 5 %) {'always' if not failed else 'NOT always'}, at most "
        f"{worst['checks']} checks (goal 10); a 30-minute report: {transitions} transitions (goal 40); "
        f"without history at most {worst['late_without']:.0f} s late (goal 300): {'PASS' if met else 'MISS'}"
    )
    print(seven_days())
    return 0


def seven_days() -> str:
    """A job polled until its 7-day deadline, counted as Check counts (``reportrelay.workflow``): the
    executions it takes, and the most history events any of them holds."""
    from reportrelay import workflow

    lines = []
    for label, wait in (("default backoff", policy(None)), ("Retry-After 5 s", lambda polls, clock: 5.0)):
        clock, executions, events, most = 0.0, 1, workflow.HISTORY_EVENTS_AT_START, 0
        checks = 0
        while clock < 7 * 24 * 3600:
            clock += wait(checks, clock)
            checks += 1
            events += workflow.HISTORY_EVENTS_PER_CHECK
            most = max(most, events)
            next_check = events + workflow.HISTORY_EVENTS_PER_CHECK + workflow.HISTORY_EVENTS_SPARE
            if next_check > workflow.HISTORY_EVENT_LIMIT:
                executions, events = executions + 1, workflow.HISTORY_EVENTS_AT_START
        ok = most + workflow.HISTORY_EVENTS_SPARE <= workflow.HISTORY_EVENT_LIMIT
        lines.append(
            f"a 7-day job, {label}: {checks} checks in {executions} executions, at most {most} events "
            f"in one (limit {workflow.HISTORY_EVENT_LIMIT}): {'PASS' if ok else 'MISS'}"
        )
    return "\n".join(lines)


def _cell(checks: int, late: float, duration: float) -> str:
    transitions = TRANSITIONS_AROUND + TRANSITIONS_PER_CHECK * checks
    return f"{checks:>4} {late:>6.0f} s {100 * late / duration:>4.0f} % {transitions:>4} tr"


if __name__ == "__main__":
    sys.exit(main())
