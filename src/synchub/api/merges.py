"""Merges of golden records: merge one customer into another, list and read merges, and
undo one (unmerge). Writes are idempotent per Idempotency-Key and audited (ADR 0019)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection

from synchub.api import schemas
from synchub.api.matching import _owner_of
from synchub.api.product_writes import WRITE_RESPONSES
from synchub.api.records import After, Limit
from synchub.api.security import require
from synchub.api.writes import list_body, run_write
from synchub.auth.model import Principal
from synchub.events.outbox import EventContext
from synchub.mdm import match_store, merge

router = APIRouter(tags=["merges"])

MANUAL = "manual"  # the rule of a merge a person asked for directly


class MergeRequest(BaseModel):
    """Which customer to merge into the one in the path."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    merged_id: str = Field(
        min_length=1,
        max_length=40,
        pattern=r"^[A-Za-z0-9_]+$",
        description="The customer to merge in. It becomes a deleted tombstone (its event "
        "carries merged_into); its source records, keys and dependants move to the survivor.",
    )


class MovedSource(BaseModel):
    """A system's record that moved between golden records."""

    system: str
    external_id: str


class MovedDependant(BaseModel):
    """A record (subscription, invoice, ...) that referred to the merged record."""

    entity: str
    id: str


class Unmerge(BaseModel):
    """What undoing the merge did."""

    restored_fields: list[str] = Field(
        description="Survivor fields that took back their values from before the merge."
    )
    kept_fields: list[str] = Field(
        description="Survivor fields the merge changed that changed again after it: the "
        "later value stays."
    )
    moved_back: list[MovedSource] = Field(description="Source records and links moved back.")
    dependants_moved_back: list[MovedDependant]
    left: list[str] = Field(
        description="What had moved on since the merge and was left where it is, and why."
    )


class Merge(BaseModel):
    """One golden record merged into another, and whether it was undone."""

    id: str = Field(description="mrg_ + ULID.")
    object: Literal["merge"] = "merge"
    entity: str = Field(description="The kind of golden record, e.g. customer.")
    survivor_id: str = Field(description="The record that remained.")
    merged_id: str = Field(description="The record merged into it (a tombstone until undone).")
    rule: str = Field(
        description="Why: confirmed (a match candidate), manual (POST .../merge) or "
        "vendor_merge (a vendor merged its records, e.g. a HubSpot contact merge)."
    )
    candidate_id: str | None = Field(default=None, description="The confirmed candidate.")
    actor: str = Field(description="The client (or connection) that merged.")
    merged_at: datetime
    status: Literal["merged", "undone"]
    changed_fields: list[str] = Field(description="Survivor fields the merge changed.")
    moved_sources: list[MovedSource]
    moved_dependants: list[MovedDependant]
    unmerged_at: datetime | None = None
    unmerged_by: str | None = None
    unmerge: Unmerge | None = None
    request_id: str | None = None


Status = Annotated[
    Literal["merged", "undone"] | None,
    Query(description="Only merges that stand (merged) or were undone."),
]
CustomerId = Annotated[
    str | None,
    Query(max_length=40, description="Only merges involving this record (either side)."),
]


def _list(
    request: Request,
    principal: Principal,
    canonical_id: str | None,
    status: str | None,
    limit: int,
    after: str | None,
) -> dict[str, Any]:
    undone = None if status is None else status == "undone"
    with request.app.state.hub.db.read() as conn:
        page = merge.list_merges(conn, workspace=principal.workspace, canonical_id=canonical_id,
                                 undone=undone, limit=limit,
                                 starting_after=after)  # fmt: skip
    return list_body(request, page.items, page.has_more)


def _get(request: Request, principal: Principal, merge_id: str) -> dict[str, Any]:
    with request.app.state.hub.db.read() as conn:
        return merge.get_merge(conn, workspace=principal.workspace, merge_id=merge_id)


@router.get(
    "/v1/merges",
    response_model=schemas.ListOf[Merge],
    operation_id="list_merges",
    summary="List merges",
)
async def list_all(
    request: Request,
    principal: Annotated[Principal, require("read:matches")],
    limit: Limit = 20,
    starting_after: After = None,
    customer_id: CustomerId = None,
    status: Status = None,
) -> dict[str, Any]:
    """Merges of golden records, oldest first; each says what moved and whether it was undone."""
    return await run_in_threadpool(
        _list, request, principal, customer_id, status, limit, starting_after
    )


@router.get(
    "/v1/merges/{merge_id}",
    response_model=Merge,
    operation_id="get_merge",
    summary="Get one merge",
)
async def get_one(
    request: Request, merge_id: str, principal: Annotated[Principal, require("read:matches")]
) -> dict[str, Any]:
    """One merge, with what an unmerge did if it was undone."""
    return await run_in_threadpool(_get, request, principal, merge_id)


def _merge(
    request: Request, principal: Principal, survivor_id: str, body: MergeRequest
) -> JSONResponse:
    actor = principal.client_id

    def handler(conn: Connection, ctx: EventContext) -> tuple[int, dict[str, Any]]:
        done = merge.merge_into(conn, ctx, entity="customer", survivor_id=survivor_id,
                                merged_id=body.merged_id, owner_of=_owner_of(request),
                                rule=MANUAL, actor=actor)  # fmt: skip
        # The merged record is gone: proposals involving it are moot.
        match_store.supersede_open(conn, workspace=ctx.workspace, canonical_ids=[body.merged_id],
                                   at=ctx.now, actor=actor)  # fmt: skip
        return 201, merge.get_merge(conn, workspace=ctx.workspace, merge_id=done.merge_id)

    return run_write(request, principal, route="/v1/customers/{customer_id}/merge", body=body,
                     action="customer.merge", handler=handler)  # fmt: skip


@router.post(
    "/v1/customers/{customer_id}/merge",
    status_code=201,
    response_model=Merge,
    responses={
        **WRITE_RESPONSES,
        404: {"description": "No such customer (either id)"},
        409: {
            "description": "A record is deleted or merged already, or both hold an id from "
            "one system (a source's own records stay distinct)"
        },
        422: {
            "description": "Invalid fields, a reused key, or `merged_id` is the customer "
            "in the path itself (the problem names /merged_id)"
        },
    },
    operation_id="merge_customer",
    tags=["customers"],
    summary="Merge another customer into this one",
)
async def merge_customer(
    request: Request,
    customer_id: str,
    body: MergeRequest,
    principal: Annotated[Principal, require("admin:matches")],
) -> JSONResponse:
    """`merged_id`'s source records are relinked here (rule `manual`), its fields enter
    under survivorship, its dependants are re-pointed; it stays as a deleted tombstone.
    Events go out through the outbox. Undo with `POST /v1/merges/{id}/unmerge`. Send an
    Idempotency-Key."""
    return await run_in_threadpool(_merge, request, principal, customer_id, body)


def _unmerge(request: Request, principal: Principal, merge_id: str) -> JSONResponse:
    actor = principal.client_id

    def handler(conn: Connection, ctx: EventContext) -> tuple[int, dict[str, Any]]:
        return 200, merge.unmerge(conn, ctx, merge_id=merge_id, actor=actor)

    return run_write(request, principal, route="/v1/merges/{merge_id}/unmerge", body=None,
                     action="merge.unmerge", handler=handler)  # fmt: skip


@router.post(
    "/v1/merges/{merge_id}/unmerge",
    response_model=Merge,
    responses={
        **WRITE_RESPONSES,
        404: {"description": "No such merge"},
        409: {
            "description": "Undone already (code already_unmerged), or the survivor was "
            "itself merged since (undo that merge first)"
        },
    },
    operation_id="unmerge",
    summary="Undo a merge: both records as they were before it",
)
async def unmerge(
    request: Request, merge_id: str, principal: Annotated[Principal, require("admin:matches")]
) -> JSONResponse:
    """The merged record lives again with its values, links, keys and dependants; survivor
    fields the merge changed take back their earlier values. What arrived after the merge
    stays on the survivor (a field changed since keeps its later value; see `kept_fields`
    and `left`). Events: `customer.created` (`unmerged_from`) and `customer.updated`
    (`unmerged`). A second unmerge is a 409 `already_unmerged`; with the same
    Idempotency-Key it replays the first answer."""
    return await run_in_threadpool(_unmerge, request, principal, merge_id)
