"""Recording and reading the audit log."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from synchub.audit import store
from synchub.core.ids import new_id
from synchub.mdm.model import canonical_json


def chain_key(kek: bytes) -> bytes:
    """The key that seals the audit chain, derived from the key-encryption key."""
    return hmac.new(kek, b"synchub audit chain v1", hashlib.sha256).digest()


def _digest(key: bytes, prev_hash: str, entry: dict[str, Any]) -> str:
    body = {k: entry[k] for k in ("id", "at", "workspace", "actor", "action", "target",
                                  "outcome", "request_id")}  # fmt: skip
    message = (prev_hash + canonical_json(body)).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


class ChainHead:
    """The hash this process last appended: a hint that spares reading the head, never trusted.

    The append it enables checks inside the database that the hint is still the head, so a
    stale hint (another process wrote, or our transaction rolled back) costs only a read.
    """

    def __init__(self) -> None:
        self.hash: str | None = None


def record(
    conn: Connection,
    *,
    key: bytes,
    at: datetime,
    actor: str,
    action: str,
    outcome: str = "ok",
    workspace: str | None = None,
    target: str | None = None,
    request_id: str | None = None,
    head: ChainHead | None = None,
) -> str:
    """Append one entry (ids only, never payloads or secrets); returns its id.

    With a `head` hint, the entry is chained to the remembered hash if that is still the
    newest (one statement); otherwise, or without a hint, the head is read first.
    """
    store.lock_chain(conn)
    entry: dict[str, Any] = {
             "id": "aud_" + new_id("event").partition("_")[2], "at": at, "workspace": workspace,
             "actor": actor, "action": action, "target": target, "outcome": outcome,
             "request_id": request_id}  # fmt: skip
    if head is not None and head.hash is not None:
        _chain(key, head.hash, entry)
        if store.append_after_head(conn, entry):
            head.hash = str(entry["hash"])
            return str(entry["id"])
    _chain(key, store.last_hash(conn), entry)
    store.append(conn, entry)
    if head is not None:
        head.hash = str(entry["hash"])
    return str(entry["id"])


def _chain(key: bytes, prev: str, entry: dict[str, Any]) -> None:
    entry["prev_hash"] = prev
    entry["hash"] = _digest(key, prev, entry)


def verify_chain(conn: Connection, *, key: bytes) -> list[str]:
    """Entries whose keyed hash does not follow from the one before (empty when intact).

    Rewriting entries needs the key; removing the newest ones is only visible against a head
    hash kept elsewhere (`head_hash`, printed by `synchub audit`).
    """
    broken, prev = [], ""
    for entry in store.all_in_order(conn):
        if entry["prev_hash"] != prev or _digest(key, prev, entry) != entry["hash"]:
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
    return [{k: v for k, v in r.items() if k not in ("prev_hash", "seq")} for r in rows], more


def head_hash(conn: Connection) -> str:
    """The newest entry's hash: record it outside the database to detect truncation."""
    return store.last_hash(conn)
