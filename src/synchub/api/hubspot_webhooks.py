"""Inbound HubSpot notifications: contact merges update the crosswalk (ADR 0019).

Verified on the raw bytes (v3 signature) before anything is parsed; each event goes into the
inbox under (connection, eventId), so a retried batch changes nothing twice. A merge is a
crosswalk change, not an observation of a record, and is applied in the same transaction as
its inbox row: HubSpot gets its 2xx once both are committed. Other event types are kept as
`ignored` (HubSpot is a destination: its contacts are not read as sources).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from synchub.api.fair_use import webhook_admission
from synchub.api.problems import problem
from synchub.api.webhooks import MAX_WEBHOOK_BYTES, read_limited
from synchub.bootstrap import Hub
from synchub.connectors.hubspot.webhooks import HubSpotEvent, parse_events, verify_v3
from synchub.core.errors import NotFoundError, SignatureError, ValidationError
from synchub.core.ids import new_id
from synchub.core.jsontext import unstorable_strings
from synchub.events.outbox import EventContext
from synchub.ingest import store as inbox
from synchub.mdm.merge import apply_vendor_merge
from synchub.observability.tracecontext import continue_or_start

log = structlog.get_logger(__name__)
router = APIRouter()

AUDIT_HEADERS = ("user-agent", "content-type", "x-hubspot-request-timestamp")


@dataclass
class Accepted:
    """What one notification batch did."""

    received: int = 0
    duplicates: int = 0
    merges: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def _owner_of(hub: Hub) -> Any:
    owners = {(o.entity, o.field_name): o.owner for o in hub.register.ownership}
    return lambda entity, name: owners.get((entity, name))


def accept_hubspot_events(
    hub: Hub,
    *,
    connection: str,
    events: list[HubSpotEvent],
    headers: dict[str, str],
    traceparent: str | None,
) -> Accepted:
    """Store each new event in the inbox and apply the merges among them, in one transaction."""
    now = hub.clock.now()
    workspace = hub.register.workspace
    ctx = EventContext(workspace=workspace, source=f"/synchub/{workspace}/{connection}",
                       traceparent=continue_or_start(traceparent), mapping_version=None,
                       app_version=hub.version, now=now)  # fmt: skip
    done = Accepted()
    with hub.db.write() as conn:
        for event in events:
            inbox_id = new_id("inbox")
            row = {"id": inbox_id, "workspace": workspace, "source": connection,
                   "external_id": event.event_id, "event_type": event.subscription_type,
                   "body": json.dumps(event.raw).encode(), "headers": headers,
                   "traceparent": ctx.traceparent, "received_at": now,
                   "status": "processed" if event.merge_entity else "ignored",
                   "attempts": 1, "process_after": now, "processed_at": now,
                   "last_error": None if event.merge_entity else "not a merge"}  # fmt: skip
            if not inbox.insert_if_new(conn, row):
                done.duplicates += 1
                continue
            done.received += 1
            if event.merge_entity is None or event.primary_id is None:
                continue
            result = apply_vendor_merge(conn, ctx, system=connection, entity=event.merge_entity,
                                        primary_id=event.primary_id, merged_ids=event.merged_ids,
                                        result_id=event.new_id, owner_of=_owner_of(hub),
                                        actor=connection)  # fmt: skip
            done.merges += result.merge_ids
            done.refused += result.refused
            if result.refused or result.survivor_id is None:
                note = "; ".join(result.refused) or "no contact involved is known to synchub"
                inbox.mark(conn, inbox_id, last_error=note[:2000])
    return done


def _uris(request: Request, hub: Hub) -> list[str]:
    """The URL HubSpot signed: as received here, or as published (behind a proxy)."""
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return [str(request.url), hub.settings.resolved_public_url() + path]


@router.post("/v1/webhooks/hubspot", status_code=200, include_in_schema=False)
async def receive_hubspot(request: Request) -> JSONResponse:
    """Receive one HubSpot notification batch. 200 once its events are committed."""
    hub: Hub = request.app.state.hub
    body = await read_limited(request, MAX_WEBHOOK_BYTES)
    connection = hub.register.connection_for_system("hubspot")
    if connection is None:
        raise NotFoundError("no HubSpot connection is configured")
    secrets = hub.webhook_secrets.get(connection.name)
    if not secrets:
        raise NotFoundError(
            "HubSpot webhooks are not configured: set SYNCHUB_HUBSPOT_CLIENT_SECRET"
        )
    try:
        verify_v3(secrets=secrets, method=request.method, uris=_uris(request, hub), body=body,
                  signature=request.headers.get("x-hubspot-signature-v3"),
                  timestamp=request.headers.get("x-hubspot-request-timestamp"),
                  now_ms=int(hub.clock.now().timestamp() * 1000))  # fmt: skip
    except SignatureError as exc:
        log.info("api.rejected", path=request.url.path, code=exc.code, reason=str(exc))
        return problem(401, "invalid-signature", "Webhook signature is invalid")
    webhook_admission(request, connection.name)()  # the connection's throttle, once verified
    events = parse_events(body)
    unstorable = [problem for index, event in enumerate(events)
                  for problem in unstorable_strings(event.raw, pointer=f"/{index}")]  # fmt: skip
    if unstorable:  # refused at intake: stored, such text could only fail later
        raise ValidationError("the notification holds text that cannot be stored", unstorable[:10])
    headers = {k: v for k, v in request.headers.items() if k in AUDIT_HEADERS}
    done = await run_in_threadpool(
        accept_hubspot_events, hub, connection=connection.name, events=events, headers=headers,
        traceparent=request.headers.get("traceparent"),
    )  # fmt: skip
    if done.merges and request.app.state.on_event_received is not None:
        request.app.state.on_event_received()
    return JSONResponse(
        {"received": done.received, "duplicates": done.duplicates, "merges": done.merges,
         "refused": done.refused}
    )  # fmt: skip
