"""Bulk replay asks for what it replays: no filter made of nulls, no unknown destination, no
backwards time range, no empty id list; the API and `synchub dlq replay` refuse the same
things. A replay keeps the dead letter's `created_at`, so time filters still find it."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from synchub.auth.model import SCOPES
from synchub.cli import app
from synchub.connectors.fault import Fault
from synchub.core.clock import isoformat_z
from synchub.events.service import get_delivery
from tests.harness import Harness


def _auth(h: Harness) -> dict[str, str]:
    assert h.hub.auth is not None
    with h.hub.db.write() as conn:
        client = h.hub.auth.create_client(conn, name="ops", scopes=list(SCOPES),
                                          workspace="live", actor="test")  # fmt: skip
    basic = base64.b64encode(f"{client[0]}:{client[1]}".encode()).decode()
    reply = h.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                        headers={"Authorization": f"Basic {basic}"})  # fmt: skip
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


def _dead_letter(h: Harness) -> dict[str, Any]:
    h.boxes.hubspot.faults.add(Fault(status=400, method="POST", path="/contacts/"))
    h.boxes.stripe.create_customer(email="aroha@kowhai.nz", name="Aroha", currency="nzd")
    h.deliver_stripe()
    [dead] = h.http.get("/v1/dead-letters", headers=_auth(h)).json()["data"]
    return dict(dead)


def _post(h: Harness, auth: dict[str, str], body: Any, key: str) -> Any:
    return h.http.post("/v1/dead-letters/replay", json=body,
                       headers={**auth, "Idempotency-Key": key})  # fmt: skip


def _pointers(reply: Any) -> list[str]:
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    return [e["pointer"] for e in reply.json()["errors"]]


@pytest.mark.parametrize(
    ("body", "pointers"),
    [
        ({"ids": None}, ["/ids"]),
        ({"destination": None}, ["/destination"]),
        ({"since": None, "until": None}, ["/since", "/until"]),
        ({"error_code": None}, ["/error_code"]),
        ({"event_type": None, "ids": None}, ["/ids", "/event_type"]),
        ({"ids": []}, ["/ids"]),
        ({"destination": "nope"}, ["/destination"]),
        ({"since": "2026-12-05T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, ["/until"]),
        ({"event_type": "x" * 121}, ["/event_type"]),
    ],
)
def test_a_replay_filter_that_cannot_mean_what_was_asked_is_refused(
    harness: Harness, body: dict[str, Any], pointers: list[str]
) -> None:
    dead = _dead_letter(harness)
    auth = _auth(harness)
    assert _pointers(_post(harness, auth, body, "k1")) == pointers
    harness.settle()
    still = harness.http.get(f"/v1/deliveries/{dead['id']}", headers=auth).json()
    assert still["status"] == "dead"  # nothing was replayed
    assert [a["outcome"] for a in still["attempt_history"]] == ["dead"]


def test_a_known_destination_and_a_forward_range_are_replayed(harness: Harness) -> None:
    dead = _dead_letter(harness)
    auth = _auth(harness)
    since, until = (
        isoformat_z(harness.clock.now() - timedelta(hours=1)),
        isoformat_z(harness.clock.now() + timedelta(hours=1)),
    )
    reply = _post(harness, auth, {"destination": "hubspot", "since": since, "until": until}, "k")
    assert reply.status_code == 200, reply.text
    assert reply.json()["replayed"] == [dead["id"]]


def test_a_long_unknown_id_is_not_echoed_in_full(harness: Harness) -> None:
    _dead_letter(harness)
    reply = _post(harness, _auth(harness), {"ids": ["dlv_" + "x" * 5000]}, "k2")
    assert reply.status_code == 404
    detail = reply.json()["detail"]
    assert "x" * 70 in detail
    assert len(detail) < 200


def test_a_replay_keeps_created_at_so_time_filters_still_find_it(harness: Harness) -> None:
    dead = _dead_letter(harness)
    created = harness.clock.now()
    harness.clock.advance(timedelta(hours=2))
    auth = _auth(harness)  # a token of now
    replayed_at = harness.clock.now()
    harness.boxes.hubspot.faults.add(Fault(status=400, method="POST", path="/contacts/"))
    assert _post(harness, auth, {"ids": [dead["id"]]}, "k3").status_code == 200
    harness.settle()  # dead again

    again = harness.http.get(f"/v1/dead-letters/{dead['id']}", headers=auth).json()
    assert again["created_at"] == dead["created_at"]
    assert [a["outcome"] for a in again["attempt_history"]] == ["dead", "replayed", "dead"]
    assert _instant(again["attempt_history"][1]["started_at"]) == replayed_at
    window = {"since": isoformat_z(created - timedelta(minutes=1)),
              "until": isoformat_z(created + timedelta(minutes=30))}  # fmt: skip
    listed = harness.http.get("/v1/dead-letters", params=window, headers=auth).json()["data"]
    assert [d["id"] for d in listed] == [dead["id"]]
    later = {"since": isoformat_z(created + timedelta(hours=1))}
    assert harness.http.get("/v1/dead-letters", params=later, headers=auth).json()["data"] == []


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _cli(h: Harness, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    monkeypatch.setenv("SYNCHUB_DATABASE_URL",
                       h.hub.db.engine.url.render_as_string(hide_password=False))  # fmt: skip
    monkeypatch.setenv("SYNCHUB_DATA_DIR", str(h.hub.settings.data_dir))
    monkeypatch.setenv("SYNCHUB_REGISTER_DIR", str(h.hub.settings.register_dir))
    monkeypatch.setenv("SYNCHUB_LOG_LEVEL", "ERROR")
    return CliRunner().invoke(app, ["dlq", "replay", *args])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--destination", "nope"], "--destination: no destination named 'nope'"),
        (["--since", "2026-12-05", "--until", "2026-12-01"], "--until: until is before since"),
        (["--event-type", "x" * 121], "--event-type: at most 120 characters"),
    ],
)
def test_the_cli_refuses_the_same_filters_with_exit_2(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    dead = _dead_letter(harness)
    result = _cli(harness, monkeypatch, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    with harness.hub.db.read() as conn:
        row = get_delivery(conn, workspace=harness.hub.register.workspace, delivery_id=dead["id"])
    assert row["status"] == "dead"
