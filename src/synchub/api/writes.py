"""Running one /v1 write: Idempotency-Key, the handler, its outbox rows and the audit entry,
all in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.engine import Connection

from synchub.audit.service import record as audit
from synchub.auth.model import Principal
from synchub.events.outbox import EventContext, to_json_safe
from synchub.idempotency.model import Scope, fingerprint, parse_key
from synchub.idempotency.service import run_once
from synchub.mdm.service import API_MAPPING_VERSION
from synchub.observability.tracecontext import continue_or_start

WriteHandler = Callable[[Connection, EventContext], tuple[int, dict[str, Any]]]


def request_id(request: Request) -> str:
    """This request's id (also in the X-Request-Id header)."""
    return str(getattr(request.state, "request_id", ""))


def request_traceparent(request: Request) -> str:
    """This request's traceparent: the caller's, continued, or the one started for it (the
    middleware makes it once, so problems, logs and events share one trace id)."""
    made = getattr(request.state, "traceparent", None)
    return str(made) if made else continue_or_start(request.headers.get("traceparent"))


def list_body(request: Request, items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """A page of a /v1 list, with the cursor for the next page and the request id."""
    return {"object": "list", "data": items, "has_more": has_more,
            "next_starting_after": items[-1]["id"] if has_more and items else None,
            "request_id": request_id(request)}  # fmt: skip


def run_write(
    request: Request,
    principal: Principal,
    *,
    route: str,
    body: BaseModel | None,
    action: str,
    handler: WriteHandler,
    key_required: bool = False,
) -> JSONResponse:
    """Execute a write at most once per Idempotency-Key and answer with its outcome."""
    hub = request.app.state.hub
    key = parse_key(request.headers.getlist("idempotency-key"), required=key_required)
    payload = body.model_dump(mode="json", exclude_unset=True) if body is not None else None
    scope = Scope(principal.client_id, request.method, route, key) if key else None
    now = hub.clock.now()
    ctx = EventContext(
        workspace=principal.workspace,
        source=f"/synchub/{principal.workspace}/api",
        traceparent=request_traceparent(request),
        mapping_version=API_MAPPING_VERSION,
        app_version=hub.version,
        now=now,
    )

    def execute(conn: Connection) -> tuple[int, Any]:
        status, result = handler(conn, ctx)
        body_out = to_json_safe({**result, "request_id": request_id(request)})
        audit(
            conn,
            key=hub.audit_key,
            at=now,
            actor=principal.client_id,
            action=action,
            workspace=ctx.workspace,
            target=str(result.get("id") or result.get("count") or ""),
            request_id=request_id(request),
            head=hub.audit_head,
        )
        return status, body_out

    with hub.idempotency.hold(scope) if scope else nullcontext(), hub.db.write() as conn:
        outcome = run_once(conn, scope, fingerprint=fingerprint(request.method, request.url.path,
                                                                payload),
                           now=now, handler=execute)  # fmt: skip
    if outcome.replayed:
        with hub.db.write() as conn:
            audit(
                conn,
                key=hub.audit_key,
                at=now,
                actor=principal.client_id,
                action=f"{action}.replayed",
                workspace=ctx.workspace,
                target=str(outcome.body.get("id") or ""),
                request_id=request_id(request),
                head=hub.audit_head,
            )
    if hub_wake := getattr(request.app.state, "on_event_received", None):
        hub_wake()
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    return JSONResponse(outcome.body, status_code=outcome.status_code, headers=headers)
