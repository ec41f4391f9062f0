"""Running an API write at most once per Idempotency-Key.

The key's row is written in the same transaction as the handler and its outbox rows, so a
rollback forgets the key and the client may retry with it. While the first request runs, a
second one with the same key gets 409 with Retry-After: 1 (threads in this process through
an in-process registry; other processes through a PostgreSQL advisory lock; on SQLite the
single writer makes the second wait and then replay).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from synchub.core.errors import ConflictError, ValidationError
from synchub.idempotency import store
from synchub.idempotency.model import Scope

RETENTION = timedelta(hours=48)  # ≥ 24 h as published; purged after 48 h (STANDARDS §10)


class KeyReusedError(ValidationError):
    """The same key was sent with a different request (422)."""

    code = "idempotency_key_reused"


@dataclass(frozen=True)
class Outcome:
    """A response to send: either produced now or replayed from the first request."""

    status_code: int
    body: Any
    replayed: bool


class InFlight:
    """Keys whose first request is still running in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[Scope] = set()

    @contextmanager
    def hold(self, scope: Scope) -> Iterator[None]:
        """Mark a key as running; ConflictError if it already is."""
        with self._lock:
            if scope in self._running:
                raise ConflictError(
                    "a request with this Idempotency-Key is still running", retry_after=1
                )
            self._running.add(scope)
        try:
            yield
        finally:
            with self._lock:
                self._running.discard(scope)


Handler = Callable[[Connection], tuple[int, Any]]


def run_once(
    conn: Connection, scope: Scope | None, *, fingerprint: str, now: datetime, handler: Handler
) -> Outcome:
    """Run the handler inside the caller's transaction unless the key already has an outcome."""
    if scope is None:
        status, body = handler(conn)
        return Outcome(status, body, replayed=False)
    if not store.try_lock(conn, scope):
        raise ConflictError("a request with this Idempotency-Key is still running", retry_after=1)
    stored = store.find(conn, scope)
    if stored is not None and stored["expires_at"] <= now:
        store.delete_expired(conn, now=now)  # past retention: the key is free again
        stored = None
    if stored is not None:
        if stored["fingerprint"] != fingerprint:
            raise KeyReusedError("this Idempotency-Key was used for a different request")
        return Outcome(stored["status_code"], stored["response_body"], replayed=True)
    status, body = handler(conn)
    store.save(
        conn,
        scope,
        fingerprint=fingerprint,
        status_code=status,
        body=body,
        now=now,
        expires_at=now + RETENTION,
    )
    return Outcome(status, body, replayed=False)


def purge_expired(conn: Connection, *, now: datetime) -> int:
    """Delete keys past their retention (they hold response bodies with personal data)."""
    return store.delete_expired(conn, now=now)
