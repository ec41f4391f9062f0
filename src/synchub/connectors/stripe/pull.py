"""Reading Stripe: raw webhook events and re-fetched objects become canonical observations."""

from __future__ import annotations

from datetime import datetime

from synchub.connectors.stripe.client import StripeClient
from synchub.connectors.stripe.webhooks import (
    observations_from_event,
    observations_from_object,
    parse_event,
)
from synchub.core.errors import RejectedError
from synchub.mapping.model import MappingVersion, Observation

OBJECT_TYPES = {
    "customer": "customer",
    "subscription": "subscription",
    "invoice": "invoice",
    "payment": "charge",
    "plan": "price",
}


class StripeReader:
    """The SourceReader for one Stripe connection."""

    def __init__(
        self, *, source: str, mapping: MappingVersion, client: StripeClient | None = None
    ) -> None:
        self.source = source
        self.mapping = mapping
        self._client = client
        self.can_fetch = client is not None

    def read_event(self, body: bytes, *, observed_at: datetime) -> list[Observation]:
        """The observations in one raw Stripe event."""
        event = parse_event(body)
        return observations_from_event(
            event, self.mapping, source=self.source, observed_at=observed_at
        )

    def fetch(self, entity: str, external_id: str, *, observed_at: datetime) -> list[Observation]:
        """Re-read one object from Stripe; its version is Stripe's clock at the time of reading."""
        if self._client is None:
            raise RejectedError("this Stripe connection has no API client to fetch with")
        fetched = self._client.fetch(OBJECT_TYPES[entity], external_id)
        version = int(fetched.vendor_time.timestamp()) * 1000
        return observations_from_object(
            self.mapping,
            fetched.object_type,
            fetched.body,
            source=self.source,
            source_version=version,
            observed_at=observed_at,
            deleted=bool(fetched.body.get("deleted")),
        )
