"""Fair use on /v1 (STANDARDS §2, ADR 0007): three layers per (workspace, client), from the
register's plan tiers and client overrides.

- throttle: GCRA, `rate` per `period_seconds` with a `burst`;
- quota: requests per calendar month in the register's time zone;
- concurrency: expensive operations (exports, bulk replays) at once, each holding a leased
  slot, so a crashed process frees its slots when the lease runs out.

Keyed on the authenticated client, never on an address or a header the caller can set; the
unauthenticated endpoints are keyed on what is trustworthy there: the client id being
authenticated (token endpoint) and the vendor connection of a verified webhook. Every /v1
answer past authentication carries `RateLimit-Policy` and `RateLimit`; a refusal is 429
problem+json with `Retry-After` in whole seconds (at least 1) and `layer` naming the limit
(`token` for the OAuth endpoints' per-client-id budget).

`GET /v1/usage` is exempt from the monthly quota: it passes the throttle (the client's same
GCRA state) and carries both RateLimit members, but is neither refused by the quota nor counted
in it (nor in `calls_admitted`), so an over-quota client can still learn why and until when.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio
import anyio.to_thread
import structlog
from fastapi import Request
from fastapi.responses import JSONResponse

from synchub.api.problems import MEDIA_TYPE, PROBLEM_BASE
from synchub.auth.model import Principal
from synchub.core.clock import Clock
from synchub.core.errors import RateLimitedError
from synchub.observability.metrics import record_rate_limit
from synchub.ratelimit.limiter import RateLimiter
from synchub.ratelimit.model import (
    CONCURRENCY,
    QUOTA,
    THROTTLE,
    Limit,
    QuotaPeriod,
    QuotaWindow,
    epoch_microseconds,
    month_window,
    ratelimit_headers,
    retry_after_header,
)
from synchub.ratelimit.service import api_timestamp, limit_source, tenant_key
from synchub.register.model import PlanTier, Rate, Register

log = structlog.get_logger(__name__)

# A slot's lease: how long a crashed process can keep one. Long work renews it as it goes.
SLOT_LEASE_SECONDS = 60.0
SLOT_RENEW_SECONDS = 20.0
# How often a running stream checks whether its slot is due for renewal (keep_renewed).
SLOT_CHECK_SECONDS = 1.0
# A refused client may come back when the earliest lease could end, but no later than this:
# most slots are given back long before their lease runs out.
SLOT_RETRY_CAP_SECONDS = 5.0
# The layer of the OAuth endpoints' budget per client id (token, revoke, introspect).
OAUTH_LAYER = "token"
# (method, path) of requests the monthly quota neither refuses nor counts: how a client finds
# out why it is refused and when its quota resets.
QUOTA_EXEMPT = frozenset({("GET", "/v1/usage")})


class FairUseError(RateLimitedError):
    """A client is over one fair-use layer: throttle, quota or concurrency (429)."""

    def __init__(self, message: str, *, layer: str, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after, status=429)
        self.layer = layer


def throttle_limit(policy: str, rate: Rate | PlanTier) -> Limit:
    """The GCRA limit of a plan's throttle, or of any register rate."""
    return Limit(policy=policy, rate=rate.rate, period_seconds=rate.period_seconds,
                 burst=rate.burst)  # fmt: skip


def token_limit(register: Register, client_id: str) -> Limit:
    """Token requests allowed for a client id: its plan's token rate, else the default plan's."""
    return throttle_limit("token", register.plan_for(client_id).token)


def quota_exempt(request: Request) -> bool:
    """Whether the monthly quota leaves this request alone (GET /v1/usage)."""
    return (request.method, request.url.path) in QUOTA_EXEMPT


def enforce(request: Request, principal: Principal) -> None:
    """Admit this request through the throttle and the quota, or raise FairUseError.

    The RateLimit fields (throttle, then monthly quota) are recorded for the answer either way.
    A quota-exempt request (`quota_exempt`) passes the throttle only and is not counted.
    """
    hub = request.app.state.hub
    limiter: RateLimiter | None = hub.ratelimiter
    if limiter is None:
        return
    register = hub.register
    client_id = principal.client_id
    plan = register.plan_for(client_id)
    now = hub.clock.now()
    month = month_window(now, register.timezone)
    quota = QuotaPeriod(month.period, plan.monthly_quota, epoch_microseconds(month.ends_at))
    key = tenant_key(principal.workspace, client_id)
    throttle = throttle_limit(plan.name, plan)
    if quota_exempt(request):
        decision = limiter.check(key, throttle)
        refused_by = None if decision.allowed else THROTTLE
        quota_used = limiter.usage(key, month.period).quota_used
    else:
        admission = limiter.admit(key, throttle, quota)
        decision, refused_by = admission.decision, admission.refused_by
        quota_used = admission.quota_used
        request.state.quota_period = quota
    until_reset = (month.ends_at - now).total_seconds()
    window = QuotaWindow(f"{plan.name}.monthly", plan.monthly_quota, quota_used,
                         month.length_seconds, until_reset)  # fmt: skip
    request.state.ratelimit_headers = ratelimit_headers(decision, quota=window)
    record_rate_limit(plan.name, THROTTLE, refused_by != THROTTLE)
    if refused_by != THROTTLE and not quota_exempt(request):
        record_rate_limit(plan.name, QUOTA, refused_by is None)
    if refused_by == THROTTLE:
        whose, note = limit_source(register, client_id, "rate", "period_seconds", "burst")
        raise FairUseError(
            f"over {whose} rate of {plan.rate} requests per {plan.period_seconds:g} s, "
            f"{plan.burst} at once{note} (layer: throttle)",
            layer=THROTTLE,
            retry_after=retry_after_header(decision.retry_after_seconds),
        )
    if refused_by == QUOTA:
        whose, note = limit_source(register, client_id, "monthly_quota")
        raise FairUseError(
            f"{whose} monthly quota of {plan.monthly_quota} requests{note} is used up until "
            f"{api_timestamp(month.ends_at)}; GET /v1/usage still answers (layer: quota)",
            layer=QUOTA,
            retry_after=retry_after_header(until_reset),
        )


@dataclass
class Slot:
    """A held concurrency slot: renew it while working, release it when done (idempotent).

    A third of the way through its lease the slot is due for renewal: `renew_if_due` does it,
    from the work itself or from `keep_renewed`, which a stream runs beside itself so that the
    slot stays held while a client reads slowly or not at all. Renewal and release are
    serialised, so a renewal can never bring back a slot that was given back.
    """

    limiter: RateLimiter | None
    key: str
    token: str | None
    clock: Clock
    renewed_at: float = 0.0
    lease_seconds: float = SLOT_LEASE_SECONDS

    def __post_init__(self) -> None:
        self.renewed_at = self.clock.now().timestamp()
        self._lock = threading.Lock()

    @property
    def held(self) -> bool:
        """Whether the slot is still held here (not released)."""
        return self.limiter is not None and self.token is not None

    def due(self) -> bool:
        """Whether a third of the lease has passed since it was taken or last renewed."""
        renew_every = self.lease_seconds * SLOT_RENEW_SECONDS / SLOT_LEASE_SECONDS
        return self.held and self.clock.now().timestamp() - self.renewed_at >= renew_every

    def renew_if_due(self) -> None:
        """Extend the lease when a third of it has passed, so long work keeps its slot."""
        with self._lock:
            if self.limiter is None or self.token is None or not self.due():
                return
            self.renewed_at = self.clock.now().timestamp()
            if not self.limiter.renew(self.key, self.token, self.lease_seconds):
                log.warning("ratelimit.lease_lost", key=self.key)

    def release(self) -> None:
        """Give the slot back; later calls do nothing."""
        with self._lock:
            token, self.token = self.token, None
            if self.limiter is not None and token is not None:
                self.limiter.release(self.key, token)

    async def keep_renewed(self) -> None:
        """Renew the lease whenever it is due until cancelled or released: run it beside a
        stream, so the slot is held for as long as the stream is open. It lives and dies with
        this process, so a crashed process stops renewing and its slots free when the lease
        runs out."""
        while self.held:
            await anyio.sleep(SLOT_CHECK_SECONDS)
            if self.due():
                try:
                    await anyio.to_thread.run_sync(self.renew_if_due)
                except Exception:  # Redis away: keep trying while the lease lasts
                    log.warning("ratelimit.renew_failed", key=self.key, exc_info=True)


def take_slot(request: Request, principal: Principal, *, work: str) -> Slot:
    """A concurrency slot for expensive `work`, or FairUseError naming the concurrency layer.

    Call after `enforce` (the route's auth dependency): a refused request then gives back the
    quota use it was admitted with and counts as a concurrency rejection.
    """
    hub = request.app.state.hub
    limiter: RateLimiter | None = hub.ratelimiter
    key = tenant_key(principal.workspace, principal.client_id)
    if limiter is None:
        return Slot(None, key, None, hub.clock)
    plan = hub.register.plan_for(principal.client_id)
    admitted_in = getattr(request.state, "quota_period", None)
    grant = limiter.acquire_slot(key, plan.concurrency, SLOT_LEASE_SECONDS, admitted_in=admitted_in)
    record_rate_limit(plan.name, CONCURRENCY, grant.token is not None)
    if grant.token is None:
        wait = min(grant.retry_after_seconds, SLOT_RETRY_CAP_SECONDS)
        whose, note = limit_source(hub.register, principal.client_id, "concurrency")
        raise FairUseError(
            f"{grant.in_use} of {whose} {plan.concurrency} concurrent expensive "
            f"operations{note} are running; {work} must wait (layer: concurrency)",
            layer=CONCURRENCY,
            retry_after=retry_after_header(wait),
        )
    return Slot(limiter, key, grant.token, hub.clock)


@contextmanager
def held_slot(request: Request, principal: Principal, *, work: str) -> Iterator[Slot]:
    """Hold a concurrency slot for the duration of a block (e.g. a bulk replay)."""
    slot = take_slot(request, principal, work=work)
    try:
        yield slot
    finally:
        slot.release()


def webhook_admission(request: Request, connection: str) -> Callable[[], None]:
    """A check to run once a webhook's signature is verified: the connection's throttle.

    Only verified requests count, so nobody else can spend a vendor's allowance. The check
    runs at most once per request, however often the ingest is retried.
    """
    hub = request.app.state.hub
    checked = threading.Event()

    def admit() -> None:
        limiter: RateLimiter | None = hub.ratelimiter
        if limiter is None or checked.is_set():
            return
        checked.set()
        rate = hub.register.webhook_limit_for(connection)
        decision = limiter.check(f"webhook/{connection}", throttle_limit("webhooks", rate))
        request.state.ratelimit_headers = ratelimit_headers(decision)
        record_rate_limit("webhooks", THROTTLE, decision.allowed)
        if not decision.allowed:
            raise FairUseError(
                f"more than {rate.rate} webhooks per {rate.period_seconds:g} s for "
                f"{connection}; retry later (layer: throttle)",
                layer=THROTTLE,
                retry_after=retry_after_header(decision.retry_after_seconds),
            )

    return admit


def refused(request: Request, exc: Exception) -> JSONResponse:
    """The 429 problem+json for a FairUseError, with `layer` naming the limit that was hit."""
    if not isinstance(exc, FairUseError):  # registered for FairUseError only
        raise exc
    return refusal(request, exc)


def refusal(
    request: Request, exc: FairUseError, *, headers: dict[str, str] | None = None
) -> JSONResponse:
    """429 problem+json (`layer`, `trace_id`) with Retry-After, plus any `headers`: the one
    shape of every fair-use refusal, on /v1 and on the OAuth endpoints."""
    principal = getattr(request.state, "principal", None)
    log.info("api.rejected", path=request.url.path, method=request.method, code=exc.code,
             layer=exc.layer, request_id=getattr(request.state, "request_id", None),
             client_id=getattr(principal, "client_id", None))  # fmt: skip
    body = {"type": PROBLEM_BASE + "rate-limited", "title": "Too many requests", "status": 429,
            "code": exc.code, "detail": str(exc), "layer": exc.layer}  # fmt: skip
    trace_id = getattr(request.state, "trace_id", None)
    if trace_id:
        body["trace_id"] = trace_id
    extra = {**(headers or {}), "Retry-After": str(exc.retry_after), "Cache-Control": "no-store"}
    return JSONResponse(body, status_code=429, media_type=MEDIA_TYPE, headers=extra)
