"""How long to wait before the next status check.

Waits grow geometrically from the connection's ``initial_seconds`` up to ``max_seconds``, so a report
that takes seconds is fetched within seconds and one that takes hours costs a few dozen checks. When the
provider reports progress, the remaining time is estimated from the rate so far and the wait is
shortened to land near the finish. A provider's ``Retry-After`` always wins over both.
"""

from __future__ import annotations

import math

from reportrelay.config import PollPolicy


def next_wait_seconds(
    policy: PollPolicy,
    polls: int,
    *,
    elapsed_seconds: float,
    progress: float | None = None,
    retry_after: float | None = None,
    seconds_left: float | None = None,
) -> int:
    """Seconds to wait before check number ``polls + 1``; never past the job's deadline."""
    if retry_after is not None:
        wait = max(float(policy.min_seconds), retry_after)
    else:
        wait = min(policy.max_seconds, policy.initial_seconds * policy.factor ** max(polls - 1, 0))
        estimate = remaining_estimate(elapsed_seconds, progress)
        if estimate is not None:
            wait = min(wait, estimate)
    if seconds_left is not None:
        wait = min(wait, seconds_left)
    return max(policy.min_seconds, math.ceil(wait))


def remaining_estimate(elapsed_seconds: float, progress: float | None) -> float | None:
    """Seconds still to go if progress continues at its average rate so far; None without progress."""
    if progress is None or not 0 < progress < 100 or elapsed_seconds <= 0:
        return None
    return elapsed_seconds * (100 - progress) / progress
