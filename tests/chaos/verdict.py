"""What a chaos run must end with, checked against the store and the sandbox server's record.

- every canonical event has a succeeded delivery to every destination its flows subscribe;
- no inbox event failed or still waits; no delivery is pending, in flight or dead;
- no sandbox created anything twice (per natural key: Xero ContactNumber, invoice Reference,
  payments per invoice; HubSpot email and company key; the product's webhook-id);
- at every destination, each customer's changes were applied in outbox order: every write
  the sandbox applied carries the `traceparent` of the event that caused it, so its position
  in the outbox (seq) is known, and along each customer's writes it never goes back.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from synchub.db import Database
from synchub.events.store import deliveries, delivery_attempts, outbox_events
from synchub.ingest.store import inbox_events
from synchub.register.model import Register


@dataclass
class Verdict:
    """Problems found (empty: the run passed) and the figures for the summary line."""

    problems: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def add(self, problem: str) -> None:
        """Record one problem."""
        self.problems.append(problem)


def judge(db: Database, register: Register, state: dict[str, Any]) -> Verdict:
    """Check a finished run."""
    verdict = Verdict()
    with db.read() as conn:
        inbox = [
            dict(r)
            for r in conn.execute(
                sa.select(
                    inbox_events.c.external_id,
                    inbox_events.c.event_type,
                    inbox_events.c.status,
                    inbox_events.c.last_error,
                )
            ).mappings()
        ]
        events = [
            dict(r)
            for r in conn.execute(
                sa.select(
                    outbox_events.c.id,
                    outbox_events.c.seq,
                    outbox_events.c.type,
                    outbox_events.c.aggregate_id,
                    outbox_events.c.traceparent,
                )
            ).mappings()
        ]
        rows = [dict(r) for r in conn.execute(sa.select(deliveries)).mappings()]
        attempts = conn.execute(sa.select(sa.func.count()).select_from(delivery_attempts))
        verdict.figures["attempts"] = int(attempts.scalar_one())
    _check_inbox(verdict, inbox)
    _check_deliveries(verdict, register, events, rows)
    _check_duplicates(verdict, state)
    _check_order(verdict, register, events, state)
    _check_product_applied(verdict, register, events, state)
    return verdict


def _check_inbox(verdict: Verdict, inbox: list[dict[str, Any]]) -> None:
    statuses = Counter(r["status"] for r in inbox)
    verdict.figures["inbox"] = dict(statuses)
    for row in inbox:
        if row["status"] not in ("processed", "ignored"):
            verdict.add(
                f"inbox event {row['external_id']} ({row['event_type']}) is "
                f"{row['status']}: {row['last_error']}"
            )


def _check_deliveries(
    verdict: Verdict, register: Register, events: list[dict[str, Any]], rows: list[dict[str, Any]]
) -> None:
    by_key = {(r["event_id"], r["destination"]): r for r in rows}
    verdict.figures["events"] = len(events)
    verdict.figures["deliveries"] = len(rows)
    verdict.figures["delivery_status"] = dict(Counter(r["status"] for r in rows))
    expected = 0
    for event in events:
        for destination in register.destinations_for(event["type"]):
            expected += 1
            row = by_key.get((event["id"], destination))
            if row is None:
                verdict.add(f"{event['type']} {event['id']} has no delivery to {destination}")
            elif row["status"] != "succeeded":
                verdict.add(
                    f"{event['type']} {event['id']} to {destination} is {row['status']} after "
                    f"{row['attempts']} attempts: {row['dead_reason'] or row['last_error']}"
                )
    if expected != len(rows):
        verdict.add(f"{len(rows)} deliveries exist where the register asks for {expected}")


_NATURAL_KEYS = {
    ("hubspot", "contacts"),
    ("hubspot", "companies"),
    ("xero", "Contacts"),
    ("xero", "Invoices"),
    ("xero", "Payments"),
    ("product", "accounts"),
}


def _check_duplicates(verdict: Verdict, state: dict[str, Any]) -> None:
    """Twice-created objects, from each sandbox's journal and from its final objects."""
    creates: Counter[tuple[str, str, str]] = Counter()
    for vendor, record in state["vendors"].items():
        for entry in record["journal"]:
            kind = entry["entity"].split("/")[0]
            if entry["created"] and (vendor, kind) in _NATURAL_KEYS:
                creates[(vendor, kind, str(entry["key"]))] += 1
    verdict.figures["creates"] = sum(creates.values())
    for (vendor, kind, key), count in sorted(creates.items()):
        if count > 1:
            verdict.add(f"{vendor} created {count} {kind} for {key}")
    final = Counter(c.get("ContactNumber") for c in state["xero"]["contacts"])
    final.update(f"invoice {i['Reference']}" for i in state["xero"]["invoices"])
    final.update(f"payment of {p['Invoice']['InvoiceID']}" for p in state["xero"]["payments"])
    hubspot = state["hubspot"]
    final.update(c["properties"]["email"].lower() for c in hubspot["contacts"].values())
    final.update(c["properties"]["synchub_account_id"] for c in hubspot["companies"].values())
    for key, count in sorted(final.items(), key=str):
        if count > 1:
            verdict.add(f"the sandboxes hold {count} objects for {key}")


def _check_order(
    verdict: Verdict, register: Register, events: list[dict[str, Any]], state: dict[str, Any]
) -> None:
    """Along each (destination, customer), the outbox seq of applied writes never decreases."""
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_trace[event["traceparent"]].append(event)
    checked = unexplained = 0
    for name, connection in register.connections.items():
        journal = state["vendors"].get(connection.system, {}).get("journal", [])
        at: dict[str, int] = {}  # aggregate -> the seq its last write came from
        for entry in journal:
            caused = [
                e
                for e in by_trace.get(entry["traceparent"], [])
                if name in register.destinations_for(e["type"])
            ]
            if not caused:
                unexplained += 1
                verdict.add(
                    f"{name}: write #{entry['n']} {entry['method']} {entry['path']} "
                    f"matches no event delivered there"
                )
                continue
            aggregate = caused[0]["aggregate_id"]
            seqs = sorted(e["seq"] for e in caused if e["aggregate_id"] == aggregate)
            fits = [s for s in seqs if s >= at.get(aggregate, 0)]
            checked += 1
            if not fits:
                waited = entry.get("waited_seconds")
                verdict.add(
                    f"{name}: order broken for {aggregate}: write #{entry['n']} "
                    f"{entry['method']} {entry['path']} comes from event seq {seqs} after a "
                    f"write from seq {at[aggregate]}"
                    + (f" (applied {waited:.2f} s after the server received it)" if waited else "")
                )
                continue
            at[aggregate] = fits[0]
    verdict.figures["ordered_writes"] = checked


def _check_product_applied(
    verdict: Verdict, register: Register, events: list[dict[str, Any]], state: dict[str, Any]
) -> None:
    """The product applied every event delivered to it (it de-duplicates on webhook-id)."""
    applied = {e["key"] for e in state["vendors"]["product"]["journal"]}
    for name, connection in register.connections.items():
        if connection.system != "product":
            continue
        for event in events:
            if name in register.destinations_for(event["type"]):
                msg_id = "msg_" + event["id"].partition("_")[2]
                if msg_id not in applied:
                    verdict.add(f"the product never applied {event['type']} {event['id']}")
