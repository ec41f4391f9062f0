"""/v1/webhook-endpoints: partners register endpoints for signed canonical events, rotate
their secrets and read each endpoint's delivery log. Replays go through /v1/deliveries."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.engine import Connection

from synchub.api import schemas
from synchub.api.product_writes import WRITE_RESPONSES
from synchub.api.records import After, Limit
from synchub.api.security import require
from synchub.api.webhook_schemas import (
    WebhookEndpoint,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointDeleted,
    WebhookEndpointUpdate,
    WebhookSecretRotated,
)
from synchub.api.writes import list_body, request_id, run_write
from synchub.auth.model import Principal
from synchub.core.errors import ConfigError
from synchub.events.outbox import EventContext
from synchub.webhooks.destination import PartnerWebhooks
from synchub.webhooks.service import (
    check_fields,
    create_endpoint,
    delete_endpoint,
    endpoint_deliveries,
    get_endpoint,
    list_endpoints,
    reveal,
    rotate_secret,
    update_endpoint,
)

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhook-endpoints"])
Status = Annotated[str | None, Query(pattern="^(pending|in_flight|succeeded|dead)$")]
Handler = Callable[[Connection, EventContext], tuple[int, dict[str, Any]]]
ITEM = "/v1/webhook-endpoints/{endpoint_id}"


def _hooks(request: Request) -> PartnerWebhooks:
    hooks: PartnerWebhooks | None = request.app.state.hub.webhooks
    if hooks is None:
        raise ConfigError("partner webhooks are not configured in this process")
    return hooks


def _write(
    request: Request,
    principal: Principal,
    route: str,
    body: BaseModel | None,
    action: str,
    handler: Handler,
) -> JSONResponse:
    """run_write, then open the sealed secret a create or rotation returned (shown once)."""
    response = run_write(request, principal, route=route, body=body, action=action, handler=handler)
    if response.status_code >= 300:
        return response
    shown = reveal(json.loads(bytes(response.body)), _hooks(request).kek)
    headers = {k: v for k, v in response.headers.items() if k.lower() == "idempotent-replayed"}
    return JSONResponse(shown, status_code=response.status_code, headers=headers)


def _read(request: Request, read: Callable[[Connection], Any]) -> Any:
    with request.app.state.hub.db.read() as conn:
        return read(conn)


@router.post(
    "",
    status_code=201,
    response_model=WebhookEndpointCreated,
    responses=WRITE_RESPONSES,
    operation_id="create_webhook_endpoint",
    summary="Register a webhook endpoint (its secret is shown once)",
)
async def create(
    request: Request,
    body: WebhookEndpointCreate,
    principal: Annotated[Principal, require("admin:webhooks")],
) -> JSONResponse:
    """Events of the chosen types are POSTed to the URL, signed per Standard Webhooks."""
    hooks = _hooks(request)
    fields = await run_in_threadpool(
        check_fields,
        principal.workspace,
        body.model_dump(),
        resolve=hooks.resolve,
        private_targets=hooks.private_targets,
    )

    def handler(conn: Connection, ctx: EventContext) -> tuple[int, dict[str, Any]]:
        made = create_endpoint(
            conn, workspace=ctx.workspace, fields=fields, kek=hooks.kek, now=ctx.now
        )
        return 201, made

    return await run_in_threadpool(
        _write,
        request,
        principal,
        "/v1/webhook-endpoints",
        body,
        "webhook_endpoint.create",
        handler,
    )


@router.get(
    "",
    response_model=schemas.ListOf[WebhookEndpoint],
    operation_id="list_webhook_endpoints",
    summary="List webhook endpoints",
)
async def list_all(
    request: Request,
    principal: Annotated[Principal, require("read:webhooks")],
    limit: Limit = 20,
    starting_after: After = None,
) -> dict[str, Any]:
    """The workspace's endpoints in the order they were registered."""
    items, more = await run_in_threadpool(
        _read,
        request,
        lambda conn: list_endpoints(
            conn, workspace=principal.workspace, limit=limit, starting_after=starting_after
        ),
    )
    return list_body(request, items, more)


@router.get(
    "/{endpoint_id}",
    response_model=WebhookEndpoint,
    operation_id="get_webhook_endpoint",
    summary="Get one webhook endpoint",
)
async def get_one(
    request: Request, endpoint_id: str, principal: Annotated[Principal, require("read:webhooks")]
) -> dict[str, Any]:
    """One endpoint: URL, filter, whether it is enabled and how it is doing."""
    found: dict[str, Any] = await run_in_threadpool(
        _read,
        request,
        lambda conn: get_endpoint(conn, workspace=principal.workspace, endpoint_id=endpoint_id),
    )
    return {**found, "request_id": request_id(request)}


@router.patch(
    "/{endpoint_id}",
    response_model=WebhookEndpoint,
    responses=WRITE_RESPONSES,
    operation_id="update_webhook_endpoint",
    summary="Change a webhook endpoint's URL, filter, description, or enable/disable it",
)
async def update(
    request: Request,
    endpoint_id: str,
    body: WebhookEndpointUpdate,
    principal: Annotated[Principal, require("admin:webhooks")],
) -> JSONResponse:
    """Disabling holds the endpoint's waiting deliveries, and events that occur while it is
    disabled are recorded as `held` deliveries (in its delivery log, not attempted, not
    failures). Re-enabling (`enabled: true`) forgets its run of failures and makes the held
    deliveries due at once, in event order, each with a fresh retry budget; those held
    longer than 84 h (the retry window) become dead letters instead, which
    POST /v1/dead-letters/replay sends."""
    hooks = _hooks(request)
    fields = await run_in_threadpool(
        check_fields,
        principal.workspace,
        body.model_dump(exclude_unset=True),
        resolve=hooks.resolve,
        private_targets=hooks.private_targets,
    )

    def handler(conn: Connection, ctx: EventContext) -> tuple[int, dict[str, Any]]:
        changed = update_endpoint(
            conn, workspace=ctx.workspace, endpoint_id=endpoint_id, fields=fields, now=ctx.now
        )
        return 200, changed

    return await run_in_threadpool(
        _write, request, principal, ITEM, body, "webhook_endpoint.update", handler
    )


@router.delete(
    "/{endpoint_id}",
    response_model=WebhookEndpointDeleted,
    operation_id="delete_webhook_endpoint",
    summary="Delete a webhook endpoint",
)
async def delete(
    request: Request, endpoint_id: str, principal: Annotated[Principal, require("admin:webhooks")]
) -> JSONResponse:
    """Its held and pending deliveries end without being sent (dead letters naming why)."""

    def handler(conn: Connection, ctx: EventContext) -> tuple[int, dict[str, Any]]:
        return 200, delete_endpoint(
            conn, workspace=ctx.workspace, endpoint_id=endpoint_id, now=ctx.now
        )

    return await run_in_threadpool(
        _write, request, principal, ITEM, None, "webhook_endpoint.delete", handler
    )


@router.post(
    "/{endpoint_id}/rotate-secret",
    response_model=WebhookSecretRotated,
    responses=WRITE_RESPONSES,
    operation_id="rotate_webhook_endpoint_secret",
    summary="Rotate an endpoint's signing secret (old and new both sign for 24 hours)",
)
async def rotate(
    request: Request, endpoint_id: str, principal: Annotated[Principal, require("admin:webhooks")]
) -> JSONResponse:
    """The new secret is shown once; webhooks carry signatures from old and new for 24 h."""
    hooks = _hooks(request)

    def handler(conn: Connection, ctx: EventContext) -> tuple[int, dict[str, Any]]:
        rotated = rotate_secret(
            conn, workspace=ctx.workspace, endpoint_id=endpoint_id, kek=hooks.kek, now=ctx.now
        )
        return 200, rotated

    return await run_in_threadpool(
        _write,
        request,
        principal,
        ITEM + "/rotate-secret",
        None,
        "webhook_endpoint.rotate_secret",
        handler,
    )


@router.get(
    "/{endpoint_id}/deliveries",
    response_model=schemas.ListOf[schemas.Delivery],
    operation_id="list_webhook_endpoint_deliveries",
    summary="An endpoint's delivery log, with every attempt",
)
async def deliveries(
    request: Request,
    endpoint_id: str,
    principal: Annotated[Principal, require("read:webhooks")],
    limit: Limit = 20,
    starting_after: After = None,
    status: Status = None,
) -> dict[str, Any]:
    """Deliveries to this endpoint in the order they were created, each with its attempts;
    `held` ones wait for the endpoint to be enabled again. Send a finished one again with
    POST /v1/deliveries/{delivery_id}/replay (same webhook-id)."""
    items, more = await run_in_threadpool(
        _read,
        request,
        lambda conn: endpoint_deliveries(
            conn,
            workspace=principal.workspace,
            endpoint_id=endpoint_id,
            limit=limit,
            starting_after=starting_after,
            status=status,
        ),
    )
    return list_body(request, items, more)
