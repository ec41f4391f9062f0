"""Reading events and deliveries, and replaying them: the use cases behind the API and CLI."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from synchub.core.errors import ConflictError, FieldProblem, NotFoundError, ValidationError
from synchub.db import keyset_page
from synchub.events import breaker, breaker_store, store
from synchub.register.model import BreakerPolicy, Register
from synchub.webhooks import store as webhook_store
from synchub.webhooks.model import Endpoint, destination_name


@dataclass(frozen=True)
class Page:
    """One page and whether more follow."""

    items: list[dict[str, Any]]
    has_more: bool


def present_event(row: dict[str, Any]) -> dict[str, Any]:
    """An outbox row as a CloudEvents 1.0 structured event."""
    return {"id": row["id"], "specversion": "1.0", "type": row["type"],
            "source": row["source"], "subject": row["subject"], "time": row["created_at"],
            "datacontenttype": "application/json", "dataschema": row["dataschema"],
            "traceparent": row["traceparent"], "data": row["payload"]}  # fmt: skip


def list_events(
    conn: Connection,
    *,
    workspace: str,
    limit: int,
    starting_after: str | None,
    event_type: str | None = None,
    since: datetime | None = None,
) -> Page:
    """Canonical events of a workspace in id (creation) order."""
    t = store.outbox_events
    query = sa.select(t).where(t.c.workspace == workspace)
    if event_type:
        query = query.where(t.c.type == event_type)
    if since is not None:
        query = query.where(t.c.created_at >= since)
    rows, more = keyset_page(conn, query, t.c.id, limit=limit, starting_after=starting_after)
    return Page([present_event(r) for r in rows], more)


def get_event(conn: Connection, *, workspace: str, event_id: str) -> dict[str, Any]:
    """One canonical event of the workspace."""
    row = store.get_event(conn, event_id)
    if row is None or row["workspace"] != workspace:
        raise NotFoundError(f"no event {event_id}")
    return present_event(row)


# Attempt-history rows that are not attempts: a replay, or a release from `held` (both
# numbered 0; `attempts` counts again from there).
RESTARTS = ("replayed", "released")


def _present_delivery(
    conn: Connection, row: dict[str, Any], *, history: bool, earlier: int | None = None
) -> dict[str, Any]:
    """A delivery as shown. `earlier`: attempts made before its last replay or release
    (read here when not given)."""
    record = {k: row[k] for k in ("id", "event_id", "event_type", "destination", "status",
                                  "attempts", "next_attempt_at", "last_error",
                                  "last_status_code", "dead_reason", "last_response",
                                  "created_at", "completed_at", "replayed_at")}  # fmt: skip
    record["subject"] = row.get("aggregate_id")
    attempts = store.attempts_of(conn, row["id"]) if history or earlier is None else []
    if earlier is None:
        earlier = _attempts_before_restart(attempts)
    record["attempts_total"] = earlier + int(row["attempts"])
    if history:
        record["idempotency_key"] = row["idempotency_key"]
        record["attempt_history"] = [
            {k: a[k] for k in ("attempt", "started_at", "finished_at", "outcome", "status_code",
                               "error", "retry_after_seconds", "response")}
            for a in attempts
        ]  # fmt: skip
    return record


def _attempts_before_restart(attempts: Sequence[Any]) -> int:
    """How many attempts (not replay or release markers) precede the last marker."""
    last = max((i for i, a in enumerate(attempts) if a["outcome"] in RESTARTS), default=0)
    return sum(1 for a in attempts[:last] if a["outcome"] not in RESTARTS)


def _earlier_attempts(conn: Connection, delivery_ids: list[str]) -> dict[str, int]:
    """`_attempts_before_restart` for a page of deliveries in one query."""
    if not delivery_ids:
        return {}
    a = store.delivery_attempts
    rows = conn.execute(
        sa.select(a.c.delivery_id, a.c.outcome)
        .where(a.c.delivery_id.in_(delivery_ids))
        .order_by(a.c.delivery_id, a.c.id)
    ).mappings()
    by_delivery: dict[str, list[Any]] = {}
    for r in rows:
        by_delivery.setdefault(r["delivery_id"], []).append(r)
    return {d: _attempts_before_restart(by_delivery.get(d, [])) for d in delivery_ids}


@dataclass(frozen=True)
class DeliveryFilter:
    """Which deliveries to list or replay."""

    status: str | None = None
    destination: str | None = None
    event_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    error_code: int | None = None


def _filtered(workspace: str, f: DeliveryFilter) -> sa.Select[Any]:
    t = store.deliveries
    query = sa.select(t).where(t.c.workspace == workspace)
    for column, value in (
        (t.c.status, f.status),
        (t.c.destination, f.destination),
        (t.c.event_type, f.event_type),
        (t.c.last_status_code, f.error_code),
    ):
        if value is not None:
            query = query.where(column == value)
    if f.since is not None:
        query = query.where(t.c.created_at >= f.since)
    if f.until is not None:
        query = query.where(t.c.created_at < f.until)
    return query


def list_deliveries(
    conn: Connection,
    *,
    workspace: str,
    limit: int,
    starting_after: str | None,
    where: DeliveryFilter,
) -> Page:
    """Deliveries of a workspace matching a filter, in id order."""
    rows, more = keyset_page(conn, _filtered(workspace, where), store.deliveries.c.id,
                             limit=limit, starting_after=starting_after)  # fmt: skip
    earlier = _earlier_attempts(conn, [r["id"] for r in rows])
    return Page([_present_delivery(conn, r, history=False, earlier=earlier[r["id"]])
                 for r in rows], more)  # fmt: skip


def get_delivery(
    conn: Connection, *, workspace: str, delivery_id: str, dead_only: bool = False
) -> dict[str, Any]:
    """One delivery with its attempt history."""
    t = store.deliveries
    row = conn.execute(sa.select(t).where(t.c.id == delivery_id, t.c.workspace == workspace)
                       ).mappings().first()  # fmt: skip
    if row is None or (dead_only and row["status"] != "dead"):
        kind = "dead letter" if dead_only else "delivery"
        raise NotFoundError(f"no {kind} {shown_id(delivery_id)}")
    return _present_delivery(conn, dict(row), history=True)


FINISHED = ("dead", "succeeded")


@dataclass(frozen=True)
class Replay:
    """What a replay did."""

    replayed: list[str]  # finished deliveries queued again with a fresh retry budget
    due_now: list[str]  # pending ones, waiting for a retry, made due now


def workspace_of(conn: Connection, delivery_id: str) -> str | None:
    """The workspace a delivery belongs to (ids are unique across workspaces); None if none."""
    t = store.deliveries
    found = conn.execute(sa.select(t.c.workspace).where(t.c.id == delivery_id)).scalar()
    return None if found is None else str(found)


def replay(
    conn: Connection,
    *,
    workspace: str,
    where: DeliveryFilter,
    now: datetime,
    delivery_ids: list[str] | None = None,
    limit: int = 1000,
) -> Replay:
    """Queue deliveries again, keeping their idempotency keys and attempt history.

    By filter, only finished (dead or succeeded) deliveries are replayed. By id, each named
    delivery whatever its status: a finished one is queued again with a fresh retry budget;
    a pending one (waiting for its next retry) is made due now and keeps its attempt count;
    one in flight is refused (ConflictError naming it) and nothing changes. An id of no
    delivery of the workspace (matching the filter) is NotFoundError, and nothing changes.
    Replaying one that had in fact succeeded is harmless: the destination sees the same
    idempotency key, upsert key or webhook-id again, and the stale-write guard (ADR 0021)
    keeps a destination that already holds a newer snapshot of the record from being sent
    this older one. `created_at` is kept; `replayed_at` notes the replay.
    """
    t = store.deliveries
    if delivery_ids is None:
        query = _filtered(workspace, where).where(t.c.status.in_(FINISHED))
    else:
        query = _filtered(workspace, replace(where, status=None)).where(t.c.id.in_(delivery_ids))
    rows = conn.execute(query.order_by(t.c.id).limit(limit)).mappings().all()
    if delivery_ids is not None:
        _check_named(delivery_ids, rows, limit)
    ids = [r["id"] for r in rows if r["status"] in FINISHED]
    pending = [r["id"] for r in rows if r["status"] == "pending"]
    # A replay gets a fresh retry budget; the history keeps every earlier attempt.
    # `created_at` stays (since/until filters select by it); the replay's own time starts the
    # fresh retry budget and is in the history as the `replayed` attempt.
    _update_each(conn, ids, FINISHED, status="pending", next_attempt_at=now, attempts=0,
                 completed_at=None, dead_reason=None, replayed_at=now)  # fmt: skip
    _update_each(conn, pending, ("pending",), next_attempt_at=now)
    for delivery_id in ids:
        store.record_attempt(conn, {
            "delivery_id": delivery_id, "attempt": 0, "started_at": now, "finished_at": now,
            "outcome": "replayed", "status_code": None, "error": None,
            "retry_after_seconds": None})  # fmt: skip
    return Replay(replayed=ids, due_now=pending)


def _check_named(delivery_ids: list[str], rows: Sequence[Any], limit: int) -> None:
    """Refuse a replay by id that names a delivery in flight or one that is not there."""
    busy = sorted(r["id"] for r in rows if r["status"] == "in_flight")
    if busy:
        raise ConflictError(
            f"delivery {', '.join(busy)} is in flight: an attempt is running now; "
            "replay it once the attempt has finished, if it still needs one"
        )
    held = sorted(r["id"] for r in rows if r["status"] == HELD)
    if held:
        raise ConflictError(
            f"delivery {', '.join(held)} is held: its webhook endpoint is disabled; enable the "
            'endpoint (PATCH {"enabled": true}) and held deliveries are sent in order'
        )
    missing = sorted(set(delivery_ids) - {r["id"] for r in rows})
    if missing and len(rows) < limit:
        named = ", ".join(shown_id(m) for m in missing[:MAX_SHOWN])
        more = f" and {len(missing) - MAX_SHOWN} more" if len(missing) > MAX_SHOWN else ""
        raise NotFoundError(f"no delivery {named}{more} (of this workspace, matching the "
                            "filters given)")  # fmt: skip


MAX_SHOWN = 10  # ids named in one message
MAX_ID_SHOWN = 80  # characters of an id echoed back


def shown_id(value: str) -> str:
    """An id as echoed in a message: cut to MAX_ID_SHOWN characters."""
    return value if len(value) <= MAX_ID_SHOWN else value[: MAX_ID_SHOWN - 1] + "…"


MAX_FILTER_TEXT = 120  # as the GET filters' query parameters
FILTER_FIELDS = ("ids", "destination", "event_type", "since", "until", "error_code")


def check_replay_request(
    conn: Connection,
    *,
    workspace: str,
    where: DeliveryFilter,
    delivery_ids: list[str] | None,
    connections: Collection[str],
    sent_null: Collection[str] = (),
) -> None:
    """Refuse a bulk replay whose filters cannot mean what was asked (ValidationError naming
    each field, as a JSON pointer): none with a value (null is not a filter, `ids: []` names
    nothing), an unknown destination (neither a register connection nor one any delivery of
    the workspace went to), `since` after `until`, an event type longer than the GET filter's
    limit. A replay of everything must be asked for by a filter, never by omission."""
    problems: list[FieldProblem] = []
    if delivery_ids is not None and not delivery_ids:
        problems.append(FieldProblem("/ids", "name at least one delivery, or leave ids out"))
    if where.destination is not None and not _known_destination(
        conn, workspace, where.destination, connections
    ):
        known = ", ".join(sorted(connections))
        detail = (f"no destination named {shown_id(where.destination)!r}: one of {known}, or "
                  "webhook:<endpoint id> of an endpoint that has deliveries")  # fmt: skip
        problems.append(FieldProblem("/destination", detail))
    if where.event_type is not None and len(where.event_type) > MAX_FILTER_TEXT:
        problems.append(FieldProblem("/event_type", f"at most {MAX_FILTER_TEXT} characters"))
    if where.since is not None and where.until is not None and where.since > where.until:
        problems.append(FieldProblem("/until", "until is before since"))
    if problems:
        raise ValidationError("the replay's filters are invalid", problems)
    filters = (where.destination, where.event_type, where.since, where.until, where.error_code)
    if not delivery_ids and all(value is None for value in filters):
        nulls = [name for name in FILTER_FIELDS if name in sent_null]
        if not nulls:  # nothing was sent at all (`{}`), so say what to send
            detail = (
                "give at least one filter: "
                + ", ".join(FILTER_FIELDS)
                + " (a replay of every dead letter is asked for by a filter, e.g. since)"
            )
            raise ValidationError("say which dead letters to replay", [FieldProblem("", detail)])
        detail = ("null is not a filter: give a value or leave it out; a replay needs ids or "
                  "at least one of destination, event_type, since, until, error_code")  # fmt: skip
        raise ValidationError(
            "say which dead letters to replay", [FieldProblem(f"/{name}", detail) for name in nulls]
        )


def _known_destination(
    conn: Connection, workspace: str, destination: str, connections: Collection[str]
) -> bool:
    if destination in connections:
        return True
    t = store.deliveries
    found = conn.execute(
        sa.select(t.c.id).where(t.c.destination == destination, t.c.workspace == workspace).limit(1)
    ).first()
    return found is not None


def _update_each(
    conn: Connection, ids: list[str], statuses: tuple[str, ...], **values: Any
) -> None:
    """Update these deliveries if each still has one of `statuses`; ConflictError (the
    transaction rolls back) when a worker took one in the meantime."""
    if not ids:
        return
    t = store.deliveries
    done = conn.execute(
        sa.update(t).where(t.c.id.in_(ids), t.c.status.in_(statuses)).values(**values)
    ).rowcount
    if done != len(ids):
        raise ConflictError(
            f"delivery {', '.join(ids)}: a worker took one of them while it was being "
            "replayed; try again"
        )


# -- Deliveries held while their partner webhook endpoint is disabled (ADR 0009 amendment) --

HELD = "held"  # recorded, not attempted, not a failure: waits for its endpoint to be enabled


def hold_pending(conn: Connection, *, destination: str) -> int:
    """Hold a destination's deliveries waiting for an attempt (its endpoint was disabled);
    how many. One in flight finishes its attempt; if it comes due again while the endpoint is
    still disabled, the destination holds it then (hold_claimed)."""
    t = store.deliveries
    query = sa.update(t).where(t.c.destination == destination, t.c.status == "pending")
    return int(conn.execute(query.values(status=HELD)).rowcount)


def hold_claimed(conn: Connection, delivery_id: str) -> bool:
    """Hold a delivery a worker has just leased, before any request was made: it goes back
    to `held` with its lease cleared and the claim's attempt taken back. The worker's own
    outcome then finds its lease gone and writes nothing (no attempt, no breaker signal)."""
    t = store.deliveries
    query = sa.update(t).where(t.c.id == delivery_id, t.c.status == "in_flight")
    values = {"status": HELD, "lease_owner": None, "lease_until": None,
              "attempts": sa.case((t.c.attempts > 0, t.c.attempts - 1), else_=0)}  # fmt: skip
    return int(conn.execute(query.values(**values)).rowcount) == 1


@dataclass(frozen=True)
class Released:
    """What enabling an endpoint did with its held deliveries."""

    due_now: list[str]  # pending again, due now, in event order, with a fresh retry budget
    expired: list[str]  # held longer than the retry window: dead letters, replayable


def release_held(
    conn: Connection, *, destination: str, now: datetime, max_age_seconds: float
) -> Released:
    """Make a destination's held deliveries due now (a fresh retry budget, as a replay, and a
    `released` entry in their history); those created longer than `max_age_seconds` ago
    become dead letters instead (`POST /v1/dead-letters/replay` still sends them)."""
    t = store.deliveries
    rows = conn.execute(
        sa.select(t.c.id, t.c.created_at)
        .where(t.c.destination == destination, t.c.status == HELD)
        .order_by(t.c.event_seq)
    ).all()
    oldest = now - timedelta(seconds=max_age_seconds)
    due = [r.id for r in rows if r.created_at >= oldest]
    expired = [r.id for r in rows if r.created_at < oldest]
    _update_each(conn, due, (HELD,), status="pending", next_attempt_at=now, attempts=0,
                 replayed_at=now)  # fmt: skip
    hours = max_age_seconds / 3600
    reason = (f"held for longer than {hours:g} h while its webhook endpoint was disabled; "
              "not sent (replay it to send it)")  # fmt: skip
    _update_each(conn, expired, (HELD,), status="dead", dead_reason=reason, completed_at=now,
                 last_error=reason)  # fmt: skip
    for delivery_id in due:
        store.record_attempt(conn, {
            "delivery_id": delivery_id, "attempt": 0, "started_at": now, "finished_at": now,
            "outcome": "released", "status_code": None, "error": None,
            "retry_after_seconds": None})  # fmt: skip
    return Released(due_now=due, expired=expired)


def end_held(conn: Connection, *, destination: str, now: datetime, reason: str) -> int:
    """End a destination's held deliveries unsent (its endpoint was deleted); how many."""
    t = store.deliveries
    query = sa.update(t).where(t.c.destination == destination, t.c.status == HELD)
    values = {"status": "dead", "dead_reason": reason, "last_error": reason, "completed_at": now}
    return int(conn.execute(query.values(**values)).rowcount)


def breaker_policies(register: Register) -> Callable[[str], BreakerPolicy]:
    """Breaker settings by destination: its connection's, else the defaults (partner webhooks)."""
    policies = {name: c.breaker for name, c in register.connections.items()}
    default = BreakerPolicy()
    return lambda destination: policies.get(destination, default)


def destination_status(
    conn: Connection,
    *,
    workspace: str,
    now: datetime,
    breaker_for: Callable[[str], BreakerPolicy],
) -> dict[str, dict[str, Any]]:
    """Per destination: deliveries by status, the breaker, when the next attempt may run,
    how old the oldest waiting delivery is and, for a partner webhook endpoint (every one of
    the workspace, with deliveries or not), whether it is enabled (`endpoint`, else None)
    (`synchub deliveries status`, GET /v1/connections)."""
    stats = destination_stats(conn, workspace=workspace)
    t = store.deliveries
    pending_at = sa.case((t.c.status == "pending", t.c.next_attempt_at), else_=None)
    waiting_since = sa.func.coalesce(t.c.replayed_at, t.c.created_at)  # a replay waits anew
    waiting = conn.execute(
        sa.select(t.c.destination, sa.func.min(pending_at), sa.func.min(waiting_since))
        .where(t.c.workspace == workspace, t.c.status.in_(store.ACTIVE))
        .group_by(t.c.destination)
    ).all()
    rows = breaker_store.health_rows(conn, workspace=workspace)
    health = {name: h for (_, name), h in rows.items()}
    endpoints = {destination_name(e.id): e for e in webhook_store.endpoints_of(conn, [workspace])}
    for name in {*stats, *health, *endpoints}:
        stats.setdefault(name, {"deliveries": {}, "last_success_at": None})
    for name, entry in stats.items():
        endpoint = endpoints.get(name)
        entry["endpoint"] = None if endpoint is None else present_endpoint_state(endpoint)
    for name, entry in stats.items():
        policy = breaker_for(name)
        state = present_breaker(health.get(name) or breaker.Health.fresh(policy), policy, now)
        entry.update(breaker=state, next_attempt_at=None, oldest_pending_at=None,
                     oldest_pending_age_seconds=None)  # fmt: skip
    for name, next_at, oldest in waiting:
        entry, gate_until = stats[name], stats[name]["breaker"]["blocked_until"]
        if next_at is not None:
            entry["next_attempt_at"] = max(next_at, gate_until) if gate_until else next_at
        entry["oldest_pending_at"] = oldest
        entry["oldest_pending_age_seconds"] = max(0.0, (now - oldest).total_seconds())
    return stats


def present_endpoint_state(endpoint: Endpoint) -> dict[str, Any]:
    """A partner webhook endpoint's own state beside its breaker: whether it is enabled, and
    if not why and since when (its deliveries are then held, not attempted)."""
    return {"id": endpoint.id, "enabled": endpoint.enabled,
            "disabled_reason": endpoint.disabled_reason, "disabled_at": endpoint.disabled_at,
            "failing_since": endpoint.failing_since}  # fmt: skip


def present_breaker(health: breaker.Health, policy: BreakerPolicy, now: datetime) -> dict[str, Any]:
    """A destination's breaker and throttle as shown to people."""
    state = breaker.state_at(health, now)
    paused = health.paused_until if breaker.is_paused(health, now) else None
    open_until = health.open_until if state == "open" else None
    blocked = max((t for t in (paused, open_until) if t is not None), default=None)
    return {"state": state, "open_until": open_until, "paused_until": paused,
            "blocked_until": blocked, "consecutive_failures": health.consecutive_failures,
            "retry_tokens": round(health.tokens, 2),
            "throttled": breaker.is_throttled(health, policy),
            "last_failure_at": health.last_failure_at}  # fmt: skip


def destination_stats(conn: Connection, *, workspace: str) -> dict[str, dict[str, Any]]:
    """Per destination: deliveries by status and the time of the last success."""
    t = store.deliveries
    counts = conn.execute(
        sa.select(t.c.destination, t.c.status, sa.func.count(), sa.func.max(t.c.completed_at))
        .where(t.c.workspace == workspace)
        .group_by(t.c.destination, t.c.status)
    )
    stats: dict[str, dict[str, Any]] = {}
    for destination, status, count, last in counts:
        entry = stats.setdefault(destination, {"deliveries": {}, "last_success_at": None})
        entry["deliveries"][status] = count
        if status == "succeeded":
            entry["last_success_at"] = last
    return stats
