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
from datetime import date, datetime
from typing import Any

import structlog
from sqlalchemy.engine import Connection

from synchub.core.clock import to_utc
from synchub.core.entities import ENTITIES, Kind, derive_billing_status, field_names
from synchub.core.errors import ConflictError, FieldProblem, NotFoundError, ValidationError
from synchub.core.ids import new_id
from synchub.events.model import CATALOGUE
from synchub.events.outbox import EventContext, emit_event, to_json_safe
from synchub.mdm import links, match_store, merge_store, store
from synchub.mdm.changes import emit_changes
from synchub.mdm.model import Conflict, OwnerOf, Provenance, survive
from synchub.mdm.records import Page

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
    vendor_ids: tuple[str, frozenset[str]] | None = None,
) -> Merged:
    """Merge `merged_id` into `survivor_id` (ConflictError when either is gone, or when both
    hold an id from one system: a source's own distinct records stay distinct, unless that
    system merged them itself: `vendor_ids` = (system, the ids its merge involved))."""
    if survivor_id == merged_id:
        raise SelfMergeError(
            f"{entity} {merged_id} cannot be merged into itself",
            [FieldProblem("/merged_id", f"is {survivor_id} itself; name another {entity}")],
        )
    sources = _lock_sources(conn, ctx.workspace, survivor_id, merged_id)
    survivor = _live(conn, entity, ctx.workspace, survivor_id)
    merged = _live(conn, entity, ctx.workspace, merged_id)
    _refuse_two_ids_per_system(conn, ctx.workspace, survivor_id, sources, vendor_ids)
    moved_links = _links_before(conn, ctx.workspace, entity, sources)
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
    undo["links"] = moved_links
    undo["after"] = {name: to_json_safe(v) for name, v in survived.changes.items()}
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


def _links_before(
    conn: Connection, workspace: str, entity: str, sources: list[dict[str, Any]]
) -> list[list[Any]]:
    """The crosswalk rows a merge moves, as they were: [system, external_id, reason, score,
    linked_at], so an unmerge can put each back exactly."""
    rows = []
    for source in sources:
        row = merge_store.link_row(conn, workspace=workspace, entity=entity,
                                   system=source["system"],
                                   external_id=source["external_id"])  # fmt: skip
        if row is not None:
            rows.append([row["system"], row["external_id"], row["reason"], row["score"],
                         to_json_safe(row["linked_at"])])  # fmt: skip
    return rows


def _live(conn: Connection, entity: str, workspace: str, canonical_id: str) -> dict[str, Any]:
    record = store.get_golden_in(conn, entity, workspace=workspace, canonical_id=canonical_id)
    if record is None:
        raise NotFoundError(f"no {entity} {canonical_id}")
    if record.get("deleted"):
        raise ConflictError(f"{entity} {canonical_id} is deleted (or merged already)")
    return record


def _refuse_two_ids_per_system(
    conn: Connection,
    workspace: str,
    survivor_id: str,
    sources: list[dict[str, Any]],
    vendor_ids: tuple[str, frozenset[str]] | None = None,
) -> None:
    held = store.external_ids(conn, workspace=workspace, canonical_id=survivor_id)
    merging, ids = vendor_ids or ("", frozenset())
    for source in sources:
        if source["system"] == merging and {source["external_id"], held.get(merging)} <= ids:
            continue  # the vendor made its two records one (a source's own merge)
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


# -- unmerge ---------------------------------------------------------------------------------


# The status of a confirmed match candidate whose merge was undone.
UNMERGED = "unmerged"


class SelfMergeError(ValidationError):
    """A record merged into itself (422 naming `merged_id`)."""


class AlreadyUnmergedError(ConflictError):
    """The merge was undone before; an unmerge happens once."""

    code = "already_unmerged"


def unmerge(conn: Connection, ctx: EventContext, *, merge_id: str, actor: str) -> dict[str, Any]:
    """Undo one merge: the merged record lives again as it was, its source records, links,
    keys and dependants go back to it, and the survivor's fields that the merge changed
    return to their earlier values (ADR 0019).

    What arrived after the merge stays where it landed: a survivor field changed again since
    the merge keeps its later value, dependants created or moved since stay with the
    survivor, and a link or source record that has moved on since is left alone. Each is
    named in the result (`kept_fields`, `left`).
    """
    row = merge_store.get_merge(conn, workspace=ctx.workspace, merge_id=merge_id, lock=True)
    if row is None:
        raise NotFoundError(f"no merge {merge_id}")
    undo = dict(row["undo"])
    if row["unmerged_at"] is not None:
        done = undo.get("unmerged") or {}
        raise AlreadyUnmergedError(
            f"merge {merge_id} was undone already at {to_json_safe(row['unmerged_at'])}"
            + (f" by {done['actor']}" if done.get("actor") else "")
        )
    entity, survivor_id, merged_id = row["entity"], row["survivor_id"], row["merged_id"]
    _lock_sources(conn, ctx.workspace, survivor_id, merged_id)
    survivor = _survivor_still_live(conn, entity, ctx.workspace, survivor_id)
    restored = store.get_golden_in(conn, entity, workspace=ctx.workspace, canonical_id=merged_id)
    if restored is None or not restored.get("deleted"):
        raise ConflictError(f"{entity} {merged_id} is not a merged tombstone any more")
    left: list[str] = []
    moved_back = _move_sources_back(conn, ctx, entity, row, undo, actor, left)
    fields = _restore_fields(conn, ctx, entity, survivor, row, undo)
    dependants = _move_dependants_back(conn, ctx, survivor_id, merged_id, undo, left)
    store.update_golden(conn, entity, merged_id, {"deleted": False, "updated_at": ctx.now})
    if entity == "customer" and dependants:
        for cid in (survivor_id, merged_id):
            status = _rederive_billing(conn, cid)
            if status is not None and cid == survivor_id:
                fields.restored["billing_status"] = status
    events = _announce_unmerge(conn, ctx, entity, row, fields.restored, dependants)
    result = {
        "actor": actor,
        "at": to_json_safe(ctx.now),
        "restored_fields": sorted(fields.restored),
        "kept_fields": sorted(fields.kept),
        "moved_back": moved_back,
        "dependants_moved_back": [[e, r, b["id"]] for e, r, b in dependants],
        "left": left,
        "events": events,
    }
    merge_store.mark_unmerged(conn, merge_id, at=ctx.now, undo={**undo, "unmerged": result})
    if row["candidate_id"] is not None:
        # The confirmation it came from no longer stands: say so, keeping merge_id (history).
        match_store.update_candidate(conn, row["candidate_id"], {"status": UNMERGED})
    log.info("mdm.unmerged", merge_id=merge_id, survivor_id=survivor_id, restored_id=merged_id,
             moved_back=len(moved_back), kept=len(fields.kept), left=len(left))  # fmt: skip
    return get_merge(conn, workspace=ctx.workspace, merge_id=merge_id)


def _survivor_still_live(
    conn: Connection, entity: str, workspace: str, survivor_id: str
) -> dict[str, Any]:
    survivor = store.get_golden_in(conn, entity, workspace=workspace, canonical_id=survivor_id)
    if survivor is None:
        raise NotFoundError(f"no {entity} {survivor_id}")
    if survivor.get("deleted"):
        later = merge_store.standing_merge_of(conn, workspace=workspace, merged_id=survivor_id)
        hint = (
            f"; it was merged into {later['survivor_id']} by merge {later['id']}: "
            "unmerge that first"
            if later
            else ""
        )
        raise ConflictError(f"{entity} {survivor_id} is deleted{hint}")
    return survivor


def _rederive_billing(conn: Connection, customer_id: str) -> str | None:
    """Re-derive a customer's billing status from the subscriptions it has now (if any);
    the new status when it moved."""
    statuses = store.subscription_statuses(conn, customer_id=customer_id)
    current = (store.get_golden(conn, "customer", customer_id) or {}).get("billing_status")
    status = derive_billing_status(statuses) if statuses else current
    if status == current:
        return None
    store.update_golden(conn, "customer", customer_id, {"billing_status": status})
    return status


def _move_sources_back(
    conn: Connection,
    ctx: EventContext,
    entity: str,
    row: dict[str, Any],
    undo: dict[str, Any],
    actor: str,
    left: list[str],
) -> list[list[str]]:
    """The merged record's source records, links and keys go back to it, where they still
    are on the survivor; the links as they were before the merge (rule, score, time)."""
    survivor_id, merged_id = row["survivor_id"], row["merged_id"]
    before = {(s, x): (reason, score, at) for s, x, reason, score, at in undo.get("links", [])}
    moved = []
    for system, object_type, external_id in undo.get("sources", []):
        now_at = store.find_canonical_id(conn, workspace=ctx.workspace, entity=entity,
                                         system=system, external_id=external_id)  # fmt: skip
        if now_at != survivor_id:
            left.append(f"{system} {external_id} is linked to {now_at} now; left there")
            continue
        links.relink(conn, workspace=ctx.workspace, entity=entity, system=system,
                     external_id=external_id, to_id=merged_id, rule="unmerge", at=ctx.now,
                     actor=actor)  # fmt: skip
        if (system, external_id) in before:
            reason, score, at = before[(system, external_id)]
            # the row exactly as it was before the merge: rule, score and time of the link
            match_store.move_link(conn, workspace=ctx.workspace, entity=entity, system=system,
                                  external_id=external_id, to_id=merged_id, reason=reason,
                                  score=score, at=_parse_datetime(at))  # fmt: skip
        merge_store.move_source_record_back(conn, workspace=ctx.workspace,
                                            source=(system, object_type, external_id),
                                            from_id=survivor_id, to_id=merged_id)  # fmt: skip
        merge_store.move_source_keys_back(conn, workspace=ctx.workspace, system=system,
                                          external_id=external_id, from_id=survivor_id,
                                          to_id=merged_id)  # fmt: skip
        moved.append([system, external_id])
    return moved


@dataclass
class _Restored:
    restored: dict[str, Any]
    kept: list[str]


def _restore_fields(
    conn: Connection,
    ctx: EventContext,
    entity: str,
    survivor: dict[str, Any],
    row: dict[str, Any],
    undo: dict[str, Any],
) -> _Restored:
    """Each survivor field the merge changed takes its earlier value and provenance back,
    unless it changed again after the merge (then the later value stays)."""
    after = undo.get("after")  # absent on merges recorded before unmerge existed: restore all
    result = _Restored({}, [])
    for name, value in (undo.get("fields") or {}).items():
        if after is not None and to_json_safe(survivor.get(name)) != after.get(name):
            result.kept.append(name)
            continue
        result.restored[name] = _from_json(entity, name, value)
        prov = (undo.get("provenance") or {}).get(name)
        if prov is None:
            merge_store.forget_provenance(conn, workspace=ctx.workspace, entity=entity,
                                          canonical_id=survivor["id"], field=name)  # fmt: skip
        else:
            store.record_provenance(
                conn, [{**prov, "observed_at": _parse_datetime(prov["observed_at"])}]
            )
    if result.restored:
        store.update_golden(
            conn, entity, survivor["id"], {**result.restored, "updated_at": ctx.now}
        )
    return result


def _move_dependants_back(
    conn: Connection,
    ctx: EventContext,
    survivor_id: str,
    merged_id: str,
    undo: dict[str, Any],
    left: list[str],
) -> list[tuple[str, str, dict[str, Any]]]:
    moved = []
    for other, ref, record_id in undo.get("dependants", []):
        before = store.get_golden(conn, other, record_id)
        if before is None or before.get(ref) != survivor_id:
            where = None if before is None else before.get(ref)
            left.append(f"{other} {record_id} refers to {where} now; left there")
            continue
        store.update_golden(conn, other, record_id, {ref: merged_id, "updated_at": ctx.now})
        moved.append((other, ref, before))
    return moved


def _announce_unmerge(
    conn: Connection,
    ctx: EventContext,
    entity: str,
    row: dict[str, Any],
    restored_fields: dict[str, Any],
    dependants: list[tuple[str, str, dict[str, Any]]],
) -> list[str]:
    """`<entity>.created` for the record that lives again (`unmerged_from` the survivor),
    the dependants' events, then `<entity>.updated` for the survivor (`unmerged`)."""
    survivor_id, merged_id = row["survivor_id"], row["merged_id"]
    events: list[str] = []
    created, updated = f"{entity}.created", f"{entity}.updated"
    back = store.get_golden(conn, entity, merged_id) or {}
    if created in CATALOGUE:
        changed = [n for n in field_names(entity) if back.get(n) is not None]
        emit_event(conn, ctx, event_type=created, record=back, aggregate_id=merged_id,
                   changed=changed, extra={"unmerged_from": survivor_id,
                                           "merge_id": row["id"]})  # fmt: skip
        events.append(created)
    for other, ref, before in dependants:
        after = store.get_golden(conn, other, before["id"]) or {}
        events += emit_changes(conn, ctx, other, before, after, [ref])
    if updated in CATALOGUE:
        after = store.get_golden(conn, entity, survivor_id) or {}
        emit_event(conn, ctx, event_type=updated, record=after, aggregate_id=survivor_id,
                   changed=sorted(restored_fields), extra={"unmerged": merged_id,
                                                           "merge_id": row["id"]})  # fmt: skip
        events.append(updated)
    return events


def _parse_datetime(value: Any) -> Any:
    if isinstance(value, str):
        return to_utc(datetime.fromisoformat(value))
    return value


def _from_json(entity: str, name: str, value: Any) -> Any:
    """A golden field's value as stored in a merge's JSON, back in its column's type."""
    if not isinstance(value, str):
        return value
    kind = next((s.kind for s in ENTITIES[entity] if s.name == name), None)
    if kind is Kind.DATETIME:
        return to_utc(datetime.fromisoformat(value))
    if kind is Kind.DATE:
        return date.fromisoformat(value)
    return value


# -- reading merges --------------------------------------------------------------------------


def list_merges(
    conn: Connection,
    *,
    workspace: str,
    canonical_id: str | None,
    undone: bool | None,
    limit: int,
    starting_after: str | None,
) -> Page:
    """A page of a workspace's merges, oldest first."""
    rows, has_more = merge_store.page_merges(conn, workspace=workspace,
                                             canonical_id=canonical_id, undone=undone,
                                             limit=limit,
                                             starting_after=starting_after)  # fmt: skip
    return Page([_present(row) for row in rows], has_more)


def get_merge(conn: Connection, *, workspace: str, merge_id: str) -> dict[str, Any]:
    """One merge; NotFoundError if absent or in another workspace."""
    row = merge_store.get_merge(conn, workspace=workspace, merge_id=merge_id)
    if row is None:
        raise NotFoundError(f"no merge {merge_id}")
    return _present(row)


def _present(row: dict[str, Any]) -> dict[str, Any]:
    undo = row["undo"] or {}
    done = undo.get("unmerged")
    return {
        "id": row["id"],
        "object": "merge",
        "entity": row["entity"],
        "survivor_id": row["survivor_id"],
        "merged_id": row["merged_id"],
        "rule": row["rule"],
        "candidate_id": row["candidate_id"],
        "actor": row["actor"],
        "merged_at": row["merged_at"],
        "status": "undone" if row["unmerged_at"] is not None else "merged",
        "changed_fields": sorted(undo.get("fields") or {}),
        "moved_sources": [{"system": s, "external_id": x} for s, _, x in undo.get("sources", [])],
        "moved_dependants": [{"entity": e, "id": i} for e, _, i in undo.get("dependants", [])],
        "unmerged_at": row["unmerged_at"],
        "unmerged_by": done.get("actor") if done else None,
        "unmerge": None
        if not done
        else {
            "restored_fields": done["restored_fields"],
            "kept_fields": done["kept_fields"],
            "moved_back": [{"system": s, "external_id": x} for s, x in done["moved_back"]],
            "dependants_moved_back": [
                {"entity": e, "id": i} for e, _, i in done["dependants_moved_back"]
            ],
            "left": done["left"],
        },
    }


# -- vendor-side merges ----------------------------------------------------------------------

# The crosswalk rule of a vendor id that the vendor merged into another of its records: it
# still resolves to the golden record, but is no longer that record's id at the vendor
# (store.external_ids leaves it out, so deliveries go to the surviving vendor record).
MERGED_AWAY = store.MERGED_AWAY
VENDOR_MERGE = "vendor_merge"


@dataclass(frozen=True)
class VendorMerged:
    """What a vendor-side merge changed in synchub."""

    survivor_id: str | None  # the golden record the vendor's surviving record belongs to
    merge_ids: list[str]  # golden records merged into it (rule vendor_merge)
    relinked: list[str]  # vendor ids now resolving to the survivor
    refused: list[str]  # golden records that could not be merged, and why


def apply_vendor_merge(
    conn: Connection,
    ctx: EventContext,
    *,
    system: str,
    entity: str,
    primary_id: str,
    merged_ids: list[str],
    owner_of: OwnerOf,
    result_id: str | None = None,
    actor: str | None = None,
) -> VendorMerged:
    """A vendor merged `merged_ids` into `primary_id` (its record now `result_id`, when the
    vendor made a new one): the crosswalk follows, and never a new golden record is made.

    The golden record of the surviving vendor record survives (else that of the first known
    merged one); every other golden record involved is merged into it with rule
    `vendor_merge` (refused, and reported, where synchub keeps them apart: two ids from one
    other system). The merged vendor ids stay linked to the survivor as `merged_away`. A
    connector calls this from its own merge notification (HubSpot: `contact.merge`; an
    Intercom connector would call it from its contact merge webhook the same way).
    """
    actor = actor or system
    result_id = result_id or primary_id
    vendor_ids = list(dict.fromkeys([result_id, primary_id, *merged_ids]))
    golden = {vid: _follow(conn, ctx.workspace, entity, system, vid) for vid in vendor_ids}
    known = [g for g in (golden[vid] for vid in vendor_ids) if g is not None]
    if not known:
        log.info("mdm.vendor_merge_unknown", system=system, primary_id=primary_id)
        return VendorMerged(None, [], [], [])
    survivor_id = known[0]
    if golden[result_id] is None:
        links.link(conn, workspace=ctx.workspace, entity=entity, system=system,
                   external_id=result_id, canonical_id=survivor_id, rule=VENDOR_MERGE,
                   at=ctx.now, actor=actor)  # fmt: skip
    merge_ids, refused = [], []
    for other in dict.fromkeys(k for k in known if k != survivor_id):
        try:  # in a savepoint: a refusal leaves nothing of this merge behind, whatever it wrote
            with conn.begin_nested():
                merged = merge_into(conn, ctx, entity=entity, survivor_id=survivor_id,
                                    merged_id=other, owner_of=owner_of, rule=VENDOR_MERGE,
                                    actor=actor,
                                    vendor_ids=(system, frozenset(vendor_ids)))  # fmt: skip
        except (ConflictError, NotFoundError) as exc:
            refused.append(f"{other}: {exc}")
            log.warning("mdm.vendor_merge_refused", system=system, survivor_id=survivor_id,
                        other_id=other, reason=str(exc))  # fmt: skip
            continue
        merge_ids.append(merged.merge_id)
        match_store.supersede_open(conn, workspace=ctx.workspace, canonical_ids=[other],
                                   at=ctx.now, actor=actor)  # fmt: skip
    relinked = []
    for vid in vendor_ids:
        if vid != result_id:
            _alias(conn, ctx, entity, system, vid, survivor_id, actor)
            relinked.append(vid)
    log.info("mdm.vendor_merged", system=system, survivor_id=survivor_id, merges=merge_ids,
             relinked=relinked, refused=len(refused))  # fmt: skip
    return VendorMerged(survivor_id, merge_ids, relinked, refused)


def _follow(
    conn: Connection, workspace: str, entity: str, system: str, external_id: str
) -> str | None:
    """The live golden record a vendor id belongs to: through merges, when the id was left
    on a merged tombstone (a merge moves source records, not destination links)."""
    canonical_id = store.find_canonical_id(conn, workspace=workspace, entity=entity,
                                           system=system, external_id=external_id)  # fmt: skip
    seen = set()
    while canonical_id is not None and canonical_id not in seen:
        seen.add(canonical_id)
        record = store.get_golden_in(conn, entity, workspace=workspace, canonical_id=canonical_id)
        if record is None or not record.get("deleted"):
            return canonical_id if record is not None else None
        merge = merge_store.standing_merge_of(conn, workspace=workspace, merged_id=canonical_id)
        if merge is None:
            return None  # deleted at its owner, not merged: nothing to follow
        canonical_id = merge["survivor_id"]
    return None


def _alias(
    conn: Connection,
    ctx: EventContext,
    entity: str,
    system: str,
    external_id: str,
    survivor_id: str,
    actor: str,
) -> None:
    """Keep a merged-away vendor id resolving to the survivor, with history."""
    row = merge_store.link_row(conn, workspace=ctx.workspace, entity=entity, system=system,
                               external_id=external_id)  # fmt: skip
    if row is None:
        links.link(conn, workspace=ctx.workspace, entity=entity, system=system,
                   external_id=external_id, canonical_id=survivor_id, rule=MERGED_AWAY,
                   at=ctx.now, actor=actor)  # fmt: skip
        return
    if row["canonical_id"] == survivor_id and row["reason"] == MERGED_AWAY:
        return  # a repeated notification
    match_store.move_link(conn, workspace=ctx.workspace, entity=entity, system=system,
                          external_id=external_id, to_id=survivor_id, reason=MERGED_AWAY,
                          score=None, at=ctx.now)  # fmt: skip
    match_store.record_history(
        conn,
        {"workspace": ctx.workspace, "entity": entity, "system": system,
         "external_id": external_id, "action": "relinked", "canonical_id": survivor_id,
         "previous_id": row["canonical_id"], "rule": MERGED_AWAY, "score": None,
         "actor": actor, "changed_at": ctx.now},
    )  # fmt: skip
