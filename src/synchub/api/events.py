"""GET /v1/events: canonical events as CloudEvents."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import AwareDatetime

from synchub.api import schemas
from synchub.api.records import After, Limit
from synchub.api.security import require
from synchub.api.writes import list_body
from synchub.auth.model import Principal
from synchub.events.service import get_event, list_events

router = APIRouter(prefix="/v1/events", tags=["events"])


def _list(
    request: Request,
    principal: Principal,
    limit: int,
    after: str | None,
    event_type: str | None,
    since: datetime | None,
) -> dict[str, Any]:
    with request.app.state.hub.db.read() as conn:
        page = list_events(
            conn,
            workspace=principal.workspace,
            limit=limit,
            starting_after=after,
            event_type=event_type,
            since=since,
        )
    return list_body(request, page.items, page.has_more)


@router.get(
    "",
    response_model=schemas.ListOf[schemas.Event],
    operation_id="list_events",
    summary="List canonical events",
)
async def list_all(
    request: Request,
    principal: Annotated[Principal, require("read:events")],
    limit: Limit = 20,
    starting_after: After = None,
    type: Annotated[str | None, Query(max_length=120)] = None,
    since: AwareDatetime | None = None,
) -> dict[str, Any]:
    """Events in the order they were written, optionally of one type or since a time."""
    return await run_in_threadpool(_list, request, principal, limit, starting_after, type, since)


def _get(request: Request, principal: Principal, event_id: str) -> dict[str, Any]:
    with request.app.state.hub.db.read() as conn:
        return get_event(conn, workspace=principal.workspace, event_id=event_id)


@router.get(
    "/{event_id}",
    response_model=schemas.Event,
    operation_id="get_event",
    summary="Get one canonical event",
)
async def get_one(
    request: Request, event_id: str, principal: Annotated[Principal, require("read:events")]
) -> dict[str, Any]:
    """One event with its data."""
    return await run_in_threadpool(_get, request, principal, event_id)
