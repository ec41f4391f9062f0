"""GET /oauth/callback/{connection}: where Xero and HubSpot send the person back after they
granted (or refused) access (ADR 0023). No bearer token: the single-use, expiring `state`
that `synchub connections authorize` kept server-side is what binds the answer to the request.
Not part of the /v1 contract (a browser redirect, like the vendor webhooks)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from synchub.api import schemas
from synchub.connectors.oauth import is_oauth
from synchub.core.errors import NotFoundError

router = APIRouter()


@router.get("/oauth/callback/{connection}", include_in_schema=False)
async def callback(request: Request, connection: str) -> JSONResponse:
    """Spend the state, exchange the code, store the tokens sealed; problem+json otherwise."""
    hub = request.app.state.hub
    if hub.credentials is None or connection not in hub.credentials.clients:
        raise NotFoundError(f"no OAuth connection named {connection!r}")
    q = request.query_params
    stored = await run_in_threadpool(
        hub.credentials.complete_authorization,
        connection,
        state=q.get("state"),
        code=q.get("code"),
        error=q.get("error"),
        iss=q.get("iss"),
    )
    body: dict[str, Any] = {
        "connection": connection,
        "status": stored.status,
        "tenant_id": stored.tenant_id,
        "scope": stored.scope,
        "detail": f"{connection} is connected; you can close this window.",
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


class Credential(BaseModel):
    """How a connection authenticates to its vendor and whether that still works (no secret)."""

    auth: str = Field(description="token (a configured key) or oauth (tokens in the vault)")
    status: str = Field(
        description="active, not_authorized, or needs_reauthorization (the vendor refused the "
        "grant: deliveries are held until `synchub connections authorize NAME`)"
    )
    access_expires_at: datetime | None = None
    authorized_at: datetime | None = None
    refreshed_at: datetime | None = None
    needs_reauthorization_since: datetime | None = None


class ConnectionWithCredential(schemas.Connection):
    """A connected system, how its deliveries are doing, and its credential."""

    credential: Credential | None = None


def credential_views(hub: Any) -> dict[str, dict[str, Any]]:
    """Each register connection's credential view, by name (for GET /v1/connections)."""
    stored = hub.credentials.statuses() if hub.credentials is not None else {}
    views = {}
    for c in hub.register.connections.values():
        state = stored.get(c.name, {})
        auth = "oauth" if is_oauth(c) else "token"
        default = "not_authorized" if auth == "oauth" else "active"
        views[c.name] = {
            "auth": auth,
            "status": state.get("status", default),
            **{
                k: state.get(k)
                for k in (
                    "access_expires_at",
                    "authorized_at",
                    "refreshed_at",
                    "needs_reauthorization_since",
                )
            },
        }
    return views
