"""Nothing is lost while a partner webhook endpoint is disabled (ADR 0009, amendment of
2026-12-05): events that occur meanwhile are recorded as `held` deliveries, visible in the
endpoint's delivery log and in `synchub deliveries status`, never attempted, and sent in
order when the endpoint is enabled again. Also the delivery log's attempt counts after a
replay, the replay of `{}`, and the `synchub dlq` output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from synchub.cli import app
from synchub.webhooks import store as webhook_store
from tests.e2e.test_partner_webhooks import Receiver, bearer, create_customer, register, serve
from tests.harness import Harness


@pytest.fixture
def receiver(harness: Harness) -> Iterator[Receiver]:
    """A partner endpoint on 127.0.0.1 sharing the hub's clock."""
    made = Receiver(now=lambda: int(harness.clock.now().timestamp()))
    server = serve(made)
    yield made
    server.shutdown()
    server.server_close()


def log_of(h: Harness, endpoint_id: str, **params: str) -> list[Any]:
    """The endpoint's delivery log, oldest first."""
    reply = h.http.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", params=params,
                       headers=bearer(h))  # fmt: skip
    assert reply.status_code == 200, reply.text
    items: list[Any] = reply.json()["data"]
    return items


def patch(h: Harness, endpoint_id: str, **fields: Any) -> dict[str, Any]:
    """PATCH the endpoint; its new state."""
    reply = h.http.patch(f"/v1/webhook-endpoints/{endpoint_id}", json=fields, headers=bearer(h))
    assert reply.status_code == 200, reply.text
    changed: dict[str, Any] = reply.json()
    return changed


def subjects(receiver: Receiver) -> list[str]:
    """The external ids of the customers the partner accepted, in arrival order."""
    return [e["data"]["object"]["email"].partition("@")[0] for e in receiver.events]


def cli(h: Harness, monkeypatch: pytest.MonkeyPatch, *args: str, code: int = 0) -> Any:
    """Run `synchub …` against the harness's store."""
    monkeypatch.setenv("SYNCHUB_DATABASE_URL",
                       h.hub.db.engine.url.render_as_string(hide_password=False))  # fmt: skip
    monkeypatch.setenv("SYNCHUB_DATA_DIR", str(h.hub.settings.data_dir))
    monkeypatch.setenv("SYNCHUB_REGISTER_DIR", str(h.hub.settings.register_dir))
    monkeypatch.setenv("SYNCHUB_LOG_LEVEL", "ERROR")
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result


def test_events_while_disabled_by_hand_are_held_then_sent_in_order_when_enabled(
    harness: Harness, receiver: Receiver
) -> None:
    endpoint = register(harness, receiver)
    patch(harness, endpoint["id"], enabled=False)
    customer = create_customer(harness, "p-1")
    for name in ("Aroha N.", "Aroha Ngata"):  # one entity: its events keep their order
        renamed = harness.http.patch(f"/v1/customers/{customer['id']}", json={"name": name},
                                     headers=bearer(harness))  # fmt: skip
        assert renamed.status_code == 200, renamed.text
    harness.settle()
    held = log_of(harness, endpoint["id"])
    assert [d["status"] for d in held] == ["held"] * 3  # recorded, in the log
    assert [d["attempts"] for d in held] == [0, 0, 0]  # never attempted
    assert receiver.requests == []
    dead = harness.http.get("/v1/dead-letters", headers=bearer(harness)).json()["data"]
    assert dead == []  # not failures
    shown = harness.http.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=bearer(harness))
    assert shown.json()["failing_since"] is None

    patch(harness, endpoint["id"], enabled=True)
    harness.settle()
    names = [(e["type"], e["data"]["object"]["name"]) for e in receiver.events]
    assert names == [("customer.created", "Aroha"), ("customer.updated", "Aroha N."),
                     ("customer.updated", "Aroha Ngata")]  # fmt: skip
    sent = log_of(harness, endpoint["id"])
    assert [d["status"] for d in sent] == ["succeeded"] * 3
    detail = harness.http.get(f"/v1/deliveries/{sent[0]['id']}", headers=bearer(harness)).json()
    assert [a["outcome"] for a in detail["attempt_history"]] == ["released", "succeeded"]
    assert (detail["attempts"], detail["attempts_total"]) == (1, 1)


def test_a_410_holds_the_waiting_and_the_new_deliveries_instead_of_ending_them(
    harness: Harness, receiver: Receiver
) -> None:
    endpoint = register(harness, receiver)
    receiver.script = [(410, {})]
    customer = create_customer(harness)
    renamed = harness.http.patch(
        f"/v1/customers/{customer['id']}", json={"name": "Aroha N."}, headers=bearer(harness)
    )
    assert renamed.status_code == 200, renamed.text
    harness.settle()
    create_customer(harness, "p-2")  # occurs while the endpoint is disabled
    harness.settle()
    gone, waiting, later = log_of(harness, endpoint["id"])
    assert (gone["status"], gone["last_status_code"]) == ("dead", 410)  # in the DLQ
    assert (waiting["status"], waiting["attempts"]) == ("held", 0)
    assert (later["status"], later["attempts"]) == ("held", 0)
    assert len(receiver.requests) == 1

    patch(harness, endpoint["id"], enabled=True)
    harness.settle()
    assert sorted(e["type"] for e in receiver.events) == ["customer.created", "customer.updated"]
    statuses = [d["status"] for d in log_of(harness, endpoint["id"])]
    assert statuses == ["dead", "succeeded", "succeeded"]


def test_a_delivery_claimed_as_its_endpoint_is_disabled_goes_back_to_held(
    harness: Harness, receiver: Receiver
) -> None:
    endpoint = register(harness, receiver)
    create_customer(harness)
    # Disabled after fan-out, as if by another process between claim and attempt: the row
    # changes, the pending delivery is not touched.
    with harness.hub.db.write() as conn:
        webhook_store.update_endpoint(conn, endpoint["id"], enabled=False,
                                      disabled_reason="manual")  # fmt: skip
    harness.settle()
    [delivery] = log_of(harness, endpoint["id"])
    assert (delivery["status"], delivery["attempts"]) == ("held", 0)
    assert delivery["attempt_history"] == []
    assert receiver.requests == []


def test_held_deliveries_older_than_the_retry_window_become_replayable_dead_letters(
    harness: Harness, receiver: Receiver
) -> None:
    endpoint = register(harness, receiver)
    patch(harness, endpoint["id"], enabled=False)
    create_customer(harness, "p-old")
    harness.settle()
    harness.clock.advance(timedelta(hours=85))
    create_customer(harness, "p-new")
    harness.settle()
    patch(harness, endpoint["id"], enabled=True)
    harness.settle()
    old, new = log_of(harness, endpoint["id"])
    assert old["status"] == "dead"
    assert "held for longer than 84 h" in old["dead_reason"]
    assert new["status"] == "succeeded"
    assert subjects(receiver) == ["p-new"]
    replay = harness.http.post("/v1/dead-letters/replay",
                               json={"destination": f"webhook:{endpoint['id']}"},
                               headers=bearer(harness))  # fmt: skip
    assert replay.status_code == 200, replay.text
    harness.settle()
    assert subjects(receiver) == ["p-new", "p-old"]  # nothing lost


def test_deleting_an_endpoint_ends_its_held_deliveries_with_the_reason(
    harness: Harness, receiver: Receiver
) -> None:
    endpoint = register(harness, receiver)
    patch(harness, endpoint["id"], enabled=False)
    create_customer(harness)
    harness.settle()
    [held] = log_of(harness, endpoint["id"])
    named = harness.http.post(f"/v1/deliveries/{held['id']}/replay", headers=bearer(harness))
    assert named.status_code == 409, named.text
    assert "held" in named.json()["detail"]
    deleted = harness.http.delete(f"/v1/webhook-endpoints/{endpoint['id']}",
                                  headers=bearer(harness))  # fmt: skip
    assert deleted.status_code == 200, deleted.text
    ended = harness.http.get(f"/v1/deliveries/{held['id']}", headers=bearer(harness)).json()
    assert ended["status"] == "dead"
    assert "was deleted" in ended["dead_reason"]


def test_deliveries_status_shows_a_disabled_endpoint_why_and_since_when(
    harness: Harness, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = register(harness, receiver)
    disabled = patch(harness, endpoint["id"], enabled=False)
    create_customer(harness)
    harness.settle()
    args = ("deliveries", "status", "--workspace", "sandbox-acme")
    status = json.loads(cli(harness, monkeypatch, *args, "--json").stdout)
    row = status["destinations"][f"webhook:{endpoint['id']}"]
    assert row["endpoint"]["enabled"] is False
    assert row["endpoint"]["disabled_reason"] == "manual"
    assert row["endpoint"]["disabled_at"] == disabled["disabled_at"]
    assert row["deliveries"] == {"held": 1}
    table = cli(harness, monkeypatch, *args).stdout
    assert "disabled (manual) since" in table


def test_after_a_replay_the_log_counts_every_attempt_too(
    harness: Harness, receiver: Receiver
) -> None:
    endpoint = register(harness, receiver)
    receiver.script = [(500, {}), (410, {})]
    create_customer(harness)
    harness.settle()
    [delivery] = log_of(harness, endpoint["id"])
    assert (delivery["status"], delivery["attempts"], delivery["attempts_total"]) == ("dead", 2, 2)
    patch(harness, endpoint["id"], enabled=True)
    replay = harness.http.post(f"/v1/deliveries/{delivery['id']}/replay", headers=bearer(harness))
    assert replay.status_code == 200, replay.text
    harness.settle()
    [delivery] = log_of(harness, endpoint["id"])
    assert delivery["status"] == "succeeded"
    assert delivery["attempts"] == 1  # since the replay: what the retry limit counts
    assert delivery["attempts_total"] == 3  # every attempt made
    assert delivery["replayed_at"] is not None
    outcomes = [a["outcome"] for a in delivery["attempt_history"]]
    assert outcomes == ["retry", "dead", "replayed", "succeeded"]
    listed = harness.http.get("/v1/deliveries", headers=bearer(harness)).json()["data"]
    assert [d["attempts_total"] for d in listed if d["id"] == delivery["id"]] == [3]


def test_a_replayed_webhook_gets_a_fresh_retry_window(harness: Harness, receiver: Receiver) -> None:
    endpoint = register(harness, receiver)
    receiver.script = [(410, {})]
    create_customer(harness)
    harness.settle()
    harness.clock.advance(timedelta(days=4))  # longer ago than the 84 h retry window
    patch(harness, endpoint["id"], enabled=True)
    [delivery] = log_of(harness, endpoint["id"])
    receiver.script = [(500, {})]
    replay = harness.http.post(f"/v1/deliveries/{delivery['id']}/replay", headers=bearer(harness))
    assert replay.status_code == 200, replay.text
    harness.worker.run_pass()
    [delivery] = log_of(harness, endpoint["id"])
    assert delivery["status"] == "pending"  # retried, not ended as past its window
    harness.settle()
    assert len(receiver.events) == 1


def test_a_replay_of_an_empty_body_says_which_filters_to_give(harness: Harness) -> None:
    reply = harness.http.post("/v1/dead-letters/replay", json={}, headers=bearer(harness))
    assert reply.status_code == 422, reply.text
    [problem] = reply.json()["errors"]
    assert "null" not in problem["detail"]
    assert "give at least one filter: ids, destination, event_type" in problem["detail"]
    nulls = harness.http.post("/v1/dead-letters/replay", json={"destination": None},
                              headers=bearer(harness))  # fmt: skip
    assert "null is not a filter" in nulls.json()["errors"][0]["detail"]


def test_an_empty_dlq_list_says_so_on_stderr_and_json_stays_json(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = cli(harness, monkeypatch, "dlq", "list", "--workspace", "sandbox-acme")
    assert table.stdout == ""
    assert "no dead letters" in table.stderr
    as_json = cli(harness, monkeypatch, "dlq", "list", "--workspace", "sandbox-acme", "--json")
    assert json.loads(as_json.stdout) == {"data": [], "has_more": False}
    helped = cli(harness, monkeypatch, "dlq", "replay", "--help")
    assert "on stdout" in helped.stdout
    assert "stderr" in helped.stdout
