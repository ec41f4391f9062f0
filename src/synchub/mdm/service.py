"""Resolve observations into golden records: crosswalk, match, survivorship, history, events.

Services flush but never commit: the caller owns the transaction, and the outbox rows are
written in it together with the golden-record change they describe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from synchub.core.errors import DependencyPendingError, FieldProblem, ValidationError
from synchub.core.ids import new_id
from synchub.events.model import is_regression
from synchub.events.outbox import EventContext
from synchub.mapping.model import Observation
from synchub.mdm import links, matcher, store
from synchub.mdm.changes import emit_changes, refresh_billing_status
from synchub.mdm.model import OwnerOf, Provenance, content_hash, survive
from synchub.mdm.records import (
    Page,
    canonical_for,
    get_record,
    links_at,
    list_records,
    product_id_of,
)
from synchub.register.model import DEFAULT_MATCH_THRESHOLDS, MatchThresholds

__all__ = [  # the read side lives in records.py; these names stay importable from here
    "API_MAPPING_VERSION",
    "MissingReferenceError",
    "Outcome",
    "Page",
    "SourceTieError",
    "apply_observation",
    "canonical_for",
    "get_record",
    "links_at",
    "list_records",
    "product_id_of",
    "record_link",
    "write_from_product",
]


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
    rule: str | None = None  # why the record is linked where it is (crosswalk rule)
    candidates: list[str] = field(default_factory=list)  # match candidates queued for review


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
    thresholds: MatchThresholds = DEFAULT_MATCH_THRESHOLDS,
) -> Outcome:
    """Apply what a source said about one record; stale or repeated observations change nothing.

    `authoritative` marks a freshly fetched current object: it wins ties. With `break_ties`,
    an equal-version, different-content observation raises SourceTieError so that the caller
    can fetch the current object instead of guessing. A record seen for the first time is
    matched (matcher.find_match) with the register's `thresholds` for its entity.
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
        same_version = obs.source_version == snapshot["source_version"]
        if snapshot["payload_hash"] == digest and same_version:
            return Outcome(canonical_id=snapshot["canonical_id"], unchanged=True)
        # The same content at a newer version still goes through survivorship: it is the
        # source's most recent word, and may now outrank another source's value.
        if same_version and break_ties and not authoritative:
            raise SourceTieError(obs.entity, obs.external_id)
    refs = _inherit_customer(conn, obs.entity, _resolve_refs(conn, obs, ctx.workspace))
    match = (
        matcher.Match(snapshot["canonical_id"], "crosswalk")
        if snapshot
        else matcher.find_match(conn, obs, workspace=ctx.workspace, thresholds=thresholds)
    )
    canonical_id = match.canonical_id
    outcome = _merge(conn, obs, ctx, canonical_id=canonical_id, refs=refs, owner_of=owner_of,
                     rule=match.rule, score=match.score)  # fmt: skip
    matcher.index_keys(conn, obs, workspace=ctx.workspace, canonical_id=canonical_id)
    outcome.candidates = matcher.propose(conn, workspace=ctx.workspace, entity=obs.entity,
                                         system=obs.system, external_id=obs.external_id,
                                         canonical_id=canonical_id, proposals=match.proposals,
                                         at=ctx.now)  # fmt: skip
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


# A record that may arrive without its customer, and the reference whose golden record
# knows it: a Stripe refund object names its charge but not the charge's customer.
_CUSTOMER_VIA = {"refund": ("payment_id", "payment")}


def _inherit_customer(conn: Connection, entity: str, refs: dict[str, str]) -> dict[str, str]:
    """Give a record without a customer its parent's, so that its events are ordered with
    that customer's (the aggregate of delivery order, `changes.aggregate_of`)."""
    via = _CUSTOMER_VIA.get(entity)
    if via is None or "customer_id" in refs or via[0] not in refs:
        return refs
    parent = store.get_golden(conn, via[1], refs[via[0]]) or {}
    customer_id = parent.get("customer_id")
    return {**refs, "customer_id": customer_id} if customer_id else refs


def _merge(
    conn: Connection,
    obs: Observation,
    ctx: EventContext,
    *,
    canonical_id: str,
    refs: dict[str, str],
    owner_of: OwnerOf,
    rule: str,
    score: float | None,
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
    outcome = Outcome(canonical_id=canonical_id, conflicts=len(decision.conflicts), rule=rule)
    status_before = (before or {}).get("status")
    if is_regression(obs.entity, status_before, decision.changes.get("status", status_before)):
        outcome.regressions.append(f"status {status_before}->{decision.changes['status']}")
        decision.changes, decision.confirmed = {}, []  # keep the terminal/later state
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
    _write_golden(conn, obs, ctx, canonical_id, before, decision.changes, decision.confirmed)
    links.link(conn, workspace=ctx.workspace, entity=obs.entity, system=obs.system,
               external_id=obs.external_id, canonical_id=canonical_id, rule=rule, score=score,
               at=ctx.now)  # fmt: skip
    lines_changed = _write_lines(conn, obs, ctx, canonical_id)
    changed = sorted(decision.changes) + (["lines"] if lines_changed and before else [])
    after = store.get_golden(conn, obs.entity, canonical_id) or {}
    if obs.entity == "subscription" and "status" in changed:
        # First, so the subscription's events carry the customer's new billing status.
        outcome.events += refresh_billing_status(conn, ctx, after["customer_id"])
    outcome.events += emit_changes(conn, ctx, obs.entity, before, after, changed)
    return outcome


def _write_golden(
    conn: Connection,
    obs: Observation,
    ctx: EventContext,
    canonical_id: str,
    before: dict[str, Any] | None,
    changes: dict[str, Any],
    confirmed: list[str],
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
            for name in [*changes, *confirmed]
            if name != "deleted"
        ],
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
    """Link a canonical record to the id a destination gave it (rule: `reason`)."""
    links.link(conn, workspace=workspace, entity=entity, system=system, external_id=external_id,
               canonical_id=canonical_id, rule=reason, at=at)  # fmt: skip


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
    thresholds: MatchThresholds = DEFAULT_MATCH_THRESHOLDS,
) -> tuple[dict[str, Any], bool]:
    """Apply what the product says about one of its records, through the same resolve step
    as every other source; returns the golden record and whether it was created.

    With `canonical_id` (an update of a known record) the product's id is linked to it first,
    so the observation can only ever land on that record.
    """
    if canonical_id is not None:
        links.link(conn, workspace=ctx.workspace, entity=entity, system=source,
                   external_id=external_id, canonical_id=canonical_id, rule="api",
                   at=ctx.now)  # fmt: skip
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
    outcome = apply_observation(
        conn, obs, ctx, owner_of=owner_of, authoritative=True, thresholds=thresholds
    )
    assert outcome.canonical_id is not None  # apply always resolves or creates an id
    record = get_record(conn, entity, workspace=ctx.workspace, canonical_id=outcome.canonical_id)
    return record, f"{entity}.created" in outcome.events
