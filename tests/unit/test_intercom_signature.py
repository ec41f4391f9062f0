"""Intercom's `X-Hub-Signature` (HMAC-SHA1 of the raw body, hex) and its envelope."""

from __future__ import annotations

import json

import pytest

from synchub.connectors.intercom.webhooks import parse_notification, sign, verify_signature
from synchub.core.errors import SignatureError, ValidationError

# The vector in shared/vendor/FACTS.md §8.
BODY = (
    b'{"type":"notification_event","topic":"contact.user.created","data":{"type":'
    b'"notification_event_data","item":{"type":"contact","id":"abc"}}}'
)
HEADER = "sha1=f5178102cba5d3eee335d280d2ea4faf6d5f21da"


def test_the_published_vector_verifies() -> None:
    assert sign("intercom_client_secret", BODY) == HEADER
    verify_signature(secrets=["intercom_client_secret"], body=BODY, header=HEADER)
    verify_signature(secrets=["old", "intercom_client_secret"], body=BODY, header=HEADER.upper()
                     .replace("SHA1=", "sha1="))  # fmt: skip


@pytest.mark.parametrize(
    ("body", "header", "secret"),
    [
        (BODY, HEADER, "another_secret"),  # wrong secret
        (BODY.replace(b"abc", b"abd"), HEADER, "intercom_client_secret"),  # tampered body
        (BODY + b"\n", HEADER, "intercom_client_secret"),  # re-serialised / trailing byte
        (BODY, HEADER[:-1] + "0", "intercom_client_secret"),  # tampered signature
        (BODY, HEADER.replace("sha1=", "sha256="), "intercom_client_secret"),  # other scheme
        (BODY, HEADER.removeprefix("sha1="), "intercom_client_secret"),  # no scheme
        (BODY, None, "intercom_client_secret"),  # missing header
        (BODY, "sha1=", "intercom_client_secret"),  # empty digest
    ],
)
def test_bad_signatures_are_refused(body: bytes, header: str | None, secret: str) -> None:
    with pytest.raises(SignatureError):
        verify_signature(secrets=[secret], body=body, header=header)


def test_no_secret_verifies_nothing() -> None:
    with pytest.raises(SignatureError):
        verify_signature(secrets=[], body=BODY, header=HEADER)


def test_the_envelope_is_parsed() -> None:
    item = {"type": "contact", "id": "u1"}
    note = {"type": "notification_event", "id": "notif_1", "topic": "contact.merged",
            "created_at": 1713533523, "data": {"item": item}}  # fmt: skip
    parsed = parse_notification(json.dumps(note).encode())
    assert (parsed.id, parsed.merge_entity, parsed.item["id"]) == ("notif_1", "customer", "u1")
    assert not parsed.is_contact_change
    created = parse_notification(json.dumps({**note, "topic": "contact.user.created"}).encode())
    assert (created.merge_entity, created.is_contact_change) == (None, True)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"type": "event", "id": "n", "topic": "ping", "data": {"item": {}}}',
        b'{"type": "notification_event", "topic": "ping", "data": {"item": {}}}',
        b'{"type": "notification_event", "id": "n", "topic": "ping", "data": {}}',
        b'{"type": "notification_event", "id": "n", "topic": "contact.merged", "data":'
        b' {"item": {"type": "contact"}}}',
    ],
)
def test_other_shapes_are_refused(body: bytes) -> None:
    with pytest.raises(ValidationError):
        parse_notification(body)
