"""The circuit breaker and retry throttle as pure state transitions (STANDARDS.md §3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synchub.events.breaker import (
    Health,
    Kind,
    Signal,
    Window,
    gate,
    is_throttled,
    observe,
    state_at,
)
from synchub.register.loader import RegisterError, load_register
from synchub.register.model import BreakerPolicy

POLICY = BreakerPolicy()
T0 = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)


def _fail(health: Health, at: datetime = T0, window: Window | None = None) -> Health:
    return observe(health, POLICY, at, Signal.FAILURE, window=window)


def _fresh() -> Health:
    return Health.fresh(POLICY)


def test_five_consecutive_retryable_failures_open_it() -> None:
    health = _fresh()
    for _ in range(4):
        health = _fail(health)
    assert state_at(health, T0) == "closed"
    health = _fail(health)
    assert state_at(health, T0) == "open"
    assert health.open_until == T0 + timedelta(seconds=30)
    assert gate(health, POLICY, T0).kind is Kind.BLOCKED


def test_a_success_resets_the_run_of_failures() -> None:
    health = _fresh()
    for _ in range(4):
        health = _fail(health)
    health = observe(health, POLICY, T0, Signal.SUCCESS)
    for _ in range(4):
        health = _fail(health)
    assert state_at(health, T0) == "closed"


def test_half_the_calls_failing_over_twenty_opens_it() -> None:
    health = _fresh()
    assert state_at(_fail(health, window=Window(calls=20, failures=9)), T0) == "closed"
    assert state_at(_fail(health, window=Window(calls=20, failures=10)), T0) == "open"
    assert state_at(_fail(health, window=Window(calls=19, failures=19)), T0) == "closed"


def test_after_open_seconds_it_is_half_open_with_three_probes() -> None:
    health = _fresh()
    for _ in range(5):
        health = _fail(health)
    later = T0 + timedelta(seconds=30)
    assert state_at(health, later) == "half_open"
    assert gate(health, POLICY, later) == gate(health, POLICY, later + timedelta(hours=1))
    assert gate(health, POLICY, later).kind is Kind.PROBING
    assert gate(health, POLICY, later).slots == 3


def test_three_successful_probes_close_it_and_refill_the_throttle() -> None:
    health = _fresh()
    for _ in range(5):
        health = _fail(health)
    later = T0 + timedelta(seconds=31)
    for expected_slots in (2, 1):
        health = observe(health, POLICY, later, Signal.SUCCESS)
        assert gate(health, POLICY, later).slots == expected_slots
    health = observe(health, POLICY, later, Signal.SUCCESS)
    assert state_at(health, later) == "closed"
    assert health.tokens == POLICY.retry_tokens
    assert health.window_since == later  # failures before the close no longer count


def test_any_failed_probe_opens_it_again() -> None:
    health = _fresh()
    for _ in range(5):
        health = _fail(health)
    later = T0 + timedelta(seconds=31)
    health = observe(health, POLICY, later, Signal.SUCCESS)
    health = _fail(health, later)
    assert state_at(health, later) == "open"
    assert health.open_until == later + timedelta(seconds=30)


def test_a_429_pauses_until_retry_after_but_never_trips() -> None:
    health = _fresh()
    for _ in range(10):
        health = observe(health, POLICY, T0, Signal.RATE_LIMITED, retry_after=60)
    assert state_at(health, T0) == "closed"
    assert health.consecutive_failures == 0
    assert health.paused_until == T0 + timedelta(seconds=60)
    assert gate(health, POLICY, T0 + timedelta(seconds=59)).kind is Kind.BLOCKED
    assert gate(health, POLICY, T0 + timedelta(seconds=60)).kind is not Kind.BLOCKED


def test_a_pause_never_exceeds_the_cap() -> None:
    health = observe(_fresh(), POLICY, T0, Signal.RATE_LIMITED, retry_after=10**9, max_pause=3600)
    assert health.paused_until == T0 + timedelta(seconds=3600)


def test_the_retry_throttle_holds_retries_at_half_its_tokens() -> None:
    policy = BreakerPolicy(failures=1000)
    health = Health.fresh(policy)
    for _ in range(4):
        health = observe(health, policy, T0, Signal.FAILURE)
    assert not is_throttled(health, policy)  # 6 tokens
    health = observe(health, policy, T0, Signal.FAILURE)
    assert is_throttled(health, policy)  # 5 tokens: no retries
    assert gate(health, policy, T0) == gate(health, policy, T0)
    assert gate(health, policy, T0).kind is Kind.THROTTLED
    assert gate(health, policy, T0).slots == 1
    for _ in range(11):
        health = observe(health, policy, T0, Signal.SUCCESS)
    assert not is_throttled(health, policy)  # 5 + 11 x 0.1 > 5


@given(st.lists(st.sampled_from(list(Signal)), max_size=200))
def test_tokens_stay_between_zero_and_the_maximum(signals: list[Signal]) -> None:
    health, at = _fresh(), T0
    for signal in signals:
        at += timedelta(seconds=7)
        health = observe(health, POLICY, at, signal, retry_after=5)
        assert 0 <= health.tokens <= POLICY.retry_tokens
        assert state_at(health, at) in ("closed", "open", "half_open")


def test_the_register_sets_a_connections_breaker(tmp_path: Path) -> None:
    (tmp_path / "connections.yaml").write_text(
        "connections:\n"
        "  xero:\n"
        "    system: xero\n"
        "    owner: finance@example.co.nz\n"
        "    breaker: {failures: 2, open_seconds: 5, probes: 1}\n"
        "  hubspot:\n"
        "    system: hubspot\n"
        "    owner: sales@example.co.nz\n"
    )
    register = load_register(tmp_path, event_types=set(), mappings={})
    xero = register.connections["xero"].breaker
    assert (xero.failures, xero.open_seconds, xero.probes) == (2, 5.0, 1)
    assert xero.failure_rate == 0.5  # the rest keep STANDARDS.md's values
    assert register.connections["hubspot"].breaker == BreakerPolicy()


def test_an_unknown_breaker_setting_is_named_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "connections.yaml").write_text(
        "connections:\n  xero:\n    system: xero\n    owner: o\n    breaker: {failure: 2}\n"
    )
    with pytest.raises(RegisterError) as raised:
        load_register(tmp_path, event_types=set(), mappings={})
    [problem] = raised.value.problems
    assert problem.line == 5
    assert "failure" in problem.message
