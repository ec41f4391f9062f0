"""Inbound vendor webhooks: verify on the raw bytes, commit to the inbox, then answer."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from synchub.bootstrap import Hub
from synchub.connectors.stripe.webhooks import parse_event, verify_signature
from synchub.core.errors import NotFoundError
from synchub.ingest.service import record_inbound_event
from synchub.observability.tracecontext import continue_or_start

router = APIRouter()

AUDIT_HEADERS = ("user-agent", "stripe-signature", "content-type")


def accept_stripe_event(
    hub: Hub,
    *,
    connection: str,
    body: bytes,
    signature: str | None,
    traceparent: str | None,
    headers: dict[str, str],
) -> tuple[str, bool]:
    """Verify, parse and durably store one Stripe event; return (event id, is_new)."""
    now = hub.clock.now()
    verify_signature(
        body, signature, secrets=hub.webhook_secrets[connection], now=int(now.timestamp())
    )
    event = parse_event(body)
    with hub.db.write() as conn:
        is_new = record_inbound_event(
            conn,
            workspace=hub.register.workspace,
            source=connection,
            external_id=event.id,
            event_type=event.type,
            body=body,
            headers=headers,
            traceparent=continue_or_start(traceparent),
            now=now,
        )
    return event.id, is_new


def stripe_connection(hub: Hub) -> str:
    """The Stripe connection that receives webhooks at /v1/webhooks/stripe."""
    connection = hub.register.connection_for_system("stripe")
    if connection is None:
        raise NotFoundError("no Stripe connection is configured")
    return connection.name


@router.post("/v1/webhooks/stripe", status_code=200, include_in_schema=False)
async def receive_stripe(request: Request) -> JSONResponse:
    """Receive one Stripe webhook. 200 only after the raw event is committed."""
    hub: Hub = request.app.state.hub
    body = await request.body()
    headers = {k: v for k, v in request.headers.items() if k in AUDIT_HEADERS}
    event_id, is_new = await run_in_threadpool(
        accept_stripe_event,
        hub,
        connection=stripe_connection(hub),
        body=body,
        signature=request.headers.get("stripe-signature"),
        traceparent=request.headers.get("traceparent"),
        headers=headers,
    )
    if is_new and request.app.state.on_event_received is not None:
        request.app.state.on_event_received()
    return JSONResponse({"received": True, "id": event_id, "duplicate": not is_new})
