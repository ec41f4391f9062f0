"""The delivery bench's rig: a fresh store, a register pointed at the sink, the outbox writer,
and the two database baselines (one small durable commit; a bare claim-and-mark-done loop)."""

from __future__ import annotations

import base64
import os
import secrets
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from synchub.connectors.standard_webhooks import new_secret
from synchub.core.ids import new_id
from synchub.db import Database, UtcDateTime, make_database
from synchub.events.outbox import EventContext, emit_event
from synchub.migrations.runner import upgrade

WORKSPACE = "bench"
DESTINATIONS = ("product_a", "product_b")
STRIPE_SECRET = "whsec_bench_fixed_local_only"
IDLE_SLEEP_SECONDS = 0.2  # Worker.start's default, which `synchub worker` uses
PG_DEFAULT_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SYNCHUB = Path(sys.executable).with_name("synchub")

_scratch = sa.MetaData()
bench_queue = sa.Table(  # the bare claim loop's queue: the columns a claim needs, no more
    "bench_queue",
    _scratch,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("next_attempt_at", UtcDateTime, nullable=False),
    sa.Column("lease_owner", sa.String(80)),
    sa.Index("ix_bench_queue_due", "status", "next_attempt_at"),
)
bench_commits = sa.Table(
    "bench_commits",
    _scratch,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UtcDateTime, nullable=False),
)

REGISTER = """\
workspace: bench
timezone: Pacific/Auckland
connections:
  stripe: {{system: stripe, mode: live, owner: bench@example.invalid, mapping: stripe.v1}}
{connections}
flows:
{flows}
"""


def write_register(directory: Path, sink_url: str) -> Path:
    """A register with Stripe as the source and two live product connections on the sink."""
    directory.mkdir(parents=True, exist_ok=True)
    connections = "".join(
        f"  {name}: {{system: product, mode: live, owner: bench@example.invalid,\n"
        f"    settings: {{callback_url: '{sink_url}/{name}'}}}}\n"
        for name in DESTINATIONS
    )
    flows = "".join(
        f"  invoices-to-{name}: {{source: stripe, destination: {name}, events: [invoice.paid],\n"
        f"    owner: bench@example.invalid}}\n"
        for name in DESTINATIONS
    )
    (directory / "register.yaml").write_text(REGISTER.format(connections=connections, flows=flows))
    return directory


# -- stores ------------------------------------------------------------------------------------


@dataclass
class Store:
    """A fresh, migrated database for one engine, dropped (PostgreSQL) when closed."""

    engine: str  # "sqlite" | "postgresql"
    url: str
    db: Database
    admin_url: str | None = None
    name: str | None = None

    def reset(self) -> None:
        """Empty the delivery tables and the scratch tables between configurations."""
        with self.db.write() as conn:
            for table in (
                "delivery_attempts",
                "deliveries",
                "outbox_events",
                "inbox_events",
                "bench_queue",
                "bench_commits",
            ):
                conn.execute(sa.text(f"DELETE FROM {table}"))  # noqa: S608 - fixed names

    def close(self) -> None:
        """Dispose of connections; drop a PostgreSQL database."""
        self.db.dispose()
        if self.admin_url and self.name:
            admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            admin.dispose()


def open_store(engine: str, work_dir: Path) -> Store:
    """A migrated SQLite file in the work dir, or a new PostgreSQL database beside the admin's."""
    if engine == "sqlite":
        url = f"sqlite:///{work_dir / 'bench.db'}"
        store = Store(engine, url, make_database(url))
    else:
        admin_url = os.environ.get("SYNCHUB_TEST_DATABASE_URL") or PG_DEFAULT_ADMIN
        name = f"synchub_bench_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        except sa.exc.OperationalError as exc:
            raise SystemExit(
                f"PostgreSQL is not reachable at {admin.url.render_as_string()} ({exc.orig}); "
                "set SYNCHUB_TEST_DATABASE_URL or run with --databases sqlite"
            ) from exc
        url = admin.url.set(database=name).render_as_string(hide_password=False)
        admin.dispose()
        store = Store(engine, url, make_database(url), admin_url=admin_url, name=name)
    upgrade(store.db)
    _scratch.create_all(store.db.engine)
    return store


def settings_env(store: Store, register_dir: Path, data_dir: Path, threads: int) -> dict[str, str]:
    """SYNCHUB_* settings for every hub of the bench (in-process or child), logs at WARNING."""
    return {
        "SYNCHUB_DATABASE_URL": store.url,
        "SYNCHUB_DATA_DIR": str(data_dir),
        "SYNCHUB_REGISTER_DIR": str(register_dir),
        "SYNCHUB_LOG_LEVEL": "WARNING",
        "SYNCHUB_WORKER_THREADS": str(threads),
        "SYNCHUB_STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        "SYNCHUB_PRODUCT_CALLBACK_SECRET": new_secret(),
        "SYNCHUB_KEY_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
    }


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The inherited environment minus any SYNCHUB_* setting, plus the bench's own."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SYNCHUB_")}, **extra}


# -- enqueueing and the durable-commit baseline ---------------------------------------------


def enqueue(db: Database, count: int, *, traceparent: str | None = None) -> float:
    """Write `count` invoice.paid events (each for a new customer) through the real outbox
    writer in one transaction; return the wall-clock time the commit returned."""
    now = datetime.now(UTC)
    ctx = EventContext(
        workspace=WORKSPACE,
        source=f"/synchub/{WORKSPACE}/stripe",
        traceparent=traceparent,
        mapping_version=None,
        app_version="bench",
        now=now,
    )
    with db.write() as conn:
        for _ in range(count):
            customer, invoice = new_id("customer"), new_id("invoice")
            emit_event(
                conn,
                ctx,
                event_type="invoice.paid",
                aggregate_id=customer,
                changed=["status"],
                record={
                    "id": invoice,
                    "customer_id": customer,
                    "status": "paid",
                    "total_minor": 2300,
                    "currency": "NZD",
                },
                extra={"customer": {"id": customer, "billing_status": "active", "entitled": True}},
            )
    return time.time()


def time_commit(db: Database) -> float:
    """Seconds for one small INSERT + COMMIT through the same transaction factory."""
    started = time.perf_counter()
    with db.write() as conn:
        conn.execute(sa.insert(bench_commits).values(at=datetime.now(UTC)))
    return time.perf_counter() - started


def delivery_progress(db: Database) -> tuple[int, int, float | None]:
    """(succeeded, not succeeded, wall-clock time of the last success) over all deliveries."""
    d = sa.table("deliveries", sa.column("status"), sa.column("completed_at", UtcDateTime))
    ok = d.c.status == "succeeded"
    with db.read() as conn:
        row = conn.execute(
            sa.select(
                sa.func.count().filter(ok),
                sa.func.count().filter(~ok),
                sa.func.max(d.c.completed_at).filter(ok),
            )
        ).one()
    return int(row[0]), int(row[1]), row[2].timestamp() if row[2] else None


# -- the bare claim-and-mark-done loop --------------------------------------------------------


def fill_queue(db: Database, count: int) -> None:
    """Put `count` due rows in the bare loop's queue."""
    now = datetime.now(UTC)
    with db.write() as conn:
        conn.execute(
            sa.insert(bench_queue),
            [
                {"id": new_id("delivery"), "status": "pending", "next_attempt_at": now}
                for _ in range(count)
            ],
        )


def claim_until_empty(db: Database, *, batch: int, owner: str) -> int:
    """Select due rows (FOR UPDATE SKIP LOCKED on PostgreSQL), mark them done, commit; repeat
    until none is left. Returns how many this loop did."""
    done = 0
    while True:
        query = (
            sa.select(bench_queue.c.id)
            .where(
                bench_queue.c.status == "pending",
                bench_queue.c.next_attempt_at <= datetime.now(UTC),
            )
            .order_by(bench_queue.c.next_attempt_at)
            .limit(batch)
        )
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        with db.write() as conn:
            ids = list(conn.execute(query).scalars())
            if ids:
                conn.execute(
                    sa.update(bench_queue)
                    .where(bench_queue.c.id.in_(ids))
                    .values(status="done", lease_owner=owner)
                )
        if not ids:
            return done
        done += len(ids)
