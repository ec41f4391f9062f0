"""The Intercom contact pull is tie-safe at its cursor: with many contacts in one second,
pages cut anywhere, runs stopped after any page and contacts changing between runs, every
contact version is read exactly once (never skipped, never twice)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from synchub.connectors.intercom.client import IntercomClient
from synchub.connectors.intercom.pull import ContactCursor, ContactPull, take
from synchub.connectors.intercom.sandbox import IntercomSandbox
from synchub.core.clock import FixedClock

START = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)


class MemoryCursorStore:
    """A cursor kept in memory (the file store is exercised elsewhere)."""

    def __init__(self) -> None:
        self.cursor = ContactCursor()

    def load(self) -> ContactCursor:
        return self.cursor

    def save(self, cursor: ContactCursor) -> None:
        self.cursor = cursor


def _workspace(clock: FixedClock) -> tuple[IntercomSandbox, IntercomClient]:
    box = IntercomSandbox(clock=clock)
    client = IntercomClient(httpx.Client(transport=box.transport()), token=box.token, clock=clock)
    return box, client


def test_the_cursor_remembers_ids_within_a_second() -> None:
    a, b, c = ({"id": i, "updated_at": 10} for i in ("b", "a", "c"))
    fresh, cursor = take(ContactCursor(), [a, b])
    assert fresh == [a, b]
    assert cursor == ContactCursor(10, frozenset({"a", "b"}))
    again, cursor = take(cursor, [b, c, a])  # the same second re-read in another order
    assert again == [c]
    assert cursor.seen == {"a", "b", "c"}
    newer = {"id": "a", "updated_at": 11}  # a changed again: a new version
    assert take(cursor, [newer]) == ([newer], ContactCursor(11, frozenset({"a"})))
    assert ContactCursor.from_json(cursor.to_json()) == cursor
    assert cursor.query() == {"field": "updated_at", "operator": ">", "value": 9}


@settings(max_examples=40, deadline=None)
@given(
    seconds=st.lists(st.integers(0, 2), min_size=1, max_size=40),
    per_page=st.integers(1, 7),
    stops=st.lists(st.integers(1, 4), min_size=1, max_size=6),
    changes=st.lists(st.integers(0, 39), max_size=10),
)
def test_every_version_is_read_exactly_once(
    seconds: list[int], per_page: int, stops: list[int], changes: list[int]
) -> None:
    clock = FixedClock(START)
    box, client = _workspace(clock)
    ids = []
    for step in seconds:  # contacts made in bursts that share a second
        clock.advance(timedelta(seconds=step))
        ids.append(box.create_contact(email=f"c{len(ids)}@example.nz", role="user"))
    store, read = MemoryCursorStore(), []
    pull = ContactPull(client, per_page=per_page)
    for run, stop in enumerate(stops):  # each run is cut short, as a killed process would be
        for fresh, cursor in pull.pages(store.load(), max_pages=stop):
            read += [(c["id"], c["updated_at"]) for c in fresh]
            store.save(cursor)
        for index in changes[run :: len(stops)]:  # contacts change between runs
            if run % 2:
                clock.advance(timedelta(seconds=1))
            box.contacts[ids[index % len(ids)]]["updated_at"] = int(clock.now().timestamp())
    for fresh, cursor in pull.pages(store.load()):  # a last run to the end
        read += [(c["id"], c["updated_at"]) for c in fresh]
        store.save(cursor)
    assert len(read) == len(set(read)), "a contact version was read twice"
    final = {(c["id"], c["updated_at"]) for c in box.contacts.values()}
    assert final <= set(read), "a contact was skipped"


def test_a_naive_id_cursor_would_skip_ties() -> None:
    """Why the cursor keeps a set: Intercom does not order contacts of one second by id, so
    'after (second, last id)' loses the ones that sort before the last id."""
    clock = FixedClock(START)
    box, client = _workspace(clock)
    for n in range(12):
        box.create_contact(email=f"t{n}@example.nz")
    ascending = {"field": "updated_at", "order": "ascending"}
    first = client.search_contacts(ContactCursor().query(), per_page=6, sort=ascending)["data"]
    last_id = max(c["id"] for c in first)  # what a (second, id) cursor would keep
    rest = [c for c in box.contacts.values() if c["id"] not in {x["id"] for x in first}]
    assert any(c["id"] < last_id for c in rest)  # a naive cursor would skip these
    _fresh, cursor = take(ContactCursor(), first)
    again, _ = take(cursor, list(box.contacts.values()))
    assert {c["id"] for c in again} == {c["id"] for c in rest}
