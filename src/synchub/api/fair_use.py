"""Fair use on /v1: a throttle and a monthly quota per (workspace, client), from the register.

Keyed on the authenticated client, never on an address or a header the caller can set.
Every authenticated /v1 response carries the IETF `RateLimit-Policy` and `RateLimit` fields;
a refusal is 429 with `Retry-After` in whole seconds, rounded up, naming the layer.
"""

from __future__ import annotations

import math

from fastapi import Request

from synchub.auth.model import Principal
from synchub.core.errors import RateLimitedError
from synchub.ratelimit.model import Limit, month_period, ratelimit_headers, retry_after_header


class FairUseError(RateLimitedError):
    """A client is over its throttle or its monthly quota (429)."""

    def __init__(self, message: str, *, layer: str, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after, status=429)
        self.layer = layer


def enforce(request: Request, principal: Principal) -> None:
    """Admit this request or raise FairUseError; record the headers to send either way."""
    hub = request.app.state.hub
    if hub.ratelimiter is None:
        return
    plan = hub.register.plan_for(principal.client_id)
    tenant = f"{principal.workspace}/{principal.client_id}"
    limit = Limit(policy=plan.name, rate=plan.rate, period_seconds=plan.period_seconds,
                  burst=plan.burst)  # fmt: skip
    decision = hub.ratelimiter.check(tenant, limit)
    request.state.ratelimit_headers = ratelimit_headers(decision)
    if not decision.allowed:
        raise FairUseError(
            f"over the {plan.name} plan's rate of {plan.rate} requests per "
            f"{plan.period_seconds:g} s (layer: throttle)",
            layer="throttle",
            retry_after=retry_after_header(decision.retry_after_seconds),
        )
    now = hub.clock.now()
    period, ends = month_period(now, hub.register.timezone)
    allowed, _used = hub.ratelimiter.consume_quota(
        tenant, period, plan.monthly_quota, ends.timestamp()
    )
    if not allowed:
        wait = max(1, math.ceil((ends - now).total_seconds()))
        raise FairUseError(
            f"the {plan.name} plan's monthly quota of {plan.monthly_quota} "
            f"requests is used up until {ends.isoformat()} (layer: quota)",
            layer="quota",
            retry_after=wait,
        )
