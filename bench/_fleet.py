"""The delivery bench's workers, and its two baselines laid out the same way.

Workers run the way each database is deployed: on SQLite, N `Worker` instances on threads of
the bench process sharing one hub (SQLite allows one writer; each Worker has its own pool of
delivery threads); on PostgreSQL, N `synchub worker` processes. The bare httpx loop and the
bare claim-and-mark-done loop use threads of the bench process for SQLite, and one helper
process per worker for PostgreSQL (`python bench/_fleet.py helper ...`, commands on stdin),
so neither side gets more interpreters than the other.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import sqlalchemy as sa

from _rig import DESTINATIONS, IDLE_SLEEP_SECONDS, SYNCHUB, Store, child_env, claim_until_empty
from _sink import post_many
from synchub.db import make_database


def run_threads(count: int, target: Any) -> tuple[float, float]:
    """Run target(i) on `count` threads from a common start; (start, end) wall-clock times."""
    start = threading.Barrier(count + 1)
    threads = [threading.Thread(target=lambda i=i: (start.wait(), target(i))) for i in range(count)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.time()
    for thread in threads:
        thread.join()
    return began, time.time()


# -- workers and helpers ----------------------------------------------------------------------


@dataclass
class Fleet:
    """N workers plus the baseline helpers laid out the same way."""

    store: Store
    workers: int
    threads: int
    sink_url: str
    env: dict[str, str]
    in_process: list[Any] = field(default_factory=list)  # Worker instances (SQLite)
    hub: Any = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    helpers: list[subprocess.Popen[str]] = field(default_factory=list)
    client: httpx.Client | None = None

    def start(self) -> None:
        """Start the workers (threads or processes) and, for processes, one helper each."""
        if self.store.engine == "sqlite":
            from synchub.bootstrap import build_hub
            from synchub.config import Settings
            from synchub.worker import Worker

            values: dict[str, Any] = {
                k.removeprefix("SYNCHUB_").lower(): v for k, v in self.env.items()
            }
            self.hub = build_hub(Settings(**values))
            self.in_process = [
                Worker(self.hub, worker_id=f"bench-{i}") for i in range(self.workers)
            ]
            for worker in self.in_process:
                worker.start(idle_sleep=IDLE_SLEEP_SECONDS)
            self.client = httpx.Client(trust_env=False, timeout=15)
            return
        for i in range(self.workers):
            url = f"{self.store.url}?application_name=bench-worker-{i}"
            self.procs.append(
                subprocess.Popen(
                    [str(SYNCHUB), "worker"],
                    env=child_env({**self.env, "SYNCHUB_DATABASE_URL": url}),
                )
            )
            self.helpers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "helper",
                        self.sink_url,
                        self.store.url,
                        str(self.threads),
                        f"bare-{i}",
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    env=child_env({}),
                )
            )
        self.wait_for_processes()

    def wait_for_processes(self, timeout: float = 60.0) -> None:
        """Wait until every worker process has connected to the database."""
        wanted = {f"bench-worker-{i}" for i in range(self.workers)}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.store.db.read() as conn:
                names = set(
                    conn.execute(sa.text("SELECT application_name FROM pg_stat_activity")).scalars()
                )
            if wanted <= names:
                return
            if any(p.poll() is not None for p in self.procs):
                break
            time.sleep(0.1)
        raise RuntimeError("the worker processes did not start")

    def check_alive(self) -> None:
        """Raise if a worker process has exited."""
        if dead := [p.args for p in self.procs if p.poll() is not None]:
            raise RuntimeError(f"a worker process exited: {dead}")

    def wake(self) -> None:
        """Wake in-process workers, as `synchub serve` does when work arrives; processes are
        woken by the outbox write's NOTIFY."""
        for worker in self.in_process:
            worker.wake()

    def post(self, count: int) -> tuple[float, float]:
        """The bare httpx loop at the workers' concurrency; (start, end) wall-clock times."""
        urls = [f"{self.sink_url}/{name}" for name in DESTINATIONS]
        if self.client is not None:
            began = post_many(self.client, urls, count, threads=self.workers * self.threads)
            return began, time.time()
        shares = [count // self.workers + (i < count % self.workers) for i in range(self.workers)]
        return self._ask([f"post {share}" for share in shares])

    def claim(self) -> tuple[float, float]:
        """The bare claim loop, one loop per worker claiming `threads` rows at a time."""
        if self.client is not None:
            return run_threads(
                self.workers,
                lambda i: claim_until_empty(self.store.db, batch=self.threads, owner=f"bare-{i}"),
            )
        return self._ask(["claim"] * self.workers)

    def _ask(self, commands: Sequence[str]) -> tuple[float, float]:
        for helper, command in zip(self.helpers, commands, strict=True):
            assert helper.stdin is not None
            helper.stdin.write(command + "\n")
            helper.stdin.flush()
        answers = [json.loads(h.stdout.readline()) for h in self.helpers if h.stdout]
        return min(a[0] for a in answers), max(a[1] for a in answers)

    def stop(self) -> None:
        """Stop workers and helpers."""
        for worker in self.in_process:
            worker.stop()
        if self.hub is not None:
            self.hub.close()
        if self.client is not None:
            self.client.close()
        children: list[subprocess.Popen[Any]] = [*self.procs, *self.helpers]
        for proc in children:
            proc.terminate()
        for proc in children:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def run_helper(sink_url: str, db_url: str, threads: int, owner: str) -> None:
    """A baseline helper process: answer `post N` and `claim` commands with start/end times."""
    urls = [f"{sink_url}/{name}" for name in DESTINATIONS]
    db = make_database(db_url)
    with httpx.Client(trust_env=False, timeout=15) as client:
        for line in sys.stdin:
            command, _, arg = line.strip().partition(" ")
            if command == "post":
                began = post_many(client, urls, int(arg), threads=threads)
            else:
                began = time.time()
                claim_until_empty(db, batch=threads, owner=owner)
            print(json.dumps([began, time.time()]), flush=True)
    db.dispose()


if __name__ == "__main__" and sys.argv[1:2] == ["helper"]:
    run_helper(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
