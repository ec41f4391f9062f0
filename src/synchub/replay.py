"""`synchub replay DIR`: run the hub on a folder of exported Stripe events, through the same
webhook path Stripe uses (each file signed with the local webhook secret)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from synchub.api.app import create_app
from synchub.bootstrap import build_hub
from synchub.config import Settings
from synchub.connectors.stripe.webhooks import sign_header
from synchub.core.errors import ValidationError
from synchub.ingest import store as inbox_store
from synchub.migrations.runner import upgrade
from synchub.server import BackgroundServer
from synchub.worker import Worker

MAX_PASSES = 10_000


def _files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise ValidationError(f"{directory} is not a directory")
    files = sorted(directory.glob("*.json"))
    if not files:
        raise ValidationError(f"{directory} holds no *.json files")
    return files


def replay_directory(
    settings: Settings,
    directory: Path,
    *,
    url: str | None = None,
) -> dict[str, Any]:
    """Post every *.json file (in name order) to the Stripe webhook endpoint; then process."""
    files = _files(directory)
    secret = settings.stripe_webhook_secret.get_secret_value()
    result: dict[str, Any] = {
        "files": len(files),
        "accepted": 0,
        "duplicates": 0,
        "rejected": 0,
        "processed": 0,
        "failed": 0,
        "parked": 0,
        "events_emitted": 0,
        "problems": [],
    }
    if url is not None:
        with httpx.Client(base_url=url, timeout=30) as http:
            _post_files(http, files, secret, result)
        return result
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    hub = build_hub(settings)
    try:
        upgrade(hub.db)
        worker = Worker(hub)
        server = BackgroundServer(create_app(hub))
        server.start()
        try:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                _post_files(http, files, secret, result)
        finally:
            server.stop()
        for _ in range(MAX_PASSES):
            if not worker.run_pass().did_work:
                break
        with hub.db.read() as conn:
            counts = inbox_store.count_by_status(conn)
        result.update(
            processed=counts.get("processed", 0),
            failed=counts.get("failed", 0),
            parked=counts.get("parked", 0) + counts.get("pending", 0),
        )
        worker.stop()
    finally:
        hub.close()
    return result


def _post_files(http: httpx.Client, files: list[Path], secret: str, result: dict[str, Any]) -> None:
    import time

    for path in files:
        body = path.read_bytes()
        header = sign_header(body, secret=secret, timestamp=int(time.time()))
        response = http.post(
            "/v1/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        )
        if response.status_code == 200:
            result["accepted"] += 1
            result["duplicates"] += bool(response.json().get("duplicate"))
        else:
            result["rejected"] += 1
            detail = response.json().get("detail", "") if response.content else ""
            result["problems"].append(f"{path.name}: {response.status_code} {detail}")
