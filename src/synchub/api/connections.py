"""GET /v1/connections: what is connected, who owns it, and how its deliveries are doing
(counts by status, the circuit breaker, the next attempt and the oldest waiting delivery)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from synchub.api import schemas
from synchub.api.security import require
from synchub.api.vendor_oauth import ConnectionWithCredential, credential_views
from synchub.api.writes import list_body
from synchub.auth.model import Principal
from synchub.core.errors import NotFoundError
from synchub.events.breaker import Health
from synchub.events.service import breaker_policies, destination_status, present_breaker
from synchub.register.model import Connection

router = APIRouter(prefix="/v1/connections", tags=["connections"])


def _present(
    connection: Connection,
    stats: dict[str, Any],
    now: datetime,
    credential: dict[str, Any] | None = None,
) -> dict[str, Any]:
    own = stats.get(connection.name, {})
    breaker = own.get("breaker") or present_breaker(
        Health.fresh(connection.breaker), connection.breaker, now
    )
    return {"name": connection.name, "system": connection.system, "mode": str(connection.mode),
            "owner": connection.owner, "criticality": connection.criticality,
            "runbook": connection.runbook, "deliveries": own.get("deliveries", {}),
            "last_success_at": own.get("last_success_at"), "breaker": breaker,
            "next_attempt_at": own.get("next_attempt_at"),
            "oldest_pending_at": own.get("oldest_pending_at"),
            "oldest_pending_age_seconds": own.get("oldest_pending_age_seconds"),
            "credential": credential}  # fmt: skip


def _all(request: Request, principal: Principal) -> list[dict[str, Any]]:
    hub = request.app.state.hub
    now = hub.clock.now()
    with hub.db.read() as conn:
        stats = destination_status(conn, workspace=principal.workspace, now=now,
                                   breaker_for=breaker_policies(hub.register))  # fmt: skip
    views = credential_views(hub)
    return [_present(c, stats, now, views.get(c.name)) for c in hub.register.connections.values()]


@router.get(
    "",
    response_model=schemas.ListOf[ConnectionWithCredential],
    operation_id="list_connections",
    summary="List connections",
)
async def list_all(
    request: Request, principal: Annotated[Principal, require("read:connections")]
) -> dict[str, Any]:
    """Every connection in the register with its delivery status."""
    items = await run_in_threadpool(_all, request, principal)
    return list_body(request, items, has_more=False)


@router.get(
    "/{name}",
    response_model=ConnectionWithCredential,
    operation_id="get_connection",
    summary="Get one connection and its status",
)
async def get_one(
    request: Request, name: str, principal: Annotated[Principal, require("read:connections")]
) -> dict[str, Any]:
    """One connection with its delivery status and circuit breaker."""
    for item in await run_in_threadpool(_all, request, principal):
        if item["name"] == name:
            return item
    raise NotFoundError(f"no connection {name!r}")
