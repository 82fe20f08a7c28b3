"""How long to wait before the next status check.

Without history, waits grow geometrically from the connection's ``initial_seconds`` up to ``max_seconds``,
so a report that takes seconds is fetched within seconds and one that takes hours costs a few dozen
checks. When the provider reports progress, the remaining time is estimated from the rate so far and the
wait is shortened to land near the finish.

With history (how long the same report on the same connection took the last times, ``expected_window``),
the first check lands just before the shortest likely finish, checks come densely through the likely
window (every max(2 s, 5 % of the typical duration), so readiness is seen that soon), and past the
window waits grow again from that step, for a report running longer than ever before. A provider's
``Retry-After`` always wins; the job's deadline bounds every wait.

A run seen ready at a check only says it took *at most* that long: sparse checks (the first run's
backoff) make a history of upper bounds. Each run therefore also keeps when it was last seen unfinished,
a lower bound. While the two are further apart than a step, one early check (``probe``) halfway between
them narrows them down, so the first wait of a report shrinks to its real duration within a few runs
instead of keeping the first run's late check.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from reportrelay.config import PollPolicy

#: How many earlier durations count (the most recent ones).
HISTORY_LENGTH = 20
#: Durations further than this factor from the median are outliers (a stuck run, a cached answer).
OUTLIER_FACTOR = 3.0
#: In the likely window, checks come every ``STEP_SHARE`` of the typical duration, but no closer than
#: ``MIN_STEP_SECONDS``: readiness is seen within max(2 s, 5 %).
MIN_STEP_SECONDS = 2.0
STEP_SHARE = 0.05
#: The likely window starts this much before the shortest likely duration and ends this much after the
#: longest seen, so that a run a little faster or slower than before is still inside it.
EARLY_SHARE = 0.03
LATE_SHARE = 0.05


@dataclass(frozen=True)
class Expected:
    """When the report is likely ready, counted from when it was queued: ``start`` to ``end``, with
    checks ``step`` seconds apart in between; ``probe``, when set, one check before ``start`` that tells
    whether the report is faster than its history's upper bounds say."""

    start: float
    end: float
    step: float
    probe: float | None = None

    def to_dict(self) -> dict[str, float]:
        return {name: value for name, value in asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, data: Any) -> Expected | None:
        if not isinstance(data, dict):
            return None
        try:
            probe = data.get("probe")
            return cls(
                float(data["start"]),
                float(data["end"]),
                float(data["step"]),
                None if probe is None else float(probe),
            )
        except (KeyError, TypeError, ValueError):
            return None


def expected_window(durations: Sequence[float], earliest: Sequence[float] = ()) -> Expected | None:
    """The likely window from earlier durations (seconds, oldest first); None with no usable history.

    ``earliest``, aligned with the last of ``durations``, says when each run was last seen unfinished; a
    run without one counts as exactly its duration (histories kept before runs had both bounds).
    Robust: only the last ``HISTORY_LENGTH`` count, durations more than ``OUTLIER_FACTOR`` times off the
    median are left out, and the window runs from the 10th percentile to the longest remaining duration.
    Where the runs' lower bounds (their 90th percentile) lie more than a step below that, a probe
    halfway between narrows the gap.
    """
    missing = len(durations) - len(earliest)
    padded = [float(each or 0) for each in durations[:missing]] + [float(each or 0) for each in earliest]
    runs = [
        (min(low, float(each)), float(each))
        for low, each in list(zip(padded, durations, strict=False))[-HISTORY_LENGTH:]
        if each and each > 0
    ]
    if not runs:
        return None
    median = statistics.median(each for _, each in runs)
    usual = [(low, each) for low, each in runs if median / OUTLIER_FACTOR <= each <= median * OUTLIER_FACTOR]
    upper_bounds = sorted(each for _, each in usual)
    shortest = _quantile(upper_bounds, 0.10)
    step = max(MIN_STEP_SECONDS, STEP_SHARE * statistics.median(upper_bounds))
    floor = min(_quantile(sorted(low for low, _ in usual), 0.90), shortest)
    start = shortest * (1 - EARLY_SHARE)
    probe = floor + (shortest - floor) / 2 if shortest - floor > step else None
    return Expected(start=start, end=upper_bounds[-1] * (1 + LATE_SHARE), step=step, probe=probe)


def next_wait_seconds(
    policy: PollPolicy,
    polls: int,
    *,
    elapsed_seconds: float,
    progress: float | None = None,
    retry_after: float | None = None,
    seconds_left: float | None = None,
    expected: Expected | None = None,
) -> int:
    """Seconds to wait before check number ``polls + 1``; never past the job's deadline.

    ``elapsed_seconds`` counts from when the report was queued; ``expected`` is its likely window.
    """
    if retry_after is not None:
        wait = max(float(policy.min_seconds), retry_after)
    else:
        if expected is not None:
            wait = _wait_with_history(policy, expected, elapsed_seconds)
        else:
            wait = _backoff(policy, polls)
        estimate = remaining_estimate(elapsed_seconds, progress)
        if estimate is not None:
            wait = min(wait, max(estimate, expected.step if expected else 0.0))
    if seconds_left is not None:
        wait = min(wait, seconds_left)
    return max(policy.min_seconds, math.ceil(wait))


def _wait_with_history(policy: PollPolicy, expected: Expected, elapsed: float) -> float:
    if expected.probe is not None and elapsed < expected.probe:
        return expected.probe - elapsed  # is it faster than its upper bounds say?
    if elapsed < expected.start:
        return expected.start - elapsed  # the first check, just before the shortest likely finish
    if elapsed <= expected.end:
        return expected.step
    # Longer than ever before: back off from the step, as a geometric series would have by now, up to the
    # connection's cap (or the step, for a report so long that its 5 % are more than the cap).
    cap = max(float(policy.max_seconds), expected.step)
    return min(cap, expected.step + (elapsed - expected.end) * (policy.factor - 1))


def remaining_estimate(elapsed_seconds: float, progress: float | None) -> float | None:
    """Seconds still to go if progress continues at its average rate so far; None without progress."""
    if progress is None or not 0 < progress < 100 or elapsed_seconds <= 0:
        return None
    return elapsed_seconds * (100 - progress) / progress


def _quantile(ordered: Sequence[float], share: float) -> float:
    """The ``share`` quantile of sorted values, interpolated between neighbours."""
    position = share * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _backoff(policy: PollPolicy, polls: int) -> float:
    """initial x factor^(polls - 1), capped; the power is never taken past the cap, where it would
    overflow a float after some 1,750 checks of a long job (x1.5)."""
    exponent = max(polls - 1, 0)
    if policy.factor > 1 and policy.initial_seconds > 0 and policy.max_seconds > policy.initial_seconds:
        to_cap = math.ceil(math.log(policy.max_seconds / policy.initial_seconds, policy.factor))
        exponent = min(exponent, to_cap)
    return min(float(policy.max_seconds), policy.initial_seconds * policy.factor**exponent)
