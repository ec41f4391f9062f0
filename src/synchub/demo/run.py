"""Run the demo: hub + sandboxes + a day of traffic, then a summary of what happened."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from synchub.api.app import create_app
from synchub.bootstrap import Hub, build_hub, new_sandboxes, sandbox_state_dir
from synchub.config import Settings
from synchub.core.clock import SystemClock
from synchub.demo.consistency import check
from synchub.demo.drift import drift_overnight, reconcile_and_repair
from synchub.demo.scenario import run_day
from synchub.events import store as event_store
from synchub.ingest import store as inbox_store
from synchub.mdm import store as mdm_store
from synchub.mdm.conflicts import page as conflict_page
from synchub.migrations.runner import upgrade
from synchub.server import BackgroundServer
from synchub.worker import Worker

SETTLE_TIMEOUT_SECONDS = 45.0


@dataclass
class WebhookTally:
    """What the Stripe sandbox's webhook deliveries got back from the hub."""

    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    statuses: Counter[int] = field(default_factory=Counter)


def run_demo(settings: Settings) -> dict[str, Any]:
    """Run the whole demo against a fresh store in settings.data_dir; return the summary."""
    started = time.monotonic()
    if settings.data_dir.exists():
        shutil.rmtree(settings.data_dir)
    settings.data_dir.mkdir(parents=True)
    clock = SystemClock()
    # The store was wiped with the data dir, and so were the vendors' kept states: the day
    # starts on empty vendors, and what they hold at the end stays for `synchub reconcile`.
    boxes = new_sandboxes(
        stripe_start=clock.now() - timedelta(days=1), state_dir=sandbox_state_dir(settings)
    )
    hub = build_hub(settings, clock=clock, sandboxes=boxes)
    # A business day in seconds: the same policies, with backoffs a thousand times shorter.
    hub.policies = {name: replace(p, base_seconds=p.base_seconds / 1000,
                                  cap_seconds=max(1.0, p.cap_seconds / 1000))
                    for name, p in hub.policies.items()}  # fmt: skip
    upgrade(hub.db)
    worker = Worker(hub)
    server = BackgroundServer(create_app(hub, on_event_received=worker.wake))
    tally = WebhookTally()
    try:
        server.start()
        worker.start(idle_sleep=0.05)
        with httpx.Client(timeout=10) as http:

            def deliver() -> None:
                _deliver(hub, http, f"{server.url}/v1/webhooks/stripe", tally)

            scenario = run_day(boxes, deliver)
        settled = _wait_until_idle(worker)
        # The next morning: systems drift apart without telling anyone; reconcile repairs.
        for text in drift_overnight(hub, boxes):
            scenario.fault(text)
        reconciliation = reconcile_and_repair(hub, lambda: _wait_until_idle(worker))
        settled = settled and reconciliation["settled"]
        consistency = check(hub, boxes)
        summary = summarise(hub, tally, settled=settled, consistency=consistency)
        summary["scenario"] = {"steps": scenario.steps, "faults": scenario.faults}
        summary["reconciliation"] = reconciliation
        summary["golden"]["conflicts_open"] = _open_conflicts(hub)
        summary["consistent"] = summary["consistent"] and reconciliation["drift_after_repair"] == 0
    finally:
        worker.stop()
        server.stop()
        hub.close()
    summary["duration_seconds"] = round(time.monotonic() - started, 2)
    summary["database"] = str(Path(settings.resolved_database_url().removeprefix("sqlite:///")))
    return summary


def _deliver(hub: Hub, http: httpx.Client, url: str, tally: WebhookTally) -> None:
    assert hub.sandboxes is not None
    responses = hub.sandboxes.stripe.deliver_webhooks(
        http,
        url,
        secret=hub.webhook_secrets["stripe"][0],
        signed_at=int(hub.clock.now().timestamp()),
    )
    for response in responses:
        tally.sent += 1
        tally.statuses[response.status_code] += 1
        if response.status_code == 200:
            tally.accepted += 1
            tally.duplicates += bool(response.json().get("duplicate"))
        else:
            tally.rejected += 1


def _wait_until_idle(worker: Worker) -> bool:
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if worker.is_idle():
            return True
        worker.wake()
        time.sleep(0.1)
    return False


def _open_conflicts(hub: Hub) -> int:
    with hub.db.read() as conn:
        rows, _ = conflict_page(conn, workspace=hub.register.workspace, limit=10_000,
                                status="open")  # fmt: skip
    return len(rows)


def _name_of(event: dict[str, Any]) -> str | None:
    obj = (event.get("payload") or {}).get("object", {})
    name = obj.get("name") or obj.get("number")
    return str(name) if name else None


def summarise(hub: Hub, tally: WebhookTally, *, settled: bool, consistency: Any) -> dict[str, Any]:
    """The demo's summary as plain data (the --json output)."""
    ws = hub.register.workspace
    with hub.db.read() as conn:
        inbox = inbox_store.count_by_status(conn)
        golden = {
            entity: len(mdm_store.list_golden(conn, entity, workspace=ws))
            for entity in mdm_store.GOLDEN
        }
        deliveries = event_store.list_deliveries(conn)
        conflicts = mdm_store.count_conflicts(conn, workspace=ws)
        dead = []
        for row in deliveries:
            if row["status"] == "dead":
                event = event_store.get_event(conn, row["event_id"]) or {}
                dead.append(
                    {
                        "delivery_id": row["id"],
                        "destination": row["destination"],
                        "event_type": row["event_type"],
                        "subject": event.get("subject"),
                        "subject_name": _name_of(event),
                        "attempts": row["attempts"],
                        "reason": row["dead_reason"],
                    }
                )
    per_destination: dict[str, dict[str, int]] = {}
    for row in deliveries:
        stats = per_destination.setdefault(
            row["destination"], Counter({"succeeded": 0, "dead": 0, "pending": 0})
        )
        stats[row["status"]] += 1
        stats["attempts"] += row["attempts"]
        stats["retried"] += max(0, row["attempts"] - 1)
    return {
        "events": {
            "received": tally.sent,
            "accepted": tally.accepted,
            "duplicates": tally.duplicates,
            "rejected": tally.rejected,
            "processed": inbox.get("processed", 0),
            "ignored": inbox.get("ignored", 0),
            "failed": inbox.get("failed", 0),
            "waiting": inbox.get("pending", 0) + inbox.get("parked", 0),
        },
        "golden": {**golden, "conflicts": conflicts},
        "deliveries": {d: dict(s) for d, s in sorted(per_destination.items())},
        "dead_letters": dead,
        "settled": settled,
        "consistent": settled and consistency.consistent,
        "consistency": {
            "checked": consistency.checked,
            "disagreements": consistency.disagreements,
            "duplicates": consistency.duplicates,
            "explained_by_dead_letters": consistency.explained,
        },
    }
