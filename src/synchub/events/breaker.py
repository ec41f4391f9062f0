"""The circuit breaker and retry throttle of one destination, as pure state transitions.

STANDARDS.md §3 and ADR 0008. The state lives in the database (`destination_health`, one row
per workspace and destination) so that every worker process shares it; the store reads and
writes rows atomically and calls these functions to decide. Nothing here does I/O or reads
the time: `now` is passed in.

- closed: deliveries flow. Opens after `failures` consecutive retryable failures, or when at
  least `failure_rate` of at least `min_calls` calls in the last `window_seconds` failed.
- open: nothing is claimed for `open_seconds`; then half-open.
- half-open: up to `probes` deliveries go; all succeed -> closed, any fails -> open again.
- paused: a 429 with Retry-After stops claims until then, without tripping the breaker.
- throttled: retry tokens <= half the maximum; first attempts flow, retries go one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from synchub.register.model import BreakerPolicy


class Signal(StrEnum):
    """What an attempt's outcome tells the breaker."""

    SUCCESS = "success"
    FAILURE = "failure"  # retryable: timeout, connection error, 408/409/425/5xx
    RATE_LIMITED = "rate_limited"  # 429: pauses, costs a retry token, never trips the breaker


class Kind(StrEnum):
    """What claiming may do for a destination right now."""

    FLOWING = "flowing"  # claim anything due
    BLOCKED = "blocked"  # claim nothing (open, or paused by a 429)
    PROBING = "probing"  # half-open: claim up to `slots` deliveries in flight
    THROTTLED = "throttled"  # first attempts flow; at most `slots` retries in flight


@dataclass(frozen=True)
class Health:
    """One destination's breaker and throttle state, as stored."""

    state: str = "closed"  # closed | open | half_open
    consecutive_failures: int = 0
    probes_succeeded: int = 0
    tokens: float = 10.0
    opened_at: datetime | None = None
    open_until: datetime | None = None
    paused_until: datetime | None = None
    window_since: datetime | None = None  # failures before this (the last close) don't count
    last_failure_at: datetime | None = None

    @classmethod
    def fresh(cls, policy: BreakerPolicy) -> Health:
        """A destination that has never failed."""
        return cls(tokens=policy.retry_tokens)


@dataclass(frozen=True)
class Gate:
    """The claiming rule for one destination: its kind, and how many may be in flight."""

    kind: Kind
    slots: int = 0
    reason: str = ""


@dataclass(frozen=True)
class Window:
    """Counted calls (successes and retryable failures) in the breaker's window."""

    calls: int
    failures: int


def state_at(health: Health, now: datetime) -> str:
    """closed, open or half_open: an open breaker whose time is up is half-open."""
    if health.state == "open" and health.open_until is not None and now >= health.open_until:
        return "half_open"
    return health.state


def is_throttled(health: Health, policy: BreakerPolicy) -> bool:
    """Whether retries are held back: tokens at or below half the maximum."""
    return health.tokens <= policy.throttle_threshold


def is_paused(health: Health, now: datetime) -> bool:
    """Whether a 429's Retry-After still holds."""
    return health.paused_until is not None and now < health.paused_until


def gate(health: Health, policy: BreakerPolicy, now: datetime) -> Gate:
    """What may be claimed for the destination now."""
    if is_paused(health, now):
        return Gate(Kind.BLOCKED, reason="paused")
    state = state_at(health, now)
    if state == "open":
        return Gate(Kind.BLOCKED, reason="open")
    if state == "half_open":
        return Gate(Kind.PROBING, slots=max(0, policy.probes - health.probes_succeeded))
    if is_throttled(health, policy):
        return Gate(Kind.THROTTLED, slots=1)
    return Gate(Kind.FLOWING)


def is_settled(health: Health, policy: BreakerPolicy) -> bool:
    """Whether a success would change nothing (the common case: no write needed)."""
    return (
        health.state == "closed"
        and health.consecutive_failures == 0
        and health.tokens >= policy.retry_tokens
    )


def needs_window(health: Health, now: datetime) -> bool:
    """Whether a failure now should be judged against the failure-rate window."""
    return state_at(health, now) == "closed"


def window_start(health: Health, policy: BreakerPolicy, now: datetime) -> datetime:
    """Where the failure-rate window begins: `window_seconds` ago, but never before a close."""
    start = now - timedelta(seconds=policy.window_seconds)
    return max(start, health.window_since) if health.window_since else start


def _open(health: Health, policy: BreakerPolicy, now: datetime) -> Health:
    return replace(health, state="open", opened_at=now, probes_succeeded=0,
                   open_until=now + timedelta(seconds=policy.open_seconds))  # fmt: skip


def after_success(health: Health, policy: BreakerPolicy, now: datetime) -> Health:
    """A call succeeded: reset the failure run, earn back a little of the retry budget."""
    tokens = min(policy.retry_tokens, health.tokens + policy.token_ratio)
    health = replace(health, consecutive_failures=0, tokens=tokens)
    if state_at(health, now) != "half_open":
        return health
    succeeded = health.probes_succeeded + 1
    if succeeded < policy.probes:
        return replace(health, state="half_open", probes_succeeded=succeeded)
    # Every probe succeeded: the destination is back. The throttle starts afresh too.
    return replace(health, state="closed", probes_succeeded=0, opened_at=None, open_until=None,
                   window_since=now, tokens=policy.retry_tokens)  # fmt: skip


def after_failure(
    health: Health, policy: BreakerPolicy, now: datetime, *, window: Window | None
) -> Health:
    """A retryable failure: spend a retry token; open the breaker when a threshold is crossed.

    `window` counts this failure too; None when the breaker is not closed.
    """
    health = replace(health, tokens=max(0.0, health.tokens - 1), last_failure_at=now,
                     consecutive_failures=health.consecutive_failures + 1)  # fmt: skip
    state = state_at(health, now)
    if state == "half_open":
        return _open(health, policy, now)  # a probe failed
    if state == "open":
        return health  # an attempt that started before it opened
    if health.consecutive_failures >= policy.failures or _rate_exceeded(window, policy):
        return _open(health, policy, now)
    return health


def _rate_exceeded(window: Window | None, policy: BreakerPolicy) -> bool:
    if window is None or window.calls < policy.min_calls:
        return False
    return window.failures >= policy.failure_rate * window.calls


def after_rate_limit(
    health: Health,
    policy: BreakerPolicy,
    now: datetime,
    *,
    retry_after: float | None,
    max_pause: float,
) -> Health:
    """A 429: pause the destination until its Retry-After (at most `max_pause` seconds).

    It costs a retry token (a 429 is a retryable failure, §3) but never trips the breaker and
    leaves the run of consecutive failures as it was.
    """
    health = replace(health, tokens=max(0.0, health.tokens - 1))
    if retry_after is None or retry_after <= 0:
        return health
    until = now + timedelta(seconds=min(retry_after, max_pause))
    if health.paused_until is not None and health.paused_until >= until:
        return health
    return replace(health, paused_until=until)


def observe(
    health: Health,
    policy: BreakerPolicy,
    now: datetime,
    signal: Signal,
    *,
    window: Window | None = None,
    retry_after: float | None = None,
    max_pause: float = 24 * 3600.0,
) -> Health:
    """The state after one counted outcome."""
    if signal is Signal.SUCCESS:
        return after_success(health, policy, now)
    if signal is Signal.FAILURE:
        return after_failure(health, policy, now, window=window)
    return after_rate_limit(health, policy, now, retry_after=retry_after, max_pause=max_pause)
