"""The pure rate-limit core: GCRA, token bucket, RateLimit fields and monthly periods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synchub.ratelimit.model import (
    Decision,
    Limit,
    QuotaPeriod,
    QuotaWindow,
    UsageCounts,
    gcra,
    month_period,
    month_window,
    ratelimit_headers,
    retry_after_header,
    token_bucket,
)

NOW = 1_796_000_000.0  # December 2026, in Unix seconds
PER_MINUTE = Limit(policy="default", rate=60, period_seconds=60, burst=5)


def run(limit: Limit, arrivals: list[float]) -> list[Decision]:
    """Feed arrivals through GCRA the way a store would, keeping the TAT between calls."""
    tat: float | None = None
    decisions = []
    for now in arrivals:
        decision, new_tat = gcra(tat, now, limit)
        tat = new_tat if new_tat is not None else tat
        decisions.append(decision)
    return decisions


def test_a_burst_is_admitted_then_the_next_request_is_refused() -> None:
    decisions = run(PER_MINUTE, [NOW] * 6)

    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]


def test_retry_after_is_the_time_until_the_next_emission() -> None:
    refused = run(PER_MINUTE, [NOW] * 6)[-1]

    assert refused.retry_after_seconds == 1.0
    assert refused.reset_seconds == 5.0


def test_an_admitted_request_reports_when_the_bucket_is_full_again() -> None:
    decisions = run(PER_MINUTE, [NOW, NOW, NOW + 0.5])

    assert decisions[1].reset_seconds == 2.0
    assert decisions[2].reset_seconds == 2.5
    assert decisions[2].retry_after_seconds == 0.0


def test_a_client_waiting_the_rounded_up_retry_after_is_admitted() -> None:
    limit = Limit(policy="default", rate=3, period_seconds=1, burst=1)
    decisions = run(limit, [NOW, NOW + 0.01])
    wait = retry_after_header(decisions[1].retry_after_seconds)

    later = run(limit, [NOW, NOW + 0.01, NOW + 0.01 + wait])

    assert wait == 1
    assert later[-1].allowed


def test_cost_spends_several_units_at_once() -> None:
    decision, tat = gcra(None, NOW, PER_MINUTE, cost=5)
    refused, kept = gcra(tat, NOW, PER_MINUTE, cost=2)

    assert decision.allowed
    assert decision.remaining == 0
    assert not refused.allowed
    assert kept is None
    assert refused.retry_after_seconds == 2.0


def test_a_cost_above_the_burst_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="burst"):
        gcra(None, NOW, PER_MINUTE, cost=6)


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"policy": "has space", "rate": 1, "period_seconds": 1, "burst": 1}, "policy name"),
        ({"policy": "a:b", "rate": 1, "period_seconds": 1, "burst": 1}, "policy name"),
        ({"policy": "default", "rate": 0, "period_seconds": 1, "burst": 1}, "at least 1"),
        ({"policy": "default", "rate": 1, "period_seconds": 0, "burst": 1}, "microsecond"),
        ({"policy": "default", "rate": 1, "period_seconds": 1, "burst": 0}, "at least 1"),
    ],
)
def test_invalid_limits_are_refused(kwargs: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Limit(**kwargs)  # type: ignore[arg-type]


def test_the_emission_interval_is_rounded_up_to_a_microsecond() -> None:
    assert Limit(policy="p", rate=1000, period_seconds=1, burst=1).interval_us == 1000
    assert Limit(policy="p", rate=3, period_seconds=1, burst=1).interval_us == 333_334


def test_headers_use_the_draft_10_syntax() -> None:
    admitted = run(PER_MINUTE, [NOW, NOW + 0.25])[-1]

    assert ratelimit_headers(admitted) == {
        "RateLimit-Policy": '"default";q=60;w=60;synchub-burst=5',
        "RateLimit": '"default";r=3;t=2',
    }


def test_on_a_refusal_the_reset_points_at_the_same_moment_as_retry_after() -> None:
    limit = Limit(policy="writes", rate=10, period_seconds=60, burst=2)
    refused = run(limit, [NOW, NOW, NOW + 1])[-1]

    headers = ratelimit_headers(refused)

    assert retry_after_header(refused.retry_after_seconds) == 5
    assert headers["RateLimit"] == '"writes";r=0;t=5'
    assert refused.reset_seconds == 11.0


def test_with_a_quota_each_field_lists_the_throttle_then_the_monthly_quota() -> None:
    admitted = run(PER_MINUTE, [NOW])[-1]
    quota = QuotaWindow("default.monthly", limit=1000, used=998, window_seconds=2_592_000,
                        reset_seconds=86_399.2)  # fmt: skip

    headers = ratelimit_headers(admitted, quota=quota)

    assert headers == {
        "RateLimit-Policy": '"default";q=60;w=60;synchub-burst=5, '
        '"default.monthly";q=1000;w=2592000',
        "RateLimit": '"default";r=4;t=1, "default.monthly";r=2;t=86400',
    }


def test_an_exhausted_quota_resets_when_its_retry_after_points() -> None:
    admitted = run(PER_MINUTE, [NOW])[-1]
    quota = QuotaWindow("p.monthly", limit=5, used=5, window_seconds=2_592_000, reset_seconds=0.2)

    field = ratelimit_headers(admitted, quota=quota)["RateLimit"]

    assert field.endswith(f'"p.monthly";r=0;t={retry_after_header(0.2)}')
    assert retry_after_header(0.2) == 1


def test_headers_need_a_whole_second_window() -> None:
    decision, _ = gcra(None, NOW, Limit(policy="p", rate=1, period_seconds=0.5, burst=1))
    with pytest.raises(ValueError, match="whole"):
        ratelimit_headers(decision)


@pytest.mark.parametrize(
    ("seconds", "header"), [(0.0, 1), (0.000001, 1), (1.0, 1), (1.000001, 2), (59.5, 60)]
)
def test_retry_after_rounds_up_to_at_least_one_second(seconds: float, header: int) -> None:
    assert retry_after_header(seconds) == header


# --- monthly quota periods -------------------------------------------------------------


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "period", "next_start"),
    [
        # Auckland at NZDT (+13): April starts at 11:00 UTC on 31 March.
        (utc(2026, 3, 31, 10, 59, 59), "2026-03", utc(2026, 3, 31, 11)),
        (utc(2026, 3, 31, 11), "2026-04", utc(2026, 4, 30, 12)),
        # DST ended on 5 April, so May starts at NZST (+12): 12:00 UTC on 30 April.
        (utc(2026, 4, 30, 11, 59, 59), "2026-04", utc(2026, 4, 30, 12)),
        (utc(2026, 4, 30, 12), "2026-05", utc(2026, 5, 31, 12)),
        # DST starts 27 September; October starts at NZDT.
        (utc(2026, 9, 30, 10, 59, 59), "2026-09", utc(2026, 9, 30, 11)),
        (utc(2026, 12, 31, 11), "2027-01", utc(2027, 1, 31, 11)),
        (utc(2026, 12, 31, 10, 59), "2026-12", utc(2026, 12, 31, 11)),
    ],
)
def test_month_periods_follow_auckland_local_time_across_dst(
    now: datetime, period: str, next_start: datetime
) -> None:
    assert month_period(now, "Pacific/Auckland") == (period, next_start)


def test_the_month_across_the_dst_change_is_an_hour_longer() -> None:
    _, april_starts = month_period(utc(2026, 3, 15), "Pacific/Auckland")
    _, may_starts = month_period(april_starts, "Pacific/Auckland")

    assert may_starts - april_starts == timedelta(days=30, hours=1)


@pytest.mark.parametrize(
    ("zone", "now", "next_start"),
    [
        # Midnight skipped (00:00 -> 01:00 on 1 June 2008): the month starts at the jump.
        ("Africa/Casablanca", utc(2008, 5, 20), utc(2008, 6, 1)),
        # Midnight skipped in Cairo on 1 August 2014.
        ("Africa/Cairo", utc(2014, 7, 20), utc(2014, 7, 31, 22)),
        # The hour before midnight repeated on 31 October 2024; November starts once, at +02.
        ("Africa/Cairo", utc(2024, 10, 20), utc(2024, 10, 31, 22)),
    ],
)
def test_a_month_starts_at_its_first_local_instant_when_midnight_moves(
    zone: str, now: datetime, next_start: datetime
) -> None:
    _, starts = month_period(now, zone)

    assert starts == next_start
    assert month_period(starts, zone)[0] != month_period(starts - timedelta(seconds=1), zone)[0]


@pytest.mark.parametrize(
    ("now", "period", "starts", "ends", "hours"),
    [
        # April: starts in NZDT, ends in NZST: 30 days and one hour.
        (utc(2026, 4, 10), "2026-04", utc(2026, 3, 31, 11), utc(2026, 4, 30, 12), 30 * 24 + 1),
        # September: DST starts on the 27th, the month is an hour short.
        (utc(2026, 9, 10), "2026-09", utc(2026, 8, 31, 12), utc(2026, 9, 30, 11), 30 * 24 - 1),
        (utc(2026, 10, 10), "2026-10", utc(2026, 9, 30, 11), utc(2026, 10, 31, 11), 31 * 24),
    ],
)
def test_a_month_window_has_both_bounds_and_its_real_length(
    now: datetime, period: str, starts: datetime, ends: datetime, hours: int
) -> None:
    window = month_window(now, "Pacific/Auckland")

    assert (window.period, window.starts_at, window.ends_at) == (period, starts, ends)
    assert window.length_seconds == hours * 3600


def test_a_quota_period_needs_a_clean_name_and_at_least_one_use() -> None:
    with pytest.raises(ValueError, match="free of"):
        QuotaPeriod("2026-{12}", 10, 0)
    with pytest.raises(ValueError, match="at least one"):
        QuotaPeriod("2026-12", 0, 0)


def test_usage_counts_list_rejections_by_layer() -> None:
    counts = UsageCounts(admitted=5, rejected_throttle=2, rejected_concurrency=1)

    assert counts.rejections() == {"throttle": 2, "quota": 0, "concurrency": 1}


def test_month_period_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        month_period(datetime(2026, 1, 1), "Pacific/Auckland")  # noqa: DTZ001


# --- token bucket ----------------------------------------------------------------------


def test_the_token_bucket_refills_admits_and_refuses() -> None:
    first = token_bucket(0.0, 0.0, now=2.0, capacity=10, refill_per_second=1.5)
    second = token_bucket(first.tokens, 2.0, now=2.0, capacity=10, refill_per_second=1.5, cost=3)

    assert first.admitted
    assert first.tokens == 2.0
    assert not second.admitted
    assert second.tokens == 2.0
    assert second.retry_after_seconds == pytest.approx(2 / 3)


# --- properties ------------------------------------------------------------------------

limits = st.builds(
    Limit,
    policy=st.just("p"),
    rate=st.integers(1, 50),
    period_seconds=st.sampled_from([0.001, 0.5, 1, 3, 60, 3600]),
    burst=st.one_of(st.integers(1, 3), st.integers(1, 20)),
)
start_us = st.integers(0, 2_000_000_000 * 1_000_000)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Limit, int, list[int]]:
    """A limit, a start and gaps between arrivals, on the clock's microsecond grid.

    Many gaps are zero (bursts) or sit within a few microseconds of a whole number of emission
    intervals, where an off-by-one in the algorithm would show.
    """
    limit = draw(limits)
    near_interval = st.builds(
        lambda k, d: max(0, k * limit.interval_us + d), st.integers(0, 3), st.integers(-2, 2)
    )
    gap = st.one_of(st.just(0), near_interval, st.integers(0, 2_000_000))
    return limit, draw(start_us), draw(st.lists(gap, min_size=1, max_size=80))


def times(start: int, gaps: list[int]) -> list[int]:
    """Arrival instants from a start and the gaps between them."""
    out, now = [], start
    for gap in gaps:
        now += gap
        out.append(now)
    return out


@settings(max_examples=500)
@given(scenario=scenarios())
def test_admissions_in_any_window_never_exceed_rate_times_window_plus_burst(
    scenario: tuple[Limit, int, list[int]],
) -> None:
    limit, start, gaps = scenario
    arrivals = times(start, gaps)
    decisions = run(limit, [t / 1_000_000 for t in arrivals])
    admitted = [t for t, d in zip(arrivals, decisions, strict=True) if d.allowed]
    period_us = round(limit.period_seconds * 1_000_000)

    for i, first in enumerate(admitted):
        for j in range(i, len(admitted)):
            # (j - i + 1) <= rate * W / period + burst, in integers
            window_us = admitted[j] - first
            assert (j - i + 1 - limit.burst) * period_us <= limit.rate * window_us


@given(scenario=scenarios())
def test_retry_after_is_never_early(scenario: tuple[Limit, int, list[int]]) -> None:
    limit, start, gaps = scenario
    tat: float | None = None
    for now_us in times(start, gaps):
        now = now_us / 1_000_000
        decision, new_tat = gcra(tat, now, limit)
        if not decision.allowed:
            retried, _ = gcra(tat, now + decision.retry_after_seconds, limit)
            assert retried.allowed
            too_early, _ = gcra(tat, now + decision.retry_after_seconds - 0.000001, limit)
            assert not too_early.allowed
        tat = new_tat if new_tat is not None else tat


@given(scenario=scenarios())
def test_remaining_is_exactly_how_many_more_requests_pass_now(
    scenario: tuple[Limit, int, list[int]],
) -> None:
    limit, start, gaps = scenario
    tat: float | None = None
    for now_us in times(start, gaps):
        now = now_us / 1_000_000
        decision, new_tat = gcra(tat, now, limit)
        tat = new_tat if new_tat is not None else tat
        probe = tat
        for _ in range(decision.remaining):
            passed, probe = gcra(probe, now, limit)
            assert passed.allowed
        assert not gcra(probe, now, limit)[0].allowed


@given(
    capacity=st.floats(1, 100),
    rate=st.floats(0.01, 100),
    steps=st.lists(st.tuples(st.floats(0, 10), st.floats(0.01, 1)), min_size=1, max_size=60),
)
def test_a_token_bucket_never_exceeds_capacity_nor_goes_negative(
    capacity: float, rate: float, steps: list[tuple[float, float]]
) -> None:
    tokens, last, now, admitted_cost = capacity, 0.0, 0.0, 0.0
    for gap, share in steps:
        now += gap
        cost = share * capacity
        result = token_bucket(
            tokens, last, now=now, capacity=capacity, refill_per_second=rate, cost=cost
        )
        tokens, last = result.tokens, now
        admitted_cost += cost if result.admitted else 0.0
        assert 0.0 <= tokens <= capacity
    assert admitted_cost <= capacity + rate * now + 1e-9 * (1 + admitted_cost)
