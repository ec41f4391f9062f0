"""Wake a worker when work arrives: PostgreSQL LISTEN on the work channel (ADR 0014).

Writers queue a NOTIFY in the transaction that writes the outbox row (store.insert_event), and
the dispatcher in the one that creates deliveries it did not take itself; PostgreSQL sends
them when (and only if) those transactions commit. Each worker process keeps one dedicated
connection listening. A notice only wakes the worker sooner: polling stays as the fallback,
so a notice lost while the listening connection was down costs at most one poll interval.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import structlog

from synchub.db import Database
from synchub.events.store import WORK_CHANNEL

log = structlog.get_logger(__name__)


class WorkListener:
    """A thread with its own connection that calls `on_work` for each notice on the channel."""

    def __init__(
        self,
        db: Database,
        on_work: Callable[[], None],
        *,
        ignore: str | None = None,
        check_seconds: float = 0.25,
        retry_seconds: float = 1.0,
    ) -> None:
        self._db = db
        self._on_work = on_work
        self._ignore = ignore  # a payload to skip: the worker's own notices
        self._check = check_seconds  # how often the thread looks at its stop flag
        self._retry = retry_seconds
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen in a background thread until stop()."""
        self._thread = threading.Thread(target=self._run, name="synchub-listen", daemon=True)
        self._thread.start()

    def wait_listening(self, timeout: float) -> bool:
        """Block until the channel is being listened to (tests, and a clean start)."""
        return self._listening.wait(timeout)

    def stop(self) -> None:
        """Stop listening and close the connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                connection = self._connect()
            except Exception:
                log.warning("worker.listen_failed", channel=WORK_CHANNEL, exc_info=True)
                self._stop.wait(self._retry)
                continue
            try:
                self._listen(connection)
            except Exception:
                log.warning("worker.listen_lost", channel=WORK_CHANNEL, exc_info=True)
                self._stop.wait(self._retry)
            finally:
                self._listening.clear()
                connection.close()

    def _connect(self) -> Any:
        """A psycopg connection of the engine's own making, taken out of its pool for good."""
        raw = self._db.engine.raw_connection()
        driver = raw.driver_connection
        raw.detach()  # closing it below closes the connection; the pool forgets it
        if driver is None:
            raise RuntimeError("the engine gave a connection without a driver connection")
        driver.rollback()
        driver.autocommit = True
        driver.execute(f"LISTEN {WORK_CHANNEL}")
        return driver

    def _listen(self, connection: Any) -> None:
        self._listening.set()
        self._on_work()  # whatever arrived while nobody listened
        while not self._stop.is_set():
            for notice in connection.notifies(timeout=self._check):
                if notice.payload != self._ignore:
                    self._on_work()
