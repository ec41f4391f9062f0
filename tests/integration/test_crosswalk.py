"""The crosswalk: one canonical id per record, linked to each system's id, with the reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from synchub.core.clock import FixedClock
from synchub.core.errors import LinkConflictError
from synchub.db import Database
from synchub.events.outbox import EventContext
from synchub.mapping.model import Observation
from synchub.mdm import service, store

AT = datetime(2026, 12, 3, tzinfo=UTC)


def _customer(system: str, external_id: str, email: str, version: int = 1) -> Observation:
    return Observation(
        system=system,
        object_type="customer",
        entity="customer",
        external_id=external_id,
        fields={"email": email, "name": "Aroha Ngāta"},
        refs={},
        lines=(),
        mapping_version="test.v1",
        source_version=version,
        observed_at=AT,
    )


def _ctx(clock: FixedClock) -> EventContext:
    return EventContext(
        workspace="w",
        source="/synchub/w/test",
        traceparent=None,
        mapping_version="test.v1",
        app_version="test",
        now=clock.now(),
    )


def _apply(db: Database, clock: FixedClock, obs: Observation) -> service.Outcome:
    with db.write() as conn:
        return service.apply_observation(conn, obs, _ctx(clock), owner_of=lambda e, f: None)


def test_a_new_record_gets_a_prefixed_canonical_id_and_a_link(
    db: Database, clock: FixedClock
) -> None:
    outcome = _apply(db, clock, _customer("stripe", "cus_S1", "aroha@kowhai.nz"))
    assert outcome.canonical_id is not None
    assert outcome.canonical_id.startswith("cus_")
    assert len(outcome.canonical_id) == 30
    with db.read() as conn:
        assert store.external_ids(conn, workspace="w", canonical_id=outcome.canonical_id) == {
            "stripe": "cus_S1"
        }


def test_the_same_person_from_another_system_links_by_normalised_email(
    db: Database, clock: FixedClock
) -> None:
    first = _apply(db, clock, _customer("stripe", "cus_S1", "aroha@kowhai.nz"))
    second = _apply(db, clock, _customer("hubspot", "501", "aroha@kowhai.nz"))
    assert second.canonical_id == first.canonical_id
    with db.read() as conn:
        links = store.external_ids(conn, workspace="w", canonical_id=first.canonical_id or "")
        golden = store.list_golden(conn, "customer", workspace="w")
    assert links == {"stripe": "cus_S1", "hubspot": "501"}
    assert len(golden) == 1
    assert golden[0]["name"] == "Aroha Ngāta"


def test_a_different_email_is_a_different_customer(db: Database, clock: FixedClock) -> None:
    first = _apply(db, clock, _customer("stripe", "cus_S1", "ops@kowhai.nz"))
    second = _apply(db, clock, _customer("stripe", "cus_S2", "ops+billing@kowhai.nz"))
    assert first.canonical_id != second.canonical_id


def test_a_system_id_cannot_be_linked_to_two_canonical_ids(db: Database, clock: FixedClock) -> None:
    outcome = _apply(db, clock, _customer("stripe", "cus_S1", "a@b.nz"))
    with db.write() as conn, pytest.raises(LinkConflictError, match="already linked"):
        store.link(
            conn,
            workspace="w",
            entity="customer",
            system="stripe",
            external_id="cus_S1",
            canonical_id="cus_OTHER",
            reason="test",
            at=AT,
        )
    with db.read() as conn:
        assert (
            store.find_canonical_id(
                conn, workspace="w", entity="customer", system="stripe", external_id="cus_S1"
            )
            == outcome.canonical_id
        )


def test_replaying_the_same_observation_changes_nothing(db: Database, clock: FixedClock) -> None:
    obs = _customer("stripe", "cus_S1", "a@b.nz")
    assert _apply(db, clock, obs).events == ["customer.created"]
    again = _apply(db, clock, obs)
    assert again.unchanged
    assert again.events == []


def test_an_older_observation_is_stale(db: Database, clock: FixedClock) -> None:
    _apply(db, clock, _customer("stripe", "cus_S1", "new@b.nz", version=10))
    outcome = _apply(db, clock, _customer("stripe", "cus_S1", "old@b.nz", version=5))
    assert outcome.stale
    with db.read() as conn:
        [golden] = store.list_golden(conn, "customer", workspace="w")
    assert golden["email"] == "new@b.nz"
