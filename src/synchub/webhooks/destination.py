"""Delivering canonical events to partner webhook endpoints (Standard Webhooks v1).

Each attempt re-reads its endpoint (a disabled or deleted one is not called: a disabled
one's delivery goes back to `held`), re-checks the
URL with the SSRF guard, signs the exact body bytes with every active secret, and POSTs to
an address the guard checked: the URL's host is replaced by that address, while the Host
header and the TLS server name (SNI and certificate check) stay the URL's host name. With an
egress proxy configured the request goes to the proxy, which resolves the name itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar, overload

import httpx

from synchub.auth.model import workspace_kind
from synchub.connectors import standard_webhooks
from synchub.connectors.base import Attempt, Delivered, Destination, OutboundEvent
from synchub.connectors.http import (
    SAFE_HEADERS,
    ResponseSummary,
    VendorResponseError,
    parse_retry_after,
    summarize_response,
)
from synchub.core.clock import Clock
from synchub.core.errors import (
    HubError,
    PermanentError,
    RateLimitedError,
    RejectedError,
    TransientError,
)
from synchub.db import Database
from synchub.webhooks.model import (
    RETRY_POLICY,
    TIMEOUT_SECONDS,
    Endpoint,
    Verdict,
    endpoint_id_of,
    is_last_attempt,
    message_id,
    verdict_for,
    webhook_body,
)
from synchub.webhooks.service import (
    delivery_age,
    hold_if_disabled,
    load_for_delivery,
    record_delivered,
    record_failure,
    record_gone,
)
from synchub.webhooks.ssrf import CheckedTarget, Resolver, UnsafeUrlError, check_url, resolve_host

USER_AGENT = "synchub-webhooks/1"
# Bytes of a failed answer's body read for its summary (summarize_response scans no more).
SUMMARY_READ_LIMIT = 64 * 1024
T = TypeVar("T")


def webhook_http_client(*, proxy: str | None = None) -> httpx.Client:
    """The client partner webhooks go out on: 15 s timeouts, no redirects, no keep-alive.

    No keep-alive because connections are made to checked addresses with a per-request
    server name: a pooled connection keyed by address must not carry another host's request.
    Environment proxy variables are ignored; only the configured egress proxy is used.
    """
    return httpx.Client(
        timeout=TIMEOUT_SECONDS,
        follow_redirects=False,
        trust_env=False,
        proxy=proxy,
        limits=httpx.Limits(max_keepalive_connections=0),
    )


@dataclass(frozen=True)
class Reply:
    """What an endpoint answered."""

    status: int
    retry_after: str | None
    summary: ResponseSummary | None = None  # redacted, for answers other than 2xx


PRIVATE_TARGET = "private target"


@dataclass(frozen=True)
class WithheldSummary(ResponseSummary):
    """An answer whose body was not read (a target that is not public): `"body": ""` (the
    field stays a string, as the contract says) with `"body_withheld"` saying why, so it
    never reads as an empty body the endpoint sent."""

    withheld: str = PRIVATE_TARGET

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data, the body withheld."""
        return {**super().as_dict(), "body": "", "body_withheld": self.withheld}


def summarize_failure(response: httpx.Response, *, keep_body: bool = True) -> ResponseSummary:
    """A redacted summary of a streamed answer, the same as a vendor's (connectors/http.py):
    status, allow-listed headers, the body's start; at most SUMMARY_READ_LIMIT bytes read.

    Without `keep_body` (a target that is not public, e.g. a sandbox's loopback receiver) the
    body is not read at all and its length is left out: the delivery log must not become a
    way to read local services.
    """
    headers = {k: v for k, v in response.headers.items() if k.lower() in SAFE_HEADERS}
    if not keep_body:  # not even the body's length
        headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
        shown = summarize_response(httpx.Response(response.status_code, headers=headers))
        return WithheldSummary(shown.status, shown.headers)
    body = bytearray()
    more = False
    try:
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > SUMMARY_READ_LIMIT:
                more = True
                break
    except httpx.HTTPError:  # the body broke off: summarize what arrived
        more = True
    read = httpx.Response(response.status_code, headers=headers,
                          content=bytes(body[:SUMMARY_READ_LIMIT]))  # fmt: skip
    summary = summarize_response(read)
    return replace(summary, truncated=True) if more else summary


def pinned_request(
    http: httpx.Client, target: CheckedTarget, address: str, *, body: bytes, headers: dict[str, str]
) -> httpx.Request:
    """A POST to `address` that presents the URL's own host name (Host header, TLS SNI)."""
    url = target.url
    return http.build_request(
        "POST",
        url.copy_with(host=address),
        content=body,
        headers={**headers, "Host": url.netloc.decode("ascii")},
        extensions={"sni_hostname": url.raw_host.decode("ascii")},
    )


class PartnerWebhooks:
    """What every partner webhook delivery shares: the store, clock, keys and HTTP client."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        kek: bytes,
        audit_key: bytes,
        http: httpx.Client,
        proxied: bool = False,
        resolve: Resolver = resolve_host,
        private_targets: Literal["sandbox", "none"] = "none",
    ) -> None:
        self.db = db
        self.clock = clock
        self.kek = kek
        self.audit_key = audit_key
        self.resolve = resolve
        self.private_targets: Literal["sandbox", "none"] = private_targets
        self._http = http
        self._proxied = proxied

    def destination(self, name: str, *, workspace: str) -> PartnerWebhookDestination | None:
        """The destination for a `webhook:<endpoint id>` name (None for other names)."""
        endpoint_id = endpoint_id_of(name)
        if endpoint_id is None:
            return None
        return PartnerWebhookDestination(name, endpoint_id, workspace=workspace, webhooks=self)

    def over(self, base: Mapping[str, Destination], *, workspace: str) -> dict[str, Destination]:
        """A workspace's destinations plus its webhook endpoints, looked up by name on demand."""
        return WorkspaceDestinations(base, webhooks=self, workspace=workspace)

    def post(self, endpoint: Endpoint, body: bytes, headers: dict[str, str]) -> Reply:
        """Check the endpoint's URL now and POST to it; TransientError when unreachable."""
        target = check_url(
            endpoint.url,
            workspace_kind=workspace_kind(endpoint.workspace),
            resolve=self.resolve,
            private_targets=self.private_targets,
        )
        if self._proxied:
            request = self._http.build_request("POST", target.url, content=body, headers=headers)
            return self._send(request, keep_body=target.public)
        unreachable: Exception | None = None
        for address in target.addresses:
            request = pinned_request(self._http, target, str(address), body=body, headers=headers)
            try:
                return self._send(request, keep_body=target.public)
            except _ConnectFailedError as exc:  # try the next checked address
                unreachable = exc
        raise TransientError("webhook endpoint unreachable") from unreachable

    def _send(self, request: httpx.Request, *, keep_body: bool) -> Reply:
        try:
            response = self._http.send(request, stream=True)  # a 2xx body is never read
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _ConnectFailedError("webhook endpoint unreachable") from exc
        except httpx.TimeoutException as exc:
            raise TransientError("webhook endpoint timed out") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"webhook endpoint failed: {type(exc).__name__}") from exc
        try:
            ok = 200 <= response.status_code < 300
            summary = None if ok else summarize_failure(response, keep_body=keep_body)
        finally:
            response.close()
        return Reply(response.status_code, response.headers.get("Retry-After"), summary)


class _ConnectFailedError(TransientError):
    """No connection to one address (the next checked address may work)."""


class WorkspaceDestinations(dict[str, Destination]):
    """A workspace's destinations, where `webhook:<endpoint id>` names resolve on demand."""

    def __init__(
        self, base: Mapping[str, Destination], *, webhooks: PartnerWebhooks, workspace: str
    ) -> None:
        super().__init__(base)
        self._webhooks = webhooks
        self._workspace = workspace

    def _made(self, key: object) -> Destination | None:
        if not isinstance(key, str):
            return None
        return self._webhooks.destination(key, workspace=self._workspace)

    @overload
    def get(self, key: str, default: None = None, /) -> Destination | None: ...
    @overload
    def get(self, key: str, default: Destination, /) -> Destination: ...
    @overload
    def get(self, key: str, default: T, /) -> Destination | T: ...
    def get(self, key: str, default: object = None, /) -> object:
        """The destination of a name, a webhook endpoint's included."""
        made = self._made(key)
        return made if made is not None else super().get(key, default)

    def __getitem__(self, key: str) -> Destination:
        made = self._made(key)
        return made if made is not None else super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        is_webhook = isinstance(key, str) and endpoint_id_of(key) is not None
        return is_webhook or super().__contains__(key)


class PartnerWebhookDestination:
    """One partner endpoint as a delivery destination."""

    def __init__(
        self, name: str, endpoint_id: str, *, workspace: str, webhooks: PartnerWebhooks
    ) -> None:
        self.name = name
        self.endpoint_id = endpoint_id
        self.workspace = workspace
        self._hooks = webhooks

    def deliver(self, event: OutboundEvent, attempt: Attempt) -> Delivered:
        """Sign and POST the event; 2xx delivered, 410 disables, anything else is retried."""
        endpoint, secrets = self._load(attempt)
        body = webhook_body(event.type, event.time, event.payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            **standard_webhooks.headers_for(
                body,
                msg_id=message_id(event.id),
                timestamp=int(self._hooks.clock.now().timestamp()),
                secrets_=secrets,
            ),
        }
        if event.traceparent:
            headers["traceparent"] = event.traceparent
        try:
            reply = self._hooks.post(endpoint, body, headers)
        except UnsafeUrlError as exc:
            refused = TransientError(f"not sent: {exc.detail}")
            raise self._failed(endpoint, attempt, refused) from exc
        except TransientError as exc:
            raise self._failed(endpoint, attempt, exc) from exc
        return self._answered(endpoint, attempt, reply)

    def _load(self, attempt: Attempt) -> tuple[Endpoint, list[str]]:
        hooks = self._hooks
        with hooks.db.read() as conn:
            loaded = load_for_delivery(
                conn,
                self.endpoint_id,
                workspace=self.workspace,
                kek=hooks.kek,
                now=hooks.clock.now(),
            )
        if loaded is None:
            raise PermanentError(f"webhook endpoint {self.endpoint_id} was deleted; not sent")
        endpoint, secrets = loaded
        if not endpoint.enabled:
            # Disabled after this delivery was claimed: hold it for when it is enabled again.
            # The loop then finds its lease gone and records nothing (no attempt, no signal).
            with hooks.db.write() as conn:
                held = hold_if_disabled(conn, endpoint.id, attempt.delivery_id)
            if not held:  # enabled again meanwhile: try again shortly, never a dead letter
                raise TransientError(f"webhook endpoint {endpoint.id} was enabled again; retry")
            raise PermanentError(
                f"webhook endpoint {endpoint.id} is disabled ({endpoint.disabled_reason}); not sent"
            )
        if not secrets:
            raise PermanentError(f"webhook endpoint {endpoint.id} has no signing secret")
        return endpoint, secrets

    def _answered(self, endpoint: Endpoint, attempt: Attempt, reply: Reply) -> Delivered:
        hooks = self._hooks
        verdict = verdict_for(reply.status)
        if verdict is Verdict.DELIVERED:
            if endpoint.failing_since is not None:
                with hooks.db.write() as conn:
                    record_delivered(conn, endpoint)
            return Delivered(f"webhook endpoint {endpoint.id} answered {reply.status}",
                             status_code=reply.status)  # fmt: skip
        message = f"webhook endpoint answered {reply.status}"
        # What the endpoint said, as the cause: a dead letter shows it (outcome.py).
        said = VendorResponseError(reply.summary or ResponseSummary(reply.status))
        if verdict is Verdict.GONE:
            with hooks.db.write() as conn:
                record_gone(conn, endpoint.id, now=hooks.clock.now(), audit_key=hooks.audit_key)
            gone = f"{message} Gone: the endpoint is disabled"
            raise RejectedError(gone, status=reply.status) from said
        if verdict is Verdict.THROTTLED:
            retry_after = parse_retry_after(reply.retry_after, now=hooks.clock.now())
            kind = RateLimitedError if reply.status == 429 else TransientError
            raise self._failed(
                endpoint, attempt, kind(message, retry_after=retry_after, status=reply.status)
            ) from said
        if 300 <= reply.status < 400:
            message += " (redirects are not followed)"
        raise self._failed(
            endpoint, attempt, TransientError(message, status=reply.status)
        ) from said

    def _failed(self, endpoint: Endpoint, attempt: Attempt, error: TransientError) -> HubError:
        """Record a failed attempt on the endpoint; the error the delivery loop should see."""
        hooks = self._hooks
        now = hooks.clock.now()
        with hooks.db.write() as conn:
            last = attempt.number >= RETRY_POLICY.max_attempts or is_last_attempt(
                attempt.number,
                delivery_age(conn, endpoint, attempt.delivery_id, now),
                error.retry_after,
            )
            disabled = record_failure(
                conn, endpoint.id, now=now, last=last, audit_key=hooks.audit_key
            )
        if disabled:
            return RejectedError(
                f"{error}; the endpoint failed for 5 days and is now disabled", status=error.status
            )
        if last and attempt.number < RETRY_POLICY.max_attempts:
            return RejectedError(
                f"{error}; the next attempt would fall past the endpoint's retry window",
                status=error.status,
            )
        return error
