"""An in-process HubSpot (CRM v3 objects, batch upsert, v4 default associations, contact
merges with their webhook).

Follows HubSpot's published shapes: batch upsert by a unique `idProperty`, string property
values, numeric-string ids, `{"status": "error", "category": …}` errors. Unknown properties
and invalid emails are refused with 400 VALIDATION_ERROR, as HubSpot does. A merge
(`POST /crm/v3/objects/contacts/merge`) keeps the primary contact, fills its empty properties
from the merged one, lists the merged id in `hs_merged_object_ids`, answers reads of the
merged id with the primary, and queues a `contact.merge` notification signed with the app's
client secret (v3 signature) for `deliver_webhooks`.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from synchub.connectors.hubspot.webhooks import signature_v3
from synchub.connectors.oauth_sandbox import SandboxAuthServer
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
SANDBOX_CLIENT_SECRET = "hs-sandbox-client-secret"  # noqa: S105 - the sandbox app's secret
SANDBOX_CLIENT_ID = "hs-sandbox-client"
OAUTH_PATHS = ("/oauth/authorize", "/oauth/v1/token")  # ADR 0023


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

    def __init__(
        self,
        *,
        token: str = "pat-sandbox",  # noqa: S107 - a sandbox token
        client_secret: str = SANDBOX_CLIENT_SECRET,
    ) -> None:
        super().__init__()
        self.token = token
        self.client_secret = client_secret  # the app's secret: signs webhook notifications
        self.portal_id, self.app_id = 62515, 1160452
        self.objects: dict[str, dict[str, dict[str, Any]]] = {"contacts": {}, "companies": {}}
        self.associations: set[tuple[str, str]] = set()
        self.merged_into: dict[str, str] = {}  # merged contact id -> the contact it became
        self.notifications: list[dict[str, Any]] = []  # events waiting for deliver_webhooks
        self._event_ids = itertools.count(1)
        self._next_id = 1000
        self.oauth = SandboxAuthServer(
            client_id=SANDBOX_CLIENT_ID, client_secret=client_secret, client_auth="body",
            rotate_refresh_tokens=False, prefix="hs-",
        )  # refresh tokens last until the app is uninstalled  # fmt: skip
        self.route("GET", OAUTH_PATHS[0], self.oauth.authorize)
        self.route("POST", OAUTH_PATHS[1], self._token)
        self.route("POST", r"/crm/v3/objects/contacts/merge", self._merge)
        self.route("POST", r"/crm/v3/objects/(contacts|companies)/batch/upsert", self._upsert)
        self.route("PATCH", r"/crm/v3/objects/(contacts|companies)/(\d+)", self._patch)
        self.route("GET", r"/crm/v3/objects/(contacts|companies)/(\d+)", self._get)
        self.route(
            "PUT",
            r"/crm/v4/objects/contact/(\d+)/associations/default/company/(\d+)",
            self._associate,
        )

    def to_state(self) -> dict[str, Any]:
        """Records, associations, merges and the id counters (notifications not yet sent
        belong to the process that would send them, and are not kept)."""
        with self.lock:
            event_id = next(self._event_ids)
            self._event_ids = itertools.count(event_id)
            return {
                "objects": self.objects,
                "associations": sorted(self.associations),
                "merged_into": self.merged_into,
                "next_id": self._next_id,
                "next_event_id": event_id,
                "oauth": self.oauth.to_state(),
            }

    def from_state(self, state: dict[str, Any]) -> None:
        """Continue a kept portal: ids go on from where it stopped."""
        with self.lock:
            self.objects = {kind: dict(state["objects"].get(kind, {})) for kind in self.objects}
            self.associations = {(c, co) for c, co in state["associations"]}
            self.merged_into = dict(state["merged_into"])
            self._next_id = int(state["next_id"])
            self._event_ids = itertools.count(int(state["next_event_id"]))
            self.oauth.from_state(state.get("oauth", {}))

    def authorised(self, request: httpx.Request) -> bool:
        """Private-app or OAuth access tokens come as a Bearer header."""
        if request.url.path in OAUTH_PATHS:
            return True  # the token endpoint checks the client itself
        bearer = request.headers.get("Authorization") == f"Bearer {self.token}"
        return bool(bearer or self.oauth.accepts(request))

    def _token(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        self._unsaved = True  # issued tokens are kept with the portal
        return self.oauth.token(request, match)

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
        kind, object_id = match.group(1), match.group(2)
        if kind == "contacts":
            object_id = self._current_id(object_id)
        record = self.objects[kind].get(object_id)
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

    # -- merges and their notifications ------------------------------------------------------

    def _current_id(self, contact_id: str) -> str:
        seen = set()
        while contact_id in self.merged_into and contact_id not in seen:
            seen.add(contact_id)
            contact_id = self.merged_into[contact_id]
        return contact_id

    def _merge(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        primary, merged = body.get("primaryObjectId"), body.get("objectIdToMerge")
        if not isinstance(primary, str) or not isinstance(merged, str):
            return _error(
                400, "VALIDATION_ERROR", "primaryObjectId and objectIdToMerge are required"
            )
        problem = self._merge_problem(primary, merged)
        if problem:
            return problem
        record = self._apply_merge(primary, merged)
        self.record(request, entity=f"contacts/{primary}", key=f"merged={merged}")
        return json_response(200, record)

    def _merge_problem(self, primary: str, merged: str) -> httpx.Response | None:
        contacts = self.objects["contacts"]
        if primary not in contacts or merged not in contacts:
            return _error(404, "OBJECT_NOT_FOUND", "Object not found")
        if primary == merged:
            return _error(400, "VALIDATION_ERROR", "Cannot merge an object with itself")
        return None

    def create_contact(self, properties: dict[str, str]) -> str:
        """A contact made by a person in HubSpot (not through the API); its id."""
        with self.lock:
            self._next_id += 1
            contact = str(self._next_id)
            self.objects["contacts"][contact] = {"id": contact, "properties": dict(properties),
                                                 "createdAt": _now(), "updatedAt": _now(),
                                                 "archived": False}  # fmt: skip
            self.changed()
            return contact

    def merge_contacts(
        self, primary: str, merged: str, *, new_object: bool = False
    ) -> dict[str, Any]:
        """Merge contact `merged` into `primary`, as a person in HubSpot's UI would; with
        `new_object` the result gets a new id (HubSpot does that in some cases)."""
        with self.lock:
            problem = self._merge_problem(primary, merged)
            if problem is not None:
                raise ValueError(json.loads(problem.content)["message"])
            result = self._apply_merge(primary, merged, new_object=new_object)
            self.changed()
            return result

    def _apply_merge(
        self, primary: str, merged: str, *, new_object: bool = False
    ) -> dict[str, Any]:
        contacts = self.objects["contacts"]
        keep, gone = contacts[primary], contacts.pop(merged)
        moved = 0
        for name, value in gone["properties"].items():
            if value and not keep["properties"].get(name) and name in PROPERTIES["contacts"]:
                keep["properties"][name] = value
                moved += 1
        ids = [i for i in keep["properties"].get("hs_merged_object_ids", "").split(";") if i]
        keep["properties"]["hs_merged_object_ids"] = ";".join([*ids, merged])
        keep["updatedAt"] = _now()
        result = primary
        if new_object:
            self._next_id += 1
            result = str(self._next_id)
            contacts.pop(primary)
            keep["id"] = result
            contacts[result] = keep
            self.merged_into[primary] = result
            self.associations = {(result if c == primary else c, co) for c, co in self.associations}
        self.merged_into[merged] = result
        self.associations = {(result if c == merged else c, co) for c, co in self.associations}
        self.notifications.append(
            {
                "eventId": next(self._event_ids),
                "subscriptionId": 4321,
                "portalId": self.portal_id,
                "appId": self.app_id,
                "occurredAt": int(time.time() * 1000),
                "subscriptionType": "contact.merge",
                "attemptNumber": 0,
                "objectId": int(result),
                "changeFlag": "MERGED",
                "changeSource": "CRM_UI",
                "primaryObjectId": int(primary),
                "mergedObjectIds": [int(merged)],
                "newObjectId": int(result),
                "numberOfPropertiesMoved": moved,
            }
        )
        return dict(keep)

    def deliver_webhooks(
        self, http: httpx.Client, url: str, *, now_ms: int | None = None
    ) -> list[httpx.Response]:
        """POST the waiting notifications as one batch (a JSON array), signed as HubSpot
        signs (v3); return the responses. Nothing waiting: nothing sent."""
        with self.lock:
            pending, self.notifications = self.notifications, []
        if not pending:
            return []
        body = json.dumps(pending).encode()
        timestamp = str(now_ms if now_ms is not None else int(time.time() * 1000))
        headers = {
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": signature_v3(self.client_secret, method="POST", uri=url,
                                                   body=body, timestamp=timestamp),
            "X-HubSpot-Request-Timestamp": timestamp,
        }  # fmt: skip
        return [http.post(url, content=body, headers=headers)]
