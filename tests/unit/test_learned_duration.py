"""The duration a ready report adds to its history: the vendor's own generation time where it gives one."""

from __future__ import annotations

import pytest

from reportrelay.providers.spec import vendor_time
from reportrelay.workflow import learned_bounds, learned_duration

QUEUED, READY = "2026-12-01T10:00:00Z", "2026-12-01T10:01:40Z"  # 100 s apart, as our polls saw it


def test_the_vendors_own_generation_time_is_what_is_learned() -> None:
    # given a job the vendor says took 42.5 s, which our polls saw ready 100 s after queueing
    job = {"queued_at": QUEUED, "ready_at": READY, "vendor_generation_seconds": 42.5}
    # when its duration is learned, then it is the vendor's
    assert learned_duration(job) == 42.5


@pytest.mark.parametrize(
    "vendor", [None, 0, -3.0, True, "42"], ids=["absent", "zero", "negative", "bool", "text"]
)
def test_without_a_usable_vendor_time_queued_to_ready_is_learned(vendor: object) -> None:
    # given a job without a usable vendor time
    job = {"queued_at": QUEUED, "ready_at": READY, "vendor_generation_seconds": vendor}
    # when its duration is learned, then it is queued -> ready, as before
    assert learned_duration(job) == 100.0


def test_a_job_with_no_times_learns_nothing() -> None:
    # given jobs missing a time, or ready before queued (a clock that stepped back)
    # when their durations are learned, then there is none
    assert learned_duration({"queued_at": QUEUED}) is None
    assert learned_duration({"queued_at": READY, "ready_at": QUEUED}) is None


def test_torus_dates_without_a_time_zone_give_the_vendors_generation_time() -> None:
    # given the seed's dateStarted and dateFinished (.NET's form, no time zone, a ragged fraction)
    started, finished = vendor_time("2025-09-12T08:33:46.413"), vendor_time("2025-09-12T08:42:58.76")
    # when they are subtracted, then it is the 9 min 12.347 s the vendor reports
    assert started is not None and finished is not None
    assert finished - started == pytest.approx(552.347)
    # and epoch seconds, epoch milliseconds and what is no date are read as such
    assert vendor_time(1_700_000_000) == vendor_time(1_700_000_000_000) == 1_700_000_000.0
    assert vendor_time("soon") is None and vendor_time(None) is None and vendor_time(True) is None


def test_a_run_is_learned_with_when_it_was_last_seen_unfinished_as_its_lower_bound() -> None:
    # given a job a check found unfinished 60 s after queueing, and the next check ready at 100 s
    job = {"queued_at": QUEUED, "ready_at": READY, "unfinished_at_seconds": 60.0}
    # when its bounds are learned, then it took more than 60 s and at most 100 s
    assert learned_bounds(job) == (60.0, 100.0)
    # and a job no check found unfinished only has its upper bound; the vendor's own time is exact
    assert learned_bounds({"queued_at": QUEUED, "ready_at": READY}) == (0.0, 100.0)
    assert learned_bounds({**job, "vendor_generation_seconds": 42.5}) == (42.5, 42.5)
