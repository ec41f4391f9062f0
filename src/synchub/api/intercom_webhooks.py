"""Inbound Intercom notifications (ADR 0022): contact merges update the crosswalk, contact
changes go to the inbox for the worker, anything else is kept as `ignored`.

Verified on the raw bytes (`X-Hub-Signature`, HMAC-SHA1 with the app's client secret) before
anything is parsed; a bad signature gets 401 with an empty body. Each notification goes into
the inbox under (connection, notification id), so a repeated delivery changes nothing twice.
`contact.merged` names only the surviving contact: the merged-away ids come from its merge
history (`GET /contacts/{id}/merge_history`), read before the transaction; the merge is
applied in the same transaction as the inbox row, and Intercom gets its 200 once both are
committed. If Intercom cannot be read the answer is 503 and nothing is stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from synchub.api.fair_use import webhook_admission
from synchub.api.webhooks import MAX_WEBHOOK_BYTES, read_limited
from synchub.bootstrap import Hub
from synchub.connectors.intercom.pull import PULLED_EVENT
from synchub.connectors.intercom.push import IntercomDestination
from synchub.connectors.intercom.webhooks import (
    Notification,
    parse_notification,
    verify_signature,
)
from synchub.core.errors import NotFoundError, SignatureError, ValidationError
from synchub.core.ids import new_id
from synchub.core.jsontext import unstorable_strings
from synchub.events.outbox import EventContext
from synchub.ingest import store as inbox
from synchub.ingest.service import is_known_event
from synchub.mdm.merge import apply_vendor_merge
from synchub.observability.tracecontext import continue_or_start

router = APIRouter()

AUDIT_HEADERS = ("user-agent", "content-type")


@dataclass
class Accepted:
    """What one notification did."""

    duplicate: bool = False
    status: str = "ignored"  # ignored | pending (for the worker) | processed (a merge)
    merges: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def _owner_of(hub: Hub) -> Any:
    owners = {(o.entity, o.field_name): o.owner for o in hub.register.ownership}
    return lambda entity, name: owners.get((entity, name))


def _row(
    hub: Hub, connection: str, *, external_id: str, event_type: str, body: bytes, status: str,
    headers: dict[str, str], traceparent: str,
) -> dict[str, Any]:  # fmt: skip
    now = hub.clock.now()
    done = status != "pending"
    ignored = "not a contact notification" if status == "ignored" else None
    return {"id": new_id("inbox"), "workspace": hub.register.workspace, "source": connection,
            "external_id": external_id, "event_type": event_type, "body": body,
            "headers": headers, "traceparent": traceparent, "received_at": now,
            "status": status, "attempts": 1 if done else 0, "process_after": now,
            "processed_at": now if done else None, "last_error": ignored}  # fmt: skip


def accept_intercom_notification(
    hub: Hub,
    *,
    connection: str,
    note: Notification,
    body: bytes,
    headers: dict[str, str],
    traceparent: str | None,
    merged_into: Callable[[str], list[str]],
) -> Accepted:
    """Store one notification (once) and apply it: a merge now, a contact change by the
    worker (`merged_into` reads the contacts merged into a survivor, from Intercom)."""
    workspace = hub.register.workspace
    with hub.db.read() as conn:  # a repeat is answered from a read, without any vendor call
        if is_known_event(conn, workspace=workspace, source=connection, external_id=note.id):
            return Accepted(duplicate=True)
    entity = note.merge_entity
    merged = merged_into(str(note.item["id"])) if entity else []
    status = "processed" if entity else "pending" if note.is_contact_change else "ignored"
    tp = continue_or_start(traceparent)
    done = Accepted(status=status)
    with hub.db.write() as conn:
        row = _row(hub, connection, external_id=note.id, event_type=note.topic, body=body,
                   status=status, headers=headers, traceparent=tp)  # fmt: skip
        if not inbox.insert_if_new(conn, row):
            return Accepted(duplicate=True)
        if entity is None:
            return done
        ctx = EventContext(workspace=workspace, source=f"/synchub/{workspace}/{connection}",
                           traceparent=tp, mapping_version=None, app_version=hub.version,
                           now=hub.clock.now())  # fmt: skip
        result = apply_vendor_merge(conn, ctx, system=connection, entity=entity,
                                    primary_id=str(note.item["id"]), merged_ids=merged,
                                    owner_of=_owner_of(hub), actor=connection)  # fmt: skip
        done.merges, done.refused = list(result.merge_ids), list(result.refused)
        if result.refused or result.survivor_id is None or not merged:
            note_text = "; ".join(result.refused) or (
                "the merge history names no merged contact" if not merged
                else "no contact involved is known to synchub")  # fmt: skip
            inbox.mark(conn, row["id"], last_error=note_text[:2000])
        # The survivor as Intercom now has it (filled from the lead): observed by the worker.
        survivor = _row(hub, connection, external_id=f"{note.id}:item",
                        event_type=PULLED_EVENT, body=json.dumps(note.item).encode(),
                        status="pending", headers=headers, traceparent=tp)  # fmt: skip
        inbox.insert_if_new(conn, survivor)
    return done


def _merged_into(hub: Hub, connection: str) -> Callable[[str], list[str]]:
    destination = hub.destinations.get(connection)
    if not isinstance(destination, IntercomDestination):
        raise NotFoundError(f"connection {connection!r} has no Intercom client")
    return destination.client.merged_into


@router.post("/v1/webhooks/intercom", status_code=200, include_in_schema=False)
async def receive_intercom(request: Request) -> Response:
    """Receive one Intercom notification. 200 once it is committed (and a merge applied)."""
    hub: Hub = request.app.state.hub
    body = await read_limited(request, MAX_WEBHOOK_BYTES)
    connection = hub.register.connection_for_system("intercom")
    if connection is None:
        raise NotFoundError("no Intercom connection is configured")
    secrets = hub.webhook_secrets.get(connection.name)
    if not secrets:
        raise NotFoundError(
            "Intercom webhooks are not configured: set SYNCHUB_INTERCOM_CLIENT_SECRET"
        )
    try:
        verify_signature(secrets=secrets, body=body, header=request.headers.get("x-hub-signature"))
    except SignatureError:
        return Response(status_code=401)  # nothing said about why
    webhook_admission(request, connection.name)()
    note = parse_notification(body)
    unstorable = unstorable_strings(note.raw)
    if unstorable:  # refused at intake: stored, such text could only fail later
        raise ValidationError("the notification holds text that cannot be stored", unstorable)
    headers = {k: v for k, v in request.headers.items() if k in AUDIT_HEADERS}
    done = await run_in_threadpool(
        accept_intercom_notification, hub, connection=connection.name, note=note, body=body,
        headers=headers, traceparent=request.headers.get("traceparent"),
        merged_into=_merged_into(hub, connection.name),
    )  # fmt: skip
    woken = request.app.state.on_event_received
    if done.status != "ignored" and not done.duplicate and woken is not None:
        woken()
    return JSONResponse({"received": True, "id": note.id, "duplicate": done.duplicate,
                         "merges": done.merges, "refused": done.refused})  # fmt: skip
