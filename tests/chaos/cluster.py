"""The processes of a chaos run: the sandbox server, `synchub serve --role api`, workers, and a
driver thread that SIGKILLs a random worker every few seconds and starts it again."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.chaos.traffic import WEBHOOK_SECRET


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    """One OS process of the run, restartable under the same name."""

    name: str
    args: list[str]
    log: Path
    env: dict[str, str]
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    log_size_at_start: int = 0
    starts: int = 0

    @property
    def alive(self) -> bool:
        """Whether the process is running."""
        return self.popen is not None and self.popen.poll() is None

    @property
    def has_logged(self) -> bool:
        """Whether it wrote to its log since it last started (so it has booted and works)."""
        return self.log.exists() and self.log.stat().st_size > self.log_size_at_start


@dataclass
class Cluster:
    """Starts, kills and stops the processes of one run; their stderr goes to log files."""

    directory: Path
    env: dict[str, str]
    processes: list[Process] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)  # held across kill+restart

    def start(self, name: str, *args: str, log_level: str = "WARNING") -> Process:
        """Start `synchub <args>` as a new named process."""
        process = Process(
            name,
            [sys.executable, "-m", "synchub.cli", *args],
            self.directory / f"{name}.log",
            {**self.env, "SYNCHUB_LOG_LEVEL": log_level},
        )
        self.processes.append(process)
        self.restart(process)
        return process

    def restart(self, process: Process) -> None:
        """(Re)start a process, appending to its log."""
        with process.log.open("ab") as log:
            process.log_size_at_start = log.tell()
            process.popen = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
                process.args, env=process.env, stdout=log, stderr=subprocess.STDOUT
            )
        process.started_at = time.monotonic()
        process.starts += 1

    def kill(self, process: Process) -> None:
        """SIGKILL: no cleanup of any kind runs in the process."""
        if process.popen is not None and process.alive:
            process.popen.send_signal(signal.SIGKILL)
            process.popen.wait(30)

    def stop_all(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL)."""
        for process in self.processes:
            if process.alive and process.popen is not None:
                process.popen.terminate()
        for process in self.processes:
            if process.popen is not None:
                try:
                    process.popen.wait(10)
                except subprocess.TimeoutExpired:
                    process.popen.kill()
                    process.popen.wait(10)

    def dead_ones(self) -> list[Process]:
        """Processes that exited although nobody killed them."""
        with self.lock:
            return [p for p in self.processes if p.popen is not None and not p.alive]

    def tail(self, process: Process, lines: int = 30) -> str:
        """The end of a process's log."""
        if not process.log.exists():
            return ""
        return "\n".join(process.log.read_text(errors="replace").splitlines()[-lines:])


def wait_until_up(url: str, *, timeout: float = 90.0) -> None:
    """Poll a health URL until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not come up within {timeout:.0f} s")


class Killer(threading.Thread):
    """Every `interval` seconds, SIGKILL one random worker that is at work and start it again.

    At work: it holds delivery leases right now (`holds_leases`), or it has logged since it
    started (workers log at INFO: each inbox event and delivery attempt), or it has been up
    for `min_age` seconds; a worker still importing its modules is not worth killing. Half
    the kills go to workers holding leases when there are some: mid-delivery.
    """

    def __init__(
        self,
        cluster: Cluster,
        workers: list[Process],
        *,
        rng: random.Random,
        holds_leases: Callable[[int], bool],
        interval: tuple[float, float] = (2.0, 4.0),
        min_age: float = 30.0,
    ) -> None:
        super().__init__(name="chaos-killer", daemon=True)
        self.cluster, self.workers, self.rng = cluster, workers, rng
        self.holds_leases, self.interval, self.min_age = holds_leases, interval, min_age
        self.kills = 0
        self.kills_holding_leases = 0
        self.killed_pids: set[int] = set()
        self._stop_event = threading.Event()

    def run(self) -> None:
        """Kill and restart until stopped."""
        while not self._stop_event.wait(self.rng.uniform(*self.interval)):
            busy = {w.name for w in self.workers if w.alive and self._holds_leases(w)}
            now = time.monotonic()
            ready = [
                w
                for w in self.workers
                if w.name in busy
                or (w.alive and (w.has_logged or now - w.started_at >= self.min_age))
            ]
            if not ready:
                continue
            holding = [w for w in ready if w.name in busy]
            victim = self.rng.choice(holding if holding and self.rng.random() < 0.5 else ready)
            with self.cluster.lock:
                if victim.popen is not None:
                    self.killed_pids.add(victim.popen.pid)
                self.cluster.kill(victim)
                self.cluster.restart(victim)
            self.kills += 1
            self.kills_holding_leases += victim.name in busy

    def _holds_leases(self, worker: Process) -> bool:
        return worker.popen is not None and self.holds_leases(worker.popen.pid)

    def stop(self) -> None:
        """Stop killing (the workers keep running)."""
        self._stop_event.set()
        self.join(timeout=60)


def hub_env(
    *,
    directory: Path,
    database_url: str,
    register_dir: Path,
    sandbox_url: str,
    kek: str,
    threads: int,
) -> dict[str, str]:
    """The environment every hub process of a run shares."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCHUB_")}
    # Restarted workers reuse compiled bytecode: a boot then costs ~2 s of CPU, not ~6.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        SYNCHUB_DATABASE_URL=database_url,
        SYNCHUB_DATA_DIR=str(directory),
        SYNCHUB_REGISTER_DIR=str(register_dir),
        SYNCHUB_SANDBOX_URL=sandbox_url,
        SYNCHUB_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        SYNCHUB_KEY_ENCRYPTION_KEY=kek,
        SYNCHUB_LOG_LEVEL="WARNING",
        SYNCHUB_WORKER_THREADS=str(threads),
        # A SIGKILLed worker's deliveries are retaken when its leases run out; short leases
        # (renewed every ~3 s while an attempt runs) keep the run within the CI budget.
        SYNCHUB_DELIVERY_LEASE_SECONDS="10",
    )
    return env
