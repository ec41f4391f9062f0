"""Property (Hypothesis): merging any two golden records and then unmerging restores both,
fields, crosswalk rows, source records, keys, provenance and dependants, exactly; a merge the
hub refuses changes nothing."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from synchub.core.clock import FixedClock
from synchub.core.errors import ConflictError
from synchub.db import Database
from synchub.mapping.model import Observation
from synchub.mdm import merge, service
from synchub.mdm.model import OwnerOf
from tests.integration.test_matching import AT, context, customer
from tests.integration.test_unmerge import snapshot

SYSTEMS = ("product", "stripe", "xero", "hubspot")
OWNERS = {"email": "stripe", "name": "product", "phone": "hubspot"}
owner_of: OwnerOf = lambda entity, field: OWNERS.get(field) if entity == "customer" else None  # noqa: E731
_examples = itertools.count()

text = st.one_of(
    st.none(),
    st.sampled_from(["Aroha Ngata", "Māori Tech Ltd", "Zoë O'Brien", "", "Ōtautahi Co"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12),
)
record = st.fixed_dictionaries(
    {
        "name": text,
        "phone": st.one_of(st.none(), st.sampled_from(["021 555 0101", "+64 9 123 4567"])),
        "country": st.one_of(st.none(), st.sampled_from(["NZ", "AU", "GB"])),
        "company_name": text,
    }
)


def side(systems: list[str]) -> st.SearchStrategy[Any]:
    """One record: its sources, what they say, their version, a subscription's status."""
    return st.tuples(
        st.just(systems),
        record,
        st.integers(min_value=1, max_value=10),
        st.sampled_from([None, "active", "canceled", "trialing"]),
    )


@st.composite
def pair(draw: st.DrawFn) -> tuple[Any, Any]:
    """Two records, mostly from different systems; sometimes sharing one (a refused merge)."""
    order = draw(st.permutations(SYSTEMS))
    cut = draw(st.integers(min_value=1, max_value=len(SYSTEMS) - 1))
    mine, theirs = list(order[:cut]), list(order[cut:])
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        theirs.append(mine[0])
    return draw(side(mine)), draw(side(theirs))


def _sub(external_id: str, customer_id: str, status: str) -> Observation:
    return Observation(system="stripe", object_type="subscription", entity="subscription",
                       external_id=external_id, fields={"status": status, "currency": "NZD"},
                       refs={"customer_id": ("customer", customer_id)}, lines=(),
                       mapping_version="test.v1", source_version=1, observed_at=AT)  # fmt: skip


def _build(db: Database, clock: FixedClock, workspace: str, label: str, spec: Any) -> str | None:
    """One golden record from several sources (linked by its own distinct email)."""
    systems, fields, version, status = spec
    canonical: str | None = None
    with db.write() as conn:
        for i, system in enumerate(systems):
            said = {**fields, "email": f"{label}-{workspace}@example.nz"}
            obs = customer(system, f"{label}-{system}", version=version + i, **said)
            outcome = service.apply_observation(conn, obs, context(clock, workspace),
                                                owner_of=owner_of)  # fmt: skip
            if canonical not in (None, outcome.canonical_id):
                return None  # the matcher split them: not one record
            canonical = outcome.canonical_id
        if status and "stripe" in systems:
            service.apply_observation(conn, _sub(f"sub-{label}", f"{label}-stripe", status),
                                      context(clock, workspace), owner_of=owner_of)  # fmt: skip
    return canonical


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(records=pair())
def test_merge_then_unmerge_restores_both_records(
    sqlite_db: Database, clock: FixedClock, records: tuple[Any, Any]
) -> None:
    first, second = records
    workspace = f"p{next(_examples)}"  # each example in a workspace of its own
    survivor = _build(sqlite_db, clock, workspace, "a", first)
    merged = _build(sqlite_db, clock, workspace, "b", second)
    if survivor is None or merged is None or survivor == merged:
        event("matched at ingest")
        return  # nothing to merge (the generator cannot always avoid the matcher linking)
    before = snapshot(sqlite_db, workspace)
    try:
        with sqlite_db.write() as conn:
            done = merge.merge_into(conn, context(clock, workspace), entity="customer",
                                    survivor_id=survivor, merged_id=merged, owner_of=owner_of,
                                    rule="manual", actor="prop")  # fmt: skip
    except ConflictError:
        refused = True
    else:
        refused = False
    event("refused" if refused else "merged")
    assert refused == bool(set(first[0]) & set(second[0]))  # only two ids from one system
    if refused:
        assert snapshot(sqlite_db, workspace) == before
        return
    with sqlite_db.write() as conn:
        merge.unmerge(conn, context(clock, workspace), merge_id=done.merge_id, actor="prop")
    assert snapshot(sqlite_db, workspace) == before
