"""How partner webhook attempts end: 2xx, 410 Gone, throttling with Retry-After, the retry
schedule, five days of failure, redirects, and the SSRF guard at delivery time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from synchub.webhooks import store as webhook_store
from synchub.webhooks.model import RETRY_SCHEDULE
from tests.e2e.test_partner_webhooks import (
    Receiver,
    bearer,
    create_customer,
    register,
    serve,
)
from tests.harness import Harness


@pytest.fixture
def receiver(harness: Harness) -> Iterator[Receiver]:
    """A partner endpoint on 127.0.0.1 sharing the hub's clock."""
    made = Receiver(now=lambda: int(harness.clock.now().timestamp()))
    server = serve(made)
    yield made
    server.shutdown()
    server.server_close()


def deliveries(h: Harness, endpoint_id: str, workspace: str = "sandbox-acme") -> list[Any]:
    """The endpoint's delivery log, oldest first, each with its attempts."""
    auth = bearer(h, workspace=workspace)
    reply = h.http.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=auth)
    assert reply.status_code == 200, reply.text
    items: list[Any] = reply.json()["data"]
    return items


def attempt_once(h: Harness, endpoint_id: str, workspace: str = "sandbox-acme") -> Any:
    """Run worker passes until the endpoint's newest delivery has one more attempt."""
    before = sum(d["attempts"] for d in deliveries(h, endpoint_id, workspace))
    for _ in range(20):
        h.worker.run_pass()
        log = deliveries(h, endpoint_id, workspace)
        if sum(d["attempts"] for d in log) > before:
            return log[-1]
    raise AssertionError("no attempt was made")


def at(text: str) -> datetime:
    """An RFC 3339 time from the API."""
    return datetime.fromisoformat(text)


def audit_actions(h: Harness, workspace: str = "sandbox-acme") -> list[tuple[str, str, str]]:
    """(action, target, outcome) of the workspace's audit entries."""
    reply = h.http.get("/v1/audit", params={"limit": 100}, headers=bearer(h, workspace=workspace))
    return [(e["action"], e["target"], e["outcome"]) for e in reply.json()["data"]]


def test_the_retry_schedule_runs_ten_attempts_then_records_the_failing_notice(
    harness: Harness, receiver: Receiver
) -> None:
    endpoint = register(harness, receiver)
    receiver.script = [(500, {})] * 10
    create_customer(harness)
    gaps = []
    for _ in range(10):
        delivery = attempt_once(harness, endpoint["id"])
        if delivery["status"] == "dead":
            break
        finished = at(delivery["attempt_history"][-1]["finished_at"])
        due = at(delivery["next_attempt_at"])
        gaps.append((due - finished).total_seconds())
        harness.clock.advance(due - harness.clock.now())
    assert len(gaps) == 9
    for gap, step in zip(gaps, RETRY_SCHEDULE, strict=True):
        assert step * 0.9 <= gap <= step * 1.1
    assert delivery["status"] == "dead"
    assert delivery["attempts"] == 10
    assert "gave up after 10 attempts" in delivery["dead_reason"]
    assert [r.status for r in receiver.requests] == [500] * 10  # each one correctly signed
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    assert len({r.headers["webhook-timestamp"] for r in receiver.requests}) == 10
    shown = harness.http.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=bearer(harness))
    assert shown.json()["failure_notified_at"] is not None
    assert shown.json()["enabled"] is True  # 3.5 days of failure, not 5
    assert ("webhook_endpoint.failing", endpoint["id"], "notice_recorded") in audit_actions(harness)


@pytest.mark.parametrize(
    ("status", "honoured"), [(429, True), (502, True), (504, True), (503, False), (500, False)]
)
def test_throttled_answers_wait_for_retry_after_and_others_follow_the_schedule(
    harness: Harness, receiver: Receiver, status: int, honoured: bool
) -> None:
    endpoint = register(harness, receiver)
    receiver.script = [(status, {"Retry-After": "120"})]
    create_customer(harness)
    delivery = attempt_once(harness, endpoint["id"])
    assert delivery["status"] == "pending"
    assert delivery["last_status_code"] == status
    gap = at(delivery["next_attempt_at"]) - at(delivery["attempt_history"][-1]["finished_at"])
    if honoured:
        assert gap >= timedelta(seconds=120)
    else:
        assert gap <= timedelta(seconds=5.5)
    harness.settle(max_rounds=100)
    assert len(receiver.events) == 1


def test_410_disables_the_endpoint_and_holds_its_pending_deliveries(
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
    assert len(receiver.requests) == 1
    first, second = deliveries(harness, endpoint["id"])
    assert (first["status"], first["last_status_code"]) == ("dead", 410)
    assert second["status"] == "held"  # kept for when the endpoint is enabled again
    assert second["attempts"] == 0  # never sent
    shown = harness.http.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=bearer(harness))
    assert (shown.json()["enabled"], shown.json()["disabled_reason"]) == (False, "gone")
    assert ("webhook_endpoint.disabled", endpoint["id"], "gone") in audit_actions(harness)
    create_customer(harness, "p-2")
    harness.settle()
    assert [d["status"] for d in deliveries(harness, endpoint["id"])] == ["dead", "held", "held"]
    assert len(receiver.requests) == 1  # recorded, not sent


def test_five_days_of_failure_disable_the_endpoint(harness: Harness, receiver: Receiver) -> None:
    endpoint = register(harness, receiver)
    receiver.script = [(500, {})] * 20
    create_customer(harness, "p-1")
    attempt_once(harness, endpoint["id"])
    path = f"/v1/webhook-endpoints/{endpoint['id']}"
    assert harness.http.get(path, headers=bearer(harness)).json()["failing_since"] is not None
    harness.clock.advance(timedelta(days=5))
    create_customer(harness, "p-2")
    harness.settle()
    shown = harness.http.get(path, headers=bearer(harness)).json()
    assert (shown["enabled"], shown["disabled_reason"]) == (False, "failing")
    # The attempt that found 5 days of failure ended, and p-1's (5 days old) ran out of its
    # 84 h window; which of the two is attempted first varies. One never attempted is held.
    log = deliveries(harness, endpoint["id"])
    assert all(d["status"] in ("dead", "held") for d in log)
    assert all(d["dead_reason"] for d in log if d["status"] == "dead")
    assert ("webhook_endpoint.disabled", endpoint["id"], "failing") in audit_actions(harness)
    enabled = harness.http.patch(path, json={"enabled": True}, headers=bearer(harness))
    assert enabled.json()["failing_since"] is None
    assert enabled.json()["disabled_reason"] is None
    receiver.script = []
    harness.settle()
    after = {d["id"]: d for d in deliveries(harness, endpoint["id"])}
    for before in log:
        if before["status"] == "held" and before["id"] == log[1]["id"]:  # p-2's: sent now
            assert after[before["id"]]["status"] == "succeeded"
        elif before["status"] == "held":  # p-1's, 5 days old: past the window, replayable
            assert "held for longer than 84 h" in after[before["id"]]["dead_reason"]


def test_a_success_ends_the_run_of_failures(harness: Harness, receiver: Receiver) -> None:
    endpoint = register(harness, receiver)
    receiver.script = [(500, {})]
    create_customer(harness)
    attempt_once(harness, endpoint["id"])
    harness.settle()
    shown = harness.http.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=bearer(harness))
    assert shown.json()["failing_since"] is None


def test_redirects_are_not_followed(harness: Harness, receiver: Receiver) -> None:
    endpoint = register(harness, receiver)
    receiver.script = [(302, {"Location": receiver.url + "/elsewhere"})]
    create_customer(harness)
    delivery = attempt_once(harness, endpoint["id"])
    assert delivery["status"] == "pending"
    assert "redirects are not followed" in delivery["last_error"]
    harness.settle()
    assert [r.path for r in receiver.requests] == ["/hooks", "/hooks"]


def test_a_named_host_is_called_at_its_checked_address_under_its_own_name(
    harness: Harness, receiver: Receiver
) -> None:
    register(harness, receiver, url=f"http://localhost:{receiver.port}/hooks")
    create_customer(harness)
    harness.settle()
    [request] = receiver.requests
    assert request.status == 200
    assert request.headers["host"] == f"localhost:{receiver.port}"


def test_the_guard_runs_again_before_every_attempt(harness: Harness, receiver: Receiver) -> None:
    endpoint = register(
        harness, receiver, url="https://8.8.8.8/hooks", auth=bearer(harness, workspace="live")
    )
    # As if the name's DNS now answered with loopback: the row points there.
    with harness.hub.db.write() as conn:
        webhook_store.update_endpoint(
            conn, endpoint["id"], url=f"https://localhost:{receiver.port}/hooks"
        )
    create_customer_in_live = harness.http.post(
        "/v1/customers",
        json={"external_id": "p-9", "email": "p9@kowhai.nz"},
        headers=bearer(harness, workspace="live"),
    )
    assert create_customer_in_live.status_code == 201
    delivery = attempt_once(harness, endpoint["id"], workspace="live")
    assert delivery["status"] == "pending"
    assert "not sent" in delivery["last_error"]
    assert "loopback" in delivery["last_error"]
    assert receiver.requests == []
