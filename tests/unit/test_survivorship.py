"""Field ownership: the owner always wins; a disagreeing non-owner is a conflict."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from synchub.mdm.model import Provenance, survive

OWNERS = {("customer", "email"): "stripe", ("customer", "name"): "product"}


def owner_of(entity: str, field: str) -> str | None:
    return OWNERS.get((entity, field))


def test_the_owner_sets_and_clears_its_field() -> None:
    current = {"email": "a@x.nz"}
    prov = {"email": Provenance("stripe", 1)}
    decision = survive(
        "customer",
        current,
        {"email": None},
        source="stripe",
        source_version=2,
        provenance=prov,
        owner_of=owner_of,
    )
    assert decision.changes == {"email": None}


def test_a_non_owner_disagreeing_with_the_owner_is_a_conflict_and_not_applied() -> None:
    current = {"name": "Aroha Ngāta"}
    prov = {"name": Provenance("product", 5)}
    decision = survive(
        "customer",
        current,
        {"name": "Aroha Ngata"},
        source="stripe",
        source_version=9,
        provenance=prov,
        owner_of=owner_of,
    )
    assert decision.changes == {}
    [conflict] = decision.conflicts
    assert (conflict.field, conflict.owner, conflict.other_system) == ("name", "product", "stripe")
    assert (conflict.owner_value, conflict.other_value) == ("Aroha Ngāta", "Aroha Ngata")


def test_a_non_owner_fills_a_field_the_owner_has_not_spoken_for() -> None:
    decision = survive(
        "customer",
        {"name": None},
        {"name": "Mere"},
        source="stripe",
        source_version=1,
        provenance={},
        owner_of=owner_of,
    )
    assert decision.changes == {"name": "Mere"}


def test_unowned_fields_take_the_most_recent_value_by_source_version() -> None:
    prov = {"phone": Provenance("hubspot", 10)}
    older = survive(
        "customer",
        {"phone": "1"},
        {"phone": "2"},
        source="stripe",
        source_version=5,
        provenance=prov,
        owner_of=owner_of,
    )
    newer = survive(
        "customer",
        {"phone": "1"},
        {"phone": "2"},
        source="stripe",
        source_version=11,
        provenance=prov,
        owner_of=owner_of,
    )
    assert older.changes == {}
    assert newer.changes == {"phone": "2"}


values = st.one_of(st.none(), st.text(max_size=5))


@given(
    current=values,
    proposed=values,
    source=st.sampled_from(["stripe", "hubspot", "xero"]),
    version=st.integers(0, 100),
)
def test_survivorship_never_lets_a_non_owner_value_replace_the_owners(
    current: Any, proposed: Any, source: str, version: int
) -> None:
    prov = {"name": Provenance("product", 50)}
    decision = survive(
        "customer",
        {"name": current},
        {"name": proposed},
        source=source,
        source_version=version,
        provenance=prov,
        owner_of=owner_of,
    )
    if current is not None:
        assert "name" not in decision.changes
