"""Intercom end to end: a register with an Intercom connection (sandbox mode), customers pushed
as contacts, signed notifications (bad ones refused with an empty 401, repeats deduplicated),
a lead merged into a user in Intercom merging the golden records instead of making one, and
the contact pull resuming after a cut without reading anything twice."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from synchub.connectors.intercom.client import IntercomClient
from synchub.connectors.intercom.pull import ContactPull, FileCursorStore, pull_contacts
from synchub.connectors.intercom.push import IntercomDestination
from synchub.connectors.intercom.webhooks import sign
from synchub.core.clock import FixedClock
from synchub.db import Database
from synchub.ingest import store as inbox
from synchub.mdm import store as mdm
from tests.harness import REPO, Harness, make_harness

HOOK = "/v1/webhooks/intercom"
CONNECTION = """
  intercom:
    system: intercom
    mode: sandbox
    owner: support@example.co.nz
    criticality: medium
    mapping: intercom.v1
    retry: {base_seconds: 1, cap_seconds: 60, max_attempts: 8, max_age_seconds: 86400}
"""
FLOW = """
  stripe-customers-to-intercom:
    source: stripe
    destination: intercom
    events: [customer.created, customer.updated]
    owner: support@example.co.nz
"""


@pytest.fixture
def ih(db: Database, clock: FixedClock, tmp_path: Path) -> Iterator[Harness]:
    """The harness over the repo register plus an Intercom connection and flow."""
    register = tmp_path / "register"
    shutil.copytree(REPO / "register", register)
    with (register / "connections.yaml").open("a") as out:
        out.write(CONNECTION)
    with (register / "flows.yaml").open("a") as out:
        out.write(FLOW)
    made = make_harness(db, clock, data_dir=tmp_path / "data", register_dir=register)
    made.boxes.intercom.clock = clock
    yield made
    made.worker.stop()
    made.http.close()
    for client in made.hub.http_clients:
        client.close()


def _customers(h: Harness) -> list[dict[str, Any]]:
    with h.hub.db.read() as conn:
        return [c for c in mdm.list_golden(conn, "customer", workspace="live")
                if not c.get("deleted")]  # fmt: skip


def _canonical(h: Harness, contact_id: str) -> str | None:
    with h.hub.db.read() as conn:
        return mdm.find_canonical_id(conn, workspace="live", entity="customer",
                                     system="intercom", external_id=contact_id)  # fmt: skip


def _deliver(h: Harness) -> list[dict[str, Any]]:
    replies = h.boxes.intercom.deliver_webhooks(h.http, "http://testserver" + HOOK)
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    return [r.json() for r in replies]


def test_customers_become_contacts_keyed_on_external_id(ih: Harness) -> None:
    ih.boxes.stripe.create_customer(email="ana@kowhai.nz", name="Ana Kowhai", currency="nzd")
    ih.deliver_stripe()
    [customer] = _customers(ih)
    [contact] = ih.boxes.intercom.contacts.values()
    assert (contact["external_id"], contact["email"], contact["role"]) == (
        customer["id"], "ana@kowhai.nz", "user")  # fmt: skip
    assert _canonical(ih, contact["id"]) == customer["id"]
    assert ih.boxes.intercom.versions_seen == {"2.16"}


def test_bad_signatures_get_an_empty_401_and_repeats_change_nothing(ih: Harness) -> None:
    box = ih.boxes.intercom
    lead = box.create_contact(role="lead", email="rua@kowhai.nz", name="Rua")
    note = box.queue_notification("contact.lead.created", dict(box.contacts[lead]))
    box.notifications.clear()
    body = json.dumps(note).encode()
    good = sign(box.client_secret, body)
    for headers, content in (
        ({}, body),
        ({"X-Hub-Signature": sign("not-the-secret", body)}, body),
        ({"X-Hub-Signature": good}, body.replace(b"Rua", b"Ruu")),  # tampered
        ({"X-Hub-Signature": good.replace("sha1=", "sha256=")}, body),
    ):
        refused = ih.http.post(HOOK, content=content, headers=headers)
        assert (refused.status_code, refused.content) == (401, b"")
    first = ih.http.post(HOOK, content=body, headers={"X-Hub-Signature": good})
    again = ih.http.post(HOOK, content=body, headers={"X-Hub-Signature": good})
    assert (first.json()["duplicate"], again.json()["duplicate"]) == (False, True)
    with ih.hub.db.read() as conn:
        assert inbox.count_by_status(conn) == {"pending": 1}
    ih.settle()
    [customer] = _customers(ih)  # the lead, read by the worker, once
    assert customer["email"] == "rua@kowhai.nz"
    assert _canonical(ih, lead) == customer["id"]


def test_a_lead_merged_into_a_user_merges_the_golden_records(ih: Harness) -> None:
    ih.boxes.stripe.create_customer(email="mere@kowhai.nz", name="Mere Kowhai", currency="nzd")
    ih.deliver_stripe()
    [customer] = _customers(ih)
    box = ih.boxes.intercom
    [user] = box.contacts
    lead = box.create_contact(role="lead", email="m.visitor@example.org", name="Visitor 42")
    box.queue_notification("contact.lead.created", dict(box.contacts[lead]))
    _deliver(ih)
    ih.settle()
    lead_record = _canonical(ih, lead)
    assert lead_record is not None
    assert lead_record != customer["id"]
    assert len(_customers(ih)) == 2

    box.merge_contacts(lead, user)  # a person merges the lead into the user in Intercom
    [reply] = _deliver(ih)
    assert len(reply["merges"]) == 1
    assert reply["refused"] == []
    ih.settle()
    assert [c["id"] for c in _customers(ih)] == [customer["id"]]  # merged, none created
    assert _canonical(ih, lead) == customer["id"]  # the merged-away lead resolves to it
    assert _canonical(ih, user) == customer["id"]
    assert list(box.contacts) == [user]
    again = box.queue_notification("contact.merged", dict(box.contacts[user]))
    again["id"] = reply["id"]  # Intercom delivers the same notification again
    assert _deliver(ih)[0]["duplicate"] is True


def test_a_merge_nobody_knew_changes_nothing(ih: Harness) -> None:
    box = ih.boxes.intercom
    user = box.create_contact(role="user", email="u@kowhai.nz", external_id="elsewhere-1")
    lead = box.create_contact(role="lead", email="l@kowhai.nz")
    box.merge_contacts(lead, user)
    [reply] = _deliver(ih)
    assert (reply["merges"], reply["refused"]) == ([], [])
    ih.settle()
    [customer] = _customers(ih)  # the survivor, observed from the notification's item
    assert _canonical(ih, user) == customer["id"]
    assert _canonical(ih, lead) is None


def test_the_pull_resumes_after_a_cut_without_reading_twice(ih: Harness, tmp_path: Path) -> None:
    box = ih.boxes.intercom
    for n in range(7):  # all in one second: ties at every page boundary
        box.create_contact(role="user", email=f"p{n}@kowhai.nz", name=f"Person {n}")
    dest = ih.hub.destinations["intercom"]
    assert isinstance(dest, IntercomDestination)
    client: IntercomClient = dest.client
    store = FileCursorStore(tmp_path / "cursors" / "intercom.json")
    pull = ContactPull(client, per_page=3)
    args: dict[str, Any] = {"workspace": "live", "source": "intercom", "now": ih.clock.now()}
    cut = pull_contacts(ih.hub.db, pull, store, max_pages=1, **args)
    assert (cut.pages, cut.recorded) == (1, 3)
    store.save(store.load().__class__())  # as if the process died before saving: start over
    rest = pull_contacts(ih.hub.db, pull, store, **args)
    assert rest.recorded == 4  # the first page is re-read but recorded once
    assert pull_contacts(ih.hub.db, pull, store, **args).recorded == 0
    ih.settle()
    assert sorted(c["email"] for c in _customers(ih)) == [f"p{n}@kowhai.nz" for n in range(7)]
