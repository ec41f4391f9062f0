"""The audit chain with a remembered head (ADR 0015) on SQLite and PostgreSQL: hints from
several writers, stale hints and concurrent appends all leave a chain `verify_chain` accepts."""

from __future__ import annotations

import os
import threading
from datetime import datetime

import pytest

from synchub.audit import store
from synchub.audit.service import ChainHead, chain_key, record, verify_chain
from synchub.core.clock import FixedClock
from synchub.db import Database

KEY = chain_key(os.urandom(32))


def append(db: Database, head: ChainHead | None, at: datetime, action: str = "test.write") -> str:
    with db.write() as conn:
        return record(conn, key=KEY, at=at, actor="cli_test", action=action, head=head)


def chain(db: Database) -> list[dict[str, object]]:
    with db.read() as conn:
        return store.all_in_order(conn)


def broken(db: Database) -> list[str]:
    with db.read() as conn:
        return verify_chain(conn, key=KEY)


def test_two_writers_with_their_own_hints_interleave_into_one_chain(
    db: Database, clock: FixedClock
) -> None:
    now = clock.now()
    first, second = ChainHead(), ChainHead()
    ids = [append(db, hint, now) for hint in (first, first, second, first, second, second, first)]
    rows = chain(db)
    assert [r["id"] for r in rows] == ids
    assert [r["prev_hash"] for r in rows[1:]] == [r["hash"] for r in rows[:-1]]
    assert broken(db) == []
    assert first.hash == rows[-1]["hash"]


def test_a_hint_left_by_a_rolled_back_transaction_does_not_fork_the_chain(
    db: Database, clock: FixedClock
) -> None:
    now = clock.now()
    head = ChainHead()
    append(db, head, now)

    def failing_write() -> None:
        with db.write() as conn:
            record(conn, key=KEY, at=now, actor="cli_test", action="test.lost", head=head)
            raise RuntimeError("the write fails after its audit entry")

    with pytest.raises(RuntimeError):
        failing_write()
    assert head.hash not in {r["hash"] for r in chain(db)}  # the hint names a lost entry
    append(db, head, now)
    append(db, head, now)
    assert [r["action"] for r in chain(db)] == ["test.write"] * 3
    assert broken(db) == []


def test_the_head_hint_is_used_only_while_it_is_the_newest_entry(
    db: Database, clock: FixedClock
) -> None:
    now = clock.now()
    head = ChainHead()
    append(db, head, now)
    stale = ChainHead()
    stale.hash = head.hash
    append(db, head, now)
    with db.write() as conn:
        row = {**chain(db)[-1], "id": "aud_forked", "hash": "f" * 64, "prev_hash": stale.hash}
        del row["seq"]
        assert store.append_after_head(conn, row) is False  # another entry came after it
        row["prev_hash"] = head.hash
        assert store.append_after_head(conn, row) is True
    assert len(chain(db)) == 3


def test_concurrent_writers_with_hints_keep_the_chain_intact(
    db: Database, clock: FixedClock
) -> None:
    now = clock.now()
    failures: list[BaseException] = []
    start = threading.Barrier(3)

    def writer(name: str) -> None:
        head = ChainHead()  # each "process" remembers only what it wrote
        start.wait()
        try:
            for n in range(15):
                append(db, head if n % 4 else None, now, action=f"test.{name}")
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(f"w{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(chain(db)) == 45
    assert broken(db) == []
