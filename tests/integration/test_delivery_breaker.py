"""The circuit breaker and retry throttle on a real store, shared by every worker (ADR 0008)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from synchub.connectors.base import Attempt, Delivered, OutboundEvent
from synchub.core.clock import FixedClock
from synchub.core.errors import RateLimitedError, RejectedError, TransientError
from synchub.db import Database
from synchub.events import breaker_store, store
from synchub.events.breaker import state_at
from synchub.events.delivery import DeliveryContext, deliver_due
from synchub.events.dispatch import dispatch_outbox
from synchub.events.outbox import EventContext, emit_event
from synchub.events.service import destination_status
from synchub.register.model import BreakerPolicy, Connection, Flow, Mode, Register, RetryPolicy

RETRY = RetryPolicy(base_seconds=1, cap_seconds=2, max_attempts=50, max_age_seconds=86400)
BREAKER = BreakerPolicy(failures=3, open_seconds=10, probes=2, min_calls=1000)


class ScriptedDestination:
    """A destination that fails as scripted, then succeeds; records what it was sent."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[str] = []
        self.script: list[Exception | None] = []

    def deliver(self, event: OutboundEvent, attempt: Attempt) -> Delivered:
        self.calls.append(event.payload["object"]["label"])
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        return Delivered("ok")


def _register(names: tuple[str, ...]) -> Register:
    connections = {
        name: Connection(name=name, system="product", mode=Mode.SANDBOX, owner="o",
                         criticality="low", retry=RETRY, breaker=BREAKER)
        for name in names
    }  # fmt: skip
    flows = tuple(
        Flow(name=n, source="stripe", destination=n, owner="o", events=("customer.updated",))
        for n in connections
    )
    return Register(workspace="w", timezone="Pacific/Auckland", connections=connections,
                    flows=flows, ownership=())  # fmt: skip


def _emit(db: Database, clock: FixedClock, *labels: str, to: tuple[str, ...] = ("down",)) -> None:
    ctx = EventContext(workspace="w", source="/synchub/w/stripe", traceparent=None,
                       mapping_version=None, app_version="test", now=clock.now())  # fmt: skip
    with db.write() as conn:
        for label in labels:  # one customer each: no ordering holds between them
            emit_event(conn, ctx, event_type="customer.updated",
                       record={"id": f"cus_{label}", "label": label},
                       aggregate_id=f"cus_{label}", changed=[])  # fmt: skip
    dispatch_outbox(db, _register(to), clock)


def _context(
    db: Database,
    clock: FixedClock,
    dests: dict[str, Any],
    worker: str = "w1",
    breaker: BreakerPolicy = BREAKER,
) -> DeliveryContext:
    return DeliveryContext(db=db, destinations=lambda _ws: dests,
                           policy_for=lambda _name: RETRY, clock=clock, worker_id=worker,
                           uniform=lambda lo, hi: lo,
                           breaker_for=lambda _name: breaker)  # fmt: skip


def _state(db: Database, clock: FixedClock, destination: str = "down") -> str:
    with db.read() as conn:
        health = breaker_store.health_row(conn, ("w", destination))
    return "closed" if health is None else state_at(health, clock.now())


def _attempts(db: Database, destination: str) -> int:
    with db.read() as conn:
        rows = store.list_deliveries(conn)
    return sum(r["attempts"] for r in rows if r["destination"] == destination)


def test_the_breaker_opens_spends_no_attempts_and_other_destinations_proceed(
    db: Database, clock: FixedClock
) -> None:
    down, fine = ScriptedDestination("down"), ScriptedDestination("fine")
    down.script = [TransientError("503", status=503)] * 3
    _emit(db, clock, "a", "b", "c", to=("down", "fine"))
    ctx = _context(db, clock, {"down": down, "fine": fine})
    deliver_due(ctx, limit=10)
    assert _state(db, clock) == "open"
    spent = _attempts(db, "down")
    _emit(db, clock, "d", "e", to=("down", "fine"))
    for _ in range(5):  # retries are due, new work is due: nothing goes to "down"
        clock.advance(timedelta(seconds=1.5))
        deliver_due(ctx, limit=10)
    assert _attempts(db, "down") == spent
    assert len(down.calls) == 3
    assert sorted(fine.calls) == ["a", "b", "c", "d", "e"]


def test_another_worker_sees_the_open_breaker(db: Database, clock: FixedClock) -> None:
    down = ScriptedDestination("down")
    down.script = [TransientError("timeout")] * 3
    _emit(db, clock, "a", "b", "c")
    deliver_due(_context(db, clock, {"down": down}, worker="host-1"), limit=10)
    clock.advance(timedelta(seconds=5))
    other = _context(db, clock, {"down": down}, worker="host-2")
    assert deliver_due(other, limit=10).attempted == 0


def test_half_open_sends_probes_and_closes_when_they_all_succeed(
    db: Database, clock: FixedClock
) -> None:
    down = ScriptedDestination("down")
    down.script = [TransientError("502", status=502)] * 3
    _emit(db, clock, "a", "b", "c", "d", "e")
    ctx = _context(db, clock, {"down": down})
    deliver_due(ctx, limit=3)
    clock.advance(timedelta(seconds=10))
    assert _state(db, clock) == "half_open"
    probes = deliver_due(ctx, limit=10)
    assert probes.attempted == BREAKER.probes  # no more than the probes, though more are due
    assert _state(db, clock) == "closed"
    deliver_due(ctx, limit=10)
    assert sorted(set(down.calls)) == ["a", "b", "c", "d", "e"]
    with db.read() as conn:
        assert {r["status"] for r in store.list_deliveries(conn)} == {"succeeded"}


def test_a_failed_probe_opens_it_again(db: Database, clock: FixedClock) -> None:
    down = ScriptedDestination("down")
    down.script = [TransientError("503", status=503)] * 4
    _emit(db, clock, "a", "b", "c")
    ctx = _context(db, clock, {"down": down})
    deliver_due(ctx, limit=3)
    clock.advance(timedelta(seconds=10))
    assert deliver_due(ctx, limit=1).attempted == 1  # the probe fails
    assert _state(db, clock) == "open"
    clock.advance(timedelta(seconds=9))
    assert deliver_due(ctx, limit=10).attempted == 0


def test_a_429_pauses_the_destination_until_retry_after_without_tripping(
    db: Database, clock: FixedClock
) -> None:
    down = ScriptedDestination("down")
    down.script = [RateLimitedError("429", retry_after=60, status=429)]
    _emit(db, clock, "a", "b", "c", "d", "e")
    ctx = _context(db, clock, {"down": down})
    assert deliver_due(ctx, limit=1).attempted == 1
    clock.advance(timedelta(seconds=59))
    assert deliver_due(ctx, limit=10).attempted == 0  # b..e were due all along
    with db.read() as conn:
        health = breaker_store.health_row(conn, ("w", "down"))
    assert health is not None
    assert (health.state, health.consecutive_failures) == ("closed", 0)
    clock.advance(timedelta(seconds=1))
    assert deliver_due(ctx, limit=10).succeeded == 5


def test_business_errors_do_not_count(db: Database, clock: FixedClock) -> None:
    down = ScriptedDestination("down")
    down.script = [RejectedError("400 bad contact", status=400)] * 6
    _emit(db, clock, "a", "b", "c", "d", "e", "f", "g")
    stats = deliver_due(_context(db, clock, {"down": down}), limit=10)
    assert (stats.dead, stats.succeeded) == (6, 1)
    assert _state(db, clock) == "closed"


def test_half_the_calls_failing_opens_it(db: Database, clock: FixedClock) -> None:
    rate = BreakerPolicy(failures=100, min_calls=6, failure_rate=0.5, window_seconds=30)
    down = ScriptedDestination("down")
    down.script = [None, TransientError("503", status=503)] * 3
    _emit(db, clock, "a", "b", "c", "d", "e", "f")
    ctx = _context(db, clock, {"down": down}, breaker=rate)
    deliver_due(ctx, limit=5)
    assert _state(db, clock) == "closed"  # 2 failures in 5 calls
    deliver_due(ctx, limit=1)
    assert _state(db, clock) == "open"  # 3 in 6


def test_while_throttled_retries_go_one_at_a_time_and_first_attempts_flow(
    db: Database, clock: FixedClock
) -> None:
    throttle = BreakerPolicy(failures=100, min_calls=1000, retry_tokens=4)
    down = ScriptedDestination("down")
    down.script = [TransientError("503", status=503)] * 2
    _emit(db, clock, "a", "b")
    ctx = _context(db, clock, {"down": down}, breaker=throttle)
    deliver_due(ctx, limit=10)  # 4 -> 2 tokens: throttled
    _emit(db, clock, "c", "d")
    clock.advance(timedelta(seconds=5))
    with db.write() as conn:
        now = clock.now()
        claimed = store.claim_due(conn, now=now, owner="w9", breaker_for=ctx.breaker_for,
                                  lease_until=now + timedelta(minutes=1), limit=10)  # fmt: skip
    labels = sorted(d.aggregate_id for d in claimed)
    assert labels == ["cus_a", "cus_c", "cus_d"]  # one retry, both first attempts


def test_status_shows_the_breaker_and_when_work_resumes(db: Database, clock: FixedClock) -> None:
    down = ScriptedDestination("down")
    down.script = [TransientError("503", status=503)] * 3
    _emit(db, clock, "a", "b", "c", "d")
    deliver_due(_context(db, clock, {"down": down}), limit=3)
    clock.advance(timedelta(seconds=4))
    with db.read() as conn:
        status = destination_status(conn, workspace="w", now=clock.now(),
                                    breaker_for=lambda _name: BREAKER)  # fmt: skip
    down_status = status["down"]
    assert down_status["breaker"]["state"] == "open"
    assert down_status["breaker"]["open_until"] == clock.now() + timedelta(seconds=6)
    assert down_status["next_attempt_at"] == down_status["breaker"]["open_until"]
    assert down_status["deliveries"] == {"pending": 4}
    assert down_status["oldest_pending_age_seconds"] == 4.0
