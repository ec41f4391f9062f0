"""Matching a new source record on a real database: crosswalk, deterministic keys (email,
tax id, the product's id), fuzzy scoring with the two thresholds, candidates and history."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from synchub.core.clock import FixedClock
from synchub.db import Database
from synchub.events.outbox import EventContext
from synchub.mapping.model import Observation
from synchub.mdm import candidates, links, matcher, service, store
from synchub.mdm.match_store import match_candidates, match_keys
from synchub.mdm.model import OwnerOf
from synchub.register.model import MatchThresholds

AT = datetime(2026, 12, 3, tzinfo=UTC)
NO_OWNERS: OwnerOf = lambda entity, field: None  # noqa: E731


def customer(system: str, external_id: str, version: int = 1, **fields: Any) -> Observation:
    """A customer as one system describes it."""
    return Observation(system=system, object_type="customer", entity="customer",
                       external_id=external_id, fields=fields, refs={}, lines=(),
                       mapping_version="test.v1", source_version=version,
                       observed_at=AT)  # fmt: skip


def context(clock: FixedClock, workspace: str = "w") -> EventContext:
    """What a unit of work shares."""
    return EventContext(workspace=workspace, source=f"/synchub/{workspace}/test",
                        traceparent=None, mapping_version="test.v1", app_version="test",
                        now=clock.now())  # fmt: skip


def apply(
    db: Database,
    clock: FixedClock,
    obs: Observation,
    *,
    owner_of: OwnerOf = NO_OWNERS,
    thresholds: MatchThresholds | None = None,
) -> service.Outcome:
    """Apply one observation in its own transaction."""
    with db.write() as conn:
        return service.apply_observation(conn, obs, context(clock), owner_of=owner_of,
                                         thresholds=thresholds or MatchThresholds())  # fmt: skip


def customers(db: Database) -> list[dict[str, Any]]:
    with db.read() as conn:
        return store.list_golden(conn, "customer", workspace="w")


def open_candidates(db: Database) -> list[dict[str, Any]]:
    with db.read() as conn:
        return candidates.list_candidates(
            conn, workspace="w", status="open", limit=100, starting_after=None
        ).items


# -- deterministic keys -----------------------------------------------------------------------


def test_an_email_in_another_case_and_unicode_form_links_by_email(
    db: Database, clock: FixedClock
) -> None:
    first = apply(db, clock, customer("stripe", "cus_1", email="m\u0101ori@kowhai.nz"))
    second = apply(db, clock, customer("product", "p1", email=" MA\u0304ORI@Kowhai.NZ"))
    assert (second.canonical_id, second.rule) == (first.canonical_id, "email")


def test_a_plus_address_is_a_different_customer(db: Database, clock: FixedClock) -> None:
    first = apply(db, clock, customer("stripe", "cus_1", email="ops@kowhai.nz"))
    second = apply(db, clock, customer("product", "p1", email="ops+billing@kowhai.nz"))
    assert second.canonical_id != first.canonical_id
    assert second.rule == "new"
    assert len(customers(db)) == 2


def test_a_valid_tax_id_links_whatever_its_spacing(db: Database, clock: FixedClock) -> None:
    first = apply(db, clock, customer("stripe", "cus_1", email="ap@kowhai.nz", name="Kōwhai",
                                      tax_id="NZBN 9429 0412 3456 3"))  # fmt: skip
    second = apply(db, clock, customer("product", "p1", email="hello@other.nz", name="K Ltd",
                                       tax_id="9429041234563"))  # fmt: skip
    assert (second.canonical_id, second.rule) == (first.canonical_id, "tax_id")


def test_a_tax_id_failing_its_check_digit_links_nothing(db: Database, clock: FixedClock) -> None:
    first = apply(db, clock, customer("stripe", "cus_1", email="ap@kowhai.nz",
                                      tax_id="9429041234564"))  # fmt: skip
    second = apply(db, clock, customer("product", "p1", email="hello@other.nz",
                                       tax_id="9429041234564"))  # fmt: skip
    assert second.canonical_id != first.canonical_id


def test_an_abn_links_and_a_different_abn_vetoes_the_email(db: Database, clock: FixedClock) -> None:
    first = apply(db, clock, customer("stripe", "cus_1", email="ap@harbour.com.au",
                                      tax_id="abn:51 824 753 556"))  # fmt: skip
    same = apply(db, clock, customer("product", "p1", email="x@y.au", tax_id="51824753556"))
    other = apply(db, clock, customer("xero", "c1", email="ap@harbour.com.au",
                                      tax_id="53004085616"))  # fmt: skip
    assert (same.canonical_id, same.rule) == (first.canonical_id, "tax_id")
    assert other.canonical_id != first.canonical_id  # same email, another business number


def test_the_products_id_in_vendor_metadata_links(db: Database, clock: FixedClock) -> None:
    product = apply(db, clock, customer("product", "p1", email="aroha@kowhai.nz",
                                        product_account_id="acct_42"))  # fmt: skip
    stripe = apply(db, clock, customer("stripe", "cus_1", email="billing@kowhai-cafe.nz",
                                       product_account_id="acct_42"))  # fmt: skip
    assert (stripe.canonical_id, stripe.rule) == (product.canonical_id, "product_id")


def test_emails_on_records_from_before_match_keys_still_link(
    db: Database, clock: FixedClock
) -> None:
    first = apply(db, clock, customer("stripe", "cus_1", email="aroha@kowhai.nz"))
    with db.write() as conn:
        conn.execute(sa.delete(match_keys))
    second = apply(db, clock, customer("product", "p1", email="aroha@kowhai.nz"))
    assert (second.canonical_id, second.rule) == (first.canonical_id, "email")


# -- fuzzy ------------------------------------------------------------------------------------


def test_above_link_at_macrons_and_legal_forms_link_automatically(
    db: Database, clock: FixedClock
) -> None:
    first = apply(db, clock, customer("stripe", "cus_1", name="Māori Tech Ltd",
                                      email="info@maoritech.co.nz"))  # fmt: skip
    stripe_names: OwnerOf = lambda entity, field: "stripe" if field == "name" else None  # noqa: E731
    second = apply(db, clock, customer("product", "p1", name="Maori Tech Limited",
                                       email="accounts@maoritech.co.nz"),
                   owner_of=stripe_names)  # fmt: skip
    assert (second.canonical_id, second.rule) == (first.canonical_id, "fuzzy")
    [golden] = customers(db)
    assert golden["name"] == "Māori Tech Ltd"  # matching folds macrons; the record keeps them
    assert second.conflicts == 1  # the owner's spelling stands; the other is a conflict
    with db.read() as conn:
        row = conn.execute(
            sa.select(store.crosswalk).where(store.crosswalk.c.external_id == "p1")
        ).mappings().one()  # fmt: skip
    assert row["reason"] == "fuzzy"
    assert row["score"] >= 0.95


def test_between_the_thresholds_a_candidate_waits_with_its_own_record(
    db: Database, clock: FixedClock
) -> None:
    target = apply(db, clock, customer("product", "p1", name="Aroha Ngata",
                                       email="aroha@kowhai.nz"))  # fmt: skip
    pending = apply(db, clock, customer("stripe", "cus_1", name="Aroha Ngatta",
                                        email="a.ngata@kowhai.nz"))  # fmt: skip
    assert pending.canonical_id != target.canonical_id
    assert pending.rule == "new"
    assert pending.events == ["customer.created"]  # nothing it says is held back
    [candidate] = open_candidates(db)
    assert candidate["id"] == pending.candidates[0]
    assert (candidate["record_id"], candidate["target_id"]) == (
        pending.canonical_id,
        target.canonical_id,
    )
    assert (candidate["system"], candidate["external_id"]) == ("stripe", "cus_1")
    assert 0.6 <= candidate["score"] < 0.95
    assert candidate["evidence"] == {"domain": "exact", "email": "different", "name": "close"}


def test_below_review_at_a_new_record_and_no_candidate(db: Database, clock: FixedClock) -> None:
    first = apply(db, clock, customer("product", "p1", name="Aroha Ngata",
                                      email="aroha@kowhai.nz"))  # fmt: skip
    second = apply(db, clock, customer("stripe", "cus_1", name="Aroha Ngata",
                                       email="mahi@pohutukawa.nz"))  # fmt: skip
    assert second.canonical_id != first.canonical_id
    assert second.candidates == []
    assert open_candidates(db) == []


def test_a_sources_own_records_never_match_each_other(db: Database, clock: FixedClock) -> None:
    apply(db, clock, customer("stripe", "cus_1", name="Māori Tech Ltd", email="a@maoritech.nz"))
    apply(db, clock, customer("stripe", "cus_2", name="Maori Tech", email="b@maoritech.nz"))
    assert len(customers(db)) == 2
    assert open_candidates(db) == []


def test_the_registers_thresholds_decide(db: Database, clock: FixedClock) -> None:
    apply(db, clock, customer("product", "p1", name="Aroha Ngata", email="aroha@kowhai.nz"))
    eager = MatchThresholds(link_at=0.75, review_at=0.5)
    linked = apply(db, clock, customer("stripe", "cus_1", name="Aroha Ngatta",
                                       email="a.ngata@kowhai.nz"), thresholds=eager)  # fmt: skip
    strict = MatchThresholds(link_at=0.99, review_at=0.9)
    apply(db, clock, customer("product", "p2", name="Tama Ngata", email="tama@kowhai.nz"))
    alone = apply(db, clock, customer("stripe", "cus_2", name="Tama Ngatta",
                                      email="t.ngata@kowhai.nz"), thresholds=strict)  # fmt: skip
    assert linked.rule == "fuzzy"
    assert (alone.rule, alone.candidates) == ("new", [])


def test_two_records_above_link_at_go_to_a_person(db: Database, clock: FixedClock) -> None:
    """Each of two different customers would be linked on its own: a person picks one."""
    apply(db, clock, customer("product", "p1", name="Māori Tech", email="a@maoritech.nz"))
    apply(db, clock, customer("hubspot", "h1", name="Maori Tech", email="mt@other.nz",
                              phone="+64 21 123 4567"))  # fmt: skip
    assert len(customers(db)) == 2
    third = apply(db, clock, customer("stripe", "cus_1", name="Maori Tech Limited",
                                      email="c@maoritech.nz", phone="021 123 4567"))  # fmt: skip
    assert third.rule == "new"
    assert len(third.candidates) == 2


# -- history and rejections -------------------------------------------------------------------


def test_the_crosswalk_history_records_rule_score_actor_and_time(
    db: Database, clock: FixedClock
) -> None:
    first = apply(db, clock, customer("stripe", "cus_1", name="Māori Tech Ltd",
                                      email="info@maoritech.co.nz"))  # fmt: skip
    apply(db, clock, customer("product", "p1", name="Maori Tech Limited",
                              email="accounts@maoritech.co.nz"))  # fmt: skip
    apply(db, clock, customer("stripe", "cus_1", version=2, name="Māori Tech Ltd",
                              email="info@maoritech.co.nz", phone="021 123 4567"))  # fmt: skip
    with db.read() as conn:
        history = links.history_of(conn, workspace="w", entity="customer",
                                   canonical_id=first.canonical_id)  # fmt: skip
    assert [(h["system"], h["action"], h["rule"], h["actor"]) for h in history] == [
        ("stripe", "linked", "new", "synchub"),
        ("product", "linked", "fuzzy", "synchub"),
    ]  # the second Stripe observation was a crosswalk hit: no new entry
    assert history[0]["score"] is None
    assert history[1]["score"] >= 0.95
    assert history[1]["changed_at"] == clock.now()


def test_a_rejected_pair_is_never_proposed_again(db: Database, clock: FixedClock) -> None:
    target = apply(db, clock, customer("product", "p1", name="Aroha Ngata",
                                       email="aroha@kowhai.nz"))  # fmt: skip
    strict = MatchThresholds(link_at=0.99, review_at=0.9)
    pending = apply(db, clock, customer("stripe", "cus_1", name="Aroha Ngatta",
                                        email="a.ngata@kowhai.nz"), thresholds=strict)  # fmt: skip
    assert pending.candidates == []
    with db.write() as conn:  # the thresholds were lowered: look again
        [proposed] = matcher.rematch(conn, workspace="w", entity="customer", system="stripe",
                                     external_id="cus_1", at=clock.now())  # fmt: skip
        candidates.reject(conn, context(clock), candidate_id=proposed, actor="reviewer")
    with db.write() as conn:
        again = matcher.rematch(conn, workspace="w", entity="customer", system="stripe",
                                external_id="cus_1", at=clock.now())  # fmt: skip
        reverse = matcher.rematch(conn, workspace="w", entity="customer", system="product",
                                  external_id="p1", at=clock.now())  # fmt: skip
    assert (again, reverse) == ([], [])
    with db.read() as conn:
        rows = conn.execute(sa.select(match_candidates)).mappings().all()
    assert [(r["canonical_id"], r["target_id"], r["status"]) for r in rows] == [
        (pending.canonical_id, target.canonical_id, "rejected")
    ]


def test_a_deleted_source_record_stops_matching(db: Database, clock: FixedClock) -> None:
    apply(db, clock, customer("stripe", "cus_1", email="aroha@kowhai.nz"))
    gone = customer("stripe", "cus_1", version=2, email="aroha@kowhai.nz")
    apply(db, clock, replace(gone, deleted=True))
    later = apply(db, clock, customer("product", "p1", email="aroha@kowhai.nz"))
    assert later.rule == "new"


def test_the_registers_weights_decide(db: Database, clock: FixedClock) -> None:
    """Weights learned with `synchub match train --write` are the ones the matcher scores
    with: a prior that makes any pair improbable turns a fuzzy link into a new record."""
    apply(db, clock, customer("stripe", "cus_1", name="Māori Tech Ltd",
                              email="info@maoritech.co.nz"))  # fmt: skip
    doubtful = MatchThresholds(weights={"prior": -60.0})
    alone = apply(db, clock, customer("product", "p1", name="Maori Tech Limited",
                                      email="accounts@maoritech.co.nz"),
                  thresholds=doubtful)  # fmt: skip
    assert (alone.rule, alone.candidates) == ("new", [])
    linked = apply(db, clock, customer("product", "p2", name="Maori Tech Limited",
                                       email="billing@maoritech.co.nz"))  # fmt: skip
    assert linked.rule == "fuzzy"  # the shipped weights link the same kind of record
