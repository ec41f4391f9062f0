"""Tables and queries for matching and merging: match keys, match candidates, crosswalk
history and merges, and the moves a merge makes to the crosswalk and source snapshots."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from synchub.core.entities import ENTITIES, Kind
from synchub.db import UtcDateTime, keyset_page, metadata
from synchub.mdm.store import GOLDEN, crosswalk, source_records

# One row per key of each source record: deterministic keys (email, tax_id, product_id)
# and blocking keys (name, domain, phone, postcode). Looking a key up is an index seek.
match_keys = sa.Table(
    "match_keys",
    metadata,
    sa.Column("workspace", sa.String(40), nullable=False),
    sa.Column("entity", sa.String(30), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("value", sa.String(320), nullable=False),
    sa.Column("system", sa.String(40), nullable=False),
    sa.Column("external_id", sa.String(255), nullable=False),
    sa.Column("canonical_id", sa.String(40), nullable=False, index=True),
    sa.PrimaryKeyConstraint("workspace", "entity", "kind", "value", "system", "external_id"),
    sa.Index("ix_match_keys_source", "workspace", "system", "external_id"),
)

# A source record that may be an existing golden record: it has a golden record of its own
# (canonical_id) until a person confirms (merge into target_id) or rejects. One row per
# (source record, target) ever: a decided pair is never proposed again.
match_candidates = sa.Table(
    "match_candidates",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("workspace", sa.String(40), nullable=False),
    sa.Column("entity", sa.String(30), nullable=False),
    sa.Column("system", sa.String(40), nullable=False),
    sa.Column("external_id", sa.String(255), nullable=False),
    sa.Column("canonical_id", sa.String(40), nullable=False, index=True),
    sa.Column("target_id", sa.String(40), nullable=False, index=True),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("evidence", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # open|confirmed|rejected|superseded
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("decided_at", UtcDateTime),
    sa.Column("decided_by", sa.String(120)),
    sa.Column("merge_id", sa.String(40)),
    sa.UniqueConstraint(
        "workspace", "entity", "system", "external_id", "target_id", name="uq_match_candidates_pair"
    ),
    sa.Index("ix_match_candidates_workspace_status", "workspace", "status", "id"),
)

# Every change to the crosswalk: linked, relinked (moved to another golden record), unlinked.
crosswalk_history = sa.Table(
    "crosswalk_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workspace", sa.String(40), nullable=False),
    sa.Column("entity", sa.String(30), nullable=False),
    sa.Column("system", sa.String(40), nullable=False),
    sa.Column("external_id", sa.String(255), nullable=False),
    sa.Column("action", sa.String(20), nullable=False),
    sa.Column("canonical_id", sa.String(40), nullable=False, index=True),
    sa.Column("previous_id", sa.String(40)),
    sa.Column("rule", sa.String(80), nullable=False),
    sa.Column("score", sa.Float),
    sa.Column("actor", sa.String(120), nullable=False),
    sa.Column("changed_at", UtcDateTime, nullable=False),
    sa.Index("ix_crosswalk_history_source", "workspace", "entity", "system", "external_id"),
)

# One golden record merged into another, with what an unmerge needs to put things back.
merges = sa.Table(
    "merges",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("workspace", sa.String(40), nullable=False),
    sa.Column("entity", sa.String(30), nullable=False),
    sa.Column("survivor_id", sa.String(40), nullable=False, index=True),
    sa.Column("merged_id", sa.String(40), nullable=False, index=True),
    sa.Column("rule", sa.String(40), nullable=False),
    sa.Column("candidate_id", sa.String(40)),
    sa.Column("actor", sa.String(120), nullable=False),
    sa.Column("undo", sa.JSON, nullable=False),
    sa.Column("merged_at", UtcDateTime, nullable=False),
    sa.Column("unmerged_at", UtcDateTime),
)


# -- keys ------------------------------------------------------------------------------------


def replace_keys(
    conn: Connection,
    *,
    workspace: str,
    entity: str,
    system: str,
    external_id: str,
    canonical_id: str,
    keys: list[tuple[str, str]],
) -> None:
    """Make a source record's keys exactly these."""
    source = (
        match_keys.c.workspace == workspace,
        match_keys.c.entity == entity,
        match_keys.c.system == system,
        match_keys.c.external_id == external_id,
    )
    conn.execute(sa.delete(match_keys).where(*source))
    rows = [
        {"workspace": workspace, "entity": entity, "kind": kind, "value": value[:320],
         "system": system, "external_id": external_id, "canonical_id": canonical_id}
        for kind, value in dict.fromkeys(keys)
    ]  # fmt: skip
    if rows:
        conn.execute(sa.insert(match_keys), rows)


def golden_with_key(
    conn: Connection, *, workspace: str, entity: str, kind: str, value: str, limit: int = 20
) -> list[str]:
    """Live golden records holding a deterministic key, oldest first.

    Emails are also found on the golden records themselves, so records stored before match
    keys existed still match.
    """
    golden = GOLDEN[entity]
    keyed = sa.select(match_keys.c.canonical_id).where(
        match_keys.c.workspace == workspace,
        match_keys.c.entity == entity,
        match_keys.c.kind == kind,
        match_keys.c.value == value,
    )
    holds: sa.ColumnElement[bool] = golden.c.id.in_(keyed)
    if kind == "email" and "email" in golden.c:
        holds = sa.or_(holds, golden.c.email == value)
    query = (
        sa.select(golden.c.id)
        .where(golden.c.workspace == workspace, golden.c.deleted.is_(False), holds)
        .order_by(golden.c.created_at, golden.c.id)
        .limit(limit)
    )
    return list(conn.execute(query).scalars())


def blocked_candidates(
    conn: Connection,
    *,
    workspace: str,
    entity: str,
    keys: list[tuple[str, str]],
    exclude_system: str,
    limit: int,
) -> list[str]:
    """Live golden records sharing any key, most shared keys first, leaving out those that
    already hold an id from `exclude_system` (a source's own records are distinct)."""
    if not keys:
        return []
    golden = GOLDEN[entity]
    taken = (
        sa.select(crosswalk.c.canonical_id)
        .where(
            crosswalk.c.workspace == workspace,
            crosswalk.c.canonical_id == match_keys.c.canonical_id,
            crosswalk.c.system == exclude_system,
        )
        .exists()
    )
    any_key = sa.or_(*[sa.and_(match_keys.c.kind == k, match_keys.c.value == v) for k, v in keys])
    hits = sa.func.count().label("hits")
    query = (
        sa.select(match_keys.c.canonical_id, hits)
        .join(golden, golden.c.id == match_keys.c.canonical_id)
        .where(
            match_keys.c.workspace == workspace,
            match_keys.c.entity == entity,
            any_key,
            golden.c.deleted.is_(False),
            ~taken,
        )
        .group_by(match_keys.c.canonical_id)
        .order_by(hits.desc(), match_keys.c.canonical_id)
        .limit(limit)
    )
    return [row[0] for row in conn.execute(query)]


def move_keys(conn: Connection, *, workspace: str, from_id: str, to_id: str) -> None:
    """Give one golden record's keys to another."""
    conn.execute(
        sa.update(match_keys)
        .where(match_keys.c.workspace == workspace, match_keys.c.canonical_id == from_id)
        .values(canonical_id=to_id)
    )


# -- candidates ------------------------------------------------------------------------------


def insert_candidate(conn: Connection, values: dict[str, Any]) -> None:
    """Queue a match candidate."""
    conn.execute(sa.insert(match_candidates).values(**values))


def is_pair_known(
    conn: Connection,
    *,
    workspace: str,
    entity: str,
    system: str,
    external_id: str,
    canonical_id: str,
    target_id: str,
) -> bool:
    """Whether this source record was proposed for this target before, or a person already
    rejected these two golden records as one (either way round)."""
    c = match_candidates.c
    same_source = sa.and_(
        c.system == system, c.external_id == external_id, c.target_id == target_id
    )
    rejected = sa.and_(
        c.status == "rejected",
        sa.or_(
            sa.and_(c.canonical_id == canonical_id, c.target_id == target_id),
            sa.and_(c.canonical_id == target_id, c.target_id == canonical_id),
        ),
    )
    query = sa.select(c.id).where(
        c.workspace == workspace, c.entity == entity, sa.or_(same_source, rejected)
    )
    return conn.execute(query.limit(1)).first() is not None


def get_candidate(
    conn: Connection, *, workspace: str, candidate_id: str, lock: bool = False
) -> dict[str, Any] | None:
    """One match candidate of a workspace (locked until commit on PostgreSQL with `lock`)."""
    query = sa.select(match_candidates).where(
        match_candidates.c.id == candidate_id, match_candidates.c.workspace == workspace
    )
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def page_candidates(
    conn: Connection, *, workspace: str, status: str | None, limit: int, starting_after: str | None
) -> tuple[list[dict[str, Any]], bool]:
    """A page of a workspace's match candidates in id (creation) order."""
    query = sa.select(match_candidates).where(match_candidates.c.workspace == workspace)
    if status is not None:
        query = query.where(match_candidates.c.status == status)
    return keyset_page(
        conn, query, match_candidates.c.id, limit=limit, starting_after=starting_after
    )


def update_candidate(conn: Connection, candidate_id: str, values: dict[str, Any]) -> None:
    """Change a match candidate."""
    conn.execute(
        sa.update(match_candidates).where(match_candidates.c.id == candidate_id).values(**values)
    )


def supersede_open(
    conn: Connection, *, workspace: str, canonical_ids: list[str], at: datetime, actor: str
) -> list[str]:
    """Close the open candidates that involve any of these golden records; their ids."""
    c = match_candidates.c
    involved = sa.or_(c.canonical_id.in_(canonical_ids), c.target_id.in_(canonical_ids))
    where = (c.workspace == workspace, c.status == "open", involved)
    ids = list(conn.execute(sa.select(c.id).where(*where)).scalars())
    if ids:
        conn.execute(
            sa.update(match_candidates)
            .where(c.id.in_(ids))
            .values(status="superseded", decided_at=at, decided_by=actor)
        )
    return ids


# -- crosswalk history and moves -------------------------------------------------------------


def record_history(conn: Connection, values: dict[str, Any]) -> None:
    """Append one change to the crosswalk history."""
    conn.execute(sa.insert(crosswalk_history).values(**values))


def history(
    conn: Connection,
    *,
    workspace: str,
    entity: str,
    canonical_id: str | None = None,
    system: str | None = None,
    external_id: str | None = None,
) -> list[dict[str, Any]]:
    """Crosswalk changes of a golden record (to or from it) or of one system id, in order."""
    h = crosswalk_history.c
    query = sa.select(crosswalk_history).where(h.workspace == workspace, h.entity == entity)
    if canonical_id is not None:
        query = query.where(sa.or_(h.canonical_id == canonical_id, h.previous_id == canonical_id))
    if system is not None and external_id is not None:
        query = query.where(h.system == system, h.external_id == external_id)
    return [dict(r) for r in conn.execute(query.order_by(h.id)).mappings()]


def move_link(
    conn: Connection,
    *,
    workspace: str,
    entity: str,
    system: str,
    external_id: str,
    to_id: str,
    reason: str,
    score: float | None,
    at: datetime,
) -> None:
    """Point an existing crosswalk link at another golden record."""
    conn.execute(
        sa.update(crosswalk)
        .where(
            crosswalk.c.workspace == workspace,
            crosswalk.c.entity == entity,
            crosswalk.c.system == system,
            crosswalk.c.external_id == external_id,
        )
        .values(canonical_id=to_id, reason=reason, score=score, linked_at=at)
    )


def source_records_of(
    conn: Connection, *, workspace: str, canonical_id: str
) -> list[dict[str, Any]]:
    """The source records (latest snapshots) resolved into one golden record."""
    s = source_records.c
    query = (
        sa.select(source_records)
        .where(s.workspace == workspace, s.canonical_id == canonical_id)
        .order_by(s.system, s.object_type, s.external_id)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def move_source_records(conn: Connection, *, workspace: str, from_id: str, to_id: str) -> None:
    """Resolve one golden record's source records into another."""
    conn.execute(
        sa.update(source_records)
        .where(source_records.c.workspace == workspace, source_records.c.canonical_id == from_id)
        .values(canonical_id=to_id)
    )


def referring(conn: Connection, *, entity: str, canonical_id: str) -> list[tuple[str, str, str]]:
    """(entity, field, id) of every golden record that refers to this one."""
    found = []
    for other, specs in ENTITIES.items():
        for spec in specs:
            if spec.kind is Kind.REF and spec.ref == entity:
                table = GOLDEN[other]
                query = sa.select(table.c.id).where(table.c[spec.name] == canonical_id)
                found += [(other, spec.name, rid) for rid in conn.execute(query).scalars()]
    return found


def insert_merge(conn: Connection, values: dict[str, Any]) -> None:
    """Record a merge."""
    conn.execute(sa.insert(merges).values(**values))


def merges_of(conn: Connection, *, workspace: str, survivor_id: str) -> list[dict[str, Any]]:
    """The merges into one golden record, oldest first."""
    query = (
        sa.select(merges)
        .where(merges.c.workspace == workspace, merges.c.survivor_id == survivor_id)
        .order_by(merges.c.merged_at, merges.c.id)
    )
    return [dict(r) for r in conn.execute(query).mappings()]
