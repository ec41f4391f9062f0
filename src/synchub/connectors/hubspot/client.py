"""A small HubSpot CRM v3 client (httpx): contact and company upserts, associations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from synchub.connectors.http import raise_for_status, send
from synchub.core.clock import Clock

API_BASE = "https://api.hubapi.com"


class HubSpotClient:
    """Talks to HubSpot's CRM API with a private-app token, or an OAuth access token from a
    callable asked at each call (ADR 0023). Receives its HTTP client."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        token: str | Callable[[], str],
        clock: Clock,
        base_url: str = API_BASE,
    ) -> None:
        self._http = http
        self._token = token
        self._clock = clock
        self._base = base_url.rstrip("/")

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        traceparent: str | None = None,
    ) -> dict[str, Any]:
        token = self._token() if callable(self._token) else self._token
        headers = {"Authorization": f"Bearer {token}"}
        if traceparent:
            headers["traceparent"] = traceparent
        request = self._http.build_request(method, self._base + path, json=body, headers=headers)
        response = send(self._http, request, vendor="hubspot")
        detail = ""
        if response.status_code >= 400:
            try:
                detail = str(response.json().get("message", ""))[:300]
            except ValueError:
                detail = response.text[:200]
        raise_for_status(response, vendor="hubspot", now=self._clock.now(), detail=detail)
        return response.json() if response.content else {}

    def upsert(
        self,
        object_type: str,
        *,
        id_property: str,
        id_value: str,
        properties: dict[str, str],
        traceparent: str | None = None,
    ) -> dict[str, Any]:
        """Create or update one object keyed on a unique property (batch upsert of one)."""
        body = {"inputs": [{"idProperty": id_property, "id": id_value, "properties": properties}]}
        result = self._call(
            "POST", f"/crm/v3/objects/{object_type}/batch/upsert", body, traceparent
        )
        return dict(result["results"][0])

    def update(
        self,
        object_type: str,
        object_id: str,
        properties: dict[str, str],
        traceparent: str | None = None,
    ) -> dict[str, Any]:
        """Update one object by HubSpot id."""
        return self._call(
            "PATCH",
            f"/crm/v3/objects/{object_type}/{object_id}",
            {"properties": properties},
            traceparent,
        )

    def associate(
        self, from_type: str, from_id: str, to_type: str, to_id: str, traceparent: str | None = None
    ) -> None:
        """Create the default association between two objects (idempotent at HubSpot)."""
        self._call(
            "PUT",
            f"/crm/v4/objects/{from_type}/{from_id}/associations/default/{to_type}/{to_id}",
            None,
            traceparent,
        )

    def get(
        self, object_type: str, object_id: str, *, properties: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """Read one object by HubSpot id (HubSpot returns only `properties` beyond its own)."""
        query = f"?properties={','.join(properties)}" if properties else ""
        return self._call("GET", f"/crm/v3/objects/{object_type}/{object_id}{query}")
