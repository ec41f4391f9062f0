"""An in-process Intercom (REST API 2.16): contacts, search, merges and their webhook.

Follows the published document (checked by tests/contract/test_intercom_contract.py):
`contact` objects with Intercom's fields, `contact_list` with cursor `pages`, `error.list`
errors. Like Intercom it refuses a second contact with the same `external_id` (or a second
user with the same email) with 409 naming the existing id, refuses unknown custom attributes
and date comparisons other than `=`, `<`, `>`, and leaves merged contacts out of search
(a read of one answers 410 with a `Link` to the survivor). The order of contacts that share a
sort value is Intercom's own (here: a fixed hash of the id), not the id. With
`index_delay_seconds` a contact appears in search only that long after it was created, as
Intercom's search index lags. A merge (`POST /contacts/merge`, or `merge_contacts` as a person
would) keeps the user, records the lead in its merge history and queues a `contact.merged`
notification (item: the survivor) signed with the app's client secret.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
from collections.abc import Callable
from typing import Any

import httpx

from synchub.connectors.intercom.webhooks import sign
from synchub.connectors.sandbox import Sandbox, json_response
from synchub.core.clock import Clock, SystemClock

SANDBOX_TOKEN = "intercom-sandbox-token"  # noqa: S105 - a sandbox token
SANDBOX_CLIENT_SECRET = "intercom-sandbox-client-secret"  # noqa: S105 - the sandbox app's
VERSIONS = frozenset({"1.0", "1.1", "1.2", "1.3", "1.4"} | {f"2.{n}" for n in range(17)})
DATA_ATTRIBUTES = frozenset({"company_name", "product_account_id", "billing_status"})
WRITABLE = ("role", "external_id", "email", "phone", "name", "avatar", "signed_up_at",
            "last_seen_at", "owner_id", "unsubscribed_from_emails")  # fmt: skip
DATE_FIELDS = frozenset({"created_at", "updated_at", "signed_up_at", "last_seen_at"})
SEARCHABLE = frozenset({"id", "external_id", "email", "role", "name", "phone"}) | DATE_FIELDS
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    body = {"type": "error.list", "request_id": "00000000-0000-4000-8000-000000000000",
            "errors": [{"code": code, "message": message}]}  # fmt: skip
    return json_response(status, body, headers)


def _conflict(existing_id: str) -> httpx.Response:
    message = f"A contact matching those details already exists with id={existing_id}"
    return _error(409, "conflict", message)


def _list(url: str) -> dict[str, Any]:
    return {"type": "list", "data": [], "url": url, "total_count": 0, "has_more": False}


class IntercomSandbox(Sandbox):
    """An Intercom workspace with contacts in memory."""

    vendor = "intercom"

    def __init__(
        self,
        *,
        token: str = SANDBOX_TOKEN,
        client_secret: str = SANDBOX_CLIENT_SECRET,
        clock: Clock | None = None,
        index_delay_seconds: int = 0,
    ) -> None:
        super().__init__()
        self.token = token
        self.client_secret = client_secret
        self.clock = clock or SystemClock()
        self.index_delay_seconds = index_delay_seconds
        self.workspace_id, self.app_id = "ecahpwf5", "ecahpwf5"
        self.contacts: dict[str, dict[str, Any]] = {}
        self.merged_into: dict[str, str] = {}  # merged contact id -> the contact it became
        self.merge_history: dict[str, list[dict[str, Any]]] = {}
        self.notifications: list[dict[str, Any]] = []
        self.versions_seen: set[str] = set()
        self._next_id = 0x64A000000000000000000000
        self._notif_ids = itertools.count(1)
        self.route("POST", r"/contacts", self._create)
        self.route("POST", r"/contacts/search", self._search)
        self.route("POST", r"/contacts/merge", self._merge)
        self.route("GET", r"/contacts/([0-9a-f]+)/merge_history", self._history)
        self.route("GET", r"/contacts/([0-9a-f]+)", self._get)
        self.route("PUT", r"/contacts/([0-9a-f]+)", self._update)

    # -- state kept across processes ---------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Contacts, merges and the id counters (unsent notifications stay with their process)."""
        with self.lock:
            notif = next(self._notif_ids)
            self._notif_ids = itertools.count(notif)
            return {"contacts": self.contacts, "merged_into": self.merged_into,
                    "merge_history": self.merge_history, "next_id": self._next_id,
                    "next_notification": notif}  # fmt: skip

    def from_state(self, state: dict[str, Any]) -> None:
        """Continue a kept workspace: ids go on from where it stopped."""
        with self.lock:
            self.contacts = dict(state["contacts"])
            self.merged_into = dict(state["merged_into"])
            self.merge_history = {k: list(v) for k, v in state["merge_history"].items()}
            self._next_id = int(state["next_id"])
            self._notif_ids = itertools.count(int(state["next_notification"]))

    # -- credentials and version -------------------------------------------------------------

    def authorised(self, request: httpx.Request) -> bool:
        """Access tokens come as a Bearer header."""
        return bool(request.headers.get("Authorization") == f"Bearer {self.token}")

    def unauthorised(self) -> httpx.Response:
        """Intercom's reply to a missing or wrong token."""
        return _error(401, "unauthorized", "Access Token Invalid")

    def respond(self, request: httpx.Request) -> httpx.Response:
        """Intercom's answer; an unknown `Intercom-Version` is refused before anything else."""
        version = request.headers.get("Intercom-Version")
        if version is not None:
            with self.lock:
                self.versions_seen.add(version)
            if version not in VERSIONS:
                return _error(400, "intercom_version_invalid", f"Version {version} is invalid")
        return super().respond(request)

    # -- contacts ----------------------------------------------------------------------------

    def _now(self) -> int:
        return int(self.clock.now().timestamp())

    def _new_contact(self, contact_id: str, now: int) -> dict[str, Any]:
        return {
            "type": "contact", "id": contact_id, "external_id": None,
            "workspace_id": self.workspace_id, "role": "user", "email": None,
            "email_domain": None, "phone": None, "name": None, "owner_id": None,
            "has_hard_bounced": False, "marked_email_as_spam": False,
            "unsubscribed_from_emails": False, "created_at": now, "updated_at": now,
            "signed_up_at": None, "last_seen_at": None, "last_replied_at": None,
            "last_contacted_at": None, "last_email_opened_at": None,
            "last_email_clicked_at": None, "language_override": None, "browser": None,
            "browser_version": None, "browser_language": None, "os": None,
            "android_app_name": None, "android_app_version": None, "android_device": None,
            "android_os_version": None, "android_sdk_version": None,
            "android_last_seen_at": None, "ios_app_name": None, "ios_app_version": None,
            "ios_device": None, "ios_os_version": None, "ios_sdk_version": None,
            "ios_last_seen_at": None, "custom_attributes": {}, "avatar": None,
            "tags": _list(f"/contacts/{contact_id}/tags"),
            "notes": _list(f"/contacts/{contact_id}/notes"),
            "companies": _list(f"/contacts/{contact_id}/companies"),
            "location": {"type": "location", "country": None, "region": None, "city": None,
                         "country_code": None, "continent_code": None},
            "social_profiles": {"type": "list", "data": []},
        }  # fmt: skip

    def _invalid(self, body: Any) -> httpx.Response | None:
        if not isinstance(body, dict):
            return _error(400, "parameter_invalid", "The body must be a JSON object")
        if body.get("role", "user") not in ("user", "lead"):
            return _error(400, "parameter_invalid", "Role must be user or lead")
        email = body.get("email")
        if email is not None and (not isinstance(email, str) or not EMAIL.match(email)):
            return _error(400, "parameter_invalid", "Email is invalid")
        attrs = body.get("custom_attributes") or {}
        if not isinstance(attrs, dict):
            return _error(400, "parameter_invalid", "custom_attributes must be an object")
        unknown = sorted(set(attrs) - DATA_ATTRIBUTES)
        if unknown:
            message = f"Custom attribute '{unknown[0]}' does not exist"
            return _error(400, "parameter_not_found", message)
        return None

    def _clash(self, body: dict[str, Any], own_id: str | None) -> dict[str, Any] | None:
        for other in self.contacts.values():
            if other["id"] == own_id:
                continue
            if body.get("external_id") and other["external_id"] == body["external_id"]:
                return other
            role = body.get("role") or (self.contacts[own_id]["role"] if own_id else "user")
            email = (body.get("email") or "").lower()
            same_email = bool(email) and (other["email"] or "").lower() == email
            if same_email and role == "user" and other["role"] == "user":
                return other
        return None

    def _apply(self, contact: dict[str, Any], body: dict[str, Any], now: int) -> None:
        for name in WRITABLE:
            if name in body:
                contact[name] = body[name]
        if contact.get("email"):
            contact["email_domain"] = contact["email"].rpartition("@")[2]
        contact["custom_attributes"].update(body.get("custom_attributes") or {})
        contact["updated_at"] = now

    def _create(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        problem = self._invalid(body)
        if problem is not None:
            return problem
        identified = body.get("email") or body.get("external_id")
        if body.get("role", "user") == "user" and not identified:
            return _error(400, "parameter_not_found", "A user needs an email or an external_id")
        clash = self._clash(body, None)
        if clash is not None:
            return _conflict(clash["id"])
        self._next_id += 1
        contact_id, now = f"{self._next_id:024x}", self._now()
        contact = self._new_contact(contact_id, now)
        self._apply(contact, body, now)
        self.contacts[contact_id] = contact
        key = f"external_id={body['external_id']}" if body.get("external_id") else None
        self.record(request, entity=f"contacts/{contact_id}", key=key, created=True)
        return json_response(200, contact)

    def _update(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        contact_id = match.group(1)
        contact = self.contacts.get(contact_id)
        if contact is None:
            return _error(404, "not_found", "User Not Found")
        body = json.loads(request.content or b"{}")
        problem = self._invalid(body)
        if problem is not None:
            return problem
        clash = self._clash(body, contact_id)
        if clash is not None:
            return _conflict(clash["id"])
        self._apply(contact, body, self._now())
        self.record(request, entity=f"contacts/{contact_id}")
        return json_response(200, contact)

    def _get(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        contact_id = match.group(1)
        if contact_id in self.merged_into:
            final = self._current_id(contact_id)
            message = (
                "This contact has been merged. See the 'Link' header for the canonical contact."
            )
            link = f'</contacts/{final}>; rel="canonical"'
            return _error(410, "contact_merged", message, Link=link)
        contact = self.contacts.get(contact_id)
        if contact is None:
            return _error(404, "not_found", "User Not Found")
        return json_response(200, contact)

    def _current_id(self, contact_id: str) -> str:
        seen: set[str] = set()
        while contact_id in self.merged_into and contact_id not in seen:
            seen.add(contact_id)
            contact_id = self.merged_into[contact_id]
        return contact_id

    # -- search ------------------------------------------------------------------------------

    def _tie(self, contact_id: str) -> str:
        """Intercom's order among equal sort values is its own: a fixed hash, not the id."""
        return hashlib.sha256(f"{self.workspace_id}:{contact_id}".encode()).hexdigest()

    def _search(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        if not isinstance(body, dict) or not isinstance(body.get("query"), dict):
            return _error(400, "parameter_not_found", "query is required")
        try:
            test = _predicate(body["query"])
        except ValueError as exc:
            return _error(400, "invalid_field", str(exc))
        sort = body.get("sort") or {}
        field = sort.get("field", "created_at")
        order = sort.get("order", "descending")
        if order not in ("ascending", "descending"):
            return _error(400, "invalid_sort_order", f"Invalid sort order {order}")
        paging = body.get("pagination") or {}
        per_page = int(paging.get("per_page") or 50)
        if not 1 <= per_page <= 150:
            return _error(400, "per_page_invalid", "per_page must be between 1 and 150")
        visible_before = self._now() - self.index_delay_seconds
        delayed = self.index_delay_seconds > 0
        hits = [c for c in self.contacts.values()
                if test(c) and not (delayed and c["created_at"] > visible_before)]  # fmt: skip
        hits.sort(key=lambda c: (_sort_value(c.get(field)), self._tie(c["id"])),
                  reverse=order == "descending")  # fmt: skip
        return json_response(200, self._page(hits, field, order, per_page, paging))

    def _page(self, hits: list[dict[str, Any]], field: str, order: str, per_page: int,
              paging: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        after = paging.get("starting_after")
        if after:
            mark = json.loads(base64.urlsafe_b64decode(after.encode()))
            key = (tuple(mark[0]), mark[1])
            beyond: Callable[[dict[str, Any]], bool] = (
                (lambda c: (_sort_value(c.get(field)), self._tie(c["id"])) > key)
                if order == "ascending"
                else (lambda c: (_sort_value(c.get(field)), self._tie(c["id"])) < key)
            )
            rest = [c for c in hits if beyond(c)]
        else:
            rest = hits
        page, more = rest[:per_page], len(rest) > per_page
        total_pages = max(1, -(-len(hits) // per_page))
        done = len(hits) - len(rest)
        pages: dict[str, Any] = {"type": "pages", "page": done // per_page + 1,
                                 "per_page": per_page, "total_pages": total_pages}  # fmt: skip
        if more:
            last = page[-1]
            mark = [list(_sort_value(last.get(field))), self._tie(last["id"])]
            token = base64.urlsafe_b64encode(json.dumps(mark).encode()).decode()
            pages["next"] = {"per_page": per_page, "starting_after": token}
        return {"type": "list", "data": page, "total_count": len(hits), "pages": pages}

    # -- merges and their notifications ------------------------------------------------------

    def _merge_problem(self, source: Any, target: Any) -> httpx.Response | None:
        if not isinstance(source, str) or not isinstance(target, str):
            return _error(400, "parameter_not_found", "from and into are required")
        if source not in self.contacts or target not in self.contacts:
            return _error(404, "not_found", "User Not Found")
        if self.contacts[source]["role"] != "lead" or self.contacts[target]["role"] != "user":
            return _error(400, "invalid_merge", "Only a lead can be merged into a user")
        return None

    def _merge(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        source, target = body.get("from"), body.get("into")
        problem = self._merge_problem(source, target)
        if problem is not None:
            return problem
        survivor = self._apply_merge(str(source), str(target))
        self.record(request, entity=f"contacts/{target}", key=f"merged={source}")
        return json_response(200, survivor)

    def merge_contacts(self, lead_id: str, user_id: str) -> dict[str, Any]:
        """Merge a lead into a user, as a person in Intercom's inbox would."""
        with self.lock:
            problem = self._merge_problem(lead_id, user_id)
            if problem is not None:
                raise ValueError(json.loads(problem.content)["errors"][0]["message"])
            survivor = self._apply_merge(lead_id, user_id)
            self.changed()
            return survivor

    def _apply_merge(self, source: str, target: str) -> dict[str, Any]:
        now = self._now()
        gone, keep = self.contacts.pop(source), self.contacts[target]
        for name in ("email", "phone", "name"):
            if gone.get(name) and not keep.get(name):
                keep[name] = gone[name]
        for name, value in gone["custom_attributes"].items():
            keep["custom_attributes"].setdefault(name, value)
        keep["updated_at"] = now
        self.merged_into[source] = target
        entry = {"type": "merge_history", "source_contact_id": source,
                 "source_contact_role": gone["role"], "merged_at": now}  # fmt: skip
        self.merge_history.setdefault(target, []).append(entry)
        self.queue_notification("contact.merged", dict(keep))
        return dict(keep)

    def _history(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        contact = self.contacts.get(match.group(1))
        if contact is None or contact["role"] != "user":
            return _error(404, "not_found", "Contact not found")
        items = list(self.merge_history.get(contact["id"], []))
        if request.url.params.get("order", "desc") == "desc":
            items.reverse()
        return json_response(200, {"type": "list", "data": items, "has_more": False})

    def create_contact(self, **fields: Any) -> str:
        """A contact made by a person or by Intercom's messenger (not through the API)."""
        with self.lock:
            self._next_id += 1
            contact_id, now = f"{self._next_id:024x}", self._now()
            contact = self._new_contact(contact_id, now)
            self._apply(contact, fields, now)
            self.contacts[contact_id] = contact
            self.changed()
            return contact_id

    def queue_notification(self, topic: str, item: dict[str, Any]) -> dict[str, Any]:
        """Queue a notification in Intercom's envelope for `deliver_webhooks`."""
        now = self._now()
        note = {"type": "notification_event", "app_id": self.app_id,
                "data": {"type": "notification_event_data", "item": item}, "links": {},
                "id": f"notif_{next(self._notif_ids):08d}-sandbox", "topic": topic,
                "delivery_status": "pending", "delivery_attempts": 1, "delivered_at": 0,
                "first_sent_at": now, "created_at": now, "self": None}  # fmt: skip
        with self.lock:
            self.notifications.append(note)
        return note

    def deliver_webhooks(self, http: httpx.Client, url: str) -> list[httpx.Response]:
        """POST each waiting notification (one request each), signed as Intercom signs."""
        with self.lock:
            pending, self.notifications = self.notifications, []
        responses = []
        for note in pending:
            body = json.dumps(note).encode()
            headers = {"Content-Type": "application/json", "User-Agent": "Intercom-Webhooks",
                       "X-Hub-Signature": sign(self.client_secret, body)}  # fmt: skip
            responses.append(http.post(url, content=body, headers=headers))
        return responses


def _sort_value(value: Any) -> tuple[int, Any]:
    """Nulls first, then by value (numbers and text never compared with each other)."""
    if value is None:
        return (0, 0)
    return (1, value) if isinstance(value, int | float) else (2, str(value))


def _predicate(query: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """A filter for a single or a nested AND/OR search query (ValueError when unsupported)."""
    operator = query.get("operator")
    if operator in ("AND", "OR"):
        parts = [_predicate(q) for q in query.get("value") or []]
        if not parts:
            raise ValueError("AND/OR need a list of filters")
        combine = all if operator == "AND" else any
        return lambda c: combine(p(c) for p in parts)
    field, value = query.get("field"), query.get("value")
    if field not in SEARCHABLE:
        raise ValueError(f"{field} is not a searchable field")
    if field in DATE_FIELDS and operator not in ("=", "<", ">"):
        raise ValueError(f"Operator {operator} is not supported for date field {field}")
    tests: dict[str, Callable[[Any], bool]] = {
        "=": lambda v: v == value,
        "!=": lambda v: v != value,
        "<": lambda v: v is not None and v < value,
        ">": lambda v: v is not None and v > value,
        "<=": lambda v: v is not None and v <= value,
        ">=": lambda v: v is not None and v >= value,
        "IN": lambda v: v in (value or []),
        "NIN": lambda v: v not in (value or []),
        "~": lambda v: isinstance(v, str) and str(value) in v,
        "!~": lambda v: not (isinstance(v, str) and str(value) in v),
        "^": lambda v: isinstance(v, str) and v.startswith(str(value)),
        "$": lambda v: isinstance(v, str) and v.endswith(str(value)),
    }
    if operator not in tests:
        raise ValueError(f"Operator {operator} is not supported")
    test = tests[operator]
    return lambda c: bool(test(c.get(field)))
