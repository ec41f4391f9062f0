"""GET /v1/usage: fair-use counters this month, for the caller or for its whole workspace.

A client with `read:usage` sees its own usage; one that also holds `admin:audit` (the
workspace's oversight scope) sees every client of its workspace, never another workspace's.
The call is exempt from the monthly quota (`fair_use.QUOTA_EXEMPT`): a client whose quota is
used up can still read why and when it resets.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from synchub.api.security import require
from synchub.api.writes import request_id
from synchub.auth.model import Principal
from synchub.ratelimit.service import usage_body, usage_report

router = APIRouter(tags=["usage"])

WORKSPACE_VIEW_SCOPE = "admin:audit"


class UsageRejections(BaseModel):
    """Requests refused this month, by the layer that refused them."""

    throttle: int
    quota: int
    concurrency: int


class UsageQuota(BaseModel):
    """The monthly quota: requests admitted this month and how many are left."""

    limit: int
    used: int
    remaining: int


class UsageThrottle(BaseModel):
    """The throttle: `rate` requests per `period_seconds`, `burst` at once."""

    rate: int
    period_seconds: int
    burst: int


class UsageConcurrency(BaseModel):
    """Expensive operations (exports, bulk replays) allowed at once, and running now."""

    limit: int
    in_use: int


class ClientUsage(BaseModel):
    """One client's plan (with its overrides) and its counters this month."""

    client_id: str
    name: str | None = None
    plan: str
    overrides: list[str] = Field(
        description="The limits the register's client_overrides set for this client "
        "(`rate`, `period_seconds`, `burst`, `monthly_quota`, `concurrency`), e.g. "
        '["monthly_quota"]; every other limit shown is its plan\'s.'
    )
    calls_admitted: int = Field(
        description="Requests admitted this month (GET /v1/usage, exempt from the quota, is "
        "not counted)."
    )
    rejections: UsageRejections
    quota: UsageQuota
    throttle: UsageThrottle
    concurrency: UsageConcurrency


class UsageReport(BaseModel):
    """Fair-use usage in the current calendar month of the hub's time zone."""

    object: Literal["usage"]
    workspace: str
    period: str = Field(description='The month, e.g. "2026-04".')
    timezone: str = Field(description="The IANA time zone months are counted in.")
    resets_at: datetime = Field(description="When the next month (and a fresh quota) starts.")
    clients: list[ClientUsage]
    request_id: str


def _clients(request: Request, principal: Principal) -> list[tuple[str, str | None]]:
    """(client id, name) of whom the caller may see: itself, or its workspace's clients."""
    hub = request.app.state.hub
    with hub.db.read() as conn:
        known = {
            c.client_id: c.name for c in hub.auth.list_clients(conn, workspace=principal.workspace)
        }
    if not principal.has_scope(WORKSPACE_VIEW_SCOPE):
        return [(principal.client_id, known.get(principal.client_id))]
    return sorted(known.items())


def _usage(request: Request, principal: Principal) -> dict[str, Any]:
    hub = request.app.state.hub
    report = usage_report(
        hub.ratelimiter,
        hub.register,
        workspace=principal.workspace,
        clients=_clients(request, principal),
        now=hub.clock.now(),
    )
    return {**usage_body(report), "request_id": request_id(request)}


@router.get(
    "/v1/usage",
    response_model=UsageReport,
    operation_id="get_usage",
    summary="Fair-use usage this month: calls, rejections by layer, quota, concurrency",
)
async def get_usage(
    request: Request, principal: Annotated[Principal, require("read:usage")]
) -> dict[str, Any]:
    """This month's counters (in the register's time zone) for the calling client; with
    `admin:audit` as well, for every client of the caller's workspace.

    Exempt from the monthly quota: it is never refused for it and does not count towards it,
    so a client over its quota can still see why and when it resets. It does pass the
    throttle and carries the RateLimit fields like every /v1 answer.

    Counters are shared by every API process when the hub runs with Redis, and per process
    with the in-memory default.
    """
    return await run_in_threadpool(_usage, request, principal)
