"""GET /v1/audit: the audit log of the caller's workspace."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from synchub.api import schemas
from synchub.api.records import After, Limit
from synchub.api.security import require
from synchub.api.writes import list_body
from synchub.audit.service import entries
from synchub.auth.model import Principal

router = APIRouter(prefix="/v1/audit", tags=["audit"])


def _list(
    request: Request, principal: Principal, limit: int, after: str | None, action: str | None
) -> dict[str, Any]:
    with request.app.state.hub.db.read() as conn:
        rows, more = entries(
            conn, workspace=principal.workspace, limit=limit, starting_after=after, action=action
        )
    return list_body(request, rows, more)


@router.get(
    "",
    response_model=schemas.ListOf[schemas.AuditEntry],
    operation_id="list_audit",
    summary="List audit-log entries",
)
async def list_all(
    request: Request,
    principal: Annotated[Principal, require("admin:audit")],
    limit: Limit = 20,
    starting_after: After = None,
    action: Annotated[str | None, Query(max_length=80)] = None,
) -> dict[str, Any]:
    """Who did what to which id, oldest first; ids only, never payloads."""
    return await run_in_threadpool(_list, request, principal, limit, starting_after, action)
