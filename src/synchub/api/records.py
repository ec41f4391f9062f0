"""Read endpoints for golden records: list (cursor pages) and get, one router per resource."""

# No `from __future__ import annotations`: FastAPI must see the closures' real types.

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import AwareDatetime

from synchub.api import schemas
from synchub.api.security import require
from synchub.api.writes import list_body
from synchub.auth.model import Principal
from synchub.mdm.service import get_record, list_records

Limit = Annotated[int, Query(ge=1, le=100, description="Page size (1-100).")]
After = Annotated[str | None, Query(max_length=64, description="Return items after this id.")]
Since = Annotated[
    AwareDatetime | None,
    Query(description="Only records updated at or after this RFC 3339 time (with offset)."),
]

RESOURCES: list[tuple[str, str, type[schemas.Resource], str]] = [
    ("account", "accounts", schemas.Account, "read:accounts"),
    ("customer", "customers", schemas.Customer, "read:customers"),
    ("subscription", "subscriptions", schemas.Subscription, "read:subscriptions"),
    ("plan", "plans", schemas.Plan, "read:plans"),
    ("invoice", "invoices", schemas.Invoice, "read:invoices"),
    ("payment", "payments", schemas.Payment, "read:payments"),
    ("contact", "contacts", schemas.Contact, "read:contacts"),
    ("refund", "refunds", schemas.Refund, "read:refunds"),
]


def _list(
    request: Request,
    principal: Principal,
    entity: str,
    limit: int,
    after: str | None,
    since: datetime | None,
) -> dict[str, Any]:
    with request.app.state.hub.db.read() as conn:
        page = list_records(conn, entity, workspace=principal.workspace, limit=limit,
                            starting_after=after, updated_since=since)  # fmt: skip
    return list_body(request, page.items, page.has_more)


def _get(request: Request, principal: Principal, entity: str, record_id: str) -> dict[str, Any]:
    with request.app.state.hub.db.read() as conn:
        return get_record(conn, entity, workspace=principal.workspace, canonical_id=record_id)


def record_router(entity: str, path: str, model: type[schemas.Resource], scope: str) -> APIRouter:
    """GET /v1/{path} and GET /v1/{path}/{id} for one golden entity."""
    router = APIRouter(prefix=f"/v1/{path}", tags=[path])

    @router.get(
        "",
        response_model=schemas.ListOf[model],  # type: ignore[valid-type]  # chosen at run time
        summary=f"List {path}",
        operation_id=f"list_{path}",
    )
    async def list_all(
        request: Request,
        principal: Annotated[Principal, require(scope)],
        limit: Limit = 20,
        starting_after: After = None,
        updated_since: Since = None,
    ) -> dict[str, Any]:
        return await run_in_threadpool(
            _list, request, principal, entity, limit, starting_after, updated_since
        )

    @router.get(
        "/{record_id}",
        response_model=model,
        summary=f"Get one {entity}",
        operation_id=f"get_{entity}",
    )
    async def get_one(
        request: Request, principal: Annotated[Principal, require(scope)], record_id: str
    ) -> dict[str, Any]:
        return await run_in_threadpool(_get, request, principal, entity, record_id)

    return router


def routers() -> list[APIRouter]:
    """One router per golden resource."""
    return [record_router(*resource) for resource in RESOURCES]
