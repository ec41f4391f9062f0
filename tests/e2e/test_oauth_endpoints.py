"""The OAuth endpoints over HTTP: formats, client authentication, caching headers, metadata."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import synchub.auth.store  # noqa: F401 - registers the auth tables (until env.py imports it)
from synchub.api.oauth import router
from synchub.auth.model import SCOPES
from synchub.auth.service import AuthorizationServer
from synchub.core.clock import FixedClock
from synchub.db import Database

ISSUER = "https://hub.example.test"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class Hub(SimpleNamespace):
    """The parts of the hub the OAuth router uses."""


@pytest.fixture
def audit() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def server(db: Database, clock: FixedClock, audit: list[dict[str, Any]]) -> AuthorizationServer:
    return AuthorizationServer(
        db,
        kek=os.urandom(32),
        clock=clock,
        issuer=ISSUER,
        audit=lambda conn, **entry: audit.append(entry),
    )


@pytest.fixture
def http(db: Database, clock: FixedClock, server: AuthorizationServer) -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(router)
    app.state.hub = Hub(
        auth=server, db=db, clock=clock, settings=SimpleNamespace(public_url=ISSUER)
    )
    with TestClient(app) as client:
        yield client


@pytest.fixture
def partner(server: AuthorizationServer, db: Database) -> tuple[str, str]:
    with db.write() as conn:
        return server.create_client(
            conn,
            name="Partner",
            scopes=["read:customers", "read:invoices"],
            workspace="live",
            actor="test",
        )


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return {**FORM, "Authorization": "Basic " + base64.b64encode(raw).decode()}


def get_token(http: TestClient, partner: tuple[str, str], scope: str = "") -> str:
    body = "grant_type=client_credentials" + (f"&scope={quote(scope)}" if scope else "")
    answer = http.post("/oauth/token", content=body, headers=basic(*partner))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def assert_oauth_error(answer: Any, status: int, error: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert set(answer.json()) == {"error", "error_description"}
    assert answer.json()["error"] == error
    assert answer.headers["cache-control"] == "no-store"
    if status == 401:
        assert answer.headers["www-authenticate"] == 'Basic realm="synchub"'


def test_client_credentials_get_a_bearer_token_that_is_never_cached(
    http: TestClient, server: AuthorizationServer, partner: tuple[str, str]
) -> None:
    answer = http.post(
        "/oauth/token",
        content="grant_type=client_credentials&scope=read%3Ainvoices",
        headers=basic(*partner),
    )
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert (body["token_type"], body["expires_in"], body["scope"]) == (
        "Bearer",
        600,
        "read:invoices",
    )
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["pragma"] == "no-cache"
    assert server.verify_token(body["access_token"]).scopes == {"read:invoices"}


def test_repeat_token_requests_keep_working(http: TestClient, partner: tuple[str, str]) -> None:
    tokens = {get_token(http, partner) for _ in range(3)}
    assert len(tokens) == 3


def test_credentials_are_form_url_decoded_from_basic(
    http: TestClient, partner: tuple[str, str]
) -> None:
    client_id, secret = partner
    everything_encoded = "".join(f"%{b:02X}" for b in secret.encode())
    raw = f"{client_id}:{everything_encoded}".encode()
    headers = {**FORM, "Authorization": "Basic " + base64.b64encode(raw).decode()}
    answer = http.post("/oauth/token", content="grant_type=client_credentials", headers=headers)
    assert answer.status_code == 200, answer.text


def test_a_secret_with_a_colon_is_a_wrong_secret_not_a_malformed_header(
    http: TestClient, partner: tuple[str, str]
) -> None:
    client_id, secret = partner
    raw = f"{client_id}:{secret}:extra".encode()
    headers = {**FORM, "Authorization": "Basic " + base64.b64encode(raw).decode()}
    answer = http.post("/oauth/token", content="grant_type=client_credentials", headers=headers)
    assert_oauth_error(answer, 401, "invalid_client")
    assert answer.json()["error_description"] == "client authentication failed"


@pytest.mark.parametrize(
    "headers",
    [FORM, {**FORM, "Authorization": "Bearer abc"}, {**FORM, "Authorization": "Basic !!"}],
)
def test_missing_or_unusable_client_authentication_is_invalid_client(
    http: TestClient, headers: dict[str, str]
) -> None:
    answer = http.post("/oauth/token", content="grant_type=client_credentials", headers=headers)
    assert_oauth_error(answer, 401, "invalid_client")


def test_a_wrong_secret_is_invalid_client(
    http: TestClient, partner: tuple[str, str], audit: list[dict[str, Any]]
) -> None:
    answer = http.post(
        "/oauth/token",
        content="grant_type=client_credentials",
        headers=basic(partner[0], partner[1] + "x"),
    )
    assert_oauth_error(answer, 401, "invalid_client")
    assert audit[-1]["action"] == "api_client.authentication_failed"  # committed, not rolled back


@pytest.mark.parametrize("with_basic", [False, True])
def test_secrets_in_the_body_are_refused(
    http: TestClient, partner: tuple[str, str], with_basic: bool
) -> None:
    client_id, secret = partner
    body = f"grant_type=client_credentials&client_id={client_id}&client_secret={secret}"
    answer = http.post(
        "/oauth/token", content=body, headers=basic(*partner) if with_basic else FORM
    )
    assert_oauth_error(answer, 401, "invalid_client")
    assert "HTTP Basic" in answer.json()["error_description"]


def test_a_body_client_id_must_match_basic(http: TestClient, partner: tuple[str, str]) -> None:
    answer = http.post(
        "/oauth/token",
        content="grant_type=client_credentials&client_id=cli_other",
        headers=basic(*partner),
    )
    assert_oauth_error(answer, 400, "invalid_request")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("", "invalid_request"),
        ("scope=read%3Ainvoices", "invalid_request"),
        ("grant_type=password&username=a&password=b", "unsupported_grant_type"),
        ("grant_type=authorization_code&code=x", "unsupported_grant_type"),
        ("grant_type=client_credentials&grant_type=client_credentials", "invalid_request"),
        ("grant_type=client_credentials&scope=admin%3Aaudit", "invalid_scope"),
        ("grant_type=client_credentials&scope=write%3Aplanets", "invalid_scope"),
    ],
)
def test_bad_token_requests_get_rfc_6749_errors(
    http: TestClient, partner: tuple[str, str], body: str, error: str
) -> None:
    answer = http.post("/oauth/token", content=body, headers=basic(*partner))
    assert_oauth_error(answer, 400, error)


def test_error_descriptions_stay_within_rfc_6749_characters(
    http: TestClient, partner: tuple[str, str]
) -> None:
    answer = http.post(
        "/oauth/token",
        content="grant_type=client_credentials&scope=%22caf%C3%A9",
        headers=basic(*partner),
    )
    assert_oauth_error(answer, 400, "invalid_scope")
    assert answer.json()["error_description"] == "invalid scope"
    answer = http.post(
        "/oauth/token",
        content="grant_type=client_credentials&scope=admin%3Aaudit",
        headers=basic(*partner),
    )
    assert answer.json()["error_description"] == "not granted: admin:audit"


def test_only_form_bodies_are_accepted(http: TestClient, partner: tuple[str, str]) -> None:
    headers = {**basic(*partner), "Content-Type": "application/json"}
    answer = http.post(
        "/oauth/token", content='{"grant_type": "client_credentials"}', headers=headers
    )
    assert_oauth_error(answer, 400, "invalid_request")


def test_parameters_in_the_url_are_refused(http: TestClient, partner: tuple[str, str]) -> None:
    answer = http.post(
        "/oauth/token?grant_type=client_credentials", content="", headers=basic(*partner)
    )
    assert_oauth_error(answer, 400, "invalid_request")


def test_an_oversized_body_is_refused(http: TestClient, partner: tuple[str, str]) -> None:
    body = "grant_type=client_credentials&scope=" + "x" * 20_000
    answer = http.post("/oauth/token", content=body, headers=basic(*partner))
    assert_oauth_error(answer, 400, "invalid_request")


def test_revocation_answers_200_and_the_token_stops_working(
    http: TestClient, server: AuthorizationServer, partner: tuple[str, str]
) -> None:
    token = get_token(http, partner)
    answer = http.post(
        "/oauth/revoke",
        content=f"token={token}&token_type_hint=access_token",
        headers=basic(*partner),
    )
    assert answer.status_code == 200
    assert answer.content == b""
    assert answer.headers["cache-control"] == "no-store"
    introspected = http.post("/oauth/introspect", content=f"token={token}", headers=basic(*partner))
    assert introspected.json() == {"active": False}


@pytest.mark.parametrize("body", ["token=garbage", "token=a.b.c&token_type_hint=refresh_token"])
def test_revoking_unknown_tokens_still_answers_200(
    http: TestClient, partner: tuple[str, str], body: str
) -> None:
    assert http.post("/oauth/revoke", content=body, headers=basic(*partner)).status_code == 200


def test_revocation_errors(
    http: TestClient, server: AuthorizationServer, db: Database, partner: tuple[str, str]
) -> None:
    with db.write() as conn:
        other = server.create_client(
            conn, name="Other", scopes=["read:customers"], workspace="live", actor="test"
        )
    token = get_token(http, partner)
    assert_oauth_error(
        http.post("/oauth/revoke", content="token_type_hint=access_token", headers=basic(*partner)),
        400,
        "invalid_request",
    )
    assert_oauth_error(
        http.post(
            "/oauth/revoke",
            content=f"token={token}&token_type_hint=id_token",
            headers=basic(*partner),
        ),
        400,
        "unsupported_token_type",
    )
    assert_oauth_error(
        http.post("/oauth/revoke", content=f"token={token}", headers=FORM), 401, "invalid_client"
    )
    assert_oauth_error(
        http.post("/oauth/revoke", content=f"token={token}", headers=basic(*other)),
        400,
        "unauthorized_client",
    )
    assert server.verify_token(token).client_id == partner[0]


def test_introspection_of_an_active_token(
    http: TestClient, partner: tuple[str, str], clock: FixedClock
) -> None:
    token = get_token(http, partner, "read:customers")
    answer = http.post("/oauth/introspect", content=f"token={token}", headers=basic(*partner))
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["active"] is True
    assert (body["scope"], body["client_id"], body["sub"]) == ("read:customers", *[partner[0]] * 2)
    assert (body["iss"], body["aud"], body["token_type"]) == (ISSUER, f"{ISSUER}/v1", "Bearer")
    assert body["exp"] == body["iat"] + 600 == int(clock.now().timestamp()) + 600
    assert body["workspace"] == "live"
    assert isinstance(body["jti"], str)


def test_introspection_always_answers_active(http: TestClient, partner: tuple[str, str]) -> None:
    for body in ["token=garbage", "token=a.b.c"]:
        answer = http.post("/oauth/introspect", content=body, headers=basic(*partner))
        assert answer.status_code == 200
        assert answer.json() == {"active": False}
    assert_oauth_error(
        http.post("/oauth/introspect", content="", headers=basic(*partner)), 400, "invalid_request"
    )
    assert_oauth_error(
        http.post("/oauth/introspect", content="token=x", headers=FORM), 401, "invalid_client"
    )


def test_the_jwks_lists_every_published_key_without_private_parts(
    http: TestClient, server: AuthorizationServer, db: Database, partner: tuple[str, str]
) -> None:
    assert http.get("/.well-known/jwks.json").json() == {"keys": []}
    get_token(http, partner)
    with db.write() as conn:
        server.rotate_keys(conn, actor="test")
    answer = http.get("/.well-known/jwks.json")
    assert answer.status_code == 200
    keys = answer.json()["keys"]
    assert len(keys) == 2
    assert len({key["kid"] for key in keys}) == 2
    for key in keys:
        assert set(key) == {"kty", "kid", "use", "alg", "crv", "x", "y"}
        assert (key["kty"], key["use"], key["alg"], key["crv"]) == ("EC", "sig", "ES256", "P-256")


def test_the_metadata_describes_this_server(http: TestClient) -> None:
    answer = http.get("/.well-known/oauth-authorization-server")
    assert answer.status_code == 200
    metadata = answer.json()
    assert metadata["issuer"] == ISSUER
    assert metadata["token_endpoint"] == f"{ISSUER}/oauth/token"
    assert metadata["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert metadata["revocation_endpoint"] == f"{ISSUER}/oauth/revoke"
    assert metadata["introspection_endpoint"] == f"{ISSUER}/oauth/introspect"
    assert metadata["grant_types_supported"] == ["client_credentials"]
    assert metadata["token_endpoint_auth_methods_supported"] == ["client_secret_basic"]
    assert metadata["scopes_supported"] == list(SCOPES)
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["response_types_supported"] == []
