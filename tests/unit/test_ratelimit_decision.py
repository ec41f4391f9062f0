"""decision_from_debt builds, without the dataclass __init__, exactly the Decision that the
STANDARDS §2 formulas give through Decision(...), and the instance stays frozen."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synchub.ratelimit.model import MICROSECONDS, Decision, Limit, decision_from_debt, gcra_us


def by_the_standard(debt: int, limit: Limit, cost: int) -> Decision:
    """§2 with now = 0 and tat = debt, built through the dataclass constructor."""
    t, tau = limit.interval_us, limit.tolerance_us
    new_tat = debt + cost * t
    allow_at = new_tat - tau
    allowed = allow_at <= 0  # §2: reject if now (0) < allow_at
    return Decision(
        allowed=allowed,
        policy=limit.policy,
        limit=limit.rate,
        remaining=-allow_at // t if allowed else max(0, (tau - debt) // t),
        reset_seconds=(new_tat if allowed else debt) / MICROSECONDS,
        retry_after_seconds=0.0 if allowed else allow_at / MICROSECONDS,
        window_seconds=limit.period_seconds,
        burst=limit.burst,
    )


limits = st.builds(
    Limit,
    policy=st.sampled_from(["default", "token", "a.b-c_d"]),
    rate=st.integers(1, 10_000_000),
    period_seconds=st.sampled_from([1, 60, 3600, 0.5]),
    burst=st.integers(1, 1000),
)


@given(limit=limits, debt=st.integers(0, 10**13), data=st.data())
def test_the_decision_for_a_debt_is_the_standards(
    limit: Limit, debt: int, data: st.DataObject
) -> None:
    cost = data.draw(st.integers(1, limit.burst))
    decision = decision_from_debt(debt, limit, cost)
    assert decision == by_the_standard(debt, limit, cost)
    assert repr(decision) == repr(by_the_standard(debt, limit, cost))
    # and gcra_us, which stores a TAT only when it admits, agrees at any "now"
    now = data.draw(st.integers(0, 10**15))
    via_gcra, new_tat = gcra_us(now + debt if debt else None, now, limit, cost=cost)
    assert via_gcra == decision
    assert new_tat == (now + debt + cost * limit.interval_us if decision.allowed else None)


def test_a_decision_built_from_a_debt_is_still_frozen() -> None:
    decision = decision_from_debt(0, Limit("default", 10, 1, 5), 1)
    assert decision.allowed
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.allowed = False  # type: ignore[misc]
