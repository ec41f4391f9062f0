"""Confirming a match candidate merges the provisional golden record into the target:
crosswalk relinked with history, survivorship, dependants moved, events, an undo record."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from synchub.core.clock import FixedClock
from synchub.core.errors import ConflictError, NotFoundError
from synchub.db import Database
from synchub.mapping.model import Observation
from synchub.mdm import candidates, links, store
from synchub.mdm.match_store import match_keys, merges
from synchub.mdm.model import OwnerOf
from tests.integration.test_matching import AT, apply, context, customer, open_candidates

OWNERS = {"email": "stripe", "name": "product"}
owner_of: OwnerOf = lambda entity, field: OWNERS.get(field) if entity == "customer" else None  # noqa: E731


def _subscription(external_id: str, customer_id: str, status: str) -> Observation:
    return Observation(system="stripe", object_type="subscription", entity="subscription",
                       external_id=external_id, fields={"status": status, "currency": "NZD"},
                       refs={"customer_id": ("customer", customer_id)}, lines=(),
                       mapping_version="test.v1", source_version=1, observed_at=AT)  # fmt: skip


def _pending(db: Database, clock: FixedClock) -> tuple[str, str, dict[str, Any]]:
    """A product customer, and a Stripe customer (with a subscription) waiting for review."""
    target = apply(db, clock, customer("product", "p1", version=5, name="Aroha Ngata",
                                       email="aroha@kowhai.nz", phone="021 555 0101"),
                   owner_of=owner_of)  # fmt: skip
    pending = apply(db, clock, customer("stripe", "cus_1", version=9, name="Aroha Ngatta",
                                        email="a.ngata@kowhai.nz", country="NZ"),
                    owner_of=owner_of)  # fmt: skip
    apply(db, clock, _subscription("sub_1", "cus_1", "active"), owner_of=owner_of)
    [candidate] = open_candidates(db)
    assert target.canonical_id
    assert pending.canonical_id
    return target.canonical_id, pending.canonical_id, candidate


def _events(db: Database) -> list[tuple[str, str, dict[str, Any]]]:
    with db.read() as conn:
        rows = conn.execute(
            sa.text("SELECT type, subject, payload FROM outbox_events ORDER BY id")
        ).all()
    return [(t, s, p if isinstance(p, dict) else json.loads(p)) for t, s, p in rows]


def test_confirming_moves_the_source_record_to_the_target(db: Database, clock: FixedClock) -> None:
    target, provisional, candidate = _pending(db, clock)
    with db.write() as conn:
        decided = candidates.confirm(conn, context(clock), candidate_id=candidate["id"],
                                     owner_of=owner_of, actor="cli_reviewer")  # fmt: skip
    assert (decided["status"], decided["decided_by"]) == ("confirmed", "cli_reviewer")
    with db.read() as conn:
        survivor = store.get_golden(conn, "customer", target) or {}
        merged = store.get_golden(conn, "customer", provisional) or {}
        xwalk = store.external_ids(conn, workspace="w", canonical_id=target)
        [moved] = links.history_of(conn, workspace="w", entity="customer", system="stripe",
                                   external_id="cus_1")[1:]  # fmt: skip
        subscription = store.list_golden(conn, "subscription", workspace="w")[0]
        keys = conn.execute(sa.select(match_keys.c.canonical_id).distinct()).scalars().all()
    assert xwalk == {"product": "p1", "stripe": "cus_1"}
    assert (moved["action"], moved["rule"], moved["actor"]) == (
        "relinked",
        "confirmed",
        "cli_reviewer",
    )
    assert (moved["previous_id"], moved["canonical_id"]) == (provisional, target)
    assert moved["score"] == pytest.approx(candidate["score"])
    assert merged["deleted"] is True
    assert survivor["email"] == "a.ngata@kowhai.nz"  # Stripe owns email: its value wins
    assert survivor["name"] == "Aroha Ngata"  # the product owns name: Stripe's is a conflict
    assert survivor["country"] == "NZ"  # nobody owns country: the merged record fills it
    assert survivor["billing_status"] == "active"
    assert subscription["customer_id"] == target
    assert keys == [target]


def test_confirming_emits_the_merge_through_the_outbox(db: Database, clock: FixedClock) -> None:
    target, provisional, candidate = _pending(db, clock)
    before = len(_events(db))
    with db.write() as conn:
        candidates.confirm(conn, context(clock), candidate_id=candidate["id"], owner_of=owner_of,
                           actor="cli_reviewer")  # fmt: skip
    emitted = _events(db)[before:]
    assert [(t, s) for t, s, _ in emitted] == [
        ("customer.updated", target),
        ("subscription.updated", emitted[1][1]),
        ("customer.deleted", provisional),
    ]
    assert emitted[0][2]["merged_from"] == provisional
    assert set(emitted[0][2]["changed"]) == {"email", "country", "billing_status"}
    assert emitted[1][2]["object"]["customer_id"] == target
    assert emitted[2][2]["merged_into"] == target
    with db.read() as conn:
        assert store.count_conflicts(conn, workspace="w") == 1  # name, owned by the product


def test_a_merge_keeps_what_an_unmerge_needs(db: Database, clock: FixedClock) -> None:
    target, provisional, candidate = _pending(db, clock)
    with db.write() as conn:
        decided = candidates.confirm(conn, context(clock), candidate_id=candidate["id"],
                                     owner_of=owner_of, actor="cli_reviewer")  # fmt: skip
    with db.read() as conn:
        merge = conn.execute(sa.select(merges)).mappings().one()
    assert merge["id"] == decided["merge_id"]
    assert (merge["survivor_id"], merge["merged_id"], merge["rule"]) == (
        target,
        provisional,
        "confirmed",
    )
    undo = merge["undo"]
    assert undo["fields"] == {"email": "aroha@kowhai.nz", "country": None, "billing_status": None}
    assert undo["sources"] == [["stripe", "customer", "cus_1"]]
    assert [d[:2] for d in undo["dependants"]] == [["subscription", "customer_id"]]
    assert undo["provenance"]["email"]["system"] == "product"


def test_later_observations_of_the_moved_record_land_on_the_target(
    db: Database, clock: FixedClock
) -> None:
    target, _, candidate = _pending(db, clock)
    with db.write() as conn:
        candidates.confirm(conn, context(clock), candidate_id=candidate["id"], owner_of=owner_of,
                           actor="r")  # fmt: skip
    later = apply(db, clock, customer("stripe", "cus_1", version=10, name="Aroha Ngatta",
                                      email="aroha.n@kowhai.nz", country="NZ"),
                  owner_of=owner_of)  # fmt: skip
    assert (later.canonical_id, later.rule) == (target, "crosswalk")
    with db.read() as conn:
        assert (store.get_golden(conn, "customer", target) or {})["email"] == "aroha.n@kowhai.nz"


def test_other_proposals_for_the_source_record_are_superseded(
    db: Database, clock: FixedClock
) -> None:
    apply(db, clock, customer("product", "p1", name="Māori Tech", email="a@maoritech.nz"))
    apply(db, clock, customer("hubspot", "h1", name="Maori Tech", email="mt@other.nz",
                              phone="+64 21 123 4567"))  # fmt: skip
    apply(db, clock, customer("stripe", "cus_1", name="Maori Tech Limited",
                              email="c@maoritech.nz", phone="021 123 4567"))  # fmt: skip
    first, second = open_candidates(db)
    with db.write() as conn:
        candidates.confirm(conn, context(clock), candidate_id=first["id"], owner_of=owner_of,
                           actor="r")  # fmt: skip
        assert candidates.get_candidate(conn, workspace="w", candidate_id=second["id"])[
            "status"
        ] == "superseded"  # fmt: skip


def test_a_decided_candidate_cannot_be_decided_again(db: Database, clock: FixedClock) -> None:
    _, _, candidate = _pending(db, clock)
    with db.write() as conn:
        candidates.reject(conn, context(clock), candidate_id=candidate["id"], actor="r")
    with db.write() as conn, pytest.raises(ConflictError, match="already rejected"):
        candidates.confirm(conn, context(clock), candidate_id=candidate["id"], owner_of=owner_of,
                           actor="r")  # fmt: skip
    with db.read() as conn, pytest.raises(NotFoundError):
        candidates.get_candidate(conn, workspace="other", candidate_id=candidate["id"])


def test_two_ids_from_one_system_are_never_merged(db: Database, clock: FixedClock) -> None:
    """The target got its own Stripe customer meanwhile: Stripe keeps two customers."""
    target, _, candidate = _pending(db, clock)
    with db.write() as conn:
        links.link(conn, workspace="w", entity="customer", system="stripe", external_id="cus_0",
                   canonical_id=target, rule="email", at=AT)  # fmt: skip
    with db.write() as conn, pytest.raises(ConflictError, match="already holds stripe id cus_0"):
        candidates.confirm(conn, context(clock), candidate_id=candidate["id"], owner_of=owner_of,
                           actor="r")  # fmt: skip
    assert [c["id"] for c in open_candidates(db)] == [candidate["id"]]
