"""Match candidates: a new source record that may be an existing golden record, waiting for
a person. It has a golden record of its own meanwhile, so nothing it says is lost; confirming
merges that record into the target, rejecting keeps the two apart for good (ADR 0016)."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy.engine import Connection

from synchub.core.errors import ConflictError, NotFoundError
from synchub.events.outbox import EventContext
from synchub.mdm import match_store, store
from synchub.mdm.merge import merge_into
from synchub.mdm.model import OwnerOf
from synchub.mdm.records import Page

log = structlog.get_logger(__name__)

STATUSES = ("open", "confirmed", "rejected", "superseded", "unmerged")
SUMMARY_FIELDS = ("name", "email", "company_name", "phone", "country", "domain", "deleted")


def list_candidates(
    conn: Connection,
    *,
    workspace: str,
    status: str | None,
    limit: int,
    starting_after: str | None,
) -> Page:
    """A page of a workspace's match candidates, oldest first, optionally of one status."""
    rows, has_more = match_store.page_candidates(conn, workspace=workspace, status=status,
                                                 limit=limit,
                                                 starting_after=starting_after)  # fmt: skip
    return Page([_present(conn, row) for row in rows], has_more)


def get_candidate(conn: Connection, *, workspace: str, candidate_id: str) -> dict[str, Any]:
    """One match candidate; NotFoundError if absent or in another workspace."""
    row = match_store.get_candidate(conn, workspace=workspace, candidate_id=candidate_id)
    if row is None:
        raise NotFoundError(f"no match candidate {candidate_id}")
    return _present(conn, row)


def confirm(
    conn: Connection, ctx: EventContext, *, candidate_id: str, owner_of: OwnerOf, actor: str
) -> dict[str, Any]:
    """The source record is the target: merge its golden record into the target's."""
    row = _open(conn, ctx.workspace, candidate_id)
    merged = merge_into(conn, ctx, entity=row["entity"], survivor_id=row["target_id"],
                        merged_id=row["canonical_id"], owner_of=owner_of, rule="confirmed",
                        actor=actor, score=row["score"], candidate_id=candidate_id)  # fmt: skip
    _decide(conn, ctx, row, "confirmed", actor, merge_id=merged.merge_id)
    # The merged record is gone and the source record is placed: other proposals are moot.
    match_store.supersede_open(conn, workspace=ctx.workspace, canonical_ids=[row["canonical_id"]],
                               at=ctx.now, actor=actor)  # fmt: skip
    return get_candidate(conn, workspace=ctx.workspace, candidate_id=candidate_id)


def reject(conn: Connection, ctx: EventContext, *, candidate_id: str, actor: str) -> dict[str, Any]:
    """The source record is not the target: keep both, and never propose the pair again."""
    row = _open(conn, ctx.workspace, candidate_id)
    _decide(conn, ctx, row, "rejected", actor)
    return get_candidate(conn, workspace=ctx.workspace, candidate_id=candidate_id)


def _open(conn: Connection, workspace: str, candidate_id: str) -> dict[str, Any]:
    row = match_store.get_candidate(conn, workspace=workspace, candidate_id=candidate_id, lock=True)
    if row is None:
        raise NotFoundError(f"no match candidate {candidate_id}")
    if row["status"] != "open":
        raise ConflictError(f"match candidate {candidate_id} is already {row['status']}")
    return row


def _decide(
    conn: Connection,
    ctx: EventContext,
    row: dict[str, Any],
    status: str,
    actor: str,
    *,
    merge_id: str | None = None,
) -> None:
    match_store.update_candidate(conn, row["id"], {"status": status, "decided_at": ctx.now,
                                                   "decided_by": actor,
                                                   "merge_id": merge_id})  # fmt: skip
    log.info(f"match.{status}", candidate_id=row["id"], canonical_id=row["canonical_id"],
             target_id=row["target_id"], merge_id=merge_id)  # fmt: skip


def _present(conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "entity": row["entity"],
        "status": row["status"],
        "system": row["system"],
        "external_id": row["external_id"],
        "record_id": row["canonical_id"],
        "target_id": row["target_id"],
        "score": row["score"],
        "evidence": row["evidence"],
        "record": _summary(conn, row["entity"], row["canonical_id"]),
        "target": _summary(conn, row["entity"], row["target_id"]),
        "created_at": row["created_at"],
        "decided_at": row["decided_at"],
        "decided_by": row["decided_by"],
        "merge_id": row["merge_id"],
    }


def _summary(conn: Connection, entity: str, canonical_id: str) -> dict[str, Any] | None:
    record = store.get_golden(conn, entity, canonical_id)
    if record is None:
        return None
    return {"id": canonical_id, **{k: record[k] for k in SUMMARY_FIELDS if k in record}}
