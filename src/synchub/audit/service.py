"""Recording and reading the audit log."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from synchub.audit import store
from synchub.core.ids import new_id
from synchub.mdm.model import canonical_json


def _digest(prev_hash: str, entry: dict[str, Any]) -> str:
    body = {k: entry[k] for k in ("id", "at", "workspace", "actor", "action", "target",
                                  "outcome", "request_id")}  # fmt: skip
    return hashlib.sha256((prev_hash + canonical_json(body)).encode("utf-8")).hexdigest()


def record(
    conn: Connection,
    *,
    at: datetime,
    actor: str,
    action: str,
    outcome: str = "ok",
    workspace: str | None = None,
    target: str | None = None,
    request_id: str | None = None,
) -> str:
    """Append one entry (ids only, never payloads or secrets); returns its id."""
    store.lock_chain(conn)
    prev = store.last_hash(conn)
    entry = {"id": "aud_" + new_id("event").partition("_")[2], "at": at, "workspace": workspace,
             "actor": actor, "action": action, "target": target, "outcome": outcome,
             "request_id": request_id}  # fmt: skip
    entry["prev_hash"] = prev
    entry["hash"] = _digest(prev, entry)
    store.append(conn, entry)
    return str(entry["id"])


def verify_chain(conn: Connection) -> list[str]:
    """Entries whose hash does not follow from the one before (empty when intact)."""
    broken, prev = [], ""
    for entry in store.all_in_order(conn):
        if entry["prev_hash"] != prev or _digest(prev, entry) != entry["hash"]:
            broken.append(entry["id"])
        prev = entry["hash"]
    return broken


def entries(
    conn: Connection,
    *,
    workspace: str | None,
    limit: int,
    starting_after: str | None,
    action: str | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """A page of entries, oldest first."""
    rows, more = store.page(conn, workspace=workspace, limit=limit,
                            starting_after=starting_after, action=action)  # fmt: skip
    return [{k: v for k, v in r.items() if k not in ("prev_hash",)} for r in rows], more
