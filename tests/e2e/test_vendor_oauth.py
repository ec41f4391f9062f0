"""An `auth: oauth` Xero connection end to end (ADR 0023): its deliveries wait, held, until
someone authorises it; the callback stores the tokens and releases them; GET /v1/connections
shows the credential's state."""

from __future__ import annotations

import base64
import json
import shutil
from datetime import timedelta
from pathlib import Path

import yaml

from synchub.core.clock import FixedClock
from synchub.db import Database
from tests.harness import REPO, make_harness


def test_deliveries_wait_for_the_authorization_then_flow(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    register = tmp_path / "register"
    shutil.copytree(REPO / "register", register)
    path = register / "connections.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["connections"]["xero"]["settings"]["auth"] = "oauth"
    path.write_text(yaml.safe_dump(doc))
    h = make_harness(db, clock, data_dir=tmp_path / "data", register_dir=register)
    h.boxes.stripe.create_customer(email="a@b.nz", name="A Ltd", currency="nzd")
    for item in h.boxes.stripe.outbox:
        h.post_event(json.dumps(item.event).encode())
    for _ in range(60):  # two hours of worker passes: xero is tried once, then held
        h.worker.run_pass()
        clock.advance(timedelta(minutes=2))
    assert h.boxes.xero.contacts == {}
    assert h.hub.credentials is not None
    with db.read() as conn:
        rows = conn.exec_driver_sql("SELECT destination, status, attempts FROM deliveries")
        statuses = {r[0]: (r[1], r[2]) for r in rows}
    assert statuses["xero"] == ("pending", 1)
    assert statuses["hubspot"] == ("succeeded", 1)

    url = h.hub.credentials.begin_authorization("xero")
    query = h.hub.credentials.client("xero").consent_in_sandbox(url)
    bad = h.http.get("/oauth/callback/xero", params={"state": "forged", "code": query["code"]})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["pointer"] == "/state"
    answer = h.http.get("/oauth/callback/xero", params=query)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "active"
    assert answer.headers["cache-control"] == "no-store"
    h.settle()
    assert len(h.boxes.xero.contacts) == 1

    assert h.hub.auth is not None
    with db.write() as conn:
        cid, secret = h.hub.auth.create_client(
            conn, name="ops", scopes=["read:connections"], workspace="live", actor="test"
        )
    basic = base64.b64encode(f"{cid}:{secret}".encode()).decode()
    token = h.http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    ).json()["access_token"]
    listed = h.http.get("/v1/connections", headers={"Authorization": f"Bearer {token}"})
    rows = {c["name"]: c for c in listed.json()["data"]}
    assert rows["xero"]["credential"]["auth"] == "oauth"
    assert rows["xero"]["credential"]["status"] == "active"
    assert rows["hubspot"]["credential"]["auth"] == "token"
