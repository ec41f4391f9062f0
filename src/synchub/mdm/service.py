"""Resolve observations into golden records: crosswalk, match, survivorship, history, events.

Services flush but never commit: the caller owns the transaction, and the outbox rows are
written in it together with the golden-record change they describe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from synchub.core.entities import AGGREGATE_REF, derive_billing_status, is_entitled
from synchub.core.errors import (
    DependencyPendingError,
    FieldProblem,
    NotFoundError,
    ValidationError,
)
from synchub.core.ids import new_id
from synchub.events.model import derive_events, is_regression
from synchub.events.outbox import EventContext, emit_event
from synchub.mapping.model import Observation
from synchub.mdm import store
from synchub.mdm.model import OwnerOf, Provenance, content_hash, survive


@dataclass(frozen=True)
class MissingReference:
    """A record this observation refers to that the hub has not seen yet."""

    entity: str
    system: str
    external_id: str


class MissingReferenceError(DependencyPendingError):
    """Raised when an observation refers to a record the hub has not seen yet."""

    def __init__(self, missing: MissingReference) -> None:
        super().__init__(f"{missing.system} {missing.entity} {missing.external_id!r} not seen yet")
        self.missing = missing


class SourceTieError(Exception):
    """Two different versions of one record carry the same source timestamp: re-fetch it."""

    def __init__(self, entity: str, external_id: str) -> None:
        super().__init__(f"{entity} {external_id}: same source version, different content")
        self.entity = entity
        self.external_id = external_id


@dataclass
class Outcome:
    """What applying one observation did."""

    canonical_id: str | None = None
    stale: bool = False
    unchanged: bool = False
    events: list[str] = field(default_factory=list)
    conflicts: int = 0
    regressions: list[str] = field(default_factory=list)


def observation_hash(obs: Observation) -> str:
    """A hash of what an observation says (not when it said it)."""
    lines = [{"id": ln.external_id, **ln.fields} for ln in obs.lines]
    return content_hash({"f": obs.fields, "r": obs.refs, "l": lines, "d": obs.deleted})


def apply_observation(
    conn: Connection,
    obs: Observation,
    ctx: EventContext,
    *,
    owner_of: OwnerOf,
    authoritative: bool = False,
    break_ties: bool = False,
) -> Outcome:
    """Apply what a source said about one record; stale or repeated observations change nothing.

    `authoritative` marks a freshly fetched current object: it wins ties. With `break_ties`,
    an equal-version, different-content observation raises SourceTieError so that the caller
    can fetch the current object instead of guessing.
    """
    key = {
        "workspace": ctx.workspace,
        "system": obs.system,
        "object_type": obs.object_type,
        "external_id": obs.external_id,
    }
    store.lock_source_record(conn, **key)
    snapshot = store.get_source_record(conn, **key)
    digest = observation_hash(obs)
    if snapshot is not None:
        if obs.source_version < snapshot["source_version"]:
            return Outcome(canonical_id=snapshot["canonical_id"], stale=True)
        if snapshot["payload_hash"] == digest:
            return Outcome(canonical_id=snapshot["canonical_id"], unchanged=True)
        if obs.source_version == snapshot["source_version"] and break_ties and not authoritative:
            raise SourceTieError(obs.entity, obs.external_id)
    refs = _resolve_refs(conn, obs, ctx.workspace)
    canonical_id, reason = (
        (snapshot["canonical_id"], "crosswalk") if snapshot else _match(conn, obs, ctx.workspace)
    )
    outcome = _merge(
        conn, obs, ctx, canonical_id=canonical_id, refs=refs, owner_of=owner_of, reason=reason
    )
    store.save_source_record(
        conn,
        {
            **key,
            "entity": obs.entity,
            "canonical_id": canonical_id,
            "source_version": obs.source_version,
            "payload_hash": digest,
            "mapping_version": obs.mapping_version,
            "deleted": obs.deleted,
            "updated_at": ctx.now,
        },
        exists=snapshot is not None,
    )
    return outcome


def _resolve_refs(conn: Connection, obs: Observation, workspace: str) -> dict[str, str]:
    resolved = {}
    for name, (entity, external_id) in obs.refs.items():
        canonical = store.find_canonical_id(
            conn, workspace=workspace, entity=entity, system=obs.system, external_id=external_id
        )
        if canonical is None:
            raise MissingReferenceError(MissingReference(entity, obs.system, external_id))
        resolved[name] = canonical
    return resolved


def _match(conn: Connection, obs: Observation, workspace: str) -> tuple[str, str]:
    """Crosswalk first, then deterministic keys, else a new canonical id; links the crosswalk."""
    found = store.find_canonical_id(
        conn, workspace=workspace, entity=obs.entity, system=obs.system, external_id=obs.external_id
    )
    reason = "crosswalk"
    if found is None and obs.entity == "customer" and obs.fields.get("email"):
        found = store.find_customer_by_email(conn, workspace=workspace, email=obs.fields["email"])
        reason = "email"
        if found is not None and _is_taken_by_source(conn, workspace, found, obs.system):
            found = None  # the source itself holds two records: they are two customers
    if found is None:
        found, reason = new_id(obs.entity), "new"
    return found, reason


def _is_taken_by_source(conn: Connection, workspace: str, canonical_id: str, system: str) -> bool:
    """Whether a golden record already carries an id from this source (a different record)."""
    links = store.external_ids_of(conn, workspace=workspace, canonical_ids=[canonical_id])
    return system in links.get(canonical_id, {})


def _merge(
    conn: Connection,
    obs: Observation,
    ctx: EventContext,
    *,
    canonical_id: str,
    refs: dict[str, str],
    owner_of: OwnerOf,
    reason: str,
) -> Outcome:
    before = store.get_golden(conn, obs.entity, canonical_id)
    prov_rows = store.provenance_of(
        conn, workspace=ctx.workspace, entity=obs.entity, canonical_id=canonical_id
    )
    provenance = {f: Provenance(r["system"], r["source_version"]) for f, r in prov_rows.items()}
    proposed = {**obs.fields, **refs}
    decision = survive(
        obs.entity,
        before,
        proposed,
        source=obs.system,
        source_version=obs.source_version,
        provenance=provenance,
        owner_of=owner_of,
    )
    outcome = Outcome(canonical_id=canonical_id, conflicts=len(decision.conflicts))
    status_before = (before or {}).get("status")
    if is_regression(obs.entity, status_before, decision.changes.get("status", status_before)):
        outcome.regressions.append(f"status {status_before}->{decision.changes['status']}")
        decision.changes = {}  # an older state arriving late: keep the terminal/later one
    if obs.deleted and not (before or {}).get("deleted"):
        decision.changes["deleted"] = True
    for conflict in decision.conflicts:
        store.record_conflict(
            conn,
            {
                "workspace": ctx.workspace,
                "entity": obs.entity,
                "canonical_id": canonical_id,
                "field": conflict.field,
                "owner": conflict.owner,
                "owner_value": conflict.owner_value,
                "other_system": conflict.other_system,
                "other_value": conflict.other_value,
                "observed_at": ctx.now,
            },
        )
    _write_golden(conn, obs, ctx, canonical_id, before, decision.changes)
    _link(conn, obs, ctx, canonical_id, reason=reason)
    lines_changed = _write_lines(conn, obs, ctx, canonical_id)
    changed = sorted(decision.changes) + (["lines"] if lines_changed and before else [])
    after = store.get_golden(conn, obs.entity, canonical_id) or {}
    if obs.entity == "subscription" and "status" in changed:
        # First, so the subscription's events carry the customer's new billing status.
        outcome.events += _refresh_billing_status(conn, ctx, after["customer_id"])
    outcome.events += _emit(conn, obs, ctx, before, after, changed)
    return outcome


def _write_golden(
    conn: Connection,
    obs: Observation,
    ctx: EventContext,
    canonical_id: str,
    before: dict[str, Any] | None,
    changes: dict[str, Any],
) -> None:
    if before is None:
        store.insert_golden(
            conn,
            obs.entity,
            {
                "id": canonical_id,
                "workspace": ctx.workspace,
                **changes,
                "created_at": ctx.now,
                "updated_at": ctx.now,
            },
        )
    elif changes:
        store.update_golden(conn, obs.entity, canonical_id, {**changes, "updated_at": ctx.now})
    store.record_provenance(
        conn,
        [
            {
                "workspace": ctx.workspace,
                "entity": obs.entity,
                "canonical_id": canonical_id,
                "field": name,
                "system": obs.system,
                "external_id": obs.external_id,
                "mapping_version": obs.mapping_version,
                "source_version": obs.source_version,
                "observed_at": ctx.now,
            }
            for name in changes
            if name != "deleted"
        ],
    )


def _link(
    conn: Connection, obs: Observation, ctx: EventContext, canonical_id: str, *, reason: str
) -> None:
    store.link(
        conn,
        workspace=ctx.workspace,
        entity=obs.entity,
        system=obs.system,
        external_id=obs.external_id,
        canonical_id=canonical_id,
        reason=reason,
        at=ctx.now,
    )


def _write_lines(conn: Connection, obs: Observation, ctx: EventContext, invoice_id: str) -> bool:
    if obs.entity != "invoice":
        return False
    existing = {ln["external_id"]: ln for ln in store.lines_of(conn, invoice_id)}
    rows = [
        {
            "id": existing.get(ln.external_id, {}).get("id") or new_id("invoice_line"),
            "position": i,
            "external_id": ln.external_id,
            **ln.fields,
        }
        for i, ln in enumerate(obs.lines)
    ]
    old = [
        {k: v for k, v in ln.items() if k not in ("workspace", "invoice_id")}
        for ln in existing.values()
    ]
    if content_hash(sorted(old, key=lambda r: r["position"])) == content_hash(rows):
        return False
    store.replace_lines(conn, workspace=ctx.workspace, invoice_id=invoice_id, lines=rows)
    return True


def _aggregate_of(entity: str, record: dict[str, Any]) -> str:
    ref = AGGREGATE_REF.get(entity)
    return str(record[ref]) if ref and record.get(ref) else str(record["id"])


def _customer_summary(conn: Connection, customer_id: str | None) -> dict[str, Any] | None:
    if not customer_id:
        return None
    customer = store.get_golden(conn, "customer", customer_id) or {}
    status = customer.get("billing_status")
    return {
        "id": customer_id,
        "email": customer.get("email"),
        "name": customer.get("name"),
        "company_name": customer.get("company_name"),
        "billing_status": status,
        "entitled": is_entitled(status),
    }


def _emit(
    conn: Connection,
    obs: Observation,
    ctx: EventContext,
    before: dict[str, Any] | None,
    after: dict[str, Any],
    changed: list[str],
) -> list[str]:
    types = derive_events(obs.entity, before, after, changed)
    extra: dict[str, Any] = {}
    if obs.entity == "invoice":
        extra["lines"] = [
            {k: v for k, v in ln.items() if k not in ("workspace",)}
            for ln in store.lines_of(conn, after["id"])
        ]
    if after.get("customer_id"):
        extra["customer"] = _customer_summary(conn, after["customer_id"])
    for event_type in types:
        emit_event(
            conn,
            ctx,
            event_type=event_type,
            record=after,
            aggregate_id=_aggregate_of(obs.entity, after),
            changed=changed,
            extra=extra,
        )
    return types


def _refresh_billing_status(conn: Connection, ctx: EventContext, customer_id: str) -> list[str]:
    """Re-derive a customer's billing status from their subscriptions; emit if it moved."""
    customer = store.get_golden(conn, "customer", customer_id)
    if customer is None:
        return []
    status = derive_billing_status(store.subscription_statuses(conn, customer_id=customer_id))
    if customer.get("billing_status") == status:
        return []
    store.update_golden(
        conn, "customer", customer_id, {"billing_status": status, "updated_at": ctx.now}
    )
    after = store.get_golden(conn, "customer", customer_id) or {}
    emit_event(
        conn,
        ctx,
        event_type="customer.updated",
        record=after,
        aggregate_id=customer_id,
        changed=["billing_status"],
    )
    return ["customer.updated"]


def links_at(
    conn: Connection, *, workspace: str, canonical_ids: list[str], system: str
) -> dict[str, str]:
    """For each canonical id, its id at one system (when linked)."""
    links = {}
    for canonical_id in canonical_ids:
        external = store.external_ids(conn, workspace=workspace, canonical_id=canonical_id)
        if system in external:
            links[canonical_id] = external[system]
    return links


def record_link(
    conn: Connection,
    *,
    workspace: str,
    entity: str,
    canonical_id: str,
    system: str,
    external_id: str,
    reason: str,
    at: Any,
) -> None:
    """Link a canonical record to the id a destination gave it."""
    store.link(
        conn,
        workspace=workspace,
        entity=entity,
        system=system,
        external_id=external_id,
        canonical_id=canonical_id,
        reason=reason,
        at=at,
    )


@dataclass(frozen=True)
class Page:
    """One page of records and whether more follow."""

    items: list[dict[str, Any]]
    has_more: bool


def list_records(
    conn: Connection,
    entity: str,
    *,
    workspace: str,
    limit: int,
    starting_after: str | None,
    updated_since: Any,
) -> Page:
    """Golden records of one entity in a workspace, with their system ids, in id order."""
    rows, has_more = store.page_golden(conn, entity, workspace=workspace, limit=limit,
                                       starting_after=starting_after,
                                       updated_since=updated_since)  # fmt: skip
    return Page([_present(conn, entity, row, workspace) for row in rows], has_more)


def get_record(
    conn: Connection, entity: str, *, workspace: str, canonical_id: str
) -> dict[str, Any]:
    """One golden record with its system ids (and lines for invoices); NotFoundError if absent.

    A record of another workspace is not found, never forbidden: callers learn nothing of it.
    """
    row = store.get_golden_in(conn, entity, workspace=workspace, canonical_id=canonical_id)
    if row is None:
        raise NotFoundError(f"no {entity} {canonical_id}")
    return _present(conn, entity, row, workspace)


def _present(conn: Connection, entity: str, row: dict[str, Any], workspace: str) -> dict[str, Any]:
    record = {k: v for k, v in row.items() if k not in ("workspace", "version")}
    links = store.external_ids_of(conn, workspace=workspace, canonical_ids=[row["id"]])
    record["external_ids"] = links.get(row["id"], {})
    if entity == "invoice":
        record["lines"] = [{k: v for k, v in ln.items() if k not in ("workspace", "invoice_id")}
                           for ln in store.lines_of(conn, row["id"])]  # fmt: skip
    return record


API_MAPPING_VERSION = "api.v1"


def write_from_product(
    conn: Connection,
    ctx: EventContext,
    *,
    entity: str,
    source: str,
    external_id: str,
    fields: dict[str, Any],
    owner_of: OwnerOf,
    canonical_id: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Apply what the product says about one of its records, through the same resolve step
    as every other source; returns the golden record and whether it was created.

    With `canonical_id` (an update of a known record) the product's id is linked to it first,
    so the observation can only ever land on that record.
    """
    if canonical_id is not None:
        store.link(
            conn,
            workspace=ctx.workspace,
            entity=entity,
            system=source,
            external_id=external_id,
            canonical_id=canonical_id,
            reason="api",
            at=ctx.now,
        )
    if (
        fields.get("account_id")
        and store.get_golden_in(
            conn, "account", workspace=ctx.workspace, canonical_id=fields["account_id"]
        )
        is None
    ):
        raise ValidationError("unknown account", [FieldProblem("/account_id", "no such account")])
    obs = Observation(
        system=source,
        object_type=entity,
        entity=entity,
        external_id=external_id,
        fields=fields,
        refs={},
        lines=(),
        mapping_version=API_MAPPING_VERSION,
        source_version=int(ctx.now.timestamp() * 1000),
        observed_at=ctx.now,
    )
    outcome = apply_observation(conn, obs, ctx, owner_of=owner_of, authoritative=True)
    assert outcome.canonical_id is not None  # apply always resolves or creates an id
    record = get_record(conn, entity, workspace=ctx.workspace, canonical_id=outcome.canonical_id)
    return record, f"{entity}.created" in outcome.events


def product_id_of(
    conn: Connection, *, workspace: str, entity: str, canonical_id: str, source: str
) -> str:
    """The product's own id for a golden record (its canonical id when the product has none)."""
    if store.get_golden_in(conn, entity, workspace=workspace, canonical_id=canonical_id) is None:
        raise NotFoundError(f"no {entity} {canonical_id}")
    links = store.external_ids_of(conn, workspace=workspace, canonical_ids=[canonical_id])
    return links.get(canonical_id, {}).get(source, canonical_id)


def canonical_for(
    conn: Connection, *, workspace: str, entity: str, system: str, external_id: str
) -> str | None:
    """The canonical id a system's id is linked to, if any (holding that id's lock on PG)."""
    store.lock_source_record(
        conn, workspace=workspace, system=system, object_type=entity, external_id=external_id
    )
    return store.find_canonical_id(
        conn, workspace=workspace, entity=entity, system=system, external_id=external_id
    )
