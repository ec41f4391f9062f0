"""Streamed exports: every golden record of one entity as NDJSON, one record per line.

An export is expensive work: it holds one of the client's concurrency slots (api/fair_use.py)
for the whole stream, renews the slot's lease beside the stream (also while a client reads
slowly or not at all, and between pages), and gives it back however the stream ends: finished,
failed, or the client went away. Records are read in keyset pages (id order),
each page in its own short read transaction, so an export never holds the database open;
records created while it runs may or may not appear, and none appears twice.
"""

# No `from __future__ import annotations`: FastAPI must see the closures' real types.

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from synchub.api import schemas
from synchub.api.fair_use import Slot, take_slot
from synchub.api.records import RESOURCES, Since
from synchub.api.security import require
from synchub.auth.model import Principal
from synchub.mdm.service import list_records

NDJSON = "application/x-ndjson"
PAGE_SIZE = 100


class SlotStreamingResponse(StreamingResponse):
    """A streamed answer that releases its concurrency slot when the stream ends, however."""

    def __init__(self, content: AsyncIterator[bytes], *, slot: Slot, media_type: str) -> None:
        super().__init__(content, media_type=media_type, headers={"Cache-Control": "no-store"})
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream with the slot kept renewed beside it (a client that reads slowly or stops
        reading still holds it: the lease must not run out under an open stream), then give
        the slot back (also on a disconnect, an error or cancellation)."""
        renewer = asyncio.ensure_future(self.slot.keep_renewed())
        try:
            await super().__call__(scope, receive, send)
        finally:
            renewer.cancel()  # not awaited: a cancelled stream must still reach release()
            self.slot.release()


def _page(
    request: Request,
    principal: Principal,
    entity: str,
    model: type[schemas.Resource],
    after: str | None,
    since: datetime | None,
    slot: Slot,
) -> tuple[bytes, str | None, bool]:
    """One page as NDJSON bytes, the cursor after it, and whether more follow."""
    slot.renew_if_due()
    with request.app.state.hub.db.read() as conn:
        page = list_records(conn, entity, workspace=principal.workspace, limit=PAGE_SIZE,
                            starting_after=after, updated_since=since)  # fmt: skip
    lines = b"".join(model.model_validate(i).model_dump_json().encode() + b"\n" for i in page.items)
    cursor = page.items[-1]["id"] if page.items else after
    return lines, cursor, page.has_more


async def _ndjson(
    request: Request,
    principal: Principal,
    entity: str,
    model: type[schemas.Resource],
    since: datetime | None,
    slot: Slot,
) -> AsyncIterator[bytes]:
    after: str | None = None
    while True:
        lines, after, more = await run_in_threadpool(
            _page, request, principal, entity, model, after, since, slot
        )
        if lines:
            yield lines
        if not more:
            return


def export_router(entity: str, path: str, model: type[schemas.Resource], scope: str) -> APIRouter:
    """GET /v1/exports/{path}: every golden record of one entity as NDJSON."""
    router = APIRouter(tags=["exports"])
    one_line: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}

    @router.get(
        f"/v1/exports/{path}",
        response_class=StreamingResponse,
        summary=f"Export every {entity} as NDJSON",
        operation_id=f"export_{path}",
        responses={
            200: {
                "description": f"One {model.__name__} JSON object per line, in id order.",
                "content": {NDJSON: one_line},
            }
        },
    )
    async def export(
        request: Request,
        principal: Annotated[Principal, require(scope)],
        updated_since: Since = None,
    ) -> StreamingResponse:
        slot = await run_in_threadpool(take_slot, request, principal, work=f"an export of {path}")
        stream = _ndjson(request, principal, entity, model, updated_since, slot)
        return SlotStreamingResponse(stream, slot=slot, media_type=NDJSON)

    export.__doc__ = (
        f"Every {entity} of your workspace, one JSON object per line (the shape of GET "
        f"/v1/{path}/{{id}}), streamed in id order. Holds one of your plan's concurrency "
        "slots until the stream ends; over the limit the answer is 429 with layer "
        '"concurrency".'
    )
    return router


def routers() -> list[APIRouter]:
    """One export route per golden resource."""
    return [export_router(*resource) for resource in RESOURCES]
