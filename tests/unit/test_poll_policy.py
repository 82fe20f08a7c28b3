"""The wait between status checks."""

from reportrelay.config import PollPolicy
from reportrelay.poll_policy import Expected, expected_window, next_wait_seconds, remaining_estimate

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


# ---- with history: the same report on the same connection took about as long before

DEFAULT = PollPolicy()  # 5 s, x1.5, cap 300 s
DURATIONS = (10, 60, 300, 1800, 3600, 4 * 3600, 24 * 3600)


def follow(duration: float, expected: Expected | None, policy: PollPolicy = DEFAULT) -> tuple[int, float]:
    """A report ready ``duration`` s after it was queued, followed with a simulated clock from its queueing
    (the first wait is computed right after Submit): (checks made, seconds between ready and seen)."""
    clock, polls = 0.0, 0
    while True:
        clock += next_wait_seconds(policy, polls, elapsed_seconds=clock, expected=expected)
        polls += 1
        if clock >= duration:
            return polls, clock - duration
        assert polls < 10_000


def history_around(duration: float) -> list[float]:
    return [duration * 0.9, duration, duration * 1.1]


def test_with_three_runs_around_the_duration_readiness_is_seen_within_5_percent_in_at_most_10_checks():
    for duration in DURATIONS:
        for actual in (duration * 0.9, duration, duration * 1.1):
            # given three earlier runs at the duration, +-10 %
            expected = expected_window(history_around(duration))
            # when this run takes anything in that range
            checks, late = follow(actual, expected)
            # then it is seen within max(5 s, 5 % of the duration), in at most 10 checks
            assert late <= max(5.0, 0.05 * duration) + 1, (duration, actual, late)
            assert checks <= 10, (duration, actual, checks)


def test_a_report_taking_twice_its_history_is_still_found_by_backing_off_past_the_window():
    for duration in DURATIONS:
        expected = expected_window(history_around(duration))
        _, late = follow(2 * duration, expected)
        _, late_without = follow(2 * duration, None)
        # then it is found no later than the plain backoff would be, or than 5 % of how long it took
        assert late <= max(late_without, 0.05 * 2 * duration, 5) + 1, (duration, late, late_without)
        assert late <= max(300, 0.05 * 2 * duration)


def test_a_few_outliers_do_not_poison_the_window():
    # given 60 s runs and two that got stuck (and one that came back at once from a cache)
    expected = expected_window([60, 61, 600, 59, 62, 2, 900, 60])
    assert expected is not None
    # then the window is about the usual minute, checked every 3 s (5 % of it)
    assert 55 <= expected.start <= 60 and expected.end <= 70 and expected.step == 3


def test_only_the_recent_runs_count():
    expected = expected_window([600] * 30 + [60] * 20)
    assert expected is not None and expected.end < 100


def test_no_history_keeps_todays_backoff():
    assert expected_window([]) is None
    assert [next_wait_seconds(POLICY, polls, elapsed_seconds=10) for polls in range(0, 4)] == [5, 5, 10, 20]


def test_retry_after_and_the_deadline_still_win_over_history():
    expected = Expected(start=1000, end=1200, step=50)
    assert next_wait_seconds(DEFAULT, 1, elapsed_seconds=0, expected=expected) == 1000
    assert next_wait_seconds(DEFAULT, 1, elapsed_seconds=0, expected=expected, retry_after=30) == 30
    assert next_wait_seconds(DEFAULT, 1, elapsed_seconds=0, expected=expected, seconds_left=200) == 200


def test_without_history_a_report_is_never_seen_more_than_5_minutes_late():
    for duration in DURATIONS:
        assert follow(duration, None)[1] <= 300


def test_a_job_checked_for_a_week_keeps_the_capped_wait_however_many_checks_it_made():
    # given the default policy (5 s, x1.5, cap 300 s) and a job on its 100,000th check, far past where
    # 1.5 to that power overflows a float
    policy = PollPolicy()
    # when the next wait is chosen, then it is the cap, as on the 20th check
    week = 7 * 24 * 3600.0
    assert next_wait_seconds(policy, 100_000, elapsed_seconds=week) == 300
    assert next_wait_seconds(policy, 20, elapsed_seconds=3600) == 300
    # and below the cap the backoff is unchanged
    waits = [next_wait_seconds(policy, polls, elapsed_seconds=0) for polls in (0, 1, 2, 3)]
    assert waits == [5, 5, 8, 12]  # whole seconds


# ---- runs seen only at sparse checks: upper bounds, narrowed by a probe


def learn(duration: float, runs: int, policy: PollPolicy = DEFAULT) -> list[tuple[float, float, int]]:
    """``runs`` runs of a report that takes ``duration`` s, each learning from the ones before as the
    workflow does: (when it was last seen unfinished, when it was seen ready, checks) per run."""
    history: list[tuple[float, float]] = []
    seen: list[tuple[float, float, int]] = []
    for _ in range(runs):
        expected = expected_window([ready for _, ready in history], [low for low, _ in history])
        clock, polls, unfinished = 0.0, 0, 0.0
        while True:
            clock += next_wait_seconds(policy, polls, elapsed_seconds=clock, expected=expected)
            polls += 1
            if clock >= duration:
                break
            unfinished = clock
        history.append((unfinished, clock))
        seen.append((unfinished, clock, polls))
    return seen


def test_a_short_report_first_seen_late_is_soon_waited_for_as_long_as_it_really_takes():
    # given a 2 s report, seen ready only at the backoff's first check (5 s) the first time
    runs = learn(2.0, runs=6)
    assert runs[0][1] == 5
    # when later runs learn from the ones before, then within three runs each is seen within 2 s of ready
    assert all(ready - 2.0 <= 2.0 for _, ready, _ in runs[3:]), runs
    # and no run needs more than two checks
    assert max(checks for _, _, checks in runs) <= 2, runs


def test_a_probe_is_one_check_halfway_between_the_runs_lower_and_upper_bounds():
    # given runs seen unfinished at 0 s and ready at 100 s (one sparse check each)
    expected = expected_window([100, 100, 100], [0, 0, 0])
    assert expected is not None and expected.probe == 50
    # then the first check is the probe, and one that finds the report unfinished goes on to the window
    assert next_wait_seconds(DEFAULT, 0, elapsed_seconds=0, expected=expected) == 50
    assert next_wait_seconds(DEFAULT, 1, elapsed_seconds=50, expected=expected) == 47  # the window's start


def test_runs_known_exactly_need_no_probe():
    # given durations alone (kept before the bounds were, or the vendor's own times), or tight bounds
    assert expected_window([100, 100, 100]).probe is None
    assert expected_window([100, 100, 100], [97, 98, 99]).probe is None
