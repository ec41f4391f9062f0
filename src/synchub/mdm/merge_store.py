"""Queries for merging and unmerging golden records: merge rows, crosswalk rows as they were,
and the moves an unmerge makes back (source records, match keys, field provenance)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from synchub.db import keyset_page
from synchub.mdm.match_store import match_keys, merges
from synchub.mdm.store import crosswalk, field_provenance, source_records


def get_merge(
    conn: Connection, *, workspace: str, merge_id: str, lock: bool = False
) -> dict[str, Any] | None:
    """One merge of a workspace (locked until commit on PostgreSQL with `lock`)."""
    query = sa.select(merges).where(merges.c.id == merge_id, merges.c.workspace == workspace)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def page_merges(
    conn: Connection,
    *,
    workspace: str,
    canonical_id: str | None,
    undone: bool | None,
    limit: int,
    starting_after: str | None,
) -> tuple[list[dict[str, Any]], bool]:
    """A page of a workspace's merges in id (time) order, optionally of one golden record
    (as survivor or merged) and only undone or only standing ones."""
    query = sa.select(merges).where(merges.c.workspace == workspace)
    if canonical_id is not None:
        query = query.where(
            sa.or_(merges.c.survivor_id == canonical_id, merges.c.merged_id == canonical_id)
        )
    if undone is not None:
        query = query.where(
            merges.c.unmerged_at.is_not(None) if undone else merges.c.unmerged_at.is_(None)
        )
    return keyset_page(conn, query, merges.c.id, limit=limit, starting_after=starting_after)


def standing_merge_of(conn: Connection, *, workspace: str, merged_id: str) -> dict[str, Any] | None:
    """The merge (not undone) that made `merged_id` a tombstone, if any."""
    query = (
        sa.select(merges)
        .where(
            merges.c.workspace == workspace,
            merges.c.merged_id == merged_id,
            merges.c.unmerged_at.is_(None),
        )
        .order_by(merges.c.merged_at.desc(), merges.c.id.desc())
        .limit(1)
    )
    row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def mark_unmerged(conn: Connection, merge_id: str, *, at: datetime, undo: dict[str, Any]) -> None:
    """Record that a merge was undone (what the unmerge did goes into `undo`)."""
    conn.execute(sa.update(merges).where(merges.c.id == merge_id).values(unmerged_at=at, undo=undo))


def link_row(
    conn: Connection, *, workspace: str, entity: str, system: str, external_id: str
) -> dict[str, Any] | None:
    """One crosswalk row as it stands."""
    query = sa.select(crosswalk).where(
        crosswalk.c.workspace == workspace,
        crosswalk.c.entity == entity,
        crosswalk.c.system == system,
        crosswalk.c.external_id == external_id,
    )
    row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def move_source_record_back(
    conn: Connection,
    *,
    workspace: str,
    source: tuple[str, str, str],
    from_id: str,
    to_id: str,
) -> bool:
    """Resolve one source record into `to_id` again if it still resolves into `from_id`.

    Its payload hash is cleared, so the next observation of it is applied in full to the
    record it belongs to again, even at the version already seen."""
    system, object_type, external_id = source
    s = source_records.c
    moved = conn.execute(
        sa.update(source_records)
        .where(
            s.workspace == workspace,
            s.system == system,
            s.object_type == object_type,
            s.external_id == external_id,
            s.canonical_id == from_id,
        )
        .values(canonical_id=to_id, payload_hash="")
    )
    return bool(moved.rowcount)


def move_source_keys_back(
    conn: Connection, *, workspace: str, system: str, external_id: str, from_id: str, to_id: str
) -> None:
    """Give one source record's match keys back to the record it belongs to."""
    conn.execute(
        sa.update(match_keys)
        .where(
            match_keys.c.workspace == workspace,
            match_keys.c.system == system,
            match_keys.c.external_id == external_id,
            match_keys.c.canonical_id == from_id,
        )
        .values(canonical_id=to_id)
    )


def forget_provenance(
    conn: Connection, *, workspace: str, entity: str, canonical_id: str, field: str
) -> None:
    """Drop the provenance of one golden field (its value came from nowhere before a merge)."""
    p = field_provenance.c
    conn.execute(
        sa.delete(field_provenance).where(
            p.workspace == workspace,
            p.entity == entity,
            p.canonical_id == canonical_id,
            p.field == field,
        )
    )
