"""Crosswalk links with their history: every link records the rule that made it and its
score, and every change (linked, relinked, unlinked) is kept with its time and actor."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from synchub.mdm import match_store, store

# Who changed the crosswalk when no person did: the hub's own resolve step.
HUB_ACTOR = "synchub"


def link(
    conn: Connection,
    *,
    workspace: str,
    entity: str,
    system: str,
    external_id: str,
    canonical_id: str,
    rule: str,
    at: datetime,
    score: float | None = None,
    actor: str = HUB_ACTOR,
) -> None:
    """Link a system id to a golden record (LinkConflictError if it belongs to another)."""
    created = store.link(conn, workspace=workspace, entity=entity, system=system,
                         external_id=external_id, canonical_id=canonical_id, reason=rule, at=at,
                         score=score)  # fmt: skip
    if created:
        match_store.record_history(
            conn,
            {"workspace": workspace, "entity": entity, "system": system,
             "external_id": external_id, "action": "linked", "canonical_id": canonical_id,
             "previous_id": None, "rule": rule, "score": score, "actor": actor,
             "changed_at": at},
        )  # fmt: skip


def relink(
    conn: Connection,
    *,
    workspace: str,
    entity: str,
    system: str,
    external_id: str,
    to_id: str,
    rule: str,
    at: datetime,
    score: float | None = None,
    actor: str = HUB_ACTOR,
) -> str | None:
    """Move a linked system id to another golden record; returns where it was (None if it
    was not linked, in which case nothing changes)."""
    previous = store.find_canonical_id(
        conn, workspace=workspace, entity=entity, system=system, external_id=external_id
    )
    if previous is None or previous == to_id:
        return previous
    match_store.move_link(conn, workspace=workspace, entity=entity, system=system,
                          external_id=external_id, to_id=to_id, reason=rule, score=score,
                          at=at)  # fmt: skip
    match_store.record_history(
        conn,
        {"workspace": workspace, "entity": entity, "system": system, "external_id": external_id,
         "action": "relinked", "canonical_id": to_id, "previous_id": previous, "rule": rule,
         "score": score, "actor": actor, "changed_at": at},
    )  # fmt: skip
    return previous


def history_of(
    conn: Connection,
    *,
    workspace: str,
    entity: str,
    canonical_id: str | None = None,
    system: str | None = None,
    external_id: str | None = None,
) -> list[dict[str, Any]]:
    """The crosswalk changes of a golden record, or of one system id, oldest first."""
    return match_store.history(conn, workspace=workspace, entity=entity,
                               canonical_id=canonical_id, system=system,
                               external_id=external_id)  # fmt: skip
