"""Deliveries and dead letters: list, get (with every attempt), replay."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime
from sqlalchemy.engine import Connection

from synchub.api import schemas
from synchub.api.fair_use import held_slot
from synchub.api.product_writes import WRITE_RESPONSES
from synchub.api.records import After, Limit
from synchub.api.security import require
from synchub.api.writes import list_body, run_write
from synchub.auth.model import Principal
from synchub.events.outbox import EventContext
from synchub.events.service import (
    DeliveryFilter,
    check_replay_request,
    get_delivery,
    list_deliveries,
    replay,
)

router = APIRouter(tags=["deliveries"])

Status = Annotated[str | None, Query(pattern="^(pending|in_flight|succeeded|dead)$")]
Text = Annotated[str | None, Query(max_length=120)]
IN_FLIGHT = (
    "A delivery named is in flight now, or the same Idempotency-Key is still being processed"
)


def _list(
    request: Request, principal: Principal, limit: int, after: str | None, where: DeliveryFilter
) -> dict[str, Any]:
    with request.app.state.hub.db.read() as conn:
        page = list_deliveries(
            conn, workspace=principal.workspace, limit=limit, starting_after=after, where=where
        )
    return list_body(request, page.items, page.has_more)


def _get(request: Request, principal: Principal, delivery_id: str, dead: bool) -> dict[str, Any]:
    with request.app.state.hub.db.read() as conn:
        return get_delivery(
            conn, workspace=principal.workspace, delivery_id=delivery_id, dead_only=dead
        )


@router.get(
    "/v1/deliveries",
    response_model=schemas.ListOf[schemas.Delivery],
    operation_id="list_deliveries",
    summary="List deliveries",
)
async def list_all(
    request: Request,
    principal: Annotated[Principal, require("read:deliveries")],
    limit: Limit = 20,
    starting_after: After = None,
    status: Status = None,
    destination: Text = None,
    event_type: Text = None,
) -> dict[str, Any]:
    """Deliveries in the order they were created, filtered by status, destination or type."""
    where = DeliveryFilter(status=status, destination=destination, event_type=event_type)
    return await run_in_threadpool(_list, request, principal, limit, starting_after, where)


@router.get(
    "/v1/deliveries/{delivery_id}",
    response_model=schemas.Delivery,
    operation_id="get_delivery",
    summary="Get one delivery with its attempts",
)
async def get_one(
    request: Request, delivery_id: str, principal: Annotated[Principal, require("read:deliveries")]
) -> dict[str, Any]:
    """One delivery and the history of its attempts."""
    return await run_in_threadpool(_get, request, principal, delivery_id, False)


@router.get(
    "/v1/dead-letters",
    response_model=schemas.ListOf[schemas.Delivery],
    operation_id="list_dead_letters",
    summary="List dead letters",
)
async def list_dead(
    request: Request,
    principal: Annotated[Principal, require("read:deliveries")],
    limit: Limit = 20,
    starting_after: After = None,
    destination: Text = None,
    event_type: Text = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    error_code: Annotated[int | None, Query(ge=100, le=599)] = None,
) -> dict[str, Any]:
    """Deliveries that gave up, with the reason; filter by destination, type, time, status."""
    where = DeliveryFilter(
        status="dead",
        destination=destination,
        event_type=event_type,
        since=since,
        until=until,
        error_code=error_code,
    )
    return await run_in_threadpool(_list, request, principal, limit, starting_after, where)


@router.get(
    "/v1/dead-letters/{delivery_id}",
    response_model=schemas.Delivery,
    operation_id="get_dead_letter",
    summary="Get one dead letter with its attempts",
)
async def get_dead(
    request: Request, delivery_id: str, principal: Annotated[Principal, require("read:deliveries")]
) -> dict[str, Any]:
    """The reason, the last response status and every attempt."""
    return await run_in_threadpool(_get, request, principal, delivery_id, True)


def _check_replay(
    request: Request, principal: Principal, where: DeliveryFilter, body: schemas.ReplayRequest
) -> None:
    sent_null = {name for name in body.model_fields_set if getattr(body, name) is None}
    with request.app.state.hub.db.read() as conn:
        check_replay_request(conn, workspace=principal.workspace, where=where,
                             delivery_ids=body.ids,
                             connections=request.app.state.hub.register.connections,
                             sent_null=sent_null)  # fmt: skip


def _replay(
    request: Request,
    principal: Principal,
    route: str,
    where: DeliveryFilter,
    ids: list[str] | None,
    body: schemas.ReplayRequest | None = None,
) -> JSONResponse:
    def handler(conn: Connection, ctx: EventContext) -> tuple[int, dict[str, Any]]:
        done = replay(conn, workspace=ctx.workspace, where=where, now=ctx.now, delivery_ids=ids)
        return 200, {"replayed": done.replayed, "count": len(done.replayed),
                     "due_now": done.due_now}  # fmt: skip

    return run_write(
        request, principal, route=route, body=body, action="deliveries.replay", handler=handler
    )


@router.post(
    "/v1/deliveries/{delivery_id}/replay",
    response_model=schemas.Replayed,
    responses={**WRITE_RESPONSES, 409: {"description": IN_FLIGHT}},
    operation_id="replay_delivery",
    summary="Send a delivery again now, with its original idempotency key",
)
async def replay_one(
    request: Request, delivery_id: str, principal: Annotated[Principal, require("admin:deliveries")]
) -> JSONResponse:
    """A finished one is queued again (in `replayed`); a pending one waiting for a retry is
    made due now (in `due_now`); one in flight is refused with 409. Harmless for one that
    had in fact succeeded: the destination sees the same key."""
    await run_in_threadpool(_get, request, principal, delivery_id, False)  # 404 if not ours
    return await run_in_threadpool(_replay, request, principal,
                                   "/v1/deliveries/{delivery_id}/replay", DeliveryFilter(),
                                   [delivery_id])  # fmt: skip


@router.post(
    "/v1/dead-letters/replay",
    response_model=schemas.Replayed,
    responses={
        **WRITE_RESPONSES,
        404: {"description": "An id names no delivery"},
        409: {"description": IN_FLIGHT},
    },
    operation_id="replay_dead_letters",
    summary="Replay dead letters by ids or by filter",
)
async def replay_dead(
    request: Request,
    body: schemas.ReplayRequest,
    principal: Annotated[Principal, require("admin:deliveries")],
) -> JSONResponse:
    """At least one of ids, destination, event_type, since, until or error_code with a value
    is needed (null is not a filter: 422 naming the fields); an unknown destination, `since`
    after `until` or an empty `ids` are 422 too. Named ids are replayed whatever their status,
    as for a single delivery."""
    where = DeliveryFilter(
        status="dead",
        destination=body.destination,
        event_type=body.event_type,
        since=body.since,
        until=body.until,
        error_code=body.error_code,
    )
    await run_in_threadpool(_check_replay, request, principal, where, body)
    with held_slot(request, principal, work="a bulk replay"):  # expensive: one slot
        return await run_in_threadpool(
            _replay, request, principal, "/v1/dead-letters/replay", where, body.ids, body
        )
