"""Two OS processes sending one Idempotency-Key at once: the write happens exactly once."""

from __future__ import annotations

import base64
import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from synchub.auth.model import SCOPES
from synchub.core.clock import FixedClock
from synchub.db import Database
from tests.harness import make_harness

BODY = {"external_id": "race-1", "email": "race@b.nz", "name": "Race"}


def _post_from_another_process(
    url: str, data_dir: str, token: str, start: object, results: object
) -> None:
    from fastapi.testclient import TestClient

    from synchub.api.app import create_app
    from synchub.bootstrap import build_hub
    from synchub.config import Settings
    from synchub.db import make_database
    from tests.conftest import REPO

    settings = Settings(register_dir=REPO / "register", data_dir=Path(data_dir))
    hub = build_hub(settings, db=make_database(url))
    with TestClient(create_app(hub)) as http:
        start.wait(10)  # type: ignore[attr-defined]  # a multiprocessing Event
        reply = http.post(
            "/v1/customers",
            json=BODY,
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "one-signup"},
        )
        results.put(reply.status_code)  # type: ignore[attr-defined]  # a multiprocessing Queue
    hub.close()


@pytest.mark.slow
def test_two_processes_with_one_key_write_once(db: Database, tmp_path: Path) -> None:
    # The other processes check the token with their own, real clocks: issue it at now.
    harness = make_harness(db, FixedClock(datetime.now(UTC)), data_dir=tmp_path)
    assert harness.hub.auth is not None
    with db.write() as conn:
        client_id, secret = harness.hub.auth.create_client(
            conn, name="p", scopes=list(SCOPES), workspace="live", actor="test"
        )
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    token = harness.http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    ).json()["access_token"]
    url = db.engine.url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    workers = [context.Process(target=_post_from_another_process,
                               args=(url, str(tmp_path), token, start, results))
               for _ in range(2)]  # fmt: skip
    for worker in workers:
        worker.start()
    start.set()
    statuses = sorted(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(30)
    with db.read() as conn:
        customers = conn.execute(sa.text("SELECT count(*) FROM customers")).scalar()
        created = conn.execute(
            sa.text("SELECT count(*) FROM outbox_events WHERE type = 'customer.created'")
        ).scalar()
    assert customers == 1, statuses
    assert created == 1
    assert statuses.count(201) >= 1
    assert set(statuses) <= {201, 409}
    harness.worker.stop()
