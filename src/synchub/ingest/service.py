"""Ingest use cases: take an inbound event in durably, then normalise and resolve it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from synchub.core.clock import Clock
from synchub.core.errors import (
    MappingError,
    NotFoundError,
    RejectedError,
    TransientError,
    ValidationError,
)
from synchub.core.ids import new_id
from synchub.db import Database
from synchub.events.outbox import EventContext
from synchub.ingest import store
from synchub.mapping.model import Observation
from synchub.mdm.model import OwnerOf
from synchub.mdm.service import MissingReferenceError, SourceTieError, apply_observation
from synchub.register.model import DEFAULT_MATCH_THRESHOLDS, MatchThresholds

log = structlog.get_logger(__name__)

MAX_FETCH_ROUNDS = 6
MAX_PARKED_ATTEMPTS = 30
PARK_BASE_SECONDS = 0.5
PARK_CAP_SECONDS = 60.0


class SourceReader(Protocol):
    """Turns a source's raw events into observations, and re-reads objects when it can."""

    can_fetch: bool

    def read_event(self, body: bytes, *, observed_at: datetime) -> list[Observation]:
        """The observations in one raw event body (raises ValidationError or MappingError)."""
        ...

    def fetch(self, entity: str, external_id: str, *, observed_at: datetime) -> list[Observation]:
        """Read the current object now; observations are authoritative (win ties)."""
        ...


def is_known_event(conn: Any, *, workspace: str, source: str, external_id: str) -> bool:
    """Whether an event id from a source is already in the inbox (a read; no write lock)."""
    return store.exists(conn, workspace=workspace, source=source, external_id=external_id)


def record_inbound_event(
    conn: Any,
    *,
    workspace: str,
    source: str,
    external_id: str,
    event_type: str,
    body: bytes,
    headers: dict[str, str],
    traceparent: str | None,
    now: datetime,
) -> bool:
    """Store a verified inbound event unless already stored; True if it is new."""
    return store.insert_if_new(
        conn,
        {
            "id": new_id("inbox"),
            "workspace": workspace,
            "source": source,
            "external_id": external_id,
            "event_type": event_type,
            "body": body,
            "headers": headers,
            "traceparent": traceparent,
            "received_at": now,
            "status": "pending",
            "attempts": 0,
            "process_after": now,
        },
    )


@dataclass
class ProcessStats:
    """What one pass over the inbox did."""

    processed: int = 0
    parked: int = 0
    failed: int = 0
    events: list[str] = field(default_factory=list)
    stale: int = 0
    conflicts: int = 0


@dataclass(frozen=True)
class IngestContext:
    """Everything processing needs, passed in."""

    db: Database
    readers: dict[str, SourceReader]
    owner_of: OwnerOf
    clock: Clock
    app_version: str
    thresholds_of: Callable[[str], MatchThresholds] = lambda _entity: DEFAULT_MATCH_THRESHOLDS


def process_inbox(ctx: IngestContext, *, limit: int = 100) -> ProcessStats:
    """Normalise and resolve due inbox events, oldest first, each in its own transaction."""
    stats = ProcessStats()
    with ctx.db.read() as conn:
        due = store.claim_due(conn, now=ctx.clock.now(), limit=limit)
    for event in due:
        try:
            _process_event(ctx, event, stats)
        except Exception as exc:  # one poisonous event must not stop the inbox
            log.exception("inbox.crashed", inbox_id=event.id)
            _park(ctx, event, f"unexpected {type(exc).__name__} while processing", stats)
    return stats


def _process_event(ctx: IngestContext, event: store.InboxEvent, stats: ProcessStats) -> None:
    reader = ctx.readers.get(event.source)
    if reader is None:
        _fail(ctx, event, f"no reader for source {event.source!r}", stats)
        return
    fetched: list[Observation] = []
    last = ""
    for _ in range(MAX_FETCH_ROUNDS):
        try:
            _apply(ctx, event, reader, fetched, stats)
            return
        except MissingReferenceError as exc:
            last = str(exc)
            if not reader.can_fetch:
                _park(ctx, event, last, stats)
                return
            # What it refers to goes first, so the fetched record exists when the event applies.
            target, first = (exc.missing.entity, exc.missing.external_id), True
        except SourceTieError as exc:
            last = str(exc)
            target, first = (exc.entity, exc.external_id), False
        except (ValidationError, MappingError) as exc:
            _fail(ctx, event, str(exc), stats)
            return
        try:
            got = _fetch(ctx, reader, *target)
        except (TransientError, NotFoundError, RejectedError) as exc:
            _park(ctx, event, f"{last}; could not fetch it: {exc}", stats)
            return
        except MappingError as exc:
            _fail(ctx, event, f"the fetched {target[0]} does not map: {exc}", stats)
            return
        fetched = [*got, *fetched] if first else [*fetched, *got]
    _park(ctx, event, f"gave up after {MAX_FETCH_ROUNDS} fetch rounds: {last}", stats)


def _fetch(
    ctx: IngestContext, reader: SourceReader, entity: str, external_id: str
) -> list[Observation]:
    log.info("ingest.fetch", entity=entity, external_id=external_id)
    return reader.fetch(entity, external_id, observed_at=ctx.clock.now())


def _apply(
    ctx: IngestContext,
    event: store.InboxEvent,
    reader: SourceReader,
    fetched: list[Observation],
    stats: ProcessStats,
) -> None:
    now = ctx.clock.now()
    observations = reader.read_event(event.body, observed_at=now)
    with ctx.db.write() as conn:
        if not store.lock_if_due(conn, event.id):
            return  # another worker took it
        mapping_version = observations[-1].mapping_version if observations else None
        ectx = EventContext(
            workspace=event.workspace,
            source=f"/synchub/{event.workspace}/{event.source}",
            traceparent=event.traceparent,
            mapping_version=mapping_version,
            app_version=ctx.app_version,
            now=now,
        )
        emitted: list[str] = []
        for obs in fetched:
            emitted += _apply_one(conn, obs, ectx, ctx, authoritative=True, stats=stats)
        superseded = {(f.entity, f.external_id) for f in fetched}
        for obs in observations:
            if (obs.entity, obs.external_id) in superseded:
                continue  # we just read the current object; it supersedes this event's copy
            emitted += _apply_one(
                conn, obs, ectx, ctx, authoritative=False, stats=stats, break_ties=reader.can_fetch
            )
        status = "processed" if observations else "ignored"
        store.mark(
            conn,
            event.id,
            status=status,
            processed_at=now,
            attempts=event.attempts + 1,
            last_error=None if observations else "no mapped object in this event",
        )
    stats.processed += 1
    stats.events += emitted
    log.info("inbox.processed", inbox_id=event.id, source=event.source, events=len(emitted))


def _apply_one(
    conn: Any,
    obs: Observation,
    ectx: EventContext,
    ctx: IngestContext,
    *,
    authoritative: bool,
    stats: ProcessStats,
    break_ties: bool = False,
) -> list[str]:
    outcome = apply_observation(
        conn, obs, ectx, owner_of=ctx.owner_of, authoritative=authoritative,
        break_ties=break_ties, thresholds=ctx.thresholds_of(obs.entity),
    )  # fmt: skip
    stats.stale += outcome.stale
    stats.conflicts += outcome.conflicts
    if outcome.stale or outcome.regressions:
        log.info(
            "mdm.stale_ignored",
            entity=obs.entity,
            canonical_id=outcome.canonical_id,
            source=obs.system,
            regressions=outcome.regressions,
        )
    return outcome.events


def _park(ctx: IngestContext, event: store.InboxEvent, reason: str, stats: ProcessStats) -> None:
    now = ctx.clock.now()
    attempts = event.attempts + 1
    if attempts >= MAX_PARKED_ATTEMPTS:
        _fail(ctx, event, f"parked too long: {reason}", stats)
        return
    delay = min(PARK_CAP_SECONDS, PARK_BASE_SECONDS * 2 ** min(attempts, 20))
    with ctx.db.write() as conn:
        store.mark(
            conn,
            event.id,
            status="parked",
            attempts=attempts,
            last_error=reason,
            process_after=now + timedelta(seconds=delay),
        )
    stats.parked += 1
    log.info("inbox.parked", inbox_id=event.id, reason=reason, attempts=attempts)


def _fail(ctx: IngestContext, event: store.InboxEvent, reason: str, stats: ProcessStats) -> None:
    with ctx.db.write() as conn:
        store.mark(
            conn,
            event.id,
            status="failed",
            attempts=event.attempts + 1,
            last_error=reason,
            processed_at=ctx.clock.now(),
        )
    stats.failed += 1
    log.warning("inbox.failed", inbox_id=event.id, source=event.source, reason=reason)
