"""Writes from the team's own product: customers and accounts (fields the product owns).

They enter through the same resolve step as every vendor event: an observation from the
product connection, matched, survived and turned into canonical events in one transaction.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.engine import Connection

from synchub.api import schemas
from synchub.api.security import require
from synchub.api.writes import run_write
from synchub.auth.model import Principal
from synchub.core.errors import ConfigError, FieldProblem, ValidationError
from synchub.events.outbox import EventContext
from synchub.mdm.service import canonical_for, get_record, product_id_of, write_from_product

router = APIRouter()

WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed request or Idempotency-Key"},
    409: {"description": "The same Idempotency-Key is still being processed"},
    422: {"description": "Invalid fields, a field owned by another system, or a reused key"},
}


def _product(request: Request) -> str:
    connection = request.app.state.hub.register.connection_for_system("product")
    if connection is None:
        raise ConfigError("the register has no product connection to write as")
    return str(connection.name)


class OwnedFieldError(ValidationError):
    """The product tried to change a field another system owns (422)."""

    code = "field_owned_elsewhere"


def _refuse_owned_changes(
    request: Request, entity: str, fields: dict[str, Any], current: dict[str, Any], source: str
) -> None:
    """The product may set any field when it creates a record, but afterwards it may not
    change a field the register gives to another system (sending the same value is fine).

    An owner that holds no record linked to this golden record cannot speak for it, so the
    fallback rule applies there (most recent by the source's own time, DESIGN §4), as it does
    in survivorship: a product-only customer's email is the product's to change."""
    register = request.app.state.hub.register
    linked = current.get("external_ids") or {}
    problems = [
        FieldProblem(f"/{name}", f"{entity}.{name} is owned by {owner}; change it there")
        for name, value in fields.items()
        if (owner := register.owner_of(entity, name)) not in (None, source)
        and owner in linked
        and value != current.get(name)
    ]
    if problems:
        raise OwnedFieldError("some fields are owned by another system", problems)


def _owner_of(request: Request) -> Any:
    owners = {(o.entity, o.field_name): o.owner for o in request.app.state.hub.register.ownership}
    return lambda entity, name: owners.get((entity, name))


async def _write(
    request: Request,
    principal: Principal,
    *,
    entity: str,
    route: str,
    body: BaseModel,
    canonical_id: str | None,
) -> JSONResponse:
    source = _product(request)
    fields = body.model_dump(exclude_unset=True, exclude={"external_id"})

    def handler(conn: Connection, ctx: EventContext) -> tuple[int, dict[str, Any]]:
        external_id = getattr(body, "external_id", None) or product_id_of(
            conn, workspace=ctx.workspace, entity=entity, canonical_id=canonical_id or "",
            source=source)  # fmt: skip
        existing = canonical_id or canonical_for(
            conn, workspace=ctx.workspace, entity=entity, system=source, external_id=external_id
        )
        if existing is not None:
            current = get_record(conn, entity, workspace=ctx.workspace, canonical_id=existing)
            _refuse_owned_changes(request, entity, fields, current, source)
        record, created = write_from_product(
            conn, ctx, entity=entity, source=source, external_id=external_id, fields=fields,
            owner_of=_owner_of(request), canonical_id=canonical_id,
            thresholds=request.app.state.hub.register.match_thresholds(entity),
        )  # fmt: skip
        if entity == "customer":  # rendered exactly as GET /v1/customers/{id} renders it
            record = schemas.Customer.model_validate(record).model_dump(mode="json")
        return (201 if created else 200), record

    action = f"{entity}.{'create' if canonical_id is None else 'update'}"
    return await run_in_threadpool(run_write, request, principal, route=route, body=body,
                                   action=action, handler=handler)  # fmt: skip


@router.post(
    "/v1/customers",
    status_code=201,
    response_model=schemas.Customer,
    responses={
        **WRITE_RESPONSES,
        200: {"model": schemas.Customer, "description": "The product's id was known: updated"},
    },
    operation_id="create_customer",
    tags=["customers"],
    summary="Create or update a customer the product knows",
)
async def create_customer(
    request: Request,
    body: schemas.CustomerCreate,
    principal: Annotated[Principal, require("write:customers")],
) -> JSONResponse:
    """Match by the product's id, then email; create if new. Send an Idempotency-Key."""
    return await _write(
        request, principal, entity="customer", route="/v1/customers", body=body, canonical_id=None
    )


@router.patch(
    "/v1/customers/{record_id}",
    response_model=schemas.Customer,
    responses=WRITE_RESPONSES,
    operation_id="update_customer",
    tags=["customers"],
    summary="Change fields of a customer that the product owns",
)
async def update_customer(
    request: Request,
    record_id: str,
    body: schemas.CustomerUpdate,
    principal: Annotated[Principal, require("write:customers")],
) -> JSONResponse:
    """Fields owned by another system (see the register) are refused with 422."""
    return await _write(
        request,
        principal,
        entity="customer",
        route="/v1/customers/{record_id}",
        body=body,
        canonical_id=record_id,
    )


@router.post(
    "/v1/accounts",
    status_code=201,
    response_model=schemas.Account,
    responses={
        **WRITE_RESPONSES,
        200: {"model": schemas.Account, "description": "The product's id was known: updated"},
    },
    operation_id="create_account",
    tags=["accounts"],
    summary="Create or update an account the product knows",
)
async def create_account(
    request: Request,
    body: schemas.AccountCreate,
    principal: Annotated[Principal, require("write:accounts")],
) -> JSONResponse:
    """Match by the product's id; create if new. Send an Idempotency-Key."""
    return await _write(
        request, principal, entity="account", route="/v1/accounts", body=body, canonical_id=None
    )


@router.patch(
    "/v1/accounts/{record_id}",
    response_model=schemas.Account,
    responses=WRITE_RESPONSES,
    operation_id="update_account",
    tags=["accounts"],
    summary="Change fields of an account",
)
async def update_account(
    request: Request,
    record_id: str,
    body: schemas.AccountUpdate,
    principal: Annotated[Principal, require("write:accounts")],
) -> JSONResponse:
    """Fields owned by another system (see the register) are refused with 422."""
    return await _write(
        request,
        principal,
        entity="account",
        route="/v1/accounts/{record_id}",
        body=body,
        canonical_id=record_id,
    )
