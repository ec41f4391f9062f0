"""Calling the team's own product back: Standard Webhooks-signed POSTs to its callback URL."""

from __future__ import annotations

import json
from typing import Any

import httpx

from synchub.connectors import standard_webhooks
from synchub.connectors.http import raise_for_status, send
from synchub.core.clock import Clock
from synchub.core.ids import new_id


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

    def accounts_url(self) -> str:
        """Where the product answers what it believes of an account: the callback URL's
        sibling `accounts` (`…/synchub/callbacks` -> `…/synchub/accounts/{customer id}`)."""
        return self._url.rstrip("/").rpartition("/")[0] + "/accounts"

    def get_account(self, customer_id: str) -> dict[str, Any] | None:
        """GET the product's entitlement for one customer (None: it has no such account).

        The request is signed like a callback (empty body), so the product can tell it is us.
        """
        timestamp = int(self._clock.now().timestamp())
        msg_id = "msg_" + new_id("event").partition("_")[2]
        headers = standard_webhooks.headers_for(
            b"", msg_id=msg_id, timestamp=timestamp, secrets_=self._secrets
        )
        request = self._http.build_request(
            "GET", f"{self.accounts_url()}/{customer_id}", headers=headers, timeout=self._timeout
        )
        response = send(self._http, request, vendor="product")
        if response.status_code == 404:
            return None
        detail = response.text[:200] if response.status_code >= 400 else ""
        raise_for_status(response, vendor="product", now=self._clock.now(), detail=detail)
        return dict(response.json())
