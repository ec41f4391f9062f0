"""A small Intercom REST client (httpx): contact search, create, update, read, merge history.

Pinned to `Intercom-Version: 2.16` (ADR 0022): the version whose document
(`tests/data/intercom/contacts.2.16.json`) the sandbox is checked against, and the first with
`GET /contacts/{id}/merge_history`, which names the contacts a merge removed (the
`contact.merged` notification names only the survivor).
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from synchub.connectors.http import raise_for_status, send
from synchub.core.clock import Clock
from synchub.core.errors import RejectedError

API_BASE = "https://api.intercom.io"  # regional: api.eu.intercom.io, api.au.intercom.io
API_VERSION = "2.16"
MAX_PER_PAGE = 150
_EXISTING_ID = re.compile(r"\bid=([0-9a-f]{6,})\b")


class ContactConflictError(RejectedError):
    """Intercom refused a create: a contact with those details exists (HTTP 409)."""

    def __init__(self, message: str, *, existing_id: str | None) -> None:
        super().__init__(message, status=409)
        self.existing_id = existing_id


def _error_detail(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of Intercom's `error.list` body; empty strings when it has none."""
    try:
        errors = response.json().get("errors") or [{}]
    except (ValueError, AttributeError):
        return "", response.text[:200]
    first = errors[0] if isinstance(errors[0], dict) else {}
    return str(first.get("code") or ""), str(first.get("message") or "")[:300]


class IntercomClient:
    """Talks to Intercom's REST API with an access token. Receives its HTTP client."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        token: str,
        clock: Clock,
        base_url: str = API_BASE,
        version: str = API_VERSION,
    ) -> None:
        self._http = http
        self._token = token
        self._clock = clock
        self._base = base_url.rstrip("/")
        self.version = version

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, str] | None = None,
        traceparent: str | None = None,
    ) -> dict[str, Any]:
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Intercom-Version": self.version,
            "Accept": "application/json",
        }
        if traceparent:
            headers["traceparent"] = traceparent
        request = self._http.build_request(
            method, self._base + path, json=body, params=params, headers=headers
        )
        response = send(self._http, request, vendor="intercom")
        if response.status_code == 409:
            _, message = _error_detail(response)
            found = _EXISTING_ID.search(message)
            raise ContactConflictError(
                f"intercom answered 409: {message}", existing_id=found.group(1) if found else None
            )
        code, message = _error_detail(response) if response.status_code >= 400 else ("", "")
        detail = f"{code}: {message}" if code else message
        raise_for_status(response, vendor="intercom", now=self._clock.now(), detail=detail)
        return response.json() if response.content else {}

    def search_contacts(
        self,
        query: dict[str, Any],
        *,
        per_page: int = MAX_PER_PAGE,
        starting_after: str | None = None,
        sort: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One page of `POST /contacts/search` (a `contact_list`)."""
        pagination: dict[str, Any] = {"per_page": min(per_page, MAX_PER_PAGE)}
        if starting_after:
            pagination["starting_after"] = starting_after
        body: dict[str, Any] = {"query": query, "pagination": pagination}
        if sort:
            body["sort"] = sort
        return self._call("POST", "/contacts/search", body)

    def find_by_external_id(
        self, external_id: str, traceparent: str | None = None
    ) -> dict[str, Any] | None:
        """The contact whose `external_id` is this one, found through search, or None."""
        page = self.search_contacts(
            {"field": "external_id", "operator": "=", "value": external_id}, per_page=2
        )
        data = page.get("data") or []
        return dict(data[0]) if data else None

    def create_contact(
        self, body: dict[str, Any], traceparent: str | None = None
    ) -> dict[str, Any]:
        """`POST /contacts` (ContactConflictError when one with those details exists)."""
        return self._call("POST", "/contacts", body, traceparent=traceparent)

    def update_contact(
        self, contact_id: str, body: dict[str, Any], traceparent: str | None = None
    ) -> dict[str, Any]:
        """`PUT /contacts/{id}`."""
        return self._call("PUT", f"/contacts/{contact_id}", body, traceparent=traceparent)

    def get_contact(self, contact_id: str) -> dict[str, Any]:
        """`GET /contacts/{id}` (a merged contact answers 410)."""
        return self._call("GET", f"/contacts/{contact_id}")

    def merged_into(self, contact_id: str) -> list[str]:
        """Ids of the contacts merged into this one, oldest first (all pages)."""
        ids: list[str] = []
        cursor: str | None = None
        for _ in range(1000):  # bounded: 150 a page
            params = {"per_page": str(MAX_PER_PAGE), "order": "asc"}
            if cursor:
                params["cursor"] = cursor
            page = self._call("GET", f"/contacts/{contact_id}/merge_history", params=params)
            ids += [str(m["source_contact_id"]) for m in page.get("data") or []]
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor:
                break
        return ids
