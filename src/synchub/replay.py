"""`synchub replay DIR`: run the hub on a folder of exported Stripe events, through the same
webhook path Stripe uses (each file signed with the local webhook secret)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from synchub.api.app import create_app
from synchub.bootstrap import Hub, build_hub
from synchub.config import Settings
from synchub.connectors.stripe.webhooks import sign_header
from synchub.core.errors import ValidationError
from synchub.events.store import count_by_status, outbox_events, pending_work
from synchub.ingest import store as inbox_store
from synchub.migrations.runner import upgrade
from synchub.server import BackgroundServer
from synchub.worker import Worker

MAX_PASSES = 10_000
WEBHOOK_PATH = "/v1/webhooks/stripe"


def _files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise ValidationError(f"{directory} is not a directory")
    files = sorted(directory.glob("*.json"))
    if not files:
        raise ValidationError(f"{directory} holds no *.json files")
    return files


def _new_result(files: list[Path]) -> dict[str, Any]:
    return {"files": len(files), "accepted": 0, "duplicates": 0, "rejected": 0,
            "processed": 0, "failed": 0, "parked": 0, "events_emitted": 0,
            "deliveries": {}, "problems": [], "database": None}  # fmt: skip


def replay_directory(
    settings: Settings, directory: Path, *, url: str | None = None
) -> dict[str, Any]:
    """Post every *.json file (in name order) to the Stripe webhook endpoint; then process.

    With `url`, post to a running hub (its base URL or the full webhook URL) and stop there;
    otherwise run an in-process hub on the configured store until the work settles.
    """
    files = _files(directory)
    secret = settings.stripe_webhook_secret.get_secret_value()
    result = _new_result(files)
    if url is not None:
        base = url.rstrip("/").removesuffix(WEBHOOK_PATH)
        with httpx.Client(base_url=base, timeout=30) as http:
            _post_files(http, files, secret, result)
        return result
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    hub = build_hub(settings)
    result["database"] = hub.db.engine.url.render_as_string(hide_password=True)
    try:
        upgrade(hub.db)
        before = _inbox_and_outbox(hub)
        server = BackgroundServer(create_app(hub))
        server.start()
        try:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                _post_files(http, files, secret, result)
        finally:
            server.stop()
        worker = Worker(hub)
        for _ in range(MAX_PASSES):
            if not worker.run_pass().did_work:
                break
        worker.stop()
        _count_this_run(hub, before, result)
    finally:
        hub.close()
    return result


def _inbox_and_outbox(hub: Hub) -> dict[str, Any]:
    with hub.db.read() as conn:
        events = conn.execute(select(func.count()).select_from(outbox_events)).scalar_one()
        return {"inbox": inbox_store.count_by_status(conn), "events": int(events),
                "deliveries": count_by_status(conn)}  # fmt: skip


def _count_this_run(hub: Hub, before: dict[str, Any], result: dict[str, Any]) -> None:
    after = _inbox_and_outbox(hub)
    grew = {k: after["inbox"].get(k, 0) - before["inbox"].get(k, 0) for k in after["inbox"]}
    result.update(processed=grew.get("processed", 0), failed=grew.get("failed", 0),
                  parked=after["inbox"].get("parked", 0) + after["inbox"].get("pending", 0),
                  events_emitted=after["events"] - before["events"])  # fmt: skip
    deliveries: dict[str, dict[str, int]] = {}
    for (destination, status), count in after["deliveries"].items():
        moved = count - before["deliveries"].get((destination, status), 0)
        if moved:
            deliveries.setdefault(destination, {})[status] = moved
    result["deliveries"] = deliveries
    with hub.db.read() as conn:
        result["still_moving"] = pending_work(conn)["active_deliveries"]


def _post_files(http: httpx.Client, files: list[Path], secret: str, result: dict[str, Any]) -> None:
    for path in files:
        body = path.read_bytes()
        header = sign_header(body, secret=secret, timestamp=int(time.time()))
        response = http.post(WEBHOOK_PATH, content=body,
                             headers={"Stripe-Signature": header,
                                      "Content-Type": "application/json"})  # fmt: skip
        if response.status_code == 200:
            result["accepted"] += 1
            result["duplicates"] += bool(response.json().get("duplicate"))
            continue
        result["rejected"] += 1
        try:
            detail = response.json().get("detail", "")
        except ValueError:
            detail = response.text[:200]
        result["problems"].append(f"{path.name}: HTTP {response.status_code} {detail}".strip())


def is_clean(result: dict[str, Any]) -> bool:
    """Whether every file was accepted and nothing failed or is left waiting."""
    dead = sum(d.get("dead", 0) for d in result.get("deliveries", {}).values())
    return not (result["rejected"] or result["failed"] or result["parked"] or dead)
