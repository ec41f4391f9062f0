"""A small Stripe API client (httpx), pinned to one API version."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import httpx

from synchub.connectors.base import FetchedObject
from synchub.connectors.http import raise_for_status, send
from synchub.core.clock import Clock
from synchub.core.errors import NotFoundError, RejectedError

API_BASE = "https://api.stripe.com"
PINNED_VERSION = "2026-10-28.endive"

_PATHS = {
    "customer": "customers",
    "subscription": "subscriptions",
    "invoice": "invoices",
    "charge": "charges",
    "price": "prices",
}


class StripeClient:
    """Reads Stripe objects. Receives its HTTP client; never creates one."""

    def __init__(
        self, http: httpx.Client, *, api_key: str, clock: Clock, base_url: str = API_BASE
    ) -> None:
        self._http = http
        self._api_key = api_key
        self._clock = clock
        self._base_url = base_url.rstrip("/")

    def fetch(self, object_type: str, external_id: str) -> FetchedObject:
        """GET one object; the response's Date header is Stripe's clock reading."""
        path = _PATHS.get(object_type)
        if path is None:
            raise RejectedError(f"cannot fetch Stripe {object_type!r}")
        request = self._http.build_request(
            "GET",
            f"{self._base_url}/v1/{path}/{external_id}",
            headers={"Authorization": f"Bearer {self._api_key}", "Stripe-Version": PINNED_VERSION},
        )
        response = send(self._http, request, vendor="stripe")
        if response.status_code == 404:
            raise NotFoundError(f"stripe {object_type} {external_id!r} not found")
        raise_for_status(response, vendor="stripe", now=self._clock.now())
        date_header = response.headers.get("Date")
        vendor_time = parsedate_to_datetime(date_header) if date_header else self._clock.now()
        return FetchedObject(object_type=object_type, body=response.json(), vendor_time=vendor_time)
