"""Calling the team's own product back: Standard Webhooks-signed POSTs to its callback URL."""

from __future__ import annotations

import json
from typing import Any

import httpx

from synchub.connectors import standard_webhooks
from synchub.connectors.http import raise_for_status, send
from synchub.core.clock import Clock


class ProductClient:
    """Posts signed callbacks to the product. Receives its HTTP client."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        url: str,
        secrets: list[str],
        clock: Clock,
        timeout_seconds: float = 15.0,
    ) -> None:
        self._http = http
        self._url = url
        self._secrets = secrets
        self._clock = clock
        self._timeout = timeout_seconds

    def post(self, body: dict[str, Any], *, msg_id: str, traceparent: str | None) -> None:
        """Sign the exact bytes sent and POST them; never follow redirects."""
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        timestamp = int(self._clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            **standard_webhooks.headers_for(
                raw, msg_id=msg_id, timestamp=timestamp, secrets_=self._secrets
            ),
        }
        if traceparent:
            headers["traceparent"] = traceparent
        request = self._http.build_request(
            "POST", self._url, content=raw, headers=headers, timeout=self._timeout
        )
        response = send(self._http, request, vendor="product")
        if 300 <= response.status_code < 400:
            raise_for_status(
                httpx.Response(400),
                vendor="product",
                now=self._clock.now(),
                detail="redirects are not followed",
            )
        raise_for_status(
            response,
            vendor="product",
            now=self._clock.now(),
            detail=response.text[:200] if response.status_code >= 400 else "",
        )
