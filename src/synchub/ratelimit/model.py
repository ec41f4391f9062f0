"""Rate-limit decisions: GCRA, token bucket, draft-10 RateLimit fields, monthly periods. Pure.

GCRA runs on a one-microsecond grid (the resolution of Redis TIME): `now` and `tat` are rounded
to the nearest microsecond and the emission interval T = period/rate is rounded *up* to a whole
microsecond. Integer arithmetic keeps the laws exact and gives the Redis Lua script (whose
numbers are doubles, exact below 2**53) the same answers; rounding T up only ever admits less.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

MICROSECONDS = 1_000_000
_POLICY_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)

# The three fair-use layers, in the order a request meets them.
THROTTLE, QUOTA, CONCURRENCY = "throttle", "quota", "concurrency"
LAYERS = (THROTTLE, QUOTA, CONCURRENCY)


def to_microseconds(seconds: float) -> int:
    """Seconds as the nearest whole number of microseconds."""
    return round(seconds * MICROSECONDS)


@dataclass(frozen=True, slots=True)
class Limit:
    """`rate` requests per `period_seconds` under one policy; `burst` (≥ 1) may arrive at once.

    Derived on construction: `interval_us`, the emission interval T = period/rate rounded up to
    a whole microsecond, and `tolerance_us`, tau = burst * T.
    """

    policy: str
    rate: int
    period_seconds: float
    burst: int
    interval_us: int = field(init=False, repr=False, compare=False)
    tolerance_us: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _POLICY_NAME.fullmatch(self.policy):
            raise ValueError("a policy name is 1-64 of A-Z a-z 0-9 . _ -")
        if self.rate < 1 or self.burst < 1:
            raise ValueError("rate and burst must be at least 1")
        period_us = to_microseconds(self.period_seconds)
        if period_us < 1:
            raise ValueError("period_seconds must be at least one microsecond")
        interval = -(-period_us // self.rate)
        object.__setattr__(self, "interval_us", interval)
        object.__setattr__(self, "tolerance_us", self.burst * interval)


@dataclass(frozen=True, slots=True)
class Decision:
    """One rate-limit check: the verdict plus what Retry-After and the RateLimit fields need.

    `limit` is the quota (requests per window), `remaining` the unit-cost requests that would
    still be admitted at this instant, `reset_seconds` the time until the bucket is full again,
    `retry_after_seconds` the wait before this request could pass (0 when allowed).
    """

    allowed: bool
    policy: str
    limit: int
    remaining: int
    reset_seconds: float
    retry_after_seconds: float
    window_seconds: float
    burst: int


# Decision's slots, set directly: a frozen dataclass's __init__ goes through
# object.__setattr__ once per field, which made building a Decision cost more than the rest
# of a Redis-backed check's Python side together. The instances are the same (equal, frozen).
_SET_DECISION = tuple(getattr(Decision, f.name).__set__ for f in fields(Decision))
_new_object = object.__new__


def decision_from_debt(debt_us: int, limit: Limit, cost: int) -> Decision:
    """GCRA's decision for a request of `cost` (1..burst) when the bucket owes `debt_us`,
    max(TAT - now, 0) in microseconds: everything but the TAT to store depends on that alone."""
    interval = limit.interval_us
    # allow_at - now, where allow_at = max(tat, now) + cost * T - tau (STANDARDS §2)
    wait = debt_us + cost * interval - limit.tolerance_us
    decision = _new_object(Decision)
    allowed, policy, quota, remaining, reset, retry_after, window, burst = _SET_DECISION
    if wait > 0:  # refused; nothing is stored
        allowed(decision, False)
        # the unit-cost requests that would still pass
        remaining(decision, max(0, (limit.tolerance_us - debt_us) // interval))
        reset(decision, debt_us / MICROSECONDS)
        retry_after(decision, wait / MICROSECONDS)
    else:
        allowed(decision, True)
        remaining(decision, -wait // interval)
        reset(decision, (debt_us + cost * interval) / MICROSECONDS)
        retry_after(decision, 0.0)
    policy(decision, limit.policy)
    quota(decision, limit.rate)
    window(decision, limit.period_seconds)
    burst(decision, limit.burst)
    return decision


def check_cost(limit: Limit, cost: int) -> None:
    """Refuse a cost below 1 or above the burst (such a request could never pass)."""
    if not 1 <= cost <= limit.burst:
        raise ValueError(f"cost must be between 1 and the burst ({limit.burst})")


def gcra_us(
    tat_us: int | None, now_us: int, limit: Limit, *, cost: int = 1
) -> tuple[Decision, int | None]:
    """GCRA (STANDARDS §2) in microseconds; returns the decision and the TAT to store, or None."""
    check_cost(limit, cost)
    debt = 0 if tat_us is None or tat_us < now_us else tat_us - now_us  # max(tat, now) - now
    decision = decision_from_debt(debt, limit, cost)
    return decision, now_us + debt + cost * limit.interval_us if decision.allowed else None


def gcra(
    tat: float | None, now: float, limit: Limit, *, cost: int = 1
) -> tuple[Decision, float | None]:
    """GCRA (STANDARDS §2) in seconds; returns the decision and the TAT to store (None: keep)."""
    tat_us = None if tat is None else to_microseconds(tat)
    decision, new_tat = gcra_us(tat_us, to_microseconds(now), limit, cost=cost)
    return decision, None if new_tat is None else new_tat / MICROSECONDS


@dataclass(frozen=True, slots=True)
class BucketDecision:
    """One token-bucket draw: the verdict, tokens left as of `now`, and the wait when refused."""

    admitted: bool
    tokens: float
    retry_after_seconds: float


def token_bucket(
    tokens: float,
    last: float,
    *,
    now: float,
    capacity: float,
    refill_per_second: float,
    cost: float = 1.0,
) -> BucketDecision:
    """Refill by the time since `last` up to `capacity`; admit and spend if tokens >= cost (§2)."""
    if capacity <= 0 or refill_per_second <= 0 or not 0 < cost <= capacity:
        raise ValueError("need capacity > 0, refill_per_second > 0 and 0 < cost <= capacity")
    available = min(capacity, tokens + max(0.0, now - last) * refill_per_second)
    if available >= cost:
        return BucketDecision(admitted=True, tokens=available - cost, retry_after_seconds=0.0)
    wait = (cost - available) / refill_per_second
    return BucketDecision(admitted=False, tokens=available, retry_after_seconds=wait)


def retry_after_header(seconds: float) -> int:
    """Retry-After delay-seconds: whole seconds rounded up, never less than 1 (RFC 9110)."""
    return max(1, math.ceil(seconds))


def _sf_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _whole_seconds(seconds: float) -> int:
    micro = to_microseconds(seconds)
    if micro % MICROSECONDS:
        raise ValueError("the RateLimit-Policy window (w) must be a whole number of seconds")
    return micro // MICROSECONDS


@dataclass(frozen=True, slots=True)
class QuotaWindow:
    """A monthly quota as the RateLimit fields show it: `used` of `limit` in a window of
    `window_seconds` that ends `reset_seconds` from now."""

    policy: str
    limit: int
    used: int
    window_seconds: int
    reset_seconds: float


def ratelimit_headers(decision: Decision, *, quota: QuotaWindow | None = None) -> dict[str, str]:
    """RateLimit-Policy and RateLimit fields (draft-10); on a refusal t matches Retry-After.

    With a quota, each field is a two-member list: the throttle, then the monthly quota.
    """
    name = _sf_string(decision.policy)
    window = _whole_seconds(decision.window_seconds)
    if decision.allowed:
        reset = math.ceil(decision.reset_seconds)
    else:
        reset = retry_after_header(decision.retry_after_seconds)
    policy = f"{name};q={decision.limit};w={window};synchub-burst={decision.burst}"
    state = f"{name};r={decision.remaining};t={reset}"
    if quota is not None:
        quota_name = _sf_string(quota.policy)
        left = max(0, quota.limit - quota.used)
        # The month's end, rounded up: the same moment an exhausted quota's Retry-After names.
        quota_reset = retry_after_header(quota.reset_seconds)
        policy += f", {quota_name};q={quota.limit};w={quota.window_seconds}"
        state += f", {quota_name};r={left};t={quota_reset}"
    return {"RateLimit-Policy": policy, "RateLimit": state}


def month_period(now_utc: datetime, timezone: str) -> tuple[str, datetime]:
    """The month of `now_utc` in `timezone` ("2026-12") and when the next starts (aware UTC)."""
    if now_utc.tzinfo is None:
        raise ValueError("naive datetime: month_period needs an aware instant")
    zone = ZoneInfo(timezone)
    local = now_utc.astimezone(zone)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    # fold=0 picks the earlier reading of an ambiguous midnight and the transition instant for
    # a skipped one: both are the first instant of the new month.
    next_starts_at = datetime(year, month, 1, tzinfo=zone).astimezone(UTC)
    return f"{local.year:04d}-{local.month:02d}", next_starts_at


@dataclass(frozen=True, slots=True)
class MonthWindow:
    """One calendar month in a time zone: its name ("2026-04") and its aware UTC bounds."""

    period: str
    starts_at: datetime
    ends_at: datetime

    @property
    def length_seconds(self) -> int:
        """The month's length in whole seconds (an hour more or less across a DST change)."""
        return round((self.ends_at - self.starts_at).total_seconds())


def month_window(now_utc: datetime, timezone: str) -> MonthWindow:
    """The month of `now_utc` in `timezone`, with when it started and when the next starts."""
    period, ends_at = month_period(now_utc, timezone)
    local = now_utc.astimezone(ZoneInfo(timezone))
    starts_at = datetime(local.year, local.month, 1, tzinfo=ZoneInfo(timezone)).astimezone(UTC)
    return MonthWindow(period=period, starts_at=starts_at, ends_at=ends_at)


# --- what the stores keep and return beyond a GCRA decision ----------------------------


def epoch_microseconds(at: datetime) -> int:
    """An aware instant as whole microseconds since the Unix epoch."""
    return (at - _EPOCH) // _ONE_MICROSECOND


def check_key(key: str) -> None:
    """Refuse an empty key or one holding `{` or `}` (they would break the Redis hash tag)."""
    if not key or "{" in key or "}" in key:
        raise ValueError("rate-limit keys and periods are non-empty and free of { }")


def check_slots(limit: int, lease_us: int) -> None:
    """Refuse fewer than one slot or a lease shorter than a microsecond."""
    if limit < 1 or lease_us < 1:
        raise ValueError("need at least one slot and a lease of at least one microsecond")


def quota_expiry_ms(expires_at_us: int, now_us: int) -> int:
    """Milliseconds a new quota counter lives: until the period ends, at least 1 ms."""
    return max(1, -(-(expires_at_us - now_us) // 1000))


def new_slot_token() -> str:
    """A random, unguessable concurrency-slot token."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True, slots=True)
class QuotaPeriod:
    """`limit` uses allowed in one named period (e.g. "2026-12") ending at `ends_at_us`."""

    period: str
    limit: int
    ends_at_us: int

    def __post_init__(self) -> None:
        check_key(self.period)
        if self.limit < 1:
            raise ValueError("a quota allows at least one use")


@dataclass(frozen=True, slots=True)
class Admission:
    """A throttle and a quota decided together: `refused_by` names the layer that said no.

    A request the quota refuses spends nothing: neither a throttle unit nor a quota use.
    `quota_used` counts the period's uses, this request included if it was admitted.
    """

    decision: Decision
    refused_by: str | None
    quota_used: int

    @property
    def admitted(self) -> bool:
        """Whether both layers let the request through."""
        return self.refused_by is None


@dataclass(frozen=True, slots=True)
class SlotGrant:
    """A concurrency slot, or why not: `in_use` counts held slots after this call, and a
    refusal says how long until the earliest lease runs out."""

    token: str | None
    in_use: int
    retry_after_seconds: float


@dataclass(frozen=True, slots=True)
class UsageCounts:
    """One tenant's fair-use counters for one period, plus the slots it holds now."""

    admitted: int = 0
    rejected_throttle: int = 0
    rejected_quota: int = 0
    rejected_concurrency: int = 0
    quota_used: int = 0
    slots_in_use: int = 0

    def rejections(self) -> dict[str, int]:
        """Refused requests by layer."""
        return {
            THROTTLE: self.rejected_throttle,
            QUOTA: self.rejected_quota,
            CONCURRENCY: self.rejected_concurrency,
        }
