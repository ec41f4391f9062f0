"""Reconciliation against the connected systems: read each one's current view of every golden
record, compare (mdm/reconcile.py), record what disagrees as conflicts, and repair.

Repairs take the normal roads only: a golden record behind its owner gets the owner's view
applied as an observation (survivorship, history, events, as if the owner had sent it); a
system behind the golden record gets a canonical event written to the outbox, which the
dispatcher fans out and the workers deliver with retries, traces and the delivery log. Every
repair run leaves an audit entry naming its actor.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from synchub.audit.service import record as record_audit
from synchub.bootstrap import Hub
from synchub.connectors.hubspot.push import HubSpotDestination
from synchub.connectors.hubspot.view import HubSpotView
from synchub.connectors.product.push import ProductDestination
from synchub.connectors.product.view import ProductView
from synchub.connectors.stripe.pull import StripeReader
from synchub.connectors.xero.push import XeroDestination
from synchub.connectors.xero.view import XeroView
from synchub.core.entities import ENTITIES, is_entitled
from synchub.core.errors import HubError, NotFoundError
from synchub.events import store as event_store
from synchub.events.outbox import EventContext, emit_event, to_json_safe
from synchub.mapping.model import Observation
from synchub.mdm import store
from synchub.mdm.reconcile import (
    NOT_DRIFT,
    ORPHANED_HINT,
    WHOLE_RECORD,
    Action,
    Comparison,
    Drift,
    View,
    compare,
)
from synchub.mdm.service import apply_observation
from synchub.observability.tracecontext import new_traceparent

ENTITIES_CHECKED = ("customer", "subscription", "invoice")
XERO_INVOICE_STATUSES = frozenset({"open", "paid", "void"})  # what Xero is ever sent


@dataclass
class Report:
    """One reconciliation: drift per customer and system, and what a repair did."""

    workspace: str
    checked_at: datetime
    comparison: Comparison = field(default_factory=Comparison)
    words: dict[str, str] = field(default_factory=dict)  # customer id -> plain words
    names: dict[str, str] = field(default_factory=dict)  # customer id -> name or email
    unreachable: list[dict[str, str]] = field(default_factory=list)
    unsettled: int = 0  # deliveries still pending when the views were read
    conflicts: dict[str, int] = field(default_factory=lambda: {"recorded": 0, "resolved": 0})
    repair: dict[str, Any] | None = None
    observations: dict[tuple[str, str, str], list[Observation]] = field(default_factory=dict)
    products: set[str] = field(default_factory=set)  # connections that are the product

    @property
    def drift(self) -> list[Drift]:
        """Drift a repair can or a person must deal with (held and orphaned records are
        listed apart and counted apart)."""
        return [d for d in self.comparison.drift if d.action not in NOT_DRIFT]

    def _count(self, action: Action, customer_id: str | None = None) -> int:
        return sum(1 for d in self.comparison.drift if d.action is action
                   and (customer_id is None or d.customer_id == customer_id))  # fmt: skip

    def for_customer(self, customer_id: str) -> dict[str, Any]:
        """One customer's drift, per system (the JSON and API shape): `drift` counts what
        `systems` lists except held records (`held`); orphaned records (a source holds
        nothing, no flow reaches it: not drift) are listed apart under `orphaned`."""
        systems: dict[str, list[dict[str, Any]]] = {}
        orphaned: list[dict[str, Any]] = []
        for item in self.comparison.drift:
            if item.customer_id == customer_id:
                entry = {k: v for k, v in item.as_dict().items() if k not in ("customer_id",)}
                if item.action is Action.ORPHANED:
                    orphaned.append(to_json_safe(entry))
                else:
                    systems.setdefault(item.system, []).append(to_json_safe(entry))
        return {
            "canonical_id": customer_id,
            "name": self.names.get(customer_id),
            "in_words": self.words.get(customer_id, ""),
            "drift": sum(1 for d in self.drift if d.customer_id == customer_id),
            "held": self._count(Action.HELD, customer_id),
            "systems": systems,
            "orphaned": orphaned,
        }

    def as_dict(self) -> dict[str, Any]:
        """The --json output: stable keys, drifted customers only, in id order."""
        drifted = sorted({d.customer_id or d.record_id for d in self.comparison.drift})
        return {
            "workspace": self.workspace,
            "checked_at": to_json_safe(self.checked_at),
            "checked": {
                "customers": len(self.names),
                "records": self.comparison.records,
                "fields": self.comparison.fields,
            },
            "drift": len(self.drift),
            "held": self._count(Action.HELD),
            "orphaned": self._count(Action.ORPHANED),
            "orphaned_hint": ORPHANED_HINT if self._count(Action.ORPHANED) else None,
            "by_action": dict(
                sorted(Counter(str(d.action) for d in self.comparison.drift).items())
            ),
            "unsettled_deliveries": self.unsettled,
            "unreachable": self.unreachable,
            "conflicts": dict(self.conflicts),
            "customers": [self.for_customer(c) for c in drifted],
            "repair": self.repair,
        }


@dataclass
class _Systems:
    stripe: dict[str, StripeReader] = field(default_factory=dict)
    hubspot: dict[str, HubSpotView] = field(default_factory=dict)
    xero: dict[str, XeroView] = field(default_factory=dict)
    product: dict[str, ProductView] = field(default_factory=dict)


def _systems(hub: Hub, workspace: str) -> _Systems:
    """The connected systems' readers: Stripe's source reader (register workspace only; the
    sandbox workspaces have none) and a view over each destination's own client."""
    systems = _Systems()
    if workspace == hub.register.workspace:
        for name, reader in hub.readers.items():
            if isinstance(reader, StripeReader) and reader.can_fetch:
                systems.stripe[name] = reader
    for name, dest in hub.destinations_for(workspace).items():
        if isinstance(dest, HubSpotDestination):
            systems.hubspot[name] = HubSpotView(dest.client)
        elif isinstance(dest, XeroDestination):
            systems.xero[name] = XeroView(dest.client)
        elif isinstance(dest, ProductDestination):
            systems.product[name] = ProductView(dest.client)
    return systems


def repair_event(entity: str, record: dict[str, Any]) -> str:
    """The canonical event that carries a record's current state to a destination."""
    status = record.get("status")
    if entity == "subscription":
        if status == "canceled":
            return "subscription.canceled"
        return "subscription.activated" if is_entitled(status) else "subscription.updated"
    if entity == "invoice":
        return {"paid": "invoice.paid", "void": "invoice.voided",
                "open": "invoice.finalized"}.get(str(status), "invoice.updated")  # fmt: skip
    return f"{entity}.updated"


@dataclass
class _State:
    golden: dict[str, dict[str, dict[str, Any]]]  # entity -> id -> record
    links: dict[str, dict[str, str]]  # canonical id -> system -> external id
    provenance: dict[tuple[str, str], dict[str, str]]  # (entity, id) -> field -> system
    last_delivery: dict[tuple[str, str], tuple[str, str | None]]  # (dest, subject) -> status
    unsettled: int


def _load(conn: Connection, workspace: str, customer_id: str | None) -> _State:
    golden: dict[str, dict[str, dict[str, Any]]] = {}
    for entity in ENTITIES_CHECKED:
        table = store.GOLDEN[entity]
        query = sa.select(table).where(table.c.workspace == workspace, ~table.c.deleted)
        if customer_id is not None:
            column = table.c.id if entity == "customer" else table.c.customer_id
            query = query.where(column == customer_id)
        rows = conn.execute(query.order_by(table.c.id)).mappings()
        golden[entity] = {r["id"]: dict(r) for r in rows}
    ids = [i for records in golden.values() for i in records]
    links = store.external_ids_of(conn, workspace=workspace, canonical_ids=ids)
    prov_rows = conn.execute(
        sa.select(store.field_provenance).where(
            store.field_provenance.c.workspace == workspace,
            store.field_provenance.c.canonical_id.in_(ids),
        )
    ).mappings()
    provenance: dict[tuple[str, str], dict[str, str]] = {}
    for row in prov_rows:
        provenance.setdefault((row["entity"], row["canonical_id"]), {})[row["field"]] = row[
            "system"
        ]
    d, e = event_store.deliveries, event_store.outbox_events
    query = (
        sa.select(d.c.destination, d.c.status, d.c.dead_reason, e.c.subject)
        .join(e, e.c.id == d.c.event_id)
        .where(d.c.workspace == workspace, e.c.subject.in_(ids))
        .order_by(d.c.event_seq)
    )
    last: dict[tuple[str, str], tuple[str, str | None]] = {}
    unsettled = 0
    for dest, status, reason, subject in conn.execute(query):
        last[(dest, subject)] = (status, reason)
        unsettled += status in ("pending", "in_flight")
    return _State(golden, links, provenance, last, unsettled)


def _owner_of(hub: Hub) -> Any:
    owners = {(o.entity, o.field_name): o.owner for o in hub.register.ownership}
    return lambda entity, name: owners.get((entity, name))


def _linked_owner_of(owner_of: Any, linked: dict[str, str]) -> Any:
    """The register's owner of a field, when that system holds a record linked to this golden
    record; else none: an owner that holds nothing cannot speak for the record, so the
    fallback (the system the golden value came from) decides, as in survivorship and as the
    API's refusal of owned fields does."""

    def owner(entity: str, name: str) -> str | None:
        found = owner_of(entity, name)
        return found if found in linked else None

    return owner


def reconcile(
    hub: Hub,
    *,
    workspace: str | None = None,
    customer_id: str | None = None,
    record_conflicts: bool = False,
    actor: str = "cli",
) -> Report:
    """Compare every connected system with the golden records of a workspace (or of one
    customer); with `record_conflicts`, note disagreements as conflicts and close the ones
    that are gone. Raises NotFoundError for an unknown customer."""
    ws = workspace or hub.register.workspace
    now = hub.clock.now()
    with hub.db.read() as conn:
        state = _load(conn, ws, customer_id)
    if customer_id is not None and customer_id not in state.golden["customer"]:
        raise NotFoundError(f"no customer {customer_id}")
    report = Report(workspace=ws, checked_at=now, unsettled=state.unsettled)
    systems = _systems(hub, ws)
    report.products = set(systems.product)
    owner_of = _owner_of(hub)
    views: dict[str, list[View]] = {}
    for entity in ENTITIES_CHECKED:
        for record in state.golden[entity].values():
            owner = _linked_owner_of(owner_of, state.links.get(record["id"], {}))
            for view in _views(hub, systems, state, entity, record, report, now):
                prov = state.provenance.get((entity, record["id"]), {})
                report.comparison.extend(compare(record, view, owner_of=owner, provenance=prov))
                cid = record["id"] if entity == "customer" else record.get("customer_id")
                views.setdefault(str(cid), []).append(view)
    for cid, customer in state.golden["customer"].items():
        report.names[cid] = str(customer.get("name") or customer.get("email") or cid)
        report.words[cid] = _in_words(customer, views.get(cid, []), state)
    if record_conflicts:
        with hub.db.write() as conn:
            report.conflicts = _record_conflicts(conn, report, views, now=now, actor=actor)
    return report


def _views(
    hub: Hub,
    systems: _Systems,
    state: _State,
    entity: str,
    record: dict[str, Any],
    report: Report,
    now: datetime,
) -> list[View]:
    """Every connected system's view of one golden record (systems that are unreachable are
    noted once and skipped)."""
    links = state.links.get(record["id"], {})
    down = {u["system"] for u in report.unreachable}
    found: list[View] = []

    def view(system: str, external_id: str | None, fields: dict[str, Any] | None, *,
             observe: bool = False) -> None:  # fmt: skip
        event_type: str | None = repair_event(entity, record)
        subject = record["id"]
        if entity == "customer" and system in systems.product:
            event_type, subject = _product_repair(state, record)
        can_push = event_type is not None and system in hub.register.destinations_for(event_type)
        status, reason = state.last_delivery.get((system, subject), ("", None))
        dead = (reason or "dead letter") if status == "dead" and fields is None else None
        found.append(View(system, entity, record["id"], external_id, fields,
                          can_push=can_push, can_observe=observe, dead_letter=dead))  # fmt: skip

    def read(system: str, fn: Any, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        if system in down:
            return False, None
        try:
            return True, fn(*args, **kwargs)
        except NotFoundError:
            return True, None  # the system holds no such record
        except HubError as exc:
            report.unreachable.append({"system": system, "error": str(exc)})
            down.add(system)
            return False, None

    for name, reader in systems.stripe.items():
        if name not in links:
            continue  # never in Stripe (made by the product or the API): nothing to compare
        ok, observations = read(name, reader.fetch, entity, links[name], observed_at=now)
        if not ok:
            continue
        obs = [o for o in observations or []
               if o.entity == entity and o.external_id == links[name]]  # fmt: skip
        if obs:
            report.observations[(name, entity, links[name])] = observations
        canonical = {s.name for s in ENTITIES[entity]}
        fields = {k: v for k, v in obs[-1].fields.items() if k in canonical} if obs else None
        if obs and obs[-1].deleted:
            fields = None
        view(name, links[name], fields, observe=True)
    if entity == "customer":
        for name, hs in systems.hubspot.items():
            if name in links:
                ok, fields = read(name, hs.customer, links[name])
                if ok:
                    view(name, links[name], fields)
            elif _sent_to(hub, name, "customer.created"):
                view(name, None, None)
        for name, xv in systems.xero.items():
            if name in links:
                ok, fields = read(name, xv.customer, links[name])
                if ok:
                    view(name, links[name], fields)
            elif _sent_to(hub, name, "customer.created"):
                view(name, None, None)
        for name, pv in systems.product.items():
            ok, fields = read(name, pv.customer, record["id"])
            if not ok or (fields is None and not is_entitled(record.get("billing_status"))
                          and record.get("billing_status") in (None, "none")):  # fmt: skip
                continue  # never billed: the product has nothing to unlock
            view(name, record["id"], fields)
    if entity == "invoice":
        for name, xv in systems.xero.items():
            if name in links:
                ok, fields = read(name, xv.invoice, links[name], record["currency"])
                if ok:
                    view(name, links[name], fields)
            elif record.get("status") in ("open", "paid") and _sent_to(
                hub, name, repair_event("invoice", record)
            ):
                view(name, None, None)
    return found


def _sent_to(hub: Hub, destination: str, event_type: str) -> bool:
    return destination in hub.register.destinations_for(event_type)


def _product_repair(state: _State, customer: dict[str, Any]) -> tuple[str | None, str]:
    """The product learns a customer's standing from subscription events: the latest one's."""
    subs = [s for s in state.golden["subscription"].values() if s["customer_id"] == customer["id"]]
    if not subs:
        return None, customer["id"]
    latest = max(subs, key=lambda s: (s.get("started_at") or s["created_at"], s["id"]))
    return repair_event("subscription", latest), latest["id"]


def _in_words(customer: dict[str, Any], views: list[View], state: _State) -> str:
    """ "billing status active in synchub, canceled in hubspot, locked in product" for one
    customer (its billing status in each system: "none" is a status, not a missing record)."""
    words = [f"billing status {customer.get('billing_status') or 'none'} in synchub"]
    subs = {s["id"] for s in state.golden["subscription"].values()
            if s["customer_id"] == customer["id"]}  # fmt: skip
    for view in views:
        if view.fields is None and view.entity == "customer":
            words.append(f"missing in {view.system}")
        elif view.fields is None:
            continue
        elif view.entity == "subscription" and view.canonical_id in subs:
            words.append(f"subscription {view.fields.get('status')} in {view.system}")
        elif view.entity == "customer" and "billing_status" in view.fields:
            words.append(f"{view.fields['billing_status'] or 'none'} in {view.system}")
        elif view.entity == "customer" and "entitled" in view.fields:
            words.append(f"{'unlocked' if view.fields['entitled'] else 'locked'} in {view.system}")
    return ", ".join(dict.fromkeys(words))


# -- conflicts --------------------------------------------------------------------------------


def _record_conflicts(
    conn: Connection, report: Report, views: dict[str, list[View]], *, now: datetime, actor: str
) -> dict[str, int]:
    """Note each disagreement with an owner as an open conflict (once), and resolve the open
    conflicts of every (record, system) compared now that no longer disagree."""
    c = store.conflicts
    open_rows = conn.execute(
        sa.select(c.c.id, c.c.entity, c.c.canonical_id, c.c.field, c.c.other_system).where(
            c.c.workspace == report.workspace, c.c.status == "open"
        )
    ).all()
    open_keys = {(r.entity, r.canonical_id, r.field, r.other_system): r.id for r in open_rows}
    current = set()
    recorded = 0
    for item in report.comparison.drift:
        if item.field == WHOLE_RECORD or item.owner is None or item.owner == item.system:
            continue
        key = (item.entity, item.record_id, item.field, item.system)
        current.add(key)
        if key in open_keys:
            continue
        store.record_conflict(conn, {
            "workspace": report.workspace, "entity": item.entity, "canonical_id": item.record_id,
            "field": item.field, "owner": item.owner, "owner_value": to_json_safe(item.golden),
            "other_system": item.system, "other_value": to_json_safe(item.value),
            "observed_at": now, "found_by": "reconcile"})  # fmt: skip
        recorded += 1
    compared = {(v.entity, v.canonical_id, v.system) for vs in views.values() for v in vs
                if v.fields is not None}  # fmt: skip
    gone = [cid for key, cid in open_keys.items()
            if key not in current and (key[0], key[1], key[3]) in compared]  # fmt: skip
    if gone:
        conn.execute(sa.update(c).where(c.c.id.in_(gone)).values(
            status="resolved", resolved_at=now, resolved_by=actor))  # fmt: skip
    return {"recorded": recorded, "resolved": len(gone)}


# -- repair -----------------------------------------------------------------------------------


def repair(hub: Hub, report: Report, *, actor: str) -> dict[str, Any]:
    """Repair what a report found: observe the owners' views, push the golden values.

    Observations go through apply_observation (authoritative, as a fresh read from the owner);
    pushes are one canonical event per drifted record (its fan-out reaches each destination
    subscribed to it). One transaction, with one audit entry naming the actor.
    """
    ws, now = report.workspace, hub.clock.now()
    traceparent = new_traceparent()
    owner_of = _owner_of(hub)
    observe = sorted({(d.system, d.entity, d.external_id) for d in report.drift
                      if d.action is Action.OBSERVE and d.external_id})  # fmt: skip
    push: dict[tuple[str, str], set[str]] = {}
    for d in report.drift:
        if d.action is Action.PUSH:
            push.setdefault((d.entity, d.record_id), set()).add(d.system)
    observed, events, by_step = 0, Counter[str](), {"observed": 0, "pushed": 0}
    with hub.db.write() as conn:
        for system, entity, external_id in observe:
            ctx = _context(hub, ws, system, traceparent, now)
            for obs in report.observations.get((system, entity, str(external_id)), []):
                thresholds = hub.register.match_thresholds(obs.entity)
                outcome = apply_observation(conn, obs, ctx, owner_of=owner_of,
                                            authoritative=True, thresholds=thresholds)  # fmt: skip
                observed += 1
                events.update(outcome.events)
                by_step["observed"] += len(outcome.events)
        ctx = _context(hub, ws, "reconcile", traceparent, now)
        for (entity, record_id), targets in sorted(push.items()):
            pushed = _push(conn, ctx, entity, record_id, targets, report)
            events.update(pushed)
            by_step["pushed"] += len(pushed)
        record_audit(conn, key=hub.audit_key, at=now, actor=actor, action="reconcile.repair",
                     workspace=ws, target=f"{len(observe)} observed, {len(push)} pushed",
                     head=hub.audit_head)  # fmt: skip
    # `events` by type; `events_from` says which step queued them: applying the owners' views
    # (`observed`: the golden record changed, so its own events go out) or pushing records.
    result = {"observed": observed, "pushed": len(push), "events": dict(sorted(events.items())),
              "events_from": by_step, "traceparent": traceparent}  # fmt: skip
    report.repair = result
    return result


def _context(hub: Hub, ws: str, source: str, traceparent: str, now: datetime) -> EventContext:
    return EventContext(workspace=ws, source=f"/synchub/{ws}/{source}", traceparent=traceparent,
                        mapping_version=None, app_version=hub.version, now=now)  # fmt: skip


def _push(
    conn: Connection,
    ctx: EventContext,
    entity: str,
    record_id: str,
    targets: set[str],
    report: Report,
) -> list[str]:
    """Write the event(s) that carry one record's golden state to the systems behind it."""
    record = store.get_golden(conn, entity, record_id)
    if record is None:
        return []
    fields = sorted({d.field for d in report.drift
                     if d.record_id == record_id and d.action is Action.PUSH})  # fmt: skip
    extra: dict[str, Any] = {"reconciliation": {"repair_for": sorted(targets), "fields": fields}}
    types = []
    to_systems = set(targets)
    product_targets = to_systems & report.products
    if entity == "customer" and product_targets:
        subject = _latest_subscription(conn, ctx.workspace, record_id)
        if subject is not None:
            types.append(_emit(conn, ctx, "subscription", subject, fields, extra))
        to_systems -= product_targets
    if to_systems:
        types.append(_emit(conn, ctx, entity, record, fields, extra))
    return types


def _latest_subscription(
    conn: Connection, workspace: str, customer_id: str
) -> dict[str, Any] | None:
    table = store.GOLDEN["subscription"]
    rows = conn.execute(
        sa.select(table).where(table.c.workspace == workspace, table.c.customer_id == customer_id)
    ).mappings()
    subs = [dict(r) for r in rows]
    if not subs:
        return None
    return max(subs, key=lambda s: (s.get("started_at") or s["created_at"], s["id"]))


def _emit(
    conn: Connection,
    ctx: EventContext,
    entity: str,
    record: dict[str, Any],
    fields: list[str],
    extra: dict[str, Any],
) -> str:
    event_type = repair_event(entity, record)
    payload_extra = dict(extra)
    if entity == "invoice":
        payload_extra["lines"] = [{k: v for k, v in ln.items() if k != "workspace"}
                                  for ln in store.lines_of(conn, record["id"])]  # fmt: skip
    if record.get("customer_id"):
        customer = store.get_golden(conn, "customer", record["customer_id"]) or {}
        status = customer.get("billing_status")
        payload_extra["customer"] = {
            "id": record["customer_id"], "email": customer.get("email"),
            "name": customer.get("name"), "company_name": customer.get("company_name"),
            "billing_status": status, "entitled": is_entitled(status)}  # fmt: skip
    aggregate = str(record.get("customer_id") or record["id"])
    emit_event(conn, ctx, event_type=event_type, record=record, aggregate_id=aggregate,
               changed=fields, extra=payload_extra)  # fmt: skip
    return event_type
