"""Inbound vendor webhooks: verify on the raw bytes, commit to the inbox, then answer."""

from __future__ import annotations

import functools
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from synchub.api.fair_use import webhook_admission
from synchub.bootstrap import Hub
from synchub.connectors.stripe.webhooks import parse_event, verify_signature
from synchub.core.errors import NotFoundError, PayloadTooLargeError
from synchub.db import WriterBusyError
from synchub.ingest.service import is_known_event, record_inbound_event
from synchub.observability.tracecontext import continue_or_start

router = APIRouter()

AUDIT_HEADERS = ("user-agent", "stripe-signature", "content-type")
MAX_WEBHOOK_BYTES = 1024 * 1024  # Stripe events are far smaller; refuse before reading more


async def read_limited(request: Request, limit: int) -> bytes:
    """Read the raw body, refusing (before reading it all) anything over `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit():
        if int(declared) > limit:
            raise PayloadTooLargeError(f"the body is larger than {limit} bytes")
        return await request.body()  # the server enforces Content-Length
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def accept_stripe_event(
    hub: Hub,
    *,
    connection: str,
    body: bytes,
    signature: str | None,
    traceparent: str | None,
    headers: dict[str, str],
    wait: bool = True,
    admit: Callable[[], None] | None = None,
) -> tuple[str, bool]:
    """Verify, parse and durably store one Stripe event; return (event id, is_new).

    With `wait=False` it raises WriterBusyError rather than wait for the SQLite writer.
    `admit` runs once the signature is verified (the connection's fair-use throttle).
    """
    now = hub.clock.now()
    verify_signature(body, signature, secrets=hub.webhook_secrets[connection],
                     now=int(now.timestamp()))  # fmt: skip
    if admit is not None:
        admit()
    event = parse_event(body)
    workspace = hub.register.workspace
    with hub.db.read() as conn:  # duplicates are answered from a read, without the write lock
        if is_known_event(conn, workspace=workspace, source=connection, external_id=event.id):
            return event.id, False
    with hub.db.write(wait=wait) as conn:
        is_new = record_inbound_event(
            conn, workspace=workspace, source=connection, external_id=event.id,
            event_type=event.type, body=body, headers=headers,
            traceparent=continue_or_start(traceparent), now=now,
        )  # fmt: skip
    return event.id, is_new


def stripe_connection(hub: Hub) -> str:
    """The Stripe connection that receives webhooks at /v1/webhooks/stripe."""
    connection = hub.register.connection_for_system("stripe")
    if connection is None:
        raise NotFoundError("no Stripe connection is configured")
    return connection.name


async def accept_on_loop_or_thread(
    hub: Hub, accept: Callable[..., tuple[str, bool]]
) -> tuple[str, bool]:
    """Run a short ingest write inline when SQLite's writer is free, else on a thread.

    The embedded SQLite store has one writer, so a thread adds no parallelism and its hop
    costs more than the commit itself (bench/ingest.py); but the event loop must never wait
    for a writer, so a busy writer sends the work to the thread pool. PostgreSQL always uses
    the thread pool (network I/O).
    """
    if hub.db.is_sqlite:
        try:
            return accept(wait=False)
        except WriterBusyError:
            pass
    return await run_in_threadpool(accept)


@router.post("/v1/webhooks/stripe", status_code=200, include_in_schema=False)
async def receive_stripe(request: Request) -> JSONResponse:
    """Receive one Stripe webhook. 200 only after the raw event is committed."""
    hub: Hub = request.app.state.hub
    body = await read_limited(request, MAX_WEBHOOK_BYTES)
    headers = {k: v for k, v in request.headers.items() if k in AUDIT_HEADERS}
    connection = stripe_connection(hub)
    accept = functools.partial(
        accept_stripe_event, hub, connection=connection, body=body,
        signature=request.headers.get("stripe-signature"),
        traceparent=request.headers.get("traceparent"), headers=headers,
        admit=webhook_admission(request, connection),
    )  # fmt: skip
    event_id, is_new = await accept_on_loop_or_thread(hub, accept)
    if is_new and request.app.state.on_event_received is not None:
        request.app.state.on_event_received()
    return JSONResponse({"received": True, "id": event_id, "duplicate": not is_new})
