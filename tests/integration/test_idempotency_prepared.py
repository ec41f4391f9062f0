"""Idempotency rows and audit entries written on the transaction's SQLite connection
(db.Prepared, ADR 0015) are the rows SQLAlchemy itself writes, in the same transaction."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from synchub.audit import store as audit_store
from synchub.audit.service import ChainHead, chain_key, record, verify_chain
from synchub.core.clock import FixedClock
from synchub.db import Database
from synchub.idempotency import store
from synchub.idempotency.model import Scope

KEY = chain_key(os.urandom(32))
BODY = {"id": "cus_1", "name": "Zoë", "nested": {"n": [1, 2.5, None, True]}, "request_id": "r"}


def scope(key: str) -> Scope:
    return Scope("cli_1", "POST", "/v1/customers", key)


def save(db: Database, key: str, clock: FixedClock) -> None:
    now = clock.now()
    with db.write() as conn:
        store.save(conn, scope(key), fingerprint="f" * 64, status_code=201, body=BODY, now=now,
                   expires_at=now + timedelta(hours=48))  # fmt: skip


def stored(db: Database, table: str, where: str) -> list[tuple[Any, ...]]:
    """The raw stored values and their SQLite types, read past SQLAlchemy."""
    with db.read() as conn:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        columns = [r[1] for r in cursor.execute(f"PRAGMA table_info({table})").fetchall()]
        typed = ", ".join(f"{c}, typeof({c})" for c in columns if c != "seq")
        query = f"SELECT {typed} FROM {table} WHERE {where}"  # noqa: S608 - test constants
        return cursor.execute(query).fetchall()


def test_a_saved_key_is_stored_and_read_exactly_as_sqlalchemy_does(
    sqlite_db: Database, clock: FixedClock
) -> None:
    with sqlite_db.write() as conn:
        assert store._SAVE._plan(conn) is not None  # the direct path, not conn.execute
    save(sqlite_db, "fast", clock)
    now = clock.now()
    with sqlite_db.write() as conn:  # the same row through SQLAlchemy's own execution
        conn.execute(sa.insert(store.idempotency_keys), {
            "client_id": "cli_1", "method": "POST", "route": "/v1/customers", "key": "slow",
            "fingerprint": "f" * 64, "status_code": 201, "response_body": BODY,
            "created_at": now, "expires_at": now + timedelta(hours=48)})  # fmt: skip
    fast = stored(sqlite_db, "idempotency_keys", "key = 'fast'")
    slow = stored(sqlite_db, "idempotency_keys", "key = 'slow'")
    assert len(fast) == 1
    assert [v for i, v in enumerate(fast[0]) if i != 6] == [
        v
        for i, v in enumerate(slow[0])
        if i != 6  # column 6 is the key itself
    ]
    with sqlite_db.read() as conn:
        found = store.find(conn, scope("fast"))
        through_sqlalchemy = (
            conn.execute(
                sa.select(store.idempotency_keys).where(store.idempotency_keys.c.key == "slow")
            )
            .mappings()
            .one()
        )
    assert found is not None
    assert found == {**dict(through_sqlalchemy), "key": "fast"}
    assert found["response_body"] == BODY
    assert found["expires_at"] == now + timedelta(hours=48)
    assert found["expires_at"].utcoffset() == timedelta(0)


def test_the_key_row_rolls_back_with_its_transaction(
    sqlite_db: Database, clock: FixedClock
) -> None:
    now = clock.now()

    def failing_write() -> None:
        with sqlite_db.write() as conn:
            store.save(conn, scope("lost"), fingerprint="f" * 64, status_code=201, body=BODY,
                       now=now, expires_at=now + timedelta(hours=48))  # fmt: skip
            assert store.find(conn, scope("lost")) is not None  # seen inside the transaction
            raise RuntimeError("the handler failed after the key was written")

    with pytest.raises(RuntimeError):
        failing_write()
    with sqlite_db.read() as conn:
        assert store.find(conn, scope("lost")) is None


def test_a_duplicate_key_is_sqlalchemys_integrity_error(
    sqlite_db: Database, clock: FixedClock
) -> None:
    save(sqlite_db, "twice", clock)
    with pytest.raises(sa.exc.IntegrityError):
        save(sqlite_db, "twice", clock)
    with sqlite_db.read() as conn:
        assert store.find(conn, scope("twice")) is not None


def test_outside_a_transaction_sqlalchemy_executes_and_begins_one(
    sqlite_db: Database, clock: FixedClock
) -> None:
    save(sqlite_db, "k", clock)
    with sqlite_db.engine.connect() as conn:
        assert not conn.in_transaction()
        assert store.find(conn, scope("k")) is not None
        assert conn.in_transaction()  # SQLAlchemy's autobegin ran, not a bare statement


def test_audit_entries_match_sqlalchemys_and_the_chain_verifies(
    sqlite_db: Database, clock: FixedClock
) -> None:
    head = ChainHead()
    with sqlite_db.write() as conn:
        first = record(conn, key=KEY, at=clock.now(), actor="cli_1", action="a", head=head)
        second = record(conn, key=KEY, at=clock.now(), actor="cli_1", action="b", head=head,
                        workspace="live", target="cus_1", request_id="req_1")  # fmt: skip
    stale = ChainHead()
    stale.hash = "0" * 64  # not the head: the hinted append writes nothing, the read one does
    with sqlite_db.write() as conn:
        third = record(conn, key=KEY, at=clock.now(), actor="cli_1", action="c", head=stale)
        assert audit_store.last_hash(conn) == stale.hash
    with sqlite_db.read() as conn:
        rows = audit_store.all_in_order(conn)
        assert verify_chain(conn, key=KEY) == []
    assert [r["id"] for r in rows] == [first, second, third]
    assert rows[1]["at"] == clock.now()
    entry = {k: v for k, v in rows[1].items() if k not in ("seq", "id", "hash")}
    with sqlite_db.write() as conn:  # the same entry through SQLAlchemy, for the stored form
        conn.execute(sa.insert(audit_store.audit_log), {**entry, "id": "aud_x", "hash": "h"})
    ours = stored(sqlite_db, "audit_log", f"id = '{second}'")[0]
    theirs = stored(sqlite_db, "audit_log", "id = 'aud_x'")[0]
    assert ours[2:18] == theirs[2:18]  # at .. prev_hash, with their SQLite types
