"""One chaos run: a hub of real processes over one database, vendors that fail at random, a
driver that SIGKILLs workers, thousands of Stripe events; then the verdict (ADR 0011)."""

from __future__ import annotations

import base64
import random
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from synchub.bootstrap import load_checked_register
from synchub.config import Settings
from synchub.db import Database, make_database
from synchub.events.store import deliveries, pending_work
from synchub.ingest import store as inbox_store
from synchub.migrations.runner import upgrade
from tests.chaos.cluster import Cluster, Killer, Process, free_port, hub_env, wait_until_up
from tests.chaos.traffic import StripeTraffic
from tests.chaos.verdict import Verdict, judge
from tests.conftest import REPO

# Short retries so a run takes minutes: base 50 ms, cap 1 s, many attempts, a long max age;
# the client times out after 1 s and the sandbox holds a timed-out request for 1.5 s.
RETRY = (
    "{base_seconds: 0.05, cap_seconds: 1, max_attempts: 100, max_age_seconds: 3600, "
    "timeout_seconds: 1}"
)
# A short breaker: eight failures in a row (which a vendor failing a third of its requests
# produces now and then) open it for a second, two probes close it. Tokens come back twice
# as fast as failures take them, so the retry throttle does not serialise a whole run.
BREAKER = (
    "{failures: 8, failure_rate: 0.9, min_calls: 40, window_seconds: 5, open_seconds: 1, "
    "probes: 2, retry_tokens: 50, token_ratio: 2}"
)
HANG_SECONDS = 1.5
CONNECTIONS = f"""connections:
  stripe: {{system: stripe, mode: sandbox, owner: chaos@example.test, mapping: stripe.v1,
            retry: {{timeout_seconds: 1}}}}
  hubspot: {{system: hubspot, mode: sandbox, owner: chaos@example.test, retry: {RETRY},
             breaker: {BREAKER}}}
  xero: {{system: xero, mode: sandbox, owner: chaos@example.test, retry: {RETRY},
          breaker: {BREAKER}}}
  product: {{system: product, mode: sandbox, owner: chaos@example.test, retry: {RETRY},
             breaker: {BREAKER}}}
"""


@dataclass(frozen=True)
class RunPlan:
    """The size and the violence of one run."""

    label: str
    database_url: str
    workers: int
    customers: int
    threads: int = 8  # delivery threads per worker
    chunk: int = 25  # customers per webhook batch
    error_rate: float = 0.20
    timeout_rate: float = 0.05
    throttle_rate: float = 0.10
    duplicate_rate: float = 0.30
    reorder_rate: float = 0.05
    senders: int = 4  # webhooks posted at once
    kill_interval: tuple[float, float] = (2.0, 4.0)
    kill_seconds: float = 60.0  # from the first webhook on; then the hub may settle
    settle_timeout: float = 420.0  # ~110 s on a quiet 2-core machine; CPU starvation slows it
    seed: int = 4


@dataclass
class ChaosResult:
    """What happened, the verdict and the one-line summary."""

    verdict: Verdict
    summary: str
    logs: dict[str, str] = field(default_factory=dict)
    settled: bool = False


@dataclass
class _Run:
    """The moving parts of one run."""

    plan: RunPlan
    db: Database
    cluster: Cluster
    sandbox_url: str
    api_url: str
    register_dir: Path
    phases: dict[str, float] = field(default_factory=dict)
    began: float = field(default_factory=time.monotonic)

    def phase(self, name: str) -> None:
        """Note how long the phase that just ended took."""
        self.phases[name] = time.monotonic() - self.began - sum(self.phases.values())


def write_register(directory: Path) -> Path:
    """The repo's register with short retry policies for every connection."""
    register = directory / "register"
    register.mkdir()
    for source in (REPO / "register").glob("*.yaml"):
        if source.name != "connections.yaml":
            shutil.copy(source, register / source.name)
    (register / "connections.yaml").write_text(CONNECTIONS)
    return register


def run_chaos(plan: RunPlan, directory: Path) -> ChaosResult:
    """Run the whole thing; never raises for what the hub did wrong (that is the verdict)."""
    run = _prepare(plan, directory)
    killer: Killer | None = None
    try:
        workers = _start(run)
        killer = Killer(
            run.cluster,
            workers,
            rng=random.Random(plan.seed),
            holds_leases=lambda pid: holds_leases(run.db, pid),
            interval=plan.kill_interval,
        )
        killer.start()
        run.phase("start")
        with httpx.Client(base_url=run.sandbox_url, timeout=60) as http:
            traffic = StripeTraffic(http, random.Random(plan.seed + 1))
            _play(plan, traffic, f"{run.api_url}/v1/webhooks/stripe", run.cluster)
            run.phase("traffic")
            # The killing goes on while the backlog drains, for kill_seconds in all.
            _wait_until_settled(run, http, timeout=plan.kill_seconds - run.phases["traffic"])
            killer.stop()
            run.phase("killing")
            settled = _wait_until_settled(run, http, timeout=plan.settle_timeout)
            run.phase("settle")
            state = http.get("/_sandbox/state", timeout=120).json()
        return _conclude(run, state, killer, traffic, settled=settled)
    finally:
        if killer is not None and killer.is_alive():
            killer.stop()
        run.cluster.stop_all()
        run.db.dispose()


def _prepare(plan: RunPlan, directory: Path) -> _Run:
    """A migrated database, the register, ports and the processes' environment."""
    db = make_database(plan.database_url)
    upgrade(db)
    register_dir = write_register(directory)
    sandbox_url, api_url = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
    kek = base64.b64encode(random.Random(plan.seed).randbytes(32)).decode()
    env = hub_env(
        directory=directory,
        database_url=plan.database_url,
        register_dir=register_dir,
        sandbox_url=sandbox_url,
        kek=kek,
        threads=plan.threads,
    )
    return _Run(plan, db, Cluster(directory, env), sandbox_url, api_url, register_dir)


def _start(run: _Run) -> list[Process]:
    """The sandbox server, the API and the workers, up and answering."""
    plan, port = run.plan, run.sandbox_url.rsplit(":", 1)[1]
    run.cluster.start(
        "sandbox",
        "sandbox",
        "serve",
        "--port",
        port,
        "--error-rate",
        str(plan.error_rate),
        "--timeout-rate",
        str(plan.timeout_rate),
        "--throttle-rate",
        str(plan.throttle_rate),
        "--retry-after",
        "1",
        "--hang-seconds",
        str(HANG_SECONDS),
        "--seed",
        str(plan.seed),
    )
    run.cluster.start("api", "serve", "--role", "api", "--port", run.api_url.rsplit(":", 1)[1])
    workers = [
        run.cluster.start(f"worker{i}", "worker", log_level="INFO") for i in range(plan.workers)
    ]
    wait_until_up(f"{run.sandbox_url}/_sandbox/health")
    wait_until_up(f"{run.api_url}/healthz")
    return workers


def _conclude(
    run: _Run, state: dict[str, Any], killer: Killer, traffic: StripeTraffic, *, settled: bool
) -> ChaosResult:
    """The verdict, what explains a hub that did not settle, and the summary line."""
    register, _ = load_checked_register(Settings(register_dir=run.register_dir))
    verdict = judge(run.db, register, state)
    if not settled:
        verdict.add(f"the hub did not settle within {run.plan.settle_timeout:.0f} s")
        verdict.problems[:0] = stuck_leases(run.db, killer.killed_pids)
    for process in run.cluster.dead_ones():
        verdict.add(f"{process.name} exited by itself:\n{run.cluster.tail(process)}")
    summary = _summary(run, verdict, state, killer, traffic)
    logs = {p.name: run.cluster.tail(p) for p in run.cluster.processes}
    return ChaosResult(verdict, summary, logs if verdict.problems else {}, settled)


def _play(plan: RunPlan, traffic: StripeTraffic, webhook_url: str, cluster: Cluster) -> None:
    """Customers' lives in batches; each batch's events go out while workers are killed."""
    traffic.setup()
    for first in range(0, plan.customers, plan.chunk):
        if cluster.dead_ones():
            return  # a process crashed: the verdict names it
        for n in range(first, min(first + plan.chunk, plan.customers)):
            traffic.customer_story(n)
        traffic.send_webhooks(
            webhook_url,
            duplicate_rate=plan.duplicate_rate,
            reorder_rate=plan.reorder_rate,
            concurrency=plan.senders,
        )


def holds_leases(db: Database, pid: int) -> bool:
    """Whether the worker process with this pid holds delivery leases now (its worker id is
    `host:pid:…`)."""
    with db.read() as conn:
        query = sa.select(deliveries.c.id).where(
            deliveries.c.status == "in_flight", deliveries.c.lease_owner.like(f"%:{pid}:%")
        )
        return conn.execute(query.limit(1)).first() is not None


def stuck_leases(db: Database, killed: set[int]) -> list[str]:
    """Deliveries still in flight, and whether the worker holding each was SIGKILLed."""
    with db.read() as conn:
        rows = conn.execute(
            sa.select(
                deliveries.c.id,
                deliveries.c.destination,
                deliveries.c.lease_owner,
                deliveries.c.lease_until,
            ).where(deliveries.c.status == "in_flight")
        ).all()
    now = datetime.now(UTC)
    lines = []
    for row in rows:
        pid = int(parts[1]) if len(parts := str(row.lease_owner).split(":")) > 2 else None
        whose = "a SIGKILLed worker" if pid in killed else "a live worker"
        left = (row.lease_until - now).total_seconds() if row.lease_until else float("nan")
        lines.append(
            f"{row.destination} delivery {row.id} is in flight, leased by {whose} "
            f"({row.lease_owner}) for {left:.0f} s more"
        )
    return lines


def is_settled(db: Database) -> bool:
    """Nothing waits: no inbox row pending or parked, no undispatched event, no delivery
    pending or in flight."""
    with db.read() as conn:
        inbox = inbox_store.count_by_status(conn)
        work = pending_work(conn)
    return not (
        inbox.get("pending")
        or inbox.get("parked")
        or work["undispatched"]
        or work["active_deliveries"]
    )


def _wait_until_settled(run: _Run, http: httpx.Client, *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stripe = http.get("/_sandbox/summary").json()["stripe"]
        if stripe["pending_webhooks"] == 0 and is_settled(run.db):
            return True
        if run.cluster.dead_ones():
            return False  # a process crashed: the verdict names it
        time.sleep(1.0)
    return False


def _summary(
    run: _Run, verdict: Verdict, state: dict[str, Any], killer: Killer, traffic: StripeTraffic
) -> str:
    """One line for the closing note."""
    hooks, f = state["stripe"]["webhooks"], verdict.figures
    faults: Counter[str] = Counter()
    for record in state["vendors"].values():
        faults.update(record["faults"])
    requests = sum(record["requests"] for record in state["vendors"].values())
    phases = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in run.phases.items())
    return (
        f"chaos[{run.plan.label}]: {run.plan.customers} customers, {traffic.operations} "
        f"Stripe operations, {hooks['accepted']} Stripe events ({hooks['sent']} webhook posts, "
        f"{hooks['extra_copies']} sent twice, {hooks['reordered']} reordered, "
        f"{hooks['retried']} retried) -> {f.get('events')} canonical events, "
        f"{f.get('deliveries')} deliveries ({f.get('attempts')} attempts), {requests} vendor "
        f"requests, {faults.total()} faults injected "
        f"({', '.join(f'{k} {v}' for k, v in sorted(faults.items()))}), {run.plan.workers} "
        f"workers, {killer.kills} SIGKILLs ({killer.kills_holding_leases} holding leases), "
        f"{f.get('creates')} creates, {f.get('ordered_writes')} writes checked for order, "
        f"{len(verdict.problems)} problems; {phases} (Stripe calls "
        f"{traffic.seconds['stripe']:.0f} s, webhook posts {traffic.seconds['webhooks']:.0f} s)"
    )
