"""Partner webhook endpoints: register, change, rotate secrets, fan out events, and keep each
endpoint's health (disable on 410 or after days of failure, record the "failing" notice).

Services take the caller's open transaction and flush; the caller commits.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection

from synchub.audit.service import record as record_audit
from synchub.auth.model import workspace_kind
from synchub.connectors.standard_webhooks import new_secret
from synchub.core.errors import FieldProblem, NotFoundError, ValidationError
from synchub.core.ids import new_id
from synchub.events import store as delivery_store
from synchub.events.model import CATALOGUE
from synchub.events.service import (
    DeliveryFilter,
    end_held,
    get_delivery,
    hold_claimed,
    hold_pending,
    list_deliveries,
    release_held,
)
from synchub.webhooks import store
from synchub.webhooks.model import (
    RETRY_POLICY,
    SECRET_OVERLAP,
    DisabledReason,
    Endpoint,
    SecretVersion,
    destination_name,
    event_type_problems,
    has_failed_too_long,
    normalised_event_types,
)
from synchub.webhooks.secret import open_secret, seal_secret
from synchub.webhooks.ssrf import Resolver, UnsafeUrlError, check_url, resolve_host

log = structlog.get_logger(__name__)
SYSTEM_ACTOR = "synchub"


def present(endpoint: Endpoint) -> dict[str, Any]:
    """An endpoint as the API shows it (never its secrets)."""
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": list(endpoint.event_types),
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "disabled_at": endpoint.disabled_at,
        "failing_since": endpoint.failing_since,
        "failure_notified_at": endpoint.failure_notified_at,
        "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
    }


@dataclass(frozen=True)
class CheckedFields:
    """Endpoint fields that passed check_fields: every given field, checked (None: not given).

    Checking resolves the URL's host, so callers do it before opening a write transaction.
    """

    changes: Mapping[str, Any]
    url: str | None = None
    event_types: tuple[str, ...] | None = None


def check_fields(
    workspace: str,
    changes: Mapping[str, Any],
    *,
    resolve: Resolver = resolve_host,
    private_targets: Literal["sandbox", "none"] = "none",
) -> CheckedFields:
    """Check the url and event_types among `changes` (nulls refused), naming every offending
    field at once; UnsafeUrlError or ValidationError (422) when any is wrong."""
    nulls = [k for k in ("url", "event_types", "enabled") if k in changes and changes[k] is None]
    problems = [FieldProblem(f"/{k}", "must not be null") for k in nulls]
    url, event_types = changes.get("url"), changes.get("event_types")
    if event_types is not None:
        problems += event_type_problems(list(event_types), CATALOGUE)
    if url is not None:
        try:
            check_url(url, workspace_kind=workspace_kind(workspace), resolve=resolve,
                      private_targets=private_targets)  # fmt: skip
        except UnsafeUrlError as exc:
            if not problems:
                raise
            problems = [*exc.problems, *problems]
    if problems:
        raise ValidationError("the webhook endpoint is invalid", problems)
    types = normalised_event_types(event_types) if event_types is not None else None
    return CheckedFields(changes=dict(changes), url=url, event_types=types)


def _found(conn: Connection, workspace: str, endpoint_id: str, *, lock: bool = False) -> Endpoint:
    endpoint = store.find_endpoint(conn, endpoint_id, workspace=workspace, lock=lock)
    if endpoint is None:
        raise NotFoundError(f"no webhook endpoint {endpoint_id}")
    return endpoint


def _add_secret(
    conn: Connection, kek: bytes, endpoint_id: str, version: int, now: datetime
) -> dict[str, Any]:
    """Make and store a secret; return it sealed (for the API to reveal once, see reveal)."""
    sealed = seal_secret(kek, endpoint_id=endpoint_id, version=version, secret=new_secret())
    store.insert_secret(conn, endpoint_id, SecretVersion(version, now), sealed=sealed)
    return {"secret_sealed": base64.b64encode(sealed).decode("ascii"), "secret_version": version}


def reveal(body: Mapping[str, Any], kek: bytes) -> dict[str, Any]:
    """A write's response with its sealed secret opened: what the caller sees, once.

    Write handlers return the secret sealed, so the copy kept for Idempotency-Key replays
    is encrypted at rest like the secret's own row.
    """
    shown = dict(body)
    sealed, version = shown.pop("secret_sealed", None), shown.pop("secret_version", None)
    if sealed is not None and version is not None:
        shown["secret"] = open_secret(
            kek, endpoint_id=shown["id"], version=int(version), sealed=base64.b64decode(sealed)
        )
    return shown


def create_endpoint(
    conn: Connection, *, workspace: str, fields: CheckedFields, kek: bytes, now: datetime
) -> dict[str, Any]:
    """Register an endpoint with a fresh secret (returned sealed; see reveal)."""
    if fields.url is None or fields.event_types is None:
        raise ValidationError(
            "url and event_types are required",
            [FieldProblem("/url", "required"), FieldProblem("/event_types", "required")],
        )
    endpoint = Endpoint(
        id="whep_" + new_id("message").partition("_")[2],
        workspace=workspace,
        url=fields.url,
        description=str(fields.changes.get("description") or ""),
        event_types=fields.event_types,
        enabled=True,
        created_at=now,
        updated_at=now,
    )
    store.insert_endpoint(conn, endpoint)
    return {**present(endpoint), **_add_secret(conn, kek, endpoint.id, 1, now)}


def list_endpoints(
    conn: Connection, *, workspace: str, limit: int, starting_after: str | None
) -> tuple[list[dict[str, Any]], bool]:
    """A page of a workspace's endpoints and whether more follow."""
    endpoints, more = store.page_endpoints(
        conn, workspace=workspace, limit=limit, starting_after=starting_after
    )
    return [present(e) for e in endpoints], more


def get_endpoint(conn: Connection, *, workspace: str, endpoint_id: str) -> dict[str, Any]:
    """One endpoint of the workspace."""
    return present(_found(conn, workspace, endpoint_id))


def update_endpoint(
    conn: Connection, *, workspace: str, endpoint_id: str, fields: CheckedFields, now: datetime
) -> dict[str, Any]:
    """Change an endpoint's url, event types, description or enabled flag.

    Enabling clears why it was disabled and its run of failures, and makes the deliveries
    held meanwhile due now, in event order (release_held: those held longer than the retry
    window become dead letters instead). Disabling by hand holds its pending deliveries.
    """
    endpoint = _found(conn, workspace, endpoint_id, lock=True)
    values: dict[str, Any] = {"updated_at": now}
    if fields.url is not None:
        values["url"] = fields.url
    if fields.event_types is not None:
        values["event_types"] = fields.event_types
    if "description" in fields.changes:
        values["description"] = fields.changes["description"] or ""
    enabled = fields.changes.get("enabled")
    destination = destination_name(endpoint.id)
    if enabled is True and not endpoint.enabled:
        values.update(enabled=True, disabled_reason=None, disabled_at=None, failing_since=None)
        release_held(conn, destination=destination, now=now,
                     max_age_seconds=RETRY_POLICY.max_age_seconds)  # fmt: skip
    elif enabled is False and endpoint.enabled:
        values.update(enabled=False, disabled_reason=DisabledReason.MANUAL.value, disabled_at=now)
        hold_pending(conn, destination=destination)
    store.update_endpoint(conn, endpoint.id, **values)
    return get_endpoint(conn, workspace=workspace, endpoint_id=endpoint.id)


def delete_endpoint(
    conn: Connection, *, workspace: str, endpoint_id: str, now: datetime
) -> dict[str, Any]:
    """Delete an endpoint and its secrets; its held deliveries end now and its pending ones
    when due, unsent (dead letters naming the reason)."""
    endpoint = _found(conn, workspace, endpoint_id, lock=True)
    end_held(conn, destination=destination_name(endpoint.id), now=now,
             reason=f"webhook endpoint {endpoint.id} was deleted; not sent")  # fmt: skip
    store.delete_endpoint(conn, endpoint.id)
    return {"id": endpoint.id, "deleted": True}


def rotate_secret(
    conn: Connection, *, workspace: str, endpoint_id: str, kek: bytes, now: datetime
) -> dict[str, Any]:
    """A new secret (returned sealed; see reveal); older ones keep signing for 24 hours."""
    endpoint = _found(conn, workspace, endpoint_id, lock=True)
    store.delete_expired_secrets(conn, endpoint.id, now=now)
    versions = [version.version for version, _ in store.secrets_of(conn, endpoint.id)]
    until = now + SECRET_OVERLAP
    store.expire_secrets(conn, endpoint.id, at=until)
    secret = _add_secret(conn, kek, endpoint.id, max(versions, default=0) + 1, now)
    store.update_endpoint(conn, endpoint.id, updated_at=now)
    return {"id": endpoint.id, **secret, "previous_secret_expires_at": until}


def endpoint_deliveries(
    conn: Connection,
    *,
    workspace: str,
    endpoint_id: str,
    limit: int,
    starting_after: str | None,
    status: str | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """A page of an endpoint's deliveries, each with its attempts, and whether more follow."""
    endpoint = _found(conn, workspace, endpoint_id)
    where = DeliveryFilter(status=status, destination=destination_name(endpoint.id))
    page = list_deliveries(
        conn, workspace=workspace, limit=limit, starting_after=starting_after, where=where
    )
    items = [get_delivery(conn, workspace=workspace, delivery_id=d["id"]) for d in page.items]
    return items, page.has_more


def webhook_destinations(
    conn: Connection, events: Sequence[Mapping[str, Any]]
) -> dict[str, list[tuple[str, bool]]]:
    """For each outbox event (by id), the `webhook:<endpoint id>` destinations it goes to and
    whether its delivery is held: every endpoint of its workspace whose filter lets its type
    through; a disabled one's delivery is recorded `held` (sent once it is enabled again)."""
    # Share-locked: an enable committing meanwhile either waits for this fan-out (and then
    # releases the rows it holds) or is seen by it, so no held row is left behind.
    endpoints = store.endpoints_of(conn, {str(e["workspace"]) for e in events}, share_lock=True)
    return {
        str(event["id"]): [
            (destination_name(endpoint.id), not endpoint.enabled)
            for endpoint in endpoints
            if endpoint.workspace == event["workspace"] and endpoint.subscribes_to(event["type"])
        ]
        for event in events
    }


def hold_if_disabled(conn: Connection, endpoint_id: str, delivery_id: str) -> bool:
    """Under the endpoint's lock: if it is (still) disabled, put a delivery a worker just
    leased back to `held` and return True; False when the endpoint is enabled or gone."""
    endpoint = store.find_endpoint(conn, endpoint_id, lock=True)
    if endpoint is None or endpoint.enabled:
        return False
    return hold_claimed(conn, delivery_id)


def load_for_delivery(
    conn: Connection, endpoint_id: str, *, workspace: str, kek: bytes, now: datetime
) -> tuple[Endpoint, list[str]] | None:
    """A workspace's endpoint and the secrets that sign at `now` (newest first); None if
    it was deleted."""
    endpoint = store.find_endpoint(conn, endpoint_id, workspace=workspace)
    if endpoint is None:
        return None
    secrets = [
        open_secret(kek, endpoint_id=endpoint_id, version=version.version, sealed=sealed)
        for version, sealed in store.secrets_of(conn, endpoint_id)
        if version.is_active(now)
    ]
    return endpoint, secrets


def delivery_age(
    conn: Connection, endpoint: Endpoint, delivery_id: str, now: datetime
) -> timedelta:
    """How long a delivery has been trying: its retry budget counts from its creation, or
    from its last replay or release from `held` (as the delivery loop counts it)."""
    t = delivery_store.deliveries
    row = conn.execute(
        sa.select(t.c.created_at, t.c.replayed_at).where(
            t.c.id == delivery_id, t.c.workspace == endpoint.workspace
        )
    ).first()
    if row is None:
        return timedelta(0)
    started: datetime = row.replayed_at or row.created_at
    return now - started


def record_delivered(conn: Connection, endpoint: Endpoint) -> None:
    """A 2xx ends the endpoint's run of failures."""
    if endpoint.failing_since is not None:
        store.update_endpoint(conn, endpoint.id, failing_since=None)


def record_failure(
    conn: Connection, endpoint_id: str, *, now: datetime, last: bool, audit_key: bytes
) -> bool:
    """Count a failed attempt; disable the endpoint after 5 days of failing (returns True).

    When `last` (the delivery will get no more attempts) record the endpoint's "failing"
    notice: a warning log and an audit entry. There is no mailer to tell the partner.
    """
    endpoint = store.find_endpoint(conn, endpoint_id, lock=True)
    if endpoint is None:
        return False
    store.start_failing(conn, endpoint.id, at=now)
    if endpoint.enabled and has_failed_too_long(endpoint.failing_since, now):
        disable(conn, endpoint, reason=DisabledReason.FAILING, now=now, audit_key=audit_key)
        return True
    if last:
        store.update_endpoint(conn, endpoint.id, failure_notified_at=now)
        log.warning(
            "webhook_endpoint.failing",
            endpoint_id=endpoint.id,
            workspace=endpoint.workspace,
            failing_since=endpoint.failing_since or now,
        )
        record_audit(
            conn,
            key=audit_key,
            at=now,
            actor=SYSTEM_ACTOR,
            action="webhook_endpoint.failing",
            workspace=endpoint.workspace,
            target=endpoint.id,
            outcome="notice_recorded",
        )
    return False


def record_gone(conn: Connection, endpoint_id: str, *, now: datetime, audit_key: bytes) -> None:
    """The endpoint answered 410 Gone: disable it (its pending deliveries are then held)."""
    endpoint = store.find_endpoint(conn, endpoint_id, lock=True)
    if endpoint is not None and endpoint.enabled:
        disable(conn, endpoint, reason=DisabledReason.GONE, now=now, audit_key=audit_key)


def disable(
    conn: Connection, endpoint: Endpoint, *, reason: DisabledReason, now: datetime, audit_key: bytes
) -> None:
    """Stop sending to an endpoint (410 Gone, or failing too long); logged and audited. Its
    pending deliveries are held (sent once it is enabled again)."""
    hold_pending(conn, destination=destination_name(endpoint.id))
    store.update_endpoint(
        conn,
        endpoint.id,
        enabled=False,
        disabled_reason=reason.value,
        disabled_at=now,
        updated_at=now,
    )
    log.warning(
        "webhook_endpoint.disabled",
        endpoint_id=endpoint.id,
        workspace=endpoint.workspace,
        reason=reason.value,
    )
    record_audit(
        conn,
        key=audit_key,
        at=now,
        actor=SYSTEM_ACTOR,
        action="webhook_endpoint.disabled",
        workspace=endpoint.workspace,
        target=endpoint.id,
        outcome=reason.value,
    )
