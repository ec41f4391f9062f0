"""Vendor credentials (ADR 0023): sealed at rest under versioned keys, rotation that survives a
crash, authorization code + PKCE against the sandboxes, refresh before expiry, one refresh
across racing processes, and invalid_grant holding the connection's deliveries."""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa

from synchub.connectors.hubspot.client import HubSpotClient
from synchub.connectors.hubspot.sandbox import SANDBOX_CLIENT_ID as HS_CLIENT_ID
from synchub.connectors.hubspot.sandbox import HubSpotSandbox
from synchub.connectors.oauth import (
    HUBSPOT,
    XERO,
    InvalidGrantError,
    OAuthApp,
    OAuthClient,
    ReauthorizationRequiredError,
    pkce_pair,
)
from synchub.connectors.oauth_sandbox import s256
from synchub.connectors.sandbox import Sandbox
from synchub.connectors.xero.client import XeroClient
from synchub.connectors.xero.sandbox import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, XeroSandbox
from synchub.core.clock import FixedClock
from synchub.core.errors import ValidationError
from synchub.db import Database, make_database
from synchub.events import breaker_store
from synchub.events.breaker import Kind, gate
from synchub.events.outcome import signal_of
from synchub.events.store import deliveries
from synchub.observability.metrics import process_metrics
from synchub.register.model import BreakerPolicy
from synchub.vault import credentials, crypto
from synchub.vault.service import VendorCredentials
from synchub.vault.store import Vault, key_status, rotate, vendor_credentials
from tests.logs import captured_logs

KEK = os.urandom(32)
WORKSPACE = "live"
REDIRECT = "http://127.0.0.1:8080/oauth/callback/xero"


class SlowTransport(httpx.BaseTransport):
    """A sandbox transport whose token endpoint takes a while (so racing refreshes overlap)."""

    def __init__(self, box: Sandbox, delay: float) -> None:
        self.box, self.delay = box, delay

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            time.sleep(self.delay)
        response = self.box.handle(request)
        response.read()
        return response


def xero_service(
    db: Database, box: XeroSandbox, clock: FixedClock, *, delay: float = 0.0
) -> VendorCredentials:
    app = OAuthApp(
        XERO,
        client_id=SANDBOX_CLIENT_ID,
        client_secret=SANDBOX_CLIENT_SECRET,
        redirect_uri=REDIRECT,
    )
    http = httpx.Client(transport=SlowTransport(box, delay), follow_redirects=False)
    client = OAuthClient(http, app, clock=clock)
    return VendorCredentials(
        db,
        Vault(KEK),
        clock=clock,
        workspace=WORKSPACE,
        clients={"xero": client},
        policies={"xero": BreakerPolicy()},
    )


def authorize(service: VendorCredentials, name: str = "xero") -> credentials.Credential:
    url = service.begin_authorization(name)
    query = service.client(name).consent_in_sandbox(url)
    return service.complete_authorization(name, state=query["state"], code=query["code"])


def test_sealed_secrets_are_bound_to_their_key_their_label_and_the_kek() -> None:
    key = crypto.new_data_key()
    sealed = crypto.seal(key, 7, b"refresh-token", label="vendor_credentials/live/xero/oauth")
    assert crypto.version_of(sealed) == 7
    assert b"refresh-token" not in sealed
    assert crypto.open_sealed(key, sealed, label="vendor_credentials/live/xero/oauth") == (
        b"refresh-token"
    )
    with pytest.raises(crypto.VaultError):  # moved to another row
        crypto.open_sealed(key, sealed, label="vendor_credentials/live/hubspot/oauth")
    relabelled = sealed[:1] + (8).to_bytes(4, "big") + sealed[5:]
    with pytest.raises(crypto.VaultError):  # the version is authenticated too
        crypto.open_sealed(key, relabelled, label="vendor_credentials/live/xero/oauth")
    wrapped = crypto.wrap_data_key(KEK, 1, key)
    assert crypto.unwrap_data_key(KEK, 1, wrapped) == key
    with pytest.raises(crypto.VaultError):
        crypto.unwrap_data_key(os.urandom(32), 1, wrapped)


def test_pkce_pairs_follow_rfc_7636() -> None:
    verifier, challenge = pkce_pair()
    assert len(verifier) == 43
    assert "=" not in verifier
    assert challenge == s256(verifier)
    assert pkce_pair()[0] != verifier


def test_authorization_stores_the_tokens_sealed_and_the_state_is_single_use(
    db: Database, clock: FixedClock
) -> None:
    box = XeroSandbox()
    service = xero_service(db, box, clock)
    url = service.begin_authorization("xero")
    assert url.startswith(XERO.authorize_url + "?")
    assert "code_challenge_method=S256" in url
    assert "offline_access" in url
    query = service.client("xero").consent_in_sandbox(url)
    stored = service.complete_authorization("xero", state=query["state"], code=query["code"])
    assert stored.status == "active"
    assert stored.tenant_id == box.tenant_id
    with db.read() as conn:
        row = conn.execute(sa.select(vendor_credentials)).mappings().one()
        secret = credentials.open_secret(conn, Vault(KEK), stored)
    assert secret["access_token"] in box.oauth.access_tokens
    assert secret["access_token"].encode() not in bytes(row["secret"])
    assert secret["refresh_token"].encode() not in bytes(row["secret"])
    with pytest.raises(ValidationError) as replayed:  # the same callback again
        service.complete_authorization("xero", state=query["state"], code=query["code"])
    assert replayed.value.problems[0].pointer == "/state"
    late = service.begin_authorization("xero")
    late_query = service.client("xero").consent_in_sandbox(late)
    clock.advance(timedelta(minutes=11))
    with pytest.raises(ValidationError):  # expired
        service.complete_authorization("xero", state=late_query["state"], code=late_query["code"])


def test_a_wrong_verifier_or_a_reused_code_is_refused_by_the_sandbox(clock: FixedClock) -> None:
    box = XeroSandbox()
    app = OAuthApp(
        XERO,
        client_id=SANDBOX_CLIENT_ID,
        client_secret=SANDBOX_CLIENT_SECRET,
        redirect_uri=REDIRECT,
    )
    client = OAuthClient(httpx.Client(transport=box.transport()), app, clock=clock)
    verifier, challenge = pkce_pair()
    from synchub.connectors.oauth import authorization_url

    query = client.consent_in_sandbox(authorization_url(app, state="s", challenge=challenge))
    with pytest.raises(InvalidGrantError):
        client.exchange_code(query["code"], pkce_pair()[0])
    query = client.consent_in_sandbox(authorization_url(app, state="s", challenge=challenge))
    tokens = client.exchange_code(query["code"], verifier)
    with pytest.raises(InvalidGrantError):
        client.exchange_code(query["code"], verifier)
    assert tokens.refresh_token is not None
    client.refresh(tokens.refresh_token)
    with pytest.raises(InvalidGrantError):  # Xero's refresh tokens rotate: the old one is spent
        client.refresh(tokens.refresh_token)
    assert box.oauth.reused_refresh_tokens == 1


def test_tokens_are_refreshed_before_they_expire_and_used_by_the_client(
    db: Database, clock: FixedClock
) -> None:
    box = XeroSandbox()
    service = xero_service(db, box, clock)
    authorize(service)
    source = service.source("xero")
    first = source.access_token()
    xero = XeroClient(
        httpx.Client(transport=box.transport()),
        token=source.access_token,
        tenant_id=source.tenant_id,
        clock=clock,
    )
    assert xero.find("Contacts", "Name", "nobody") == []
    clock.advance(timedelta(minutes=24))  # 6 minutes left: still fresh
    assert source.access_token() == first
    assert box.oauth.refreshes == 0
    clock.advance(timedelta(minutes=2))  # 4 minutes left: refresh now
    second = source.access_token()
    assert second != first
    assert box.oauth.refreshes == 1
    assert xero.find("Contacts", "Name", "nobody") == []
    with db.read() as conn:
        stored = credentials.read(conn, WORKSPACE, "xero")
    assert stored is not None
    assert stored.generation == 2
    assert stored.access_expires_at == clock.now() + timedelta(minutes=30)


def test_hubspot_tokens_refresh_without_rotating(db: Database, clock: FixedClock) -> None:
    box = HubSpotSandbox()
    app = OAuthApp(
        HUBSPOT,
        client_id=HS_CLIENT_ID,
        client_secret=box.client_secret,
        redirect_uri="http://127.0.0.1:8080/oauth/callback/hubspot",
    )
    client = OAuthClient(httpx.Client(transport=box.transport()), app, clock=clock)
    service = VendorCredentials(
        db, Vault(KEK), clock=clock, workspace=WORKSPACE, clients={"hubspot": client}, policies={}
    )
    authorize(service, "hubspot")
    source = service.source("hubspot")
    hubspot = HubSpotClient(
        httpx.Client(transport=box.transport()), token=source.access_token, clock=clock
    )
    hubspot.upsert("contacts", id_property="email", id_value="a@b.nz", properties={})
    clock.advance(timedelta(minutes=27))
    hubspot.upsert("contacts", id_property="email", id_value="a@b.nz", properties={})
    clock.advance(timedelta(minutes=27))
    hubspot.upsert("contacts", id_property="email", id_value="a@b.nz", properties={})
    assert box.oauth.refreshes == 2
    assert box.oauth.reused_refresh_tokens == 0


def test_racing_processes_refresh_once_and_share_the_new_token(
    db: Database, clock: FixedClock
) -> None:
    box = XeroSandbox()
    authorize(xero_service(db, box, clock))
    clock.advance(timedelta(minutes=26))
    # Each "process": its own Database (own SQLite writer lock / PG connections), vault and
    # token cache; the token endpoint is slow, so both ask for a refresh at the same time.
    others = [make_database(db.engine.url.render_as_string(hide_password=False)) for _ in range(3)]
    services = [xero_service(d, box, clock, delay=0.3) for d in others]
    barrier = threading.Barrier(len(services))
    tokens: list[str] = []
    errors: list[BaseException] = []

    def run(service: VendorCredentials) -> None:
        barrier.wait()
        try:
            tokens.append(service.source("xero").access_token())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for d in others:
        d.dispose()
    assert errors == []
    assert box.oauth.refreshes == 1, "one refresh for all"
    assert box.oauth.reused_refresh_tokens == 0, "a rotated refresh token was sent twice"
    assert len(set(tokens)) == 1
    assert len(tokens) == 3


def test_invalid_grant_needs_reauthorization_alerts_and_holds_deliveries(
    db: Database, clock: FixedClock
) -> None:
    box = XeroSandbox()
    service = xero_service(db, box, clock)
    authorize(service)
    _pending_delivery(db, clock, workspace="other-live")
    box.oauth.revoke_all()  # the organisation disconnected the app
    clock.advance(timedelta(minutes=26))
    before = _counter("xero", "invalid_grant")
    with captured_logs() as logs, pytest.raises(ReauthorizationRequiredError) as raised:
        service.source("xero").access_token()
    assert signal_of(raised.value) is None  # not a vendor failure: the breaker is not fed
    assert any(
        e["event"] == "vendor_credentials.reauthorization_required"
        and e["alert"]
        and e["log_level"] == "error"
        for e in logs
    )
    assert _counter("xero", "invalid_grant") == before + 1
    assert service.statuses()["xero"]["status"] == "needs_reauthorization"
    with db.read() as conn:
        rows = breaker_store.health_rows(conn)
    for workspace in (WORKSPACE, "other-live"):  # every workspace with deliveries waiting
        health = rows[(workspace, "xero")]
        assert gate(health, BreakerPolicy(), clock.now() + timedelta(days=300)).kind is Kind.BLOCKED
    with pytest.raises(ReauthorizationRequiredError):  # no second refresh is tried
        service.source("xero").access_token()
    assert box.oauth.reused_refresh_tokens == 1  # only the refused one
    authorize(service)  # a person re-authorises
    assert service.statuses()["xero"]["status"] == "active"
    with db.read() as conn:
        rows = breaker_store.health_rows(conn)
    assert all(rows[(w, "xero")].paused_until is None for w in (WORKSPACE, "other-live"))
    assert service.source("xero").access_token() in box.oauth.access_tokens


def test_a_connection_never_authorised_holds_its_deliveries(
    db: Database, clock: FixedClock
) -> None:
    service = xero_service(db, XeroSandbox(), clock)
    with pytest.raises(ReauthorizationRequiredError, match="not authorised yet"):
        service.source("xero").access_token()
    with db.read() as conn:
        health = breaker_store.health_rows(conn)[(WORKSPACE, "xero")]
    assert gate(health, BreakerPolicy(), clock.now()).kind is Kind.BLOCKED


def test_rotation_reseals_everything_and_a_crash_half_way_leaves_all_readable(
    db: Database, clock: FixedClock
) -> None:
    vault = Vault(KEK)
    names = [f"conn{i}" for i in range(5)]
    with db.write() as conn:
        for name in names:
            credentials.save(
                conn,
                vault,
                workspace=WORKSPACE,
                connection=name,
                system="xero",
                kind="api_key",
                secret={"api_key": f"key-{name}"},
                now=clock.now(),
            )
    first = rotate(db, vault, now=clock.now())
    assert (first.version, first.new_key, first.resealed, first.remaining) == (2, True, 5, 0)

    def crash(done: int) -> None:
        if done >= 2:
            raise RuntimeError("killed half-way")

    with pytest.raises(RuntimeError):
        rotate(db, Vault(KEK), now=clock.now(), batch=1, after_batch=crash)
    with db.read() as conn:
        versions = {s["version"]: s["secrets"] for s in key_status(conn)}
        assert versions == {1: 0, 2: 3, 3: 2}
        fresh = Vault(KEK)  # another process: nothing cached
        for name in names:
            stored = credentials.read(conn, WORKSPACE, name)
            assert stored is not None
            assert credentials.open_secret(conn, fresh, stored) == {"api_key": f"key-{name}"}
    resumed = rotate(db, Vault(KEK), now=clock.now())
    assert (resumed.version, resumed.new_key, resumed.resealed, resumed.remaining) == (
        3,
        False,
        3,
        0,
    )
    with db.read() as conn:
        status = {s["version"]: s for s in key_status(conn)}
        assert status[3]["secrets"] == 5
        assert status[3]["retired_at"] is None
        assert status[2]["retired_at"] is not None
        stored = credentials.read(conn, WORKSPACE, "conn4")
        assert stored is not None
        assert stored.key_version == 3
        with pytest.raises(crypto.VaultError):  # another KEK cannot open anything
            credentials.open_secret(conn, Vault(os.urandom(32)), stored)


def _pending_delivery(db: Database, clock: FixedClock, *, workspace: str) -> None:
    with db.write() as conn:
        conn.execute(
            sa.insert(deliveries).values(
                id="dlv_1",
                workspace=workspace,
                event_id="evt_1",
                event_seq=1,
                event_type="customer.created",
                destination="xero",
                aggregate_id="cus_1",
                status="pending",
                attempts=1,
                next_attempt_at=clock.now(),
                idempotency_key="synchub:dlv_1",
                created_at=clock.now(),
            )
        )


def _counter(connection: str, outcome: str) -> float:
    value = process_metrics().registry.get_sample_value(
        "synchub_vendor_token_refreshes_total", {"connection": connection, "outcome": outcome}
    )
    return value or 0.0
