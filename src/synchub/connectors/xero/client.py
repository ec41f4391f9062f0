"""A small Xero Accounting API client (httpx): contacts, invoices, payments.

Amounts travel as exact JSON numbers written from Decimal (never floats) and are read back
as Decimal. Xero's `/Date(ms+zone)/` and ISO dates are both understood.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from synchub.connectors.http import raise_for_status, send
from synchub.core.clock import Clock
from synchub.core.errors import NotFoundError

API_BASE = "https://api.xero.com/api.xro/2.0"
MAX_IDEMPOTENCY_KEY = 128
_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


def parse_xero_date(value: str) -> datetime:
    """Parse `/Date(1503348544227+0000)/` or an ISO 8601 string into an aware UTC datetime."""
    match = _MS_DATE.match(value)
    if match:
        return datetime.fromtimestamp(int(match.group(1)) / 1000, UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:  # Xero's ISO forms without an offset are UTC
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_xero_offset(value: datetime) -> str:
    """The `/Date(ms+0000)/` form Xero writes."""
    ms = int(value.astimezone(UTC).timestamp() * 1000)
    return f"/Date({ms}+0000)/"


def dumps_exact(value: Any) -> str:
    """JSON text in which Decimal values are written as exact numbers."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("non-finite amount")
        return format(value, "f")
    if isinstance(value, dict):
        return (
            "{" + ",".join(f"{json.dumps(str(k))}:{dumps_exact(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps_exact(v) for v in value) + "]"
    if isinstance(value, float):
        raise TypeError("floats are not allowed in money payloads")
    return json.dumps(value, ensure_ascii=False)


def xero_error_detail(response: httpx.Response) -> str:
    """The validation messages in a Xero error body, joined."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    messages = [
        e.get("Message", "")
        for el in body.get("Elements", [])
        for e in el.get("ValidationErrors", [])
    ]
    return "; ".join(m for m in messages if m) or str(body.get("Message") or body.get("Detail", ""))


class XeroClient:
    """Talks to one Xero organisation (tenant). Receives its HTTP client. `token` and
    `tenant_id` may be callables, asked at each call (OAuth connections, ADR 0023)."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        token: str | Callable[[], str],
        tenant_id: str | Callable[[], str],
        clock: Clock,
        base_url: str = API_BASE,
    ) -> None:
        self._http = http
        self._token = token
        self._tenant = tenant_id
        self._clock = clock
        self._base = base_url.rstrip("/")

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
    ) -> dict[str, Any]:
        token = self._token() if callable(self._token) else self._token
        tenant = self._tenant() if callable(self._tenant) else self._tenant
        headers = {
            "Authorization": f"Bearer {token}",
            "xero-tenant-id": tenant,
            "Accept": "application/json",
        }
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key[:MAX_IDEMPOTENCY_KEY]
        if traceparent:
            headers["traceparent"] = traceparent
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = dumps_exact(body).encode("utf-8")
        request = self._http.build_request(
            method, self._base + path, headers=headers, content=content, params=params
        )
        response = send(self._http, request, vendor="xero")
        if response.status_code == 404:
            raise NotFoundError(f"xero {path} not found")
        detail = xero_error_detail(response) if response.status_code >= 400 else ""
        raise_for_status(response, vendor="xero", now=self._clock.now(), detail=detail)
        return dict(json.loads(response.content, parse_float=Decimal))

    def save_contact(
        self,
        contact: dict[str, Any],
        *,
        contact_id: str | None,
        idempotency_key: str,
        traceparent: str | None,
    ) -> dict[str, Any]:
        """Create (POST /Contacts) or update (POST /Contacts/{id}) one contact."""
        path = f"/Contacts/{contact_id}" if contact_id else "/Contacts"
        result = self._call(
            "POST",
            path,
            {"Contacts": [contact]},
            idempotency_key=idempotency_key,
            traceparent=traceparent,
        )
        return dict(result["Contacts"][0])

    def save_invoice(
        self,
        invoice: dict[str, Any],
        *,
        invoice_id: str | None,
        idempotency_key: str,
        traceparent: str | None,
    ) -> dict[str, Any]:
        """Create (POST /Invoices) or update (POST /Invoices/{id}) one invoice."""
        path = f"/Invoices/{invoice_id}" if invoice_id else "/Invoices"
        result = self._call(
            "POST",
            path,
            {"Invoices": [invoice]},
            idempotency_key=idempotency_key,
            traceparent=traceparent,
        )
        return dict(result["Invoices"][0])

    def find(self, collection: str, field: str, value: str) -> list[dict[str, Any]]:
        """Records of a collection whose field equals a value (GET ?where=Field=="value")."""
        quoted = value.replace("\\", "\\\\").replace('"', '\\"')
        result = self._call("GET", f"/{collection}", params={"where": f'{field}=="{quoted}"'})
        return [dict(item) for item in result.get(collection, [])]

    def get_contact(self, contact_id: str) -> dict[str, Any]:
        """Read one contact."""
        return dict(self._call("GET", f"/Contacts/{contact_id}")["Contacts"][0])

    def get_invoice(self, invoice_id: str) -> dict[str, Any]:
        """Read one invoice."""
        return dict(self._call("GET", f"/Invoices/{invoice_id}")["Invoices"][0])

    def create_payment(
        self, payment: dict[str, Any], *, idempotency_key: str, traceparent: str | None
    ) -> dict[str, Any]:
        """Apply a payment to an invoice (PUT /Payments)."""
        result = self._call(
            "PUT",
            "/Payments",
            {"Payments": [payment]},
            idempotency_key=idempotency_key,
            traceparent=traceparent,
        )
        return dict(result["Payments"][0])
