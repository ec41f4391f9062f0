"""The shapes of /v1/webhook-endpoints requests and responses (part of the OpenAPI contract)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, PlainSerializer, WithJsonSchema

from synchub.api.schemas import _Write
from synchub.core.clock import isoformat_z

EventType = Annotated[str, Field(min_length=1, max_length=120)]
# Rendered as every /v1 write and event renders time (RFC 3339, UTC, "Z", milliseconds), so a
# GET shows exactly what the create or update that made the endpoint showed.
Timestamp = Annotated[
    datetime,
    PlainSerializer(isoformat_z, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
EVENT_TYPES_DESCRIPTION = (
    'Canonical event types to receive (e.g. "invoice.paid"), or ["*"] for every type.'
)


class WebhookEndpoint(BaseModel):
    """A partner's webhook endpoint. Its signing secret is shown only on create and rotate."""

    id: str
    url: str
    description: str
    event_types: list[str] = Field(description=EVENT_TYPES_DESCRIPTION)
    enabled: bool
    disabled_reason: str | None = Field(
        default=None, description="gone (it answered 410), failing (5 days) or manual."
    )
    disabled_at: Timestamp | None = None
    failing_since: Timestamp | None = Field(
        default=None, description="Start of the current run of failed attempts."
    )
    failure_notified_at: Timestamp | None = Field(
        default=None, description="When a delivery last used up all its attempts."
    )
    created_at: Timestamp
    updated_at: Timestamp
    request_id: str | None = None


class WebhookEndpointCreated(WebhookEndpoint):
    """A new endpoint and its signing secret (shown this once; store it now)."""

    secret: str = Field(description="whsec_ + base64 of 32 random bytes.")


class WebhookSecretRotated(BaseModel):
    """A new signing secret (shown this once); the previous ones keep signing until the time
    given, so every webhook carries signatures from both for 24 hours."""

    id: str
    secret: str
    previous_secret_expires_at: Timestamp
    request_id: str | None = None


class WebhookEndpointDeleted(BaseModel):
    """An endpoint was deleted; its pending deliveries end without being sent."""

    id: str
    deleted: bool
    request_id: str | None = None


class WebhookEndpointUpdate(_Write):
    """Fields to change."""

    url: str | None = Field(default=None, min_length=1, max_length=2048)
    event_types: list[EventType] | None = Field(
        default=None, min_length=1, max_length=100, description=EVENT_TYPES_DESCRIPTION
    )
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = Field(
        default=None, description="true re-enables a disabled endpoint and forgets its failures."
    )


class WebhookEndpointCreate(_Write):
    """A partner endpoint to receive signed canonical events."""

    url: str = Field(
        min_length=1,
        max_length=2048,
        description="https (http only to loopback, in sandbox workspaces); it must resolve to "
        "public addresses.",
    )
    event_types: list[EventType] = Field(
        min_length=1, max_length=100, description=EVENT_TYPES_DESCRIPTION
    )
    description: str = Field(default="", max_length=500)
