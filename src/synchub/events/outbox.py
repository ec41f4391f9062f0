"""Writing canonical events to the outbox, inside the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.engine import Connection

from synchub.core.clock import isoformat_z
from synchub.core.ids import new_id
from synchub.events import store
from synchub.events.model import CATALOGUE

INTERNAL_COLUMNS = ("workspace", "version", "created_at", "updated_at")


def to_json_safe(value: Any) -> Any:
    """Dates and datetimes as RFC 3339 text; containers recursively; everything else as is."""
    if isinstance(value, datetime):
        return isoformat_z(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: to_json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_safe(v) for v in value]
    return value


@dataclass(frozen=True)
class EventContext:
    """What every event written in one unit of work shares."""

    workspace: str
    source: str  # CloudEvents source: /synchub/{workspace}/{connection}
    traceparent: str | None
    mapping_version: str | None
    app_version: str
    now: datetime


def emit_event(
    conn: Connection,
    ctx: EventContext,
    *,
    event_type: str,
    record: dict[str, Any],
    aggregate_id: str,
    changed: list[str],
    extra: dict[str, Any] | None = None,
) -> str:
    """Write one canonical event about a golden record; return its id."""
    kind = CATALOGUE[event_type]
    snapshot = {k: v for k, v in record.items() if k not in INTERNAL_COLUMNS}
    payload = to_json_safe({"object": snapshot, "changed": changed, **(extra or {})})
    event_id = new_id("event")
    store.insert_event(
        conn,
        {
            "id": event_id,
            "workspace": ctx.workspace,
            "type": event_type,
            "source": ctx.source,
            "subject": record["id"],
            "aggregate_type": "customer" if aggregate_id.startswith("cus_") else kind.entity,
            "aggregate_id": aggregate_id,
            "dataschema": kind.dataschema,
            "payload": payload,
            "traceparent": ctx.traceparent,
            "mapping_version": ctx.mapping_version,
            "app_version": ctx.app_version,
            "created_at": ctx.now,
        },
    )
    return event_id
