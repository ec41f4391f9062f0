"""Merging one golden record into another (a confirmed match), recorded with what it takes
to undo it.

The merged record's source records move to the survivor (crosswalk relinked with history,
snapshots and match keys follow), its field values enter the survivor under survivorship
(the owner's value wins; a disagreeing non-owner becomes a conflict), records that refer to
it refer to the survivor, and it stays behind as a deleted tombstone. Canonical events go
through the outbox in the caller's transaction: `customer.updated` for the survivor
(`merged_from`), events for every moved dependant, `customer.deleted` for the merged record
(`merged_into`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.engine import Connection

from synchub.core.entities import derive_billing_status, field_names
from synchub.core.errors import ConflictError, NotFoundError
from synchub.core.ids import new_id
from synchub.events.model import CATALOGUE
from synchub.events.outbox import EventContext, emit_event, to_json_safe
from synchub.mdm import links, match_store, store
from synchub.mdm.changes import emit_changes
from synchub.mdm.model import Conflict, OwnerOf, Provenance, survive

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Merged:
    """What a merge did."""

    merge_id: str
    survivor_id: str
    merged_id: str
    changed: list[str]
    conflicts: int
    events: list[str]


@dataclass
class _Survived:
    changes: dict[str, Any]
    provenance: list[dict[str, Any]]
    conflicts: list[Conflict]


def merge_into(
    conn: Connection,
    ctx: EventContext,
    *,
    entity: str,
    survivor_id: str,
    merged_id: str,
    owner_of: OwnerOf,
    rule: str,
    actor: str,
    score: float | None = None,
    candidate_id: str | None = None,
) -> Merged:
    """Merge `merged_id` into `survivor_id` (ConflictError when either is gone, or when both
    hold an id from one system: a source's own distinct records stay distinct)."""
    if survivor_id == merged_id:
        raise ConflictError(f"{entity} {merged_id} cannot be merged into itself")
    sources = _lock_sources(conn, ctx.workspace, survivor_id, merged_id)
    survivor = _live(conn, entity, ctx.workspace, survivor_id)
    merged = _live(conn, entity, ctx.workspace, merged_id)
    _refuse_two_ids_per_system(conn, ctx.workspace, survivor_id, sources)
    for source in sources:
        links.relink(conn, workspace=ctx.workspace, entity=entity, system=source["system"],
                     external_id=source["external_id"], to_id=survivor_id, rule=rule, at=ctx.now,
                     score=score, actor=actor)  # fmt: skip
    match_store.move_source_records(
        conn, workspace=ctx.workspace, from_id=merged_id, to_id=survivor_id
    )
    match_store.move_keys(conn, workspace=ctx.workspace, from_id=merged_id, to_id=survivor_id)
    survived = _survive(conn, ctx, entity, survivor, merged, owner_of)
    dependants = _repoint(conn, ctx, entity, merged_id, survivor_id)
    if entity == "customer" and any(e == "subscription" for e, _, _ in dependants):
        status = derive_billing_status(store.subscription_statuses(conn, customer_id=survivor_id))
        if status != survivor.get("billing_status"):
            survived.changes["billing_status"] = status
    undo = _undo(conn, ctx, entity, survivor, survived, sources, dependants)
    _record_conflicts(conn, ctx, entity, survivor_id, survived.conflicts)
    events = _write(conn, ctx, entity, survivor, survived, merged_id)
    for other, ref, before in dependants:
        after = store.get_golden(conn, other, before["id"]) or {}
        events += emit_changes(conn, ctx, other, before, after, [ref])
    events += _tombstone(conn, ctx, entity, merged_id, survivor_id)
    merge_id = "mrg_" + new_id("message").partition("_")[2]
    match_store.insert_merge(
        conn,
        {"id": merge_id, "workspace": ctx.workspace, "entity": entity,
         "survivor_id": survivor_id, "merged_id": merged_id, "rule": rule,
         "candidate_id": candidate_id, "actor": actor, "undo": to_json_safe(undo),
         "merged_at": ctx.now},
    )  # fmt: skip
    log.info("mdm.merged", merge_id=merge_id, survivor_id=survivor_id, merged_id=merged_id,
             moved_sources=len(sources), moved_dependants=len(dependants))  # fmt: skip
    return Merged(merge_id, survivor_id, merged_id, sorted(survived.changes),
                  len(survived.conflicts), events)  # fmt: skip


def _lock_sources(
    conn: Connection, workspace: str, survivor_id: str, merged_id: str
) -> list[dict[str, Any]]:
    """Hold the source-record locks of both records (in one order, so two merges never
    deadlock) so no observation changes them mid-merge; the merged record's sources."""
    both = {
        cid: match_store.source_records_of(conn, workspace=workspace, canonical_id=cid)
        for cid in (survivor_id, merged_id)
    }
    keys = sorted((s["system"], s["object_type"], s["external_id"]) for rows in both.values()
                  for s in rows)  # fmt: skip
    for system, object_type, external_id in keys:
        store.lock_source_record(conn, workspace=workspace, system=system,
                                 object_type=object_type, external_id=external_id)  # fmt: skip
    return match_store.source_records_of(conn, workspace=workspace, canonical_id=merged_id)


def _live(conn: Connection, entity: str, workspace: str, canonical_id: str) -> dict[str, Any]:
    record = store.get_golden_in(conn, entity, workspace=workspace, canonical_id=canonical_id)
    if record is None:
        raise NotFoundError(f"no {entity} {canonical_id}")
    if record.get("deleted"):
        raise ConflictError(f"{entity} {canonical_id} is deleted (or merged already)")
    return record


def _refuse_two_ids_per_system(
    conn: Connection, workspace: str, survivor_id: str, sources: list[dict[str, Any]]
) -> None:
    held = store.external_ids(conn, workspace=workspace, canonical_id=survivor_id)
    for source in sources:
        if source["system"] in held:
            raise ConflictError(
                f"{survivor_id} already holds {source['system']} id {held[source['system']]}; "
                f"{source['system']} keeps {source['external_id']} as a different record"
            )


def _survive(
    conn: Connection,
    ctx: EventContext,
    entity: str,
    survivor: dict[str, Any],
    merged: dict[str, Any],
    owner_of: OwnerOf,
) -> _Survived:
    """The merged record's values, field by field, as if its sources had said them again."""
    rows = store.provenance_of(
        conn, workspace=ctx.workspace, entity=entity, canonical_id=survivor["id"]
    )
    provenance = {f: Provenance(r["system"], r["source_version"]) for f, r in rows.items()}
    theirs = store.provenance_of(
        conn, workspace=ctx.workspace, entity=entity, canonical_id=merged["id"]
    )
    current, result = dict(survivor), _Survived({}, [], [])
    for name in field_names(entity):
        row, value = theirs.get(name), merged.get(name)
        if row is None or value is None:
            continue  # a derived field, or nothing to offer
        decision = survive(entity, current, {name: value}, source=row["system"],
                           source_version=row["source_version"], provenance=provenance,
                           owner_of=owner_of)  # fmt: skip
        result.conflicts += decision.conflicts
        if name in decision.changes:
            current[name] = result.changes[name] = value
            provenance[name] = Provenance(row["system"], row["source_version"])
            result.provenance.append({**row, "canonical_id": survivor["id"]})
    return result


def _repoint(
    conn: Connection, ctx: EventContext, entity: str, merged_id: str, survivor_id: str
) -> list[tuple[str, str, dict[str, Any]]]:
    """Make records that refer to the merged record refer to the survivor; (entity, field,
    record before) of each."""
    moved = []
    for other, ref, record_id in match_store.referring(conn, entity=entity, canonical_id=merged_id):
        before = store.get_golden(conn, other, record_id) or {}
        store.update_golden(conn, other, record_id, {ref: survivor_id, "updated_at": ctx.now})
        moved.append((other, ref, before))
    return moved


def _record_conflicts(
    conn: Connection, ctx: EventContext, entity: str, canonical_id: str, found: list[Conflict]
) -> None:
    for conflict in found:
        store.record_conflict(
            conn,
            {"workspace": ctx.workspace, "entity": entity, "canonical_id": canonical_id,
             "field": conflict.field, "owner": conflict.owner,
             "owner_value": to_json_safe(conflict.owner_value),
             "other_system": conflict.other_system,
             "other_value": to_json_safe(conflict.other_value), "observed_at": ctx.now},
        )  # fmt: skip


def _undo(
    conn: Connection,
    ctx: EventContext,
    entity: str,
    survivor: dict[str, Any],
    survived: _Survived,
    sources: list[dict[str, Any]],
    dependants: list[tuple[str, str, dict[str, Any]]],
) -> dict[str, Any]:
    """What an unmerge needs: the survivor's values and provenance before, what moved."""
    rows = store.provenance_of(
        conn, workspace=ctx.workspace, entity=entity, canonical_id=survivor["id"]
    )
    return {
        "fields": {name: survivor.get(name) for name in survived.changes},
        "provenance": {name: rows.get(name) for name in survived.changes},
        "sources": [[s["system"], s["object_type"], s["external_id"]] for s in sources],
        "dependants": [[other, ref, before["id"]] for other, ref, before in dependants],
    }


def _write(
    conn: Connection,
    ctx: EventContext,
    entity: str,
    survivor: dict[str, Any],
    survived: _Survived,
    merged_id: str,
) -> list[str]:
    """Apply the survivor's changes and announce the merge."""
    if survived.changes:
        store.update_golden(
            conn, entity, survivor["id"], {**survived.changes, "updated_at": ctx.now}
        )
    store.record_provenance(conn, survived.provenance)
    event_type = f"{entity}.updated"
    if event_type not in CATALOGUE:
        return []
    after = store.get_golden(conn, entity, survivor["id"]) or {}
    emit_event(conn, ctx, event_type=event_type, record=after, aggregate_id=survivor["id"],
               changed=sorted(survived.changes), extra={"merged_from": merged_id})  # fmt: skip
    return [event_type]


def _tombstone(
    conn: Connection, ctx: EventContext, entity: str, merged_id: str, survivor_id: str
) -> list[str]:
    store.update_golden(conn, entity, merged_id, {"deleted": True, "updated_at": ctx.now})
    event_type = f"{entity}.deleted"
    if event_type not in CATALOGUE:
        return []
    after = store.get_golden(conn, entity, merged_id) or {}
    emit_event(conn, ctx, event_type=event_type, record=after, aggregate_id=merged_id,
               changed=["deleted"], extra={"merged_into": survivor_id})  # fmt: skip
    return [event_type]
