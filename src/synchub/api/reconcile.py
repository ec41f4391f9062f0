"""Reconciliation and conflicts: one customer's drift across systems, and conflict records."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from synchub.api import schemas
from synchub.api.records import After, Limit
from synchub.api.security import require
from synchub.api.writes import list_body, request_id
from synchub.auth.model import Principal
from synchub.mdm import conflicts as conflict_store

router = APIRouter(tags=["reconciliation"])


class DriftItem(BaseModel):
    """One field (or the whole record, `*`) on which a system and the golden record differ."""

    entity: str = Field(description="customer, subscription or invoice.")
    record_id: str = Field(description="The golden record's canonical id.")
    system: str = Field(description="The connection whose view differs.")
    external_id: str | None = Field(description="The record's id in that system, if any.")
    field: str = Field(description="The canonical field, or `*` when the record is missing.")
    golden: Any = Field(description="The golden record's value.")
    value: Any = Field(description="The system's value (null: it holds none).")
    owner: str | None = Field(
        description="Who is right: the register's owner, else where the golden value came from."
    )
    action: Literal["push", "observe", "report", "held"] = Field(
        description="push: the system is behind, the repair sends it the golden value; "
        "observe: the golden record is behind its owner, the repair applies the owner's view; "
        "report: a person must look (e.g. a terminal state); held: the record's delivery to "
        "the system is a dead letter."
    )
    reason: str


class CustomerDrift(BaseModel):
    """A customer's standing in every connected system, and every difference found."""

    canonical_id: str
    name: str | None = None
    in_words: str = Field(description='E.g. "active in synchub, canceled in hubspot".')
    drift: int = Field(description="How many differences were found.")
    systems: dict[str, list[DriftItem]] = Field(description="Differences by system.")
    unreachable: list[dict[str, str]] = Field(
        description="Systems that could not be read (system, error); their views are missing."
    )
    checked_at: datetime
    request_id: str | None = None


class ConflictRecord(BaseModel):
    """A value from a system that disagreed with a field's owner and was not applied."""

    id: str
    entity: str
    canonical_id: str
    field: str
    owner: str = Field(description="The system that owns the field.")
    owner_value: Any = Field(description="The owner's (golden) value when it was recorded.")
    other_system: str = Field(description="The system that said something else.")
    other_value: Any
    observed_at: datetime
    status: Literal["open", "resolved"] = Field(
        description="open until a reconciliation finds the system agreeing again."
    )
    found_by: Literal["ingest", "reconcile"] = Field(
        description="ingest: a non-owner sent it; reconcile: found in the system's view."
    )
    resolved_at: datetime | None = None
    resolved_by: str | None = None


def _drift(request: Request, principal: Principal, customer_id: str) -> dict[str, Any]:
    from synchub.events.outbox import to_json_safe
    from synchub.reconciliation import reconcile

    hub = request.app.state.hub
    report = reconcile(hub, workspace=principal.workspace, customer_id=customer_id)
    return {**report.for_customer(customer_id), "unreachable": report.unreachable,
            "checked_at": to_json_safe(report.checked_at),
            "request_id": request_id(request)}  # fmt: skip


@router.get(
    "/v1/customers/{customer_id}/drift",
    response_model=CustomerDrift,
    operation_id="get_customer_drift",
    summary="Compare one customer across every connected system",
)
async def customer_drift(
    request: Request, customer_id: str, principal: Annotated[Principal, require("read:drift")]
) -> dict[str, Any]:
    """Reads each connected system's current view of the customer and their subscriptions and
    invoices now, and compares it field by field with the golden records under the register's
    ownership rules. Read-only: `synchub reconcile --repair` puts drift right."""
    return await run_in_threadpool(_drift, request, principal, customer_id)


def _conflicts(request: Request, principal: Principal, filters: dict[str, Any]) -> dict[str, Any]:
    with request.app.state.hub.db.read() as conn:
        items, has_more = conflict_store.page(conn, workspace=principal.workspace, **filters)
    return list_body(request, items, has_more)


@router.get(
    "/v1/conflicts",
    response_model=schemas.ListOf[ConflictRecord],
    operation_id="list_conflicts",
    summary="List conflicts",
    tags=["conflicts"],
)
async def list_conflicts(
    request: Request,
    principal: Annotated[Principal, require("read:conflicts")],
    limit: Limit = 20,
    starting_after: After = None,
    entity: Annotated[str | None, Query(max_length=30, description="Only this entity.")] = None,
    canonical_id: Annotated[
        str | None, Query(max_length=40, description="Only this golden record.")
    ] = None,
    field: Annotated[str | None, Query(max_length=60, description="Only this field.")] = None,
    status: Annotated[
        Literal["open", "resolved"] | None, Query(description="Only conflicts in this state.")
    ] = None,
) -> dict[str, Any]:
    """Conflicts in the order they were found, oldest first."""
    filters = {"limit": limit, "starting_after": starting_after, "entity": entity,
               "canonical_id": canonical_id, "field": field, "status": status}  # fmt: skip
    return await run_in_threadpool(_conflicts, request, principal, filters)
