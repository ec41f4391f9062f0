"""The one place that turns Settings into the object graph: store, register, connectors."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import httpx

from synchub.audit.service import ChainHead, chain_key
from synchub.audit.service import record as record_audit
from synchub.auth.keys import load_or_create_kek
from synchub.auth.model import workspace_kind
from synchub.auth.service import AuthorizationServer
from synchub.config import DEV_STRIPE_WEBHOOK_SECRET as DEV_SECRET
from synchub.config import Settings
from synchub.connectors.base import Destination
from synchub.connectors.broker.base import (
    BrokerDestination,
    BrokerSink,
    EventOrigin,
    OriginLookup,
)
from synchub.connectors.broker.memory import MemoryBroker
from synchub.connectors.broker.model import parse_nats_settings
from synchub.connectors.hubspot.client import HubSpotClient
from synchub.connectors.hubspot.push import HubSpotDestination
from synchub.connectors.hubspot.sandbox import HubSpotSandbox
from synchub.connectors.intercom.client import IntercomClient
from synchub.connectors.intercom.pull import IntercomReader
from synchub.connectors.intercom.push import IntercomDestination
from synchub.connectors.intercom.sandbox import IntercomSandbox
from synchub.connectors.oauth import (
    OAUTH_SETTINGS,
    OAuthClient,
    auth_problem,
    is_oauth,
    oauth_app,
)
from synchub.connectors.product.client import ProductClient
from synchub.connectors.product.push import ProductDestination
from synchub.connectors.product.sandbox import SHARED_SANDBOX_SECRET, ProductSandbox
from synchub.connectors.remote_sandbox import RemoteSandboxTransport
from synchub.connectors.sandbox import Sandbox
from synchub.connectors.standard_webhooks import new_secret
from synchub.connectors.stripe.client import StripeClient
from synchub.connectors.stripe.pull import StripeReader
from synchub.connectors.stripe.sandbox import StripeSandbox
from synchub.connectors.xero.client import XeroClient
from synchub.connectors.xero.push import XeroDestination
from synchub.connectors.xero.sandbox import XeroSandbox
from synchub.core.clock import Clock, FixedClock, SystemClock
from synchub.core.errors import ConfigError
from synchub.db import Database, make_database
from synchub.events.model import CATALOGUE
from synchub.events.store import get_event as outbox_event
from synchub.idempotency.service import InFlight
from synchub.ingest.service import SourceReader
from synchub.mapping.catalogue import load_mappings
from synchub.mapping.model import MappingVersion
from synchub.ratelimit.store import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from synchub.register.loader import load_register
from synchub.register.model import Connection, Mode, Register, RetryPolicy
from synchub.vault.service import VendorCredentials
from synchub.vault.store import Vault
from synchub.webhooks.destination import PartnerWebhooks, webhook_http_client
from synchub.webhooks.model import RETRY_POLICY as WEBHOOK_RETRY_POLICY
from synchub.webhooks.model import endpoint_id_of
from synchub.webhooks.ssrf import private_targets_policy


def app_version() -> str:
    """The installed synchub version."""
    try:
        return version("synchub")
    except PackageNotFoundError:
        return "0.0.0+local"


@dataclass
class Sandboxes:
    """The in-process vendor sandboxes used by sandbox-mode connections (demo, tests)."""

    stripe: StripeSandbox
    hubspot: HubSpotSandbox = field(default_factory=HubSpotSandbox)
    xero: XeroSandbox = field(default_factory=XeroSandbox)
    intercom: IntercomSandbox = field(default_factory=IntercomSandbox)
    product: ProductSandbox = field(default_factory=lambda: ProductSandbox(secret=new_secret()))
    broker: MemoryBroker = field(default_factory=MemoryBroker)  # nats connections without a url
    remote_url: str | None = None  # set: the state lives in this shared sandbox server

    def in_process(self) -> list[Sandbox]:
        """The vendor sandboxes this process holds (none when they live on a server)."""
        if self.remote_url:
            return []
        return [self.stripe, self.hubspot, self.xero, self.intercom, self.product]

    def keep_state(self, directory: Path) -> Sandboxes:
        """Keep each in-process sandbox's state in `directory/<vendor>.json`: take up what an
        earlier process left there, and save after every applied write."""
        for box in self.in_process():
            box.keep_state(directory / f"{box.vendor}.json")
        return self

    def transport(self, box: Sandbox) -> httpx.BaseTransport:
        """How a connection reaches one of these sandboxes: in process, or over HTTP."""
        if self.remote_url:
            return RemoteSandboxTransport(self.remote_url, vendor=box.vendor)
        return box.transport()


def sandbox_state_dir(settings: Settings) -> Path:
    """Where in-process sandboxes keep their vendor state: `<data_dir>/sandboxes`."""
    return settings.data_dir / "sandboxes"


def new_sandboxes(*, stripe_start: datetime, state_dir: Path | None = None) -> Sandboxes:
    """Sandboxes; the Stripe account's clock starts at `stripe_start`. With `state_dir` they
    continue the state kept there (if any) and keep theirs there; without it they are fresh
    and live only as long as this process."""
    boxes = Sandboxes(stripe=StripeSandbox(clock=FixedClock(stripe_start)))
    return boxes.keep_state(state_dir) if state_dir is not None else boxes


def remote_sandboxes(url: str, *, stripe_start: datetime) -> Sandboxes:
    """Sandboxes served by `synchub sandbox serve` at `url`, shared by every process (ADR
    0011); the local objects only hold the credentials that server's vendors accept."""
    return Sandboxes(
        stripe=StripeSandbox(clock=FixedClock(stripe_start)),
        product=ProductSandbox(secret=SHARED_SANDBOX_SECRET),
        remote_url=url,
    )


@dataclass
class Hub:
    """Everything a process of synchub needs, built once."""

    settings: Settings
    db: Database
    register: Register
    mappings: dict[str, dict[str, MappingVersion]]
    clock: Clock
    readers: dict[str, SourceReader]
    destinations: dict[str, Destination]
    policies: dict[str, RetryPolicy]
    sandboxes: Sandboxes | None
    webhook_secrets: dict[str, list[str]]
    version: str
    http_clients: list[httpx.Client] = field(default_factory=list)
    brokers: list[BrokerSink] = field(default_factory=list)  # closed by close() (ADR 0010)
    auth: AuthorizationServer | None = None
    ratelimiter: RateLimiter | None = None
    audit_key: bytes = b""
    audit_head: ChainHead = field(default_factory=ChainHead)  # spares a read per entry (ADR 0015)
    idempotency: InFlight = field(default_factory=InFlight)
    webhooks: PartnerWebhooks | None = None  # partner webhook endpoints (ADR 0009)
    credentials: VendorCredentials | None = None  # vendor OAuth connections (ADR 0023)
    workspace_sandboxes: dict[str, tuple[Sandboxes, dict[str, Destination]]] = field(
        default_factory=dict
    )
    _sandbox_lock: threading.Lock = field(default_factory=threading.Lock)

    def destinations_for(self, workspace: str) -> dict[str, Destination]:
        """Where a workspace's events go: a sandbox workspace only ever reaches its own
        in-process vendor sandboxes, never the register's (possibly live) connections."""
        if workspace == self.register.workspace or workspace_kind(workspace) != "sandbox":
            return self._with_webhooks(self.destinations, workspace)
        with self._sandbox_lock:
            if workspace not in self.workspace_sandboxes:
                boxes = new_sandboxes(stripe_start=self.clock.now())
                self.workspace_sandboxes[workspace] = (boxes, _destinations_over(self, boxes))
            return self._with_webhooks(self.workspace_sandboxes[workspace][1], workspace)

    def _with_webhooks(
        self, destinations: dict[str, Destination], workspace: str
    ) -> dict[str, Destination]:
        """Add the workspace's partner webhook endpoints (`webhook:<endpoint id>` names)."""
        if self.webhooks is None:
            return destinations
        return self.webhooks.over(destinations, workspace=workspace)

    def policy_for(self, destination: str) -> RetryPolicy:
        """The retry policy of a destination (its connection's, else the default)."""
        if endpoint_id_of(destination) is not None:
            return WEBHOOK_RETRY_POLICY  # partner webhooks: the STANDARDS.md §4 schedule
        return self.policies.get(destination) or RetryPolicy()

    def close(self) -> None:
        """Close broker connections, HTTP clients and database connections."""
        for sink in self.brokers:
            sink.close()
        for client in self.http_clients:
            client.close()
        self.db.dispose()


def load_checked_register(
    settings: Settings,
) -> tuple[Register, dict[str, dict[str, MappingVersion]]]:
    """Load the mappings and the register; raises RegisterError naming file and line."""
    mappings = load_mappings()
    register = load_register(
        settings.register_dir,
        event_types=set(CATALOGUE),
        mappings={system: set(versions) for system, versions in mappings.items()},
    )
    return register, mappings


def _secret(value: object | None) -> str | None:
    return value.get_secret_value() if value is not None else None  # type: ignore[attr-defined]


def build_hub(
    settings: Settings,
    *,
    clock: Clock | None = None,
    sandboxes: Sandboxes | None = None,
    db: Database | None = None,
) -> Hub:
    """Build the hub from settings; sandbox-mode connections get in-process sandboxes.

    Sandboxes made here (no `sandboxes` given, no SYNCHUB_SANDBOX_URL) keep their vendor
    state in `<data_dir>/sandboxes`, so a later process on the same data directory sees the
    same vendors; sandboxes passed in (tests, the demo) keep state only if their maker asked.
    """
    register, mappings = load_checked_register(settings)
    missing = missing_credentials(register, settings)
    if missing:
        raise ConfigError("cannot start:\n" + "\n".join(f"  {m}" for m in missing))
    clock = clock or SystemClock()
    needs_sandbox = any(c.mode is Mode.SANDBOX for c in register.connections.values())
    if needs_sandbox and sandboxes is None and settings.sandbox_url:
        sandboxes = remote_sandboxes(settings.sandbox_url, stripe_start=clock.now())
    if needs_sandbox and sandboxes is None:
        sandboxes = new_sandboxes(stripe_start=clock.now(), state_dir=sandbox_state_dir(settings))
    hub = Hub(
        settings=settings,
        db=db or make_database(settings.resolved_database_url()),
        register=register,
        mappings=mappings,
        clock=clock,
        readers={},
        destinations={},
        policies={n: c.retry for n, c in register.connections.items()},
        sandboxes=sandboxes,
        webhook_secrets={},
        version=app_version(),
    )
    hub.credentials = build_vendor_credentials(hub)
    for connection in register.connections.values():
        _wire(hub, connection)
    hub.auth = build_authorization_server(settings, hub.db, clock)
    hub.audit_key = chain_key(key_encryption_key(settings))
    hub.ratelimiter = build_ratelimiter(settings, clock)
    hub.webhooks = build_webhooks(hub)
    return hub


def build_webhooks(hub: Hub) -> PartnerWebhooks:
    """Partner webhook delivery: its own HTTP client (through the egress proxy if one is set)."""
    proxy = hub.settings.webhook_egress_proxy
    http = webhook_http_client(proxy=proxy)
    hub.http_clients.append(http)
    kek = key_encryption_key(hub.settings)
    return PartnerWebhooks(
        db=hub.db,
        clock=hub.clock,
        kek=kek,
        audit_key=hub.audit_key,
        http=http,
        proxied=proxy is not None,
        private_targets=private_targets_policy(
            hub.settings.webhook_private_targets,
            host=hub.settings.host,
            public_url=hub.settings.resolved_public_url(),
        ),
    )


def build_vendor_credentials(hub: Hub) -> VendorCredentials:
    """The vault and the OAuth clients of the register's `auth: oauth` connections (ADR 0023):
    a sandbox-mode connection authorises with its sandbox's app, a live one with the app in
    SYNCHUB_XERO_CLIENT_ID/SECRET or SYNCHUB_HUBSPOT_CLIENT_ID/SECRET."""
    s, clients = hub.settings, {}
    for c in hub.register.connections.values():
        if not is_oauth(c):
            continue
        box: XeroSandbox | HubSpotSandbox | None = None
        client_id: str | None
        secret: str | None
        if c.mode is Mode.SANDBOX and hub.sandboxes is not None:
            box = hub.sandboxes.xero if c.system == "xero" else hub.sandboxes.hubspot
        if box is not None:
            client_id, secret = box.oauth.client_id, box.oauth.client_secret
        else:
            id_name, secret_name = OAUTH_SETTINGS[c.system]
            client_id, secret = getattr(s, id_name), _secret(getattr(s, secret_name))
        app = oauth_app(c, public_url=s.resolved_public_url(), client_id=client_id,
                        client_secret=secret)  # fmt: skip
        transport = hub.sandboxes.transport(box) if box is not None and hub.sandboxes else None
        clients[c.name] = OAuthClient(_http(hub, c, transport), app, clock=hub.clock)
    key = chain_key(key_encryption_key(s))

    def audit(conn: Any, **entry: Any) -> None:
        record_audit(conn, key=key, at=hub.clock.now(), **entry)

    return VendorCredentials(
        hub.db, Vault(key_encryption_key(s)), clock=hub.clock, workspace=hub.register.workspace,
        clients=clients, policies={n: c.breaker for n, c in hub.register.connections.items()},
        margin=timedelta(seconds=s.vendor_token_refresh_margin_seconds),
        state_ttl=timedelta(seconds=s.vendor_oauth_state_ttl_seconds), audit=audit,
    )  # fmt: skip


def build_ratelimiter(settings: Settings, clock: Clock) -> RateLimiter:
    """Redis when configured (shared by every process), else this process's memory."""
    if settings.redis_url:
        import redis

        return RedisRateLimiter(redis.Redis.from_url(settings.redis_url))
    return MemoryRateLimiter(clock)


def key_encryption_key(settings: Settings) -> bytes:
    """The key that encrypts signing keys and seals the audit chain."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return load_or_create_kek(settings.data_dir, _secret(settings.key_encryption_key))


def build_authorization_server(
    settings: Settings, db: Database, clock: Clock
) -> AuthorizationServer:
    """The OAuth server for the /v1 API, recording to the audit log."""

    kek = key_encryption_key(settings)
    key = chain_key(kek)

    def audit(conn: Any, **entry: Any) -> None:
        record_audit(conn, key=key, at=clock.now(), **entry)

    return AuthorizationServer(
        db, kek=kek, clock=clock, issuer=settings.resolved_public_url(), audit=audit
    )


LIVE_CREDENTIALS = {
    "stripe": ("stripe_webhook_secret",),
    "hubspot": ("hubspot_token",),
    "intercom": ("intercom_token",),
    "xero": ("xero_token", "xero_tenant_id"),
    "product": ("product_callback_secret",),
    "nats": (),  # the url and creds_file are in the register (ADR 0010)
}


def missing_credentials(register: Register, settings: Settings) -> list[str]:
    """Every setting a live connection needs but does not have, naming the variable."""
    missing = []
    for connection in register.connections.values():
        problem = auth_problem(connection)
        if problem is not None:
            missing.append(problem)
            continue
        if connection.mode is Mode.SANDBOX:
            continue
        needed = LIVE_CREDENTIALS[connection.system]
        if is_oauth(connection):  # tokens come from the vault; the app's client is needed
            needed = OAUTH_SETTINGS[connection.system]
        for field_name in needed:
            value = getattr(settings, field_name)
            raw = _secret(value) if hasattr(value, "get_secret_value") else value
            variable = f"SYNCHUB_{field_name.upper()}"
            if not raw:
                missing.append(f"connection {connection.name!r} is live: set {variable}")
            elif field_name == "stripe_webhook_secret" and raw == DEV_SECRET:
                missing.append(
                    f"connection {connection.name!r} is live: set {variable} to the endpoint's "
                    "signing secret from Stripe (the built-in development secret is public "
                    "and would let anyone forge events)"
                )
    return missing


def _http(hub: Hub, connection: Connection, transport: httpx.BaseTransport | None) -> httpx.Client:
    client = httpx.Client(
        transport=transport, timeout=connection.retry.timeout_seconds, follow_redirects=False
    )
    hub.http_clients.append(client)
    return client


def _wire(hub: Hub, connection: Connection) -> None:
    sandbox_mode = connection.mode is Mode.SANDBOX
    boxes = hub.sandboxes
    s = hub.settings
    name = connection.name
    if connection.system == "stripe":
        mapping_id = connection.mapping or next(iter(hub.mappings["stripe"]))
        hub.webhook_secrets[name] = [s.stripe_webhook_secret.get_secret_value()]
        client = None
        if sandbox_mode and boxes:
            client = StripeClient(
                _http(hub, connection, boxes.transport(boxes.stripe)),
                api_key=boxes.stripe.api_key,
                clock=hub.clock,
            )
        elif s.stripe_api_key is not None:
            client = StripeClient(
                _http(hub, connection, None),
                api_key=s.stripe_api_key.get_secret_value(),
                clock=hub.clock,
            )
        hub.readers[name] = StripeReader(
            source=name, mapping=hub.mappings["stripe"][mapping_id], client=client
        )
    elif connection.system == "hubspot":
        token: str | Callable[[], str]
        if is_oauth(connection) and hub.credentials is not None:
            if sandbox_mode and boxes:
                http = _http(hub, connection, boxes.transport(boxes.hubspot))
                hub.webhook_secrets[name] = [boxes.hubspot.client_secret]
            else:
                http = _http(hub, connection, None)
                if s.hubspot_client_secret is not None:
                    hub.webhook_secrets[name] = [s.hubspot_client_secret.get_secret_value()]
            token = hub.credentials.source(name).access_token
        elif sandbox_mode and boxes:
            http = _http(hub, connection, boxes.transport(boxes.hubspot))
            token = boxes.hubspot.token
            hub.webhook_secrets[name] = [boxes.hubspot.client_secret]
        else:
            if s.hubspot_client_secret is not None:
                hub.webhook_secrets[name] = [s.hubspot_client_secret.get_secret_value()]
            http, token = (
                _http(hub, connection, None),
                _required(_secret(s.hubspot_token), name, "SYNCHUB_HUBSPOT_TOKEN"),
            )
        hub.destinations[name] = HubSpotDestination(
            name, HubSpotClient(http, token=token, clock=hub.clock)
        )
    elif connection.system == "intercom":
        _wire_intercom(hub, connection)
    elif connection.system == "xero":
        tenant: str | Callable[[], str]
        if is_oauth(connection) and hub.credentials is not None:
            transport = boxes.transport(boxes.xero) if sandbox_mode and boxes else None
            http = _http(hub, connection, transport)
            source = hub.credentials.source(name)
            token, tenant = source.access_token, source.tenant_id
        elif sandbox_mode and boxes:
            http = _http(hub, connection, boxes.transport(boxes.xero))
            token, tenant = boxes.xero.token, boxes.xero.tenant_id
        else:
            http = _http(hub, connection, None)
            token = _required(_secret(s.xero_token), name, "SYNCHUB_XERO_TOKEN")
            tenant = _required(s.xero_tenant_id, name, "SYNCHUB_XERO_TENANT_ID")
        xero = XeroClient(http, token=token, tenant_id=tenant, clock=hub.clock)
        hub.destinations[name] = XeroDestination(
            name,
            xero,
            timezone=hub.register.timezone,
            sales_account=connection.settings.get("sales_account", "200"),
            bank_account=connection.settings.get("bank_account", "090"),
        )
    elif connection.system == "product":
        if sandbox_mode and boxes:
            http = _http(hub, connection, boxes.transport(boxes.product))
            secret = boxes.product.secret
        else:
            http = _http(hub, connection, None)
            secret = _required(
                _secret(s.product_callback_secret), name, "SYNCHUB_PRODUCT_CALLBACK_SECRET"
            )
        url = connection.settings.get("callback_url", s.product_callback_url)
        hub.destinations[name] = ProductDestination(
            name,
            ProductClient(
                http,
                url=url,
                secrets=[secret],
                clock=hub.clock,
                timeout_seconds=connection.retry.timeout_seconds,
            ),
        )
    elif connection.system == "nats":
        hub.destinations[name] = _broker_destination(hub, connection)


def _wire_intercom(hub: Hub, connection: Connection) -> None:
    """An Intercom connection (ADR 0022): a destination for customers (contacts, search then
    write on external_id) and a source (pulled contacts, contact notifications)."""
    boxes, s, name = hub.sandboxes, hub.settings, connection.name
    if connection.mode is Mode.SANDBOX and boxes:
        http = _http(hub, connection, boxes.transport(boxes.intercom))
        token = boxes.intercom.token
        hub.webhook_secrets[name] = [boxes.intercom.client_secret]
    else:
        if s.intercom_client_secret is not None:
            hub.webhook_secrets[name] = [s.intercom_client_secret.get_secret_value()]
        http = _http(hub, connection, None)
        token = _required(_secret(s.intercom_token), name, "SYNCHUB_INTERCOM_TOKEN")
    base_url = connection.settings.get("base_url", "https://api.intercom.io")
    client = IntercomClient(http, token=token, clock=hub.clock, base_url=base_url)
    hub.destinations[name] = IntercomDestination(name, client)
    mapping_id = connection.mapping or next(iter(hub.mappings["intercom"]))
    hub.readers[name] = IntercomReader(
        source=name, mapping=hub.mappings["intercom"][mapping_id], client=client
    )


def _destinations_over(hub: Hub, boxes: Sandboxes) -> dict[str, Destination]:
    """The register's destinations, each wired to an in-process sandbox instead."""
    destinations: dict[str, Destination] = {}
    for c in hub.register.connections.values():
        if c.system == "hubspot":
            destinations[c.name] = HubSpotDestination(c.name, HubSpotClient(
                _http(hub, c, boxes.hubspot.transport()), token=boxes.hubspot.token,
                clock=hub.clock))  # fmt: skip
        elif c.system == "intercom":
            destinations[c.name] = IntercomDestination(c.name, IntercomClient(
                _http(hub, c, boxes.intercom.transport()), token=boxes.intercom.token,
                clock=hub.clock))  # fmt: skip
        elif c.system == "xero":
            destinations[c.name] = XeroDestination(c.name, XeroClient(
                _http(hub, c, boxes.xero.transport()), token=boxes.xero.token,
                tenant_id=boxes.xero.tenant_id, clock=hub.clock),
                timezone=hub.register.timezone)  # fmt: skip
        elif c.system == "product":
            destinations[c.name] = ProductDestination(c.name, ProductClient(
                _http(hub, c, boxes.product.transport()), url="http://product.sandbox/callbacks",
                secrets=[boxes.product.secret], clock=hub.clock))  # fmt: skip
        elif c.system == "nats":
            destinations[c.name] = BrokerDestination(
                c.name, boxes.broker, origin_of=_event_origins(hub.db)
            )
    return destinations


def _broker_destination(hub: Hub, connection: Connection) -> Destination:
    """A nats connection (ADR 0010): the NATS server at its url, in either mode (the team's
    local NATS is its sandbox); without a url (sandbox mode only) the in-process broker."""
    options, _ = parse_nats_settings(connection.settings)  # the register check validated them
    sink: BrokerSink
    if options.urls:
        from synchub.connectors.broker.nats import NatsSink

        sink = NatsSink(
            options, name=connection.name, timeout_seconds=connection.retry.timeout_seconds
        )
        hub.brokers.append(sink)
    elif hub.sandboxes is not None:
        sink = hub.sandboxes.broker
    else:
        raise ConfigError(f"connection {connection.name!r}: set settings.url")
    return BrokerDestination(connection.name, sink, origin_of=_event_origins(hub.db))


def _event_origins(db: Database) -> OriginLookup:
    """Reads an event's workspace, source and schema from the outbox, for broker messages."""

    def origin_of(event_id: str) -> EventOrigin | None:
        with db.read() as conn:
            row = outbox_event(conn, event_id)
        if row is None:
            return None
        return EventOrigin(row["workspace"], source=row["source"], dataschema=row["dataschema"],
                           aggregate_id=row["aggregate_id"])  # fmt: skip

    return origin_of


def _required(value: str | None, connection: str, variable: str) -> str:
    if not value:
        raise ConfigError(f"connection {connection!r} is live: set {variable}")
    return value


def random_secret() -> str:
    """A random local secret (webhook signing in demos)."""
    return "whsec_" + secrets.token_urlsafe(24)
