"""The roles connectors play: a Destination receives canonical events, a Fetcher re-reads objects.

Destinations translate vendor and HTTP failures into the error tree (see `http.py`):
TransientError (retry, honouring retry_after) or PermanentError (dead letter). Nothing above
`connectors/` ever sees an httpx exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class Link:
    """A canonical id now known at a destination under this external id."""

    entity: str
    canonical_id: str
    external_id: str


@dataclass(frozen=True)
class OutboundEvent:
    """A canonical event as a destination sees it."""

    id: str
    type: str
    subject: str
    time: datetime
    payload: dict[str, Any]
    traceparent: str | None
    links: dict[str, str]  # canonical id -> this destination's id, for the event's entities
    # The stale-write guard (ADR 0021): this event's outbox sequence number, and for the
    # records whose snapshots this destination writes, the newest sequence number already
    # applied there (filled only for destinations that name them in `snapshot_ids`).
    seq: int = 0
    applied: Mapping[str, int] = field(default_factory=dict)

    def superseded(self, canonical_id: str) -> bool:
        """Whether the destination already holds a newer snapshot of this record than the
        one this event carries (a replay of an old delivery): writing it would roll back."""
        return self.applied.get(canonical_id, -1) > self.seq


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt: the stable idempotency key and which try this is."""

    delivery_id: str
    idempotency_key: str
    number: int


@dataclass
class Delivered:
    """What a destination did with an event."""

    summary: str
    links: list[Link] = field(default_factory=list)
    status_code: int | None = None  # the HTTP status of the call that applied it, if one did
    # The stale-write guard (ADR 0021): canonical ids whose snapshots this attempt wrote (the
    # destination now holds them as of this event), and whether it wrote nothing at all
    # because the destination already holds newer snapshots of everything the event carries.
    applied: list[str] = field(default_factory=list)
    superseded: bool = False


class Destination(Protocol):
    """Receives canonical events; must be idempotent for a repeated idempotency key."""

    name: str

    def deliver(self, event: OutboundEvent, attempt: Attempt) -> Delivered:
        """Apply one event at the destination or raise a HubError."""
        ...


@dataclass(frozen=True)
class FetchedObject:
    """A vendor object read now, with the vendor's clock reading (for ordering)."""

    object_type: str
    body: dict[str, Any]
    vendor_time: datetime


class Fetcher(Protocol):
    """Re-reads a source object by id, to fill a gap or settle an ordering tie."""

    def fetch(self, object_type: str, external_id: str) -> FetchedObject:
        """Return the current object or raise a HubError."""
        ...
