"""Unmerging golden records on a real database: both records as they were (fields, crosswalk
rows, keys, provenance, dependants), events through the outbox, history kept, the merge
marked undone, once; what arrived after the merge stays on the survivor."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from synchub.core.clock import FixedClock
from synchub.core.errors import ConflictError, NotFoundError
from synchub.db import Database
from synchub.mdm import candidates, links, merge, store
from synchub.mdm.match_store import match_keys
from synchub.mdm.merge import AlreadyUnmergedError
from tests.integration.test_matching import apply, context, customer, open_candidates
from tests.integration.test_matching_merge import _pending, _subscription, owner_of


def _events(db: Database) -> list[tuple[str, str, dict[str, Any]]]:
    with db.read() as conn:
        rows = conn.execute(
            sa.text("SELECT type, subject, payload FROM outbox_events ORDER BY id")
        ).all()
    return [(t, s, p if isinstance(p, dict) else json.loads(p)) for t, s, p in rows]


def snapshot(db: Database, workspace: str = "w") -> dict[str, Any]:
    """Everything a merge touches and an unmerge must put back."""
    with db.read() as conn:
        golden = {
            r["id"]: {k: v for k, v in r.items() if k not in ("version", "updated_at")}
            for r in store.list_golden(conn, "customer", workspace=workspace)
        }
        subs = {
            r["id"]: r["customer_id"]
            for r in store.list_golden(conn, "subscription", workspace=workspace)
        }
        xwalk = sorted(
            tuple(r)
            for r in conn.execute(
                sa.select(store.crosswalk).where(store.crosswalk.c.workspace == workspace)
            )
        )
        sources = sorted(
            (r["system"], r["external_id"], r["canonical_id"], r["source_version"])
            for r in conn.execute(
                sa.select(store.source_records).where(store.source_records.c.workspace == workspace)
            ).mappings()
        )
        keys = sorted(
            tuple(r)
            for r in conn.execute(sa.select(match_keys).where(match_keys.c.workspace == workspace))
        )
        provenance = sorted(
            (r["canonical_id"], r["field"], r["system"], r["external_id"], r["source_version"])
            for r in conn.execute(
                sa.select(store.field_provenance).where(
                    store.field_provenance.c.workspace == workspace
                )
            ).mappings()
        )
    return {"golden": golden, "subs": subs, "crosswalk": xwalk, "sources": sources,
            "keys": keys, "provenance": provenance}  # fmt: skip


def _confirm(db: Database, clock: FixedClock, candidate_id: str) -> str:
    with db.write() as conn:
        decided = candidates.confirm(conn, context(clock), candidate_id=candidate_id,
                                     owner_of=owner_of, actor="reviewer")  # fmt: skip
    return str(decided["merge_id"])


def _unmerge(db: Database, clock: FixedClock, merge_id: str) -> dict[str, Any]:
    with db.write() as conn:
        return merge.unmerge(conn, context(clock), merge_id=merge_id, actor="steward")


def test_unmerge_puts_both_records_back_as_they_were(db: Database, clock: FixedClock) -> None:
    _, _, candidate = _pending(db, clock)
    before = snapshot(db)
    merge_id = _confirm(db, clock, candidate["id"])
    assert snapshot(db) != before
    clock.advance(timedelta(minutes=5))
    undone = _unmerge(db, clock, merge_id)
    assert undone["status"] == "undone"
    assert undone["unmerged_by"] == "steward"
    assert undone["unmerge"]["restored_fields"] == ["billing_status", "country", "email"]
    assert undone["unmerge"]["kept_fields"] == []
    assert undone["unmerge"]["moved_back"] == [{"system": "stripe", "external_id": "cus_1"}]
    assert [d["entity"] for d in undone["unmerge"]["dependants_moved_back"]] == ["subscription"]
    assert snapshot(db) == before  # fields, crosswalk rows (rule, score, time), keys, ...


def test_unmerge_emits_events_and_keeps_history(db: Database, clock: FixedClock) -> None:
    target, provisional, candidate = _pending(db, clock)
    merge_id = _confirm(db, clock, candidate["id"])
    seen = len(_events(db))
    _unmerge(db, clock, merge_id)
    emitted = _events(db)[seen:]
    assert [(t, s) for t, s, _ in emitted] == [
        ("customer.created", provisional),
        ("subscription.updated", emitted[1][1]),
        ("customer.updated", target),
    ]
    created, moved, updated = (p for _, _, p in emitted)
    assert (created["unmerged_from"], created["merge_id"]) == (target, merge_id)
    assert created["object"]["deleted"] is False
    assert created["object"]["email"] == "a.ngata@kowhai.nz"
    assert moved["object"]["customer_id"] == provisional
    assert moved["customer"]["id"] == provisional
    assert (updated["unmerged"], updated["merge_id"]) == (provisional, merge_id)
    assert updated["object"]["email"] == "aroha@kowhai.nz"
    assert set(updated["changed"]) == {"email", "country", "billing_status"}
    with db.read() as conn:
        history = links.history_of(conn, workspace="w", entity="customer", system="stripe",
                                   external_id="cus_1")  # fmt: skip
    assert [(h["action"], h["rule"], h["canonical_id"], h["previous_id"]) for h in history] == [
        ("linked", "new", provisional, None),
        ("relinked", "confirmed", target, provisional),
        ("relinked", "unmerge", provisional, target),
    ]
    assert history[-1]["actor"] == "steward"


def test_unmerging_twice_is_a_conflict_that_says_so(db: Database, clock: FixedClock) -> None:
    _, _, candidate = _pending(db, clock)
    merge_id = _confirm(db, clock, candidate["id"])
    _unmerge(db, clock, merge_id)
    after_first = snapshot(db)
    with pytest.raises(AlreadyUnmergedError, match=r"undone already .* by steward") as caught:
        _unmerge(db, clock, merge_id)
    assert caught.value.code == "already_unmerged"
    assert snapshot(db) == after_first
    with db.read() as conn, pytest.raises(NotFoundError):
        merge.get_merge(conn, workspace="other", merge_id=merge_id)
    with pytest.raises(NotFoundError):
        _unmerge(db, clock, "mrg_nope")


def test_changes_after_the_merge_stay_with_the_survivor(db: Database, clock: FixedClock) -> None:
    """Stripe (email's owner) changes the email after the merge: the survivor keeps that
    later value; fields the merge changed and nobody touched since are restored."""
    target, provisional, candidate = _pending(db, clock)
    merge_id = _confirm(db, clock, candidate["id"])
    later = customer("stripe", "cus_1", version=10, name="Aroha Ngatta",
                     email="aroha.n@kowhai.nz", country="NZ")  # fmt: skip
    apply(db, clock, later, owner_of=owner_of)
    undone = _unmerge(db, clock, merge_id)
    assert undone["unmerge"]["kept_fields"] == ["email"]
    assert "country" in undone["unmerge"]["restored_fields"]
    with db.read() as conn:
        survivor = store.get_golden(conn, "customer", target) or {}
        back = store.get_golden(conn, "customer", provisional) or {}
    assert survivor["email"] == "aroha.n@kowhai.nz"
    assert survivor["country"] is None
    assert back["email"] == "a.ngata@kowhai.nz"  # as at the merge
    # Its source record belongs to it again: the next word from Stripe lands there, in full.
    again = apply(db, clock, customer("stripe", "cus_1", version=10, name="Aroha Ngatta",
                                      email="aroha.n@kowhai.nz", country="NZ"),
                  owner_of=owner_of)  # fmt: skip
    assert again.canonical_id == provisional
    with db.read() as conn:
        assert (store.get_golden(conn, "customer", provisional) or {})["email"] == (
            "aroha.n@kowhai.nz"
        )


def test_a_later_merge_of_the_survivor_must_be_undone_first(
    db: Database, clock: FixedClock
) -> None:
    target, provisional, candidate = _pending(db, clock)
    first = _confirm(db, clock, candidate["id"])
    third = apply(db, clock, customer("xero", "x1", name="Someone Else", email="s@else.nz"))
    assert third.canonical_id is not None
    with db.write() as conn:
        second = merge.merge_into(conn, context(clock), entity="customer",
                                  survivor_id=third.canonical_id, merged_id=target,
                                  owner_of=owner_of, rule="manual", actor="steward")  # fmt: skip
    with pytest.raises(ConflictError, match=f"merged into {third.canonical_id} by merge "
                       f"{second.merge_id}: unmerge that first"):  # fmt: skip
        _unmerge(db, clock, first)
    _unmerge(db, clock, second.merge_id)
    _unmerge(db, clock, first)
    with db.read() as conn:
        assert not (store.get_golden(conn, "customer", provisional) or {})["deleted"]
        assert store.external_ids(conn, workspace="w", canonical_id=provisional) == {
            "stripe": "cus_1"
        }


def test_a_subscription_that_arrived_after_the_merge_stays(db: Database, clock: FixedClock) -> None:
    target, provisional, candidate = _pending(db, clock)
    merge_id = _confirm(db, clock, candidate["id"])
    apply(db, clock, _subscription("sub_2", "cus_1", "trialing"), owner_of=owner_of)
    undone = _unmerge(db, clock, merge_id)
    with db.read() as conn:
        subs = {s["status"]: s["customer_id"]
                for s in store.list_golden(conn, "subscription", workspace="w")}  # fmt: skip
        survivor = store.get_golden(conn, "customer", target) or {}
    assert subs == {"active": provisional, "trialing": target}
    assert survivor["billing_status"] == "trialing"  # re-derived from what it holds now
    assert undone["unmerge"]["left"] == []


# -- vendor-side merges ------------------------------------------------------------------------


def _hubspot_link(db: Database, clock: FixedClock, canonical_id: str, contact: str) -> None:
    with db.write() as conn:
        links.link(conn, workspace="w", entity="customer", system="hubspot", external_id=contact,
                   canonical_id=canonical_id, rule="delivered", at=clock.now())  # fmt: skip


def _vendor_merge(db: Database, clock: FixedClock, primary: str, *merged: str,
                  new: str | None = None) -> merge.VendorMerged:  # fmt: skip
    with db.write() as conn:
        return merge.apply_vendor_merge(conn, context(clock), system="hubspot",
                                        entity="customer", primary_id=primary,
                                        merged_ids=list(merged), result_id=new,
                                        owner_of=owner_of)  # fmt: skip


def test_a_vendor_merge_merges_the_two_golden_records(db: Database, clock: FixedClock) -> None:
    target, provisional, _ = _pending(db, clock)
    _hubspot_link(db, clock, target, "701")
    _hubspot_link(db, clock, provisional, "702")
    count = len(snapshot(db)["golden"])
    done = _vendor_merge(db, clock, "701", "702")
    assert (done.survivor_id, done.relinked, done.refused) == (target, ["702"], [])
    [merge_id] = done.merge_ids
    with db.read() as conn:
        shown = merge.get_merge(conn, workspace="w", merge_id=merge_id)
        ids = store.external_ids(conn, workspace="w", canonical_id=target)
        resolves = store.find_canonical_id(conn, workspace="w", entity="customer",
                                           system="hubspot", external_id="702")  # fmt: skip
        [alias] = links.history_of(conn, workspace="w", entity="customer", system="hubspot",
                                   external_id="702")[1:]  # fmt: skip
    assert (shown["rule"], shown["actor"], shown["merged_id"]) == ("vendor_merge", "hubspot",
                                                                   provisional)  # fmt: skip
    assert ids == {"product": "p1", "stripe": "cus_1", "hubspot": "701"}  # 702 is merged away
    assert resolves == target
    assert (alias["action"], alias["rule"], alias["previous_id"]) == (
        "relinked", "merged_away", provisional)  # fmt: skip
    assert len(snapshot(db)["golden"]) == count  # never a new customer
    assert open_candidates(db) == []  # the pending proposal is moot
    again = _vendor_merge(db, clock, "701", "702")  # HubSpot retries: nothing more happens
    assert (again.survivor_id, again.merge_ids) == (target, [])


def test_a_vendor_merge_with_a_new_result_id_links_it(db: Database, clock: FixedClock) -> None:
    one = apply(db, clock, customer("stripe", "cus_a", email="a@kowhai.nz", name="A"))
    two = apply(db, clock, customer("xero", "x_b", email="b@other.nz", name="Bee"))
    assert one.canonical_id
    assert two.canonical_id
    _hubspot_link(db, clock, one.canonical_id, "801")
    _hubspot_link(db, clock, two.canonical_id, "802")
    done = _vendor_merge(db, clock, "801", "802", new="900")
    assert done.survivor_id == one.canonical_id
    with db.read() as conn:
        ids = store.external_ids(conn, workspace="w", canonical_id=one.canonical_id)
        gone = store.get_golden(conn, "customer", two.canonical_id) or {}
    assert ids == {"stripe": "cus_a", "xero": "x_b", "hubspot": "900"}
    assert gone["deleted"] is True


def test_a_vendor_merge_of_two_stripe_customers_only_moves_the_link(
    db: Database, clock: FixedClock
) -> None:
    """Stripe keeps two customers: synchub keeps two golden records, says why, and the
    merged HubSpot id follows HubSpot to the surviving contact's record."""
    one = apply(db, clock, customer("stripe", "cus_a", email="a@kowhai.nz", name="A"))
    two = apply(db, clock, customer("stripe", "cus_b", email="b@other.nz", name="Bee"))
    assert one.canonical_id
    assert two.canonical_id
    _hubspot_link(db, clock, one.canonical_id, "801")
    _hubspot_link(db, clock, two.canonical_id, "802")
    done = _vendor_merge(db, clock, "801", "802")
    assert done.merge_ids == []
    assert "already holds stripe id cus_a" in done.refused[0]
    with db.read() as conn:
        assert store.find_canonical_id(conn, workspace="w", entity="customer", system="hubspot",
                                       external_id="802") == one.canonical_id  # fmt: skip
        assert not (store.get_golden(conn, "customer", two.canonical_id) or {})["deleted"]


def test_a_vendor_merge_of_unknown_contacts_changes_nothing(
    db: Database, clock: FixedClock
) -> None:
    before = snapshot(db)
    done = _vendor_merge(db, clock, "1", "2")
    assert done == merge.VendorMerged(None, [], [], [])
    assert snapshot(db) == before
