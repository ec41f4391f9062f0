"""Partner webhook endpoints render the same on every operation: each timestamp as the same
RFC 3339 text (UTC, "Z", milliseconds, as /v1 writes and events render time), and the
request id of the call in every response body (items inside a list leave it to the page)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.e2e.test_partner_webhooks import bearer
from tests.harness import Harness

RFC3339_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
TIMESTAMPS = ("created_at", "updated_at", "disabled_at", "failing_since", "failure_notified_at")
ENDPOINT = {"url": "http://127.0.0.1:9/hooks", "event_types": ["*"], "description": "CRM"}


def stamps(body: dict[str, Any]) -> dict[str, str]:
    """The endpoint's timestamps that are set, each checked to be RFC 3339 with milliseconds."""
    found = {name: body[name] for name in TIMESTAMPS if body.get(name) is not None}
    for name, value in found.items():
        assert RFC3339_MS.fullmatch(value), f"{name}: {value!r}"
    return found


def call(http: TestClient, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """The JSON body of a successful call, checked to carry this call's request id."""
    reply = http.request(method, path, **kwargs)
    assert reply.status_code < 300, reply.text
    body: dict[str, Any] = reply.json()
    assert body["request_id"] == reply.headers["x-request-id"]
    return body


def test_create_update_get_and_list_render_timestamps_and_request_ids_alike(
    harness: Harness,
) -> None:
    auth = bearer(harness)
    # Times with sub-millisecond parts, as a real clock gives them.
    harness.clock.advance(timedelta(microseconds=123_456))
    made = call(harness.http, "POST", "/v1/webhook-endpoints", json=ENDPOINT, headers=auth)
    path = f"/v1/webhook-endpoints/{made['id']}"
    assert set(stamps(made)) == {"created_at", "updated_at"}
    assert stamps(call(harness.http, "GET", path, headers=auth)) == stamps(made)

    harness.clock.advance(timedelta(seconds=1, microseconds=654_321))
    changed = call(harness.http, "PATCH", path, json={"enabled": False}, headers=auth)
    assert set(stamps(changed)) == {"created_at", "updated_at", "disabled_at"}
    assert stamps(changed)["created_at"] == stamps(made)["created_at"]
    assert stamps(changed)["updated_at"] != stamps(made)["updated_at"]

    fetched = call(harness.http, "GET", path, headers=auth)
    listed = call(harness.http, "GET", "/v1/webhook-endpoints", headers=auth)
    [item] = listed["data"]
    assert stamps(fetched) == stamps(item) == stamps(changed)
    assert item["request_id"] is None  # the page carries it
    assert fetched["request_id"] != changed["request_id"]


def test_a_rotated_secrets_expiry_renders_like_every_other_timestamp(harness: Harness) -> None:
    auth = bearer(harness)
    harness.clock.advance(timedelta(microseconds=987_654))
    made = call(harness.http, "POST", "/v1/webhook-endpoints", json=ENDPOINT, headers=auth)
    rotated = call(
        harness.http, "POST", f"/v1/webhook-endpoints/{made['id']}/rotate-secret", headers=auth
    )
    assert RFC3339_MS.fullmatch(rotated["previous_secret_expires_at"])
    assert rotated["previous_secret_expires_at"].endswith(":00.987Z")
