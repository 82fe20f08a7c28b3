"""The wait between status checks."""

from reportrelay.config import PollPolicy
from reportrelay.poll_policy import next_wait_seconds, remaining_estimate

POLICY = PollPolicy(initial_seconds=5, max_seconds=60, factor=2)


def test_waits_grow_geometrically_up_to_the_cap():
    waits = [next_wait_seconds(POLICY, polls, elapsed_seconds=10) for polls in range(0, 8)]
    assert waits == [5, 5, 10, 20, 40, 60, 60, 60]


def test_progress_shortens_the_wait_to_the_estimated_finish():
    # given a report 80% done after 40 s, whose next backoff wait would be 60 s
    wait = next_wait_seconds(POLICY, 6, elapsed_seconds=40, progress=80)
    # then the next check lands around the estimated finish (10 s from now)
    assert wait == 10


def test_retry_after_overrides_backoff_but_not_the_deadline():
    assert next_wait_seconds(POLICY, 1, elapsed_seconds=1, retry_after=30) == 30
    assert next_wait_seconds(POLICY, 1, elapsed_seconds=1, retry_after=30, seconds_left=12) == 12


def test_never_less_than_the_minimum():
    assert next_wait_seconds(POLICY, 1, elapsed_seconds=1, seconds_left=0) == 1
    assert next_wait_seconds(POLICY, 1, elapsed_seconds=100, progress=99.9) == 1


def test_no_estimate_without_meaningful_progress():
    assert remaining_estimate(10, None) is None
    assert remaining_estimate(10, 0) is None
    assert remaining_estimate(10, 100) is None
    assert remaining_estimate(30, 25) == 90
