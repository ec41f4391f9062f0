"""An in-process HubSpot (CRM v3 objects, batch upsert, v4 default associations).

Follows HubSpot's published shapes: batch upsert by a unique `idProperty`, string property
values, numeric-string ids, `{"status": "error", "category": …}` errors. Unknown properties
and invalid emails are refused with 400 VALIDATION_ERROR, as HubSpot does.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import httpx

from synchub.connectors.sandbox import Sandbox, json_response

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

PROPERTIES = {
    "contacts": {
        "email",
        "firstname",
        "lastname",
        "phone",
        "company",
        "synchub_customer_id",
        "synchub_billing_status",
        "synchub_entitled",
    },
    "companies": {"name", "domain", "synchub_account_id"},
}
UNIQUE = {"contacts": {"email", "synchub_customer_id"}, "companies": {"synchub_account_id"}}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(status: int, category: str, message: str) -> httpx.Response:
    return json_response(
        status,
        {"status": "error", "message": message, "correlationId": "sandbox", "category": category},
    )


class HubSpotSandbox(Sandbox):
    """HubSpot CRM with contacts, companies and associations in memory."""

    vendor = "hubspot"

    def __init__(self, *, token: str = "pat-sandbox") -> None:  # noqa: S107 - a sandbox token
        super().__init__()
        self.token = token
        self.objects: dict[str, dict[str, dict[str, Any]]] = {"contacts": {}, "companies": {}}
        self.associations: set[tuple[str, str]] = set()
        self._next_id = 1000
        self.route("POST", r"/crm/v3/objects/(contacts|companies)/batch/upsert", self._upsert)
        self.route("PATCH", r"/crm/v3/objects/(contacts|companies)/(\d+)", self._patch)
        self.route("GET", r"/crm/v3/objects/(contacts|companies)/(\d+)", self._get)
        self.route(
            "PUT",
            r"/crm/v4/objects/contact/(\d+)/associations/default/company/(\d+)",
            self._associate,
        )

    def authorised(self, request: httpx.Request) -> bool:
        """Private-app tokens come as a Bearer header."""
        return bool(request.headers.get("Authorization") == f"Bearer {self.token}")

    def unauthorised(self) -> httpx.Response:
        """HubSpot's reply to a missing or wrong token."""
        return _error(401, "INVALID_AUTHENTICATION", "Authentication credentials not found.")

    def _invalid(self, kind: str, props: dict[str, Any]) -> httpx.Response | None:
        unknown = sorted(set(props) - PROPERTIES[kind])
        if unknown:
            return _error(400, "VALIDATION_ERROR", f"Property {unknown[0]!r} does not exist")
        if any(not isinstance(v, str) for v in props.values()):
            return _error(400, "VALIDATION_ERROR", "Property values must be strings")
        if kind == "contacts" and props.get("email") and not EMAIL.match(props["email"]):
            return _error(400, "VALIDATION_ERROR", "Property values were not valid: INVALID_EMAIL")
        return None

    def _find(self, kind: str, prop: str, value: str) -> dict[str, Any] | None:
        key = value.lower() if prop == "email" else value  # HubSpot lower-cases emails
        for record in self.objects[kind].values():
            stored = record["properties"].get(prop, "")
            if (stored.lower() if prop == "email" else stored) == key:
                return record
        return None

    def _upsert(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        kind = match.group(1)
        inputs = json.loads(request.content).get("inputs") or []
        results = []
        for item in inputs:
            prop, value, props = item.get("idProperty"), item.get("id"), item.get("properties", {})
            if prop not in UNIQUE[kind]:
                return _error(400, "VALIDATION_ERROR", f"{prop!r} is not a unique property")
            problem = self._invalid(kind, {**props, prop: value})
            if problem:
                return problem
            record = self._find(kind, prop, value)
            created = record is None
            if record is None:
                self._next_id += 1
                record = {
                    "id": str(self._next_id),
                    "properties": {},
                    "createdAt": _now(),
                    "archived": False,
                }
                self.objects[kind][record["id"]] = record
            record["properties"].update({**props, prop: value})
            record["updatedAt"] = _now()
            self.record(request, entity=f"{kind}/{record['id']}", key=f"{prop}={value}",
                        created=created)  # fmt: skip
            results.append({**record, "new": created})
        return json_response(
            200,
            {"status": "COMPLETE", "results": results, "startedAt": _now(), "completedAt": _now()},
        )

    def _patch(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        kind, object_id = match.group(1), match.group(2)
        record = self.objects[kind].get(object_id)
        if record is None:
            return _error(404, "OBJECT_NOT_FOUND", f"{kind} {object_id} not found")
        props = json.loads(request.content).get("properties", {})
        problem = self._invalid(kind, props)
        if problem:
            return problem
        record["properties"].update(props)
        record["updatedAt"] = _now()
        self.record(request, entity=f"{kind}/{object_id}")
        return json_response(200, record)

    def _get(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        record = self.objects[match.group(1)].get(match.group(2))
        if record is None:
            return _error(404, "OBJECT_NOT_FOUND", "Object not found")
        return json_response(200, record)

    def _associate(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        contact, company = match.group(1), match.group(2)
        if contact not in self.objects["contacts"] or company not in self.objects["companies"]:
            return _error(404, "OBJECT_NOT_FOUND", "Object not found")
        self.associations.add((contact, company))
        self.record(request, entity=f"contacts/{contact}", key=f"company={company}")
        return json_response(
            200,
            {
                "status": "COMPLETE",
                "results": [
                    {
                        "from": {"id": contact},
                        "to": {"id": company},
                        "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 279}],
                    }
                ],
            },
        )

    def contacts(self) -> list[dict[str, str]]:
        """Every contact's properties (for consistency checks)."""
        with self.lock:
            return [dict(r["properties"], id=r["id"]) for r in self.objects["contacts"].values()]
