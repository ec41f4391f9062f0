"""The Intercom sandbox against Intercom's own OpenAPI document (REST API 2.16): every request
the connector sends and every answer the sandbox gives is validated against the schemas in
`tests/data/intercom/contacts.2.16.json` (origin and licence beside it), so the sandbox cannot
drift into a fiction. Contacts, lists and merge history are checked closed (no field Intercom
does not document); answers with a status the document does not list must be `error.list`."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator, ValidationError

from synchub.connectors.base import Attempt, OutboundEvent
from synchub.connectors.intercom.client import IntercomClient
from synchub.connectors.intercom.pull import ContactCursor, ContactPull
from synchub.connectors.intercom.push import IntercomDestination
from synchub.connectors.intercom.sandbox import IntercomSandbox
from synchub.core.clock import FixedClock
from synchub.core.errors import RejectedError

SPEC = json.loads((Path(__file__).parents[1] / "data/intercom/contacts.2.16.json").read_text())
CLOSED = {"contact", "contact_list", "cursor_pages", "merge_history_item", "merge_history_list",
          "error"}  # fmt: skip


def _json_schema(node: Any, name: str | None = None) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema: `nullable` becomes a null alternative."""
    if isinstance(node, list):
        return [_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _json_schema(v) for k, v in node.items()
           if k not in ("nullable", "example", "examples") and not k.startswith("x-")}  # fmt: skip
    if name in CLOSED and "properties" in out:
        out["additionalProperties"] = False
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


COMPONENTS = {n: _json_schema(s, n) for n, s in SPEC["components"]["schemas"].items()}


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    root = {"components": {"schemas": COMPONENTS}, **_json_schema(schema)}
    return Draft202012Validator(root)


def _operation(request: httpx.Request) -> dict[str, Any]:
    for template, methods in SPEC["paths"].items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path) and request.method.lower() in methods:
            op: dict[str, Any] = methods[request.method.lower()]
            return op
    raise AssertionError(f"{request.method} {request.url.path} is not in the document")


class Recorder(httpx.BaseTransport):
    """Sends to the sandbox and keeps every exchange."""

    def __init__(self, box: IntercomSandbox) -> None:
        self.box, self.exchanges = box, []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        response = self.box.handle(request)
        self.exchanges.append((request, response))
        return response


def _check(request: httpx.Request, response: httpx.Response) -> None:
    op = _operation(request)
    version = request.headers.get("Intercom-Version")
    _validator({"$ref": "#/components/schemas/intercom_version"}).validate(version)
    assert request.headers["Authorization"].startswith("Bearer ")
    if request.content:
        body_schema = op["requestBody"]["content"]["application/json"]["schema"]
        _validator(body_schema).validate(json.loads(request.content))
    documented = op["responses"].get(str(response.status_code))
    if documented is None or "content" not in documented:
        assert response.status_code >= 400, f"undocumented success {response.status_code}"
        schema: dict[str, Any] = {"$ref": "#/components/schemas/error"}
    else:
        schema = documented["content"]["application/json"]["schema"]
    _validator(schema).validate(response.json())


@pytest.fixture
def traffic() -> tuple[IntercomSandbox, Recorder, IntercomClient]:
    clock = FixedClock(datetime(2026, 12, 3, 1, 0, tzinfo=UTC))
    box = IntercomSandbox(clock=clock)
    recorder = Recorder(box)
    client = IntercomClient(httpx.Client(transport=recorder), token=box.token, clock=clock)
    return box, recorder, client


def test_the_connector_and_the_sandbox_speak_the_document(
    traffic: tuple[IntercomSandbox, Recorder, IntercomClient],
) -> None:
    box, recorder, client = traffic
    dest = IntercomDestination("intercom", client)
    customer = {"id": "cus_1", "email": "ana@kowhai.nz", "name": "Ana", "phone": "+6421000000",
                "company_name": "Kōwhai", "billing_status": "active"}  # fmt: skip
    event = OutboundEvent(id="e1", type="customer.created", subject="cus_1",
                          time=datetime(2026, 12, 3, tzinfo=UTC), payload={"object": customer},
                          traceparent=None, links={})  # fmt: skip
    user = dest.deliver(event, Attempt("d1", "k1", 1)).links[0].external_id  # search + create
    dest.deliver(event, Attempt("d1", "k1", 2))  # search + update
    for n in range(5):
        box.create_contact(email=f"p{n}@kowhai.nz")
    assert sum(len(f) for f, _ in ContactPull(client, per_page=2).pages(ContactCursor())) == 6
    lead = box.create_contact(role="lead", email="lead@kowhai.nz")
    client._call("POST", "/contacts/merge", {"from": lead, "into": user})
    assert client.merged_into(user) == [lead]
    with pytest.raises(RejectedError):
        client.get_contact(lead)  # 410, merged
    with pytest.raises(RejectedError):
        client.create_contact({"role": "user", "external_id": "cus_1"})  # 409
    with pytest.raises(RejectedError):
        client.search_contacts({"field": "updated_at", "operator": ">=", "value": 1})  # 400
    statuses = {r.status_code for _, r in recorder.exchanges}
    assert statuses == {200, 400, 409, 410}
    for request, response in recorder.exchanges:
        _check(request, response)
    assert len(recorder.exchanges) >= 12


Traffic = tuple[IntercomSandbox, Recorder, IntercomClient]


def test_the_check_fails_on_drift(traffic: Traffic) -> None:
    """The checks can fail: an undocumented field, a wrong type, a non-list error."""
    box, recorder, client = traffic
    contact = box.create_contact(email="d@kowhai.nz")
    client.get_contact(contact)
    request, response = recorder.exchanges[-1]
    body = response.json()
    for drifted in ({**body, "nickname": "x"}, {**body, "created_at": "yesterday"},
                    {**body, "tags": {"type": "list", "data": "none"}}):  # fmt: skip
        with pytest.raises(ValidationError):
            _check(request, httpx.Response(200, json=drifted))
    with pytest.raises(ValidationError):
        _check(request, httpx.Response(409, json={"message": "conflict"}))
