"""Match candidates: possible duplicates waiting for a person; list, get, confirm, reject."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection

from synchub.api import schemas
from synchub.api.product_writes import WRITE_RESPONSES
from synchub.api.records import After, Limit
from synchub.api.security import require
from synchub.api.writes import list_body, run_write
from synchub.auth.model import Principal
from synchub.events.outbox import EventContext
from synchub.mdm import candidates

router = APIRouter(prefix="/v1/match-candidates", tags=["match-candidates"])

Status = Annotated[
    Literal["open", "confirmed", "rejected", "superseded", "unmerged"] | None,
    Query(description="Only candidates in this state."),
]


class MatchCandidate(BaseModel):
    """A source record that may be an existing golden record, and what a person decided."""

    id: str
    entity: str = Field(description="The kind of golden record, e.g. customer.")
    status: str = Field(
        description="open, confirmed, rejected, superseded, or unmerged (confirmed, and the "
        "merge it made was undone since; merge_id still names that merge)."
    )
    system: str = Field(description="The connection whose record was matched.")
    external_id: str = Field(description="That record's id in its system.")
    record_id: str = Field(
        description="The golden record the source record got while it waits; confirming "
        "merges it into target_id (it is then deleted, with merged_into in its event)."
    )
    target_id: str = Field(description="The golden record it may be.")
    score: float = Field(ge=0, le=1, description="Match probability from the fuzzy scorer.")
    evidence: dict[str, str] = Field(
        description="How each compared field agreed: exact, close, similar or different."
    )
    record: dict[str, Any] | None = Field(
        default=None, description="A summary of record_id (name, email, company_name, ...)."
    )
    target: dict[str, Any] | None = Field(default=None, description="A summary of target_id.")
    created_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = Field(default=None, description="The client that decided.")
    merge_id: str | None = Field(
        default=None, description="The merge a confirmation made (kept after an unmerge)."
    )
    request_id: str | None = None


def _list(
    request: Request, principal: Principal, status: str | None, limit: int, after: str | None
) -> dict[str, Any]:
    with request.app.state.hub.db.read() as conn:
        page = candidates.list_candidates(conn, workspace=principal.workspace, status=status,
                                          limit=limit, starting_after=after)  # fmt: skip
    return list_body(request, page.items, page.has_more)


def _get(request: Request, principal: Principal, candidate_id: str) -> dict[str, Any]:
    with request.app.state.hub.db.read() as conn:
        return candidates.get_candidate(
            conn, workspace=principal.workspace, candidate_id=candidate_id
        )


@router.get(
    "",
    response_model=schemas.ListOf[MatchCandidate],
    operation_id="list_match_candidates",
    summary="List match candidates",
)
async def list_all(
    request: Request,
    principal: Annotated[Principal, require("read:matches")],
    limit: Limit = 20,
    starting_after: After = None,
    status: Status = None,
) -> dict[str, Any]:
    """Possible duplicates in the order they were found; `status=open` is the review queue."""
    return await run_in_threadpool(_list, request, principal, status, limit, starting_after)


@router.get(
    "/{candidate_id}",
    response_model=MatchCandidate,
    operation_id="get_match_candidate",
    summary="Get one match candidate",
)
async def get_one(
    request: Request, candidate_id: str, principal: Annotated[Principal, require("read:matches")]
) -> dict[str, Any]:
    """One candidate with summaries of both golden records and the field evidence."""
    return await run_in_threadpool(_get, request, principal, candidate_id)


def _owner_of(request: Request) -> Any:
    owners = {(o.entity, o.field_name): o.owner for o in request.app.state.hub.register.ownership}
    return lambda entity, name: owners.get((entity, name))


def _decide(
    request: Request, principal: Principal, candidate_id: str, verdict: str
) -> JSONResponse:
    actor = principal.client_id

    def handler(conn: Connection, ctx: EventContext) -> tuple[int, dict[str, Any]]:
        if verdict == "confirm":
            owner_of = _owner_of(request)
            return 200, candidates.confirm(
                conn, ctx, candidate_id=candidate_id, owner_of=owner_of, actor=actor
            )
        return 200, candidates.reject(conn, ctx, candidate_id=candidate_id, actor=actor)

    return run_write(request, principal, route=f"/v1/match-candidates/{{candidate_id}}/{verdict}",
                     body=None, action=f"match_candidate.{verdict}", handler=handler)  # fmt: skip


@router.post(
    "/{candidate_id}/confirm",
    response_model=MatchCandidate,
    responses={**WRITE_RESPONSES, 409: {"description": "Already decided, or the records "
                                        "cannot be merged (both hold an id from one system)"}},
    operation_id="confirm_match_candidate",
    summary="Confirm a match: merge the source record's golden record into the target",
)  # fmt: skip
async def confirm(
    request: Request, candidate_id: str, principal: Annotated[Principal, require("admin:matches")]
) -> JSONResponse:
    """The crosswalk links the source record to the target (rule `confirmed`); fields enter
    under survivorship; events go out through the outbox. Send an Idempotency-Key."""
    return await run_in_threadpool(_decide, request, principal, candidate_id, "confirm")


@router.post(
    "/{candidate_id}/reject",
    response_model=MatchCandidate,
    responses={**WRITE_RESPONSES, 409: {"description": "Already decided"}},
    operation_id="reject_match_candidate",
    summary="Reject a match: the two stay separate and the pair is not proposed again",
)
async def reject(
    request: Request, candidate_id: str, principal: Annotated[Principal, require("admin:matches")]
) -> JSONResponse:
    """The source record keeps its own golden record."""
    return await run_in_threadpool(_decide, request, principal, candidate_id, "reject")
