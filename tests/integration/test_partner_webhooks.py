"""Partner webhooks below the API: the SSRF guard with real resolution, the retry schedule,
body limits, fan-out in the dispatch transaction, and secret rotation in the store."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from synchub.core.clock import FixedClock
from synchub.core.errors import ConfigError
from synchub.db import Database
from synchub.events.outbox import EventContext, emit_event
from synchub.events.retry import full_jitter_delay
from synchub.register.model import Register
from synchub.webhooks.destination import pinned_request, webhook_http_client
from synchub.webhooks.model import (
    MAX_BODY_BYTES,
    RETRY_POLICY,
    RETRY_SCHEDULE,
    Verdict,
    is_last_attempt,
    verdict_for,
    webhook_body,
)
from synchub.webhooks.secret import open_secret
from synchub.webhooks.service import (
    check_fields,
    create_endpoint,
    load_for_delivery,
    rotate_secret,
    update_endpoint,
)
from synchub.webhooks.ssrf import UnsafeUrlError, address_problem, check_url, resolve_host
from tests.dispatching import dispatch_until

KEK = bytes(range(32))


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address under test, not a bind
        ("::", "unspecified"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "metadata"),  # NAT64 around 169.254.169.254
        ("198.51.100.7", "private"),  # documentation range
        ("240.0.0.1", "reserved"),
    ],
)
def test_non_public_addresses_are_refused(address: str, problem: str) -> None:
    found = address_problem(ipaddress.ip_address(address))
    assert found is not None
    assert problem in found


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


def test_localhost_is_resolved_before_it_is_judged() -> None:
    addresses = resolve_host("localhost", 443)
    assert addresses
    assert all(a.is_loopback for a in addresses)
    with pytest.raises(UnsafeUrlError, match="loopback"):
        check_url("https://localhost/hooks", workspace_kind="live")
    checked = check_url(
        "http://localhost:8080/hooks", workspace_kind="sandbox", private_targets="sandbox"
    )
    assert checked.addresses == tuple(addresses)


def test_one_bad_address_among_good_ones_refuses_the_host() -> None:
    def dns(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.0.0.5")]

    with pytest.raises(UnsafeUrlError, match="private"):
        check_url("https://partner.example/hooks", workspace_kind="live", resolve=dns)


def test_a_name_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(UnsafeUrlError, match="does not resolve"):
        check_url("https://no-such-host.invalid/hooks", workspace_kind="live")


def test_the_request_goes_to_the_checked_address_under_the_hosts_own_name() -> None:
    target = check_url(
        "http://localhost:8080/hooks?x=1", workspace_kind="sandbox", private_targets="sandbox"
    )
    with webhook_http_client() as http:
        request = pinned_request(http, target, "127.0.0.1", body=b"{}", headers={"a": "b"})
    assert str(request.url) == "http://127.0.0.1:8080/hooks?x=1"
    assert request.headers["host"] == "localhost:8080"
    assert request.extensions["sni_hostname"] == "localhost"


def test_the_http_client_never_follows_redirects_and_keeps_no_connections() -> None:
    with webhook_http_client() as http:
        assert http.follow_redirects is False
        assert http.timeout == httpx.Timeout(15.0)


def test_the_schedule_waits_its_steps_within_ten_percent() -> None:
    assert RETRY_SCHEDULE == (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    assert RETRY_POLICY.max_attempts == 10
    for attempt, step in enumerate(RETRY_SCHEDULE, start=1):
        low = full_jitter_delay(attempt, RETRY_POLICY, uniform=lambda a, b: a)
        high = full_jitter_delay(attempt, RETRY_POLICY, uniform=lambda a, b: b)
        assert (low.total_seconds(), high.total_seconds()) == pytest.approx(
            (step * 0.9, step * 1.1)
        )
    assert sum(RETRY_SCHEDULE) / 3600 == pytest.approx(75.6, abs=0.05)
    assert sum(RETRY_SCHEDULE) * 1.1 < RETRY_POLICY.max_age_seconds  # jitter never costs one


def test_the_last_attempt_is_known_before_the_loop_gives_up() -> None:
    assert is_last_attempt(10, timedelta(hours=75), None)
    assert not is_last_attempt(9, timedelta(hours=50), None)
    assert is_last_attempt(3, timedelta(hours=1), retry_after=90 * 3600.0)
    assert not is_last_attempt(3, timedelta(hours=1), retry_after=60.0)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (410, Verdict.GONE),
        (429, Verdict.THROTTLED),
        (502, Verdict.THROTTLED),
        (504, Verdict.THROTTLED),
        (500, Verdict.FAILED),
        (503, Verdict.FAILED),
        (404, Verdict.FAILED),
        (301, Verdict.FAILED),
    ],
)
def test_statuses_count_as_the_standard_says(status: int, verdict: Verdict) -> None:
    assert verdict_for(status) is verdict


def test_bodies_stay_under_20_kb() -> None:
    time = datetime(2026, 12, 3, tzinfo=UTC)
    small = {"object": {"id": "cus_1", "name": "Aroha"}, "changed": ["name"]}
    body = json.loads(webhook_body("customer.updated", time, small))
    assert body == {
        "type": "customer.updated",
        "timestamp": "2026-12-03T00:00:00.000Z",
        "data": small,
    }
    huge = {"object": {"id": "cus_1", "name": "A", "notes": "x" * 50_000}, "changed": ["name"]}
    raw = webhook_body("customer.updated", time, huge)
    assert len(raw) < MAX_BODY_BYTES
    assert json.loads(raw)["data"] == {
        "object": {"id": "cus_1", "name": "A"},
        "changed": ["name"],
        "truncated": True,
    }


def _emit(db: Database, clock: FixedClock, workspace: str, event_type: str) -> str:
    ctx = EventContext(
        workspace=workspace,
        source=f"/synchub/{workspace}/api",
        traceparent=None,
        mapping_version="api.v1",
        app_version="test",
        now=clock.now(),
    )
    with db.write() as conn:
        return emit_event(
            conn,
            ctx,
            event_type=event_type,
            record={"id": "cus_1"},
            aggregate_id="cus_1",
            changed=[],
        )


def _endpoint(db: Database, clock: FixedClock, workspace: str, types: list[str]) -> str:
    fields = check_fields(workspace, {"url": "https://8.8.8.8/h", "event_types": types})
    with db.write() as conn:
        made = create_endpoint(conn, workspace=workspace, fields=fields, kek=KEK, now=clock.now())
    return str(made["id"])


def test_fan_out_adds_one_delivery_per_matching_endpoint_held_for_a_disabled_one(
    db: Database, clock: FixedClock
) -> None:
    wanted = _endpoint(db, clock, "acme", ["customer.created"])
    everything = _endpoint(db, clock, "acme", ["*"])
    _endpoint(db, clock, "acme", ["invoice.paid"])
    _endpoint(db, clock, "other", ["*"])
    switched_off = _endpoint(db, clock, "acme", ["*"])
    off = check_fields("acme", {"enabled": False})
    with db.write() as conn:
        update_endpoint(
            conn, workspace="acme", endpoint_id=switched_off, fields=off, now=clock.now()
        )
    register = Register(
        workspace="acme", timezone="Pacific/Auckland", connections={}, flows=(), ownership=()
    )
    event_id = _emit(db, clock, "acme", "customer.created")
    assert dispatch_until(db, register, clock, 1) == 1
    with db.read() as conn:
        rows = conn.execute(sa.text("SELECT destination, event_id, status FROM deliveries")).all()
    assert sorted(rows) == sorted(
        [
            (f"webhook:{wanted}", event_id, "pending"),
            (f"webhook:{everything}", event_id, "pending"),
            (f"webhook:{switched_off}", event_id, "held"),  # kept for when it is enabled again
        ]
    )


def test_a_rotated_secret_signs_beside_the_new_one_for_24_hours(
    db: Database, clock: FixedClock
) -> None:
    endpoint_id = _endpoint(db, clock, "acme", ["*"])
    with db.write() as conn:
        rotated = rotate_secret(
            conn, workspace="acme", endpoint_id=endpoint_id, kek=KEK, now=clock.now()
        )
    assert rotated["previous_secret_expires_at"] == clock.now() + timedelta(hours=24)
    soon, later = clock.now() + timedelta(hours=23, minutes=59), clock.now() + timedelta(hours=24)
    with db.read() as conn:
        during = load_for_delivery(conn, endpoint_id, workspace="acme", kek=KEK, now=soon)
        after = load_for_delivery(conn, endpoint_id, workspace="acme", kek=KEK, now=later)
        sealed = conn.execute(
            sa.text("SELECT sealed FROM webhook_endpoint_secrets WHERE version = 1")
        ).scalar_one()
    assert during is not None
    assert after is not None
    during_secrets, after_secrets = during[1], after[1]
    assert len(during_secrets) == 2
    assert during_secrets[0] != during_secrets[1]
    assert after_secrets == during_secrets[:1]  # the newest alone
    with pytest.raises(ConfigError):
        open_secret(bytes(32), endpoint_id=endpoint_id, version=1, sealed=bytes(sealed))


def test_the_guard_also_checks_urls_changed_later() -> None:
    with pytest.raises(UnsafeUrlError, match="private"):
        check_fields("acme", {"url": "https://10.0.0.9/h"})
    with pytest.raises(UnsafeUrlError, match="https only"):
        check_fields("acme", {"url": "http://8.8.8.8/h"})
