"""Access tokens as RFC 9068 JWTs: header, claims, and each check of the verifier's order."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from synchub.auth.access_token import has_valid_signature, read_access_token, sign_access_token
from synchub.auth.model import (
    ApiClient,
    SigningKey,
    access_token_claims,
    check_audience,
    check_issuer,
    check_token_time,
    check_token_type,
    jwks_document,
    parse_access_token_claims,
    pick_signing_key,
)
from synchub.core.errors import AuthenticationError

ISSUER = "https://hub.example.test"
NOW = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)
CLIENT = ApiClient(
    "cli_01JTEST0000000000000000000",
    "live",
    "Partner",
    frozenset({"read:invoices", "read:customers"}),
    created_at=NOW,
)


def _claims(**changes: object) -> dict[str, object]:
    claims = access_token_claims(
        CLIENT,
        issuer=ISSUER,
        scopes=CLIENT.scopes,
        token_id="jti-1",
        issued_at=NOW,
        lifetime=timedelta(minutes=10),
    )
    claims.update(changes)
    return claims


def _b64(value: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def test_claims_follow_rfc_9068_for_client_credentials() -> None:
    claims = _claims()
    iat = int(NOW.timestamp())
    assert claims == {
        "iss": ISSUER,
        "sub": CLIENT.client_id,
        "aud": f"{ISSUER}/v1",
        "exp": iat + 600,
        "nbf": iat,
        "iat": iat,
        "jti": "jti-1",
        "client_id": CLIENT.client_id,
        "scope": "read:customers read:invoices",
        "workspace": "live",
    }


def test_the_header_is_at_jwt_es256_with_the_kid() -> None:
    key = ECKey.generate_key("P-256")
    token = sign_access_token(_claims(), key=key, kid="kid-1", alg="ES256")
    parsed = read_access_token(token)
    assert dict(parsed.header) == {"typ": "at+jwt", "alg": "ES256", "kid": "kid-1"}
    assert dict(parsed.claims) == _claims()
    assert has_valid_signature(parsed, key, "ES256")


def test_the_signature_only_verifies_with_the_signing_key_and_its_algorithm() -> None:
    key, other = ECKey.generate_key("P-256"), ECKey.generate_key("P-256")
    parsed = read_access_token(sign_access_token(_claims(), key=key, kid="k", alg="ES256"))
    assert not has_valid_signature(parsed, other, "ES256")
    assert not has_valid_signature(parsed, key, "RS256")
    assert not has_valid_signature(parsed, key, "none")


def test_a_changed_payload_breaks_the_signature() -> None:
    key = ECKey.generate_key("P-256")
    header, _, signature = sign_access_token(_claims(), key=key, kid="k", alg="ES256").split(".")
    forged = ".".join((header, _b64(_claims(scope="admin:audit")), signature))
    assert not has_valid_signature(read_access_token(forged), key, "ES256")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "e30.bm90IGpzb24.",
        f"{_b64({'alg': 'ES256'})}.WyJsaXN0Il0.",
        f"{_b64({'alg': 'ES256', 'crit': ['exp']})}.{_b64({})}.",
        f"{_b64({'alg': 'ES256', 'b64': False})}.{_b64({})}.",
        "é.é.é",
        "a" * 5000,
    ],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(AuthenticationError, match="malformed token"):
        read_access_token(token)


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT"])
def test_access_token_types_are_accepted(typ: str) -> None:
    check_token_type({"typ": typ})


@pytest.mark.parametrize("header", [{}, {"typ": "JWT"}, {"typ": "id_token+jwt"}, {"typ": 1}])
def test_other_token_types_are_refused(header: dict[str, object]) -> None:
    with pytest.raises(AuthenticationError, match="typ"):
        check_token_type(header)


def test_the_issuer_must_be_us() -> None:
    check_issuer(_claims(), ISSUER)
    with pytest.raises(AuthenticationError, match="wrong issuer"):
        check_issuer(_claims(iss="https://evil.example"), ISSUER)


def test_the_audience_must_hold_our_api() -> None:
    check_audience(_claims(), f"{ISSUER}/v1")
    check_audience(_claims(aud=["https://other.example", f"{ISSUER}/v1"]), f"{ISSUER}/v1")
    for aud in ["https://other.example", ["https://other.example"], None, 7]:
        with pytest.raises(AuthenticationError, match="wrong audience"):
            check_audience(_claims(aud=aud), f"{ISSUER}/v1")


def test_parsed_claims_become_the_principal() -> None:
    principal = parse_access_token_claims(_claims()).to_principal()
    assert principal.client_id == CLIENT.client_id
    assert principal.workspace == "live"
    assert principal.scopes == CLIENT.scopes
    assert principal.token_id == "jti-1"


@pytest.mark.parametrize(
    "changes",
    [
        {"jti": None},
        {"scope": ""},
        {"exp": "soon"},
        {"iat": True},
        {"sub": "cli_other"},
        {"workspace": 3},
        {"aud": [1]},
        {"client_id": None},
    ],
)
def test_malformed_claims_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(AuthenticationError, match="malformed claims"):
        parse_access_token_claims(_claims(**changes))


def test_a_lifetime_over_fifteen_minutes_is_refused() -> None:
    iat = int(NOW.timestamp())
    with pytest.raises(AuthenticationError, match="lifetime"):
        parse_access_token_claims(_claims(exp=iat + 15 * 60 + 1))


def test_expiry_allows_sixty_seconds_of_skew_and_no_more() -> None:
    claims = parse_access_token_claims(_claims())
    check_token_time(claims, NOW + timedelta(minutes=10, seconds=59))
    with pytest.raises(AuthenticationError, match="expired"):
        check_token_time(claims, NOW + timedelta(minutes=11))


def test_not_before_allows_sixty_seconds_of_skew_and_no_more() -> None:
    claims = parse_access_token_claims(_claims())
    check_token_time(claims, NOW - timedelta(seconds=60))
    with pytest.raises(AuthenticationError, match="not yet valid"):
        check_token_time(claims, NOW - timedelta(seconds=61))


def _key(kid: str, activates: timedelta, retired: timedelta | None = None) -> SigningKey:
    return SigningKey(
        kid=kid,
        alg="ES256",
        public_jwk={"kid": kid, "kty": "EC"},
        created_at=NOW,
        activates_at=NOW + activates,
        retired_at=NOW + retired if retired is not None else None,
    )


def test_a_key_activated_with_the_one_it_replaces_signs_instead() -> None:
    replaced = _key("replaced", timedelta(0), timedelta(hours=1))
    replacement = _key("replacement", timedelta(0))
    assert pick_signing_key([replacement, replaced], NOW) == replacement
    assert pick_signing_key([replaced, replacement], NOW) == replacement


def test_the_newest_active_key_signs() -> None:
    old, new, pending = (
        _key("old", timedelta(-2)),
        _key("new", timedelta(-1)),
        _key("pending", timedelta(hours=1)),
    )
    assert pick_signing_key([old, new, pending], NOW) == new
    assert pick_signing_key([pending], NOW) is None
    assert pick_signing_key([_key("gone", timedelta(-1), timedelta(0))], NOW) is None


def test_the_jwks_holds_every_published_key_newest_first() -> None:
    keys = [
        _key("old", timedelta(-2), timedelta(hours=1)),
        _key("new", timedelta(-1)),
        _key("pending", timedelta(hours=1)),
        _key("gone", timedelta(-3), timedelta(0)),
    ]
    assert [k["kid"] for k in jwks_document(keys, NOW)["keys"]] == ["pending", "new", "old"]


def test_jwt_library_and_our_reader_agree_on_the_claims() -> None:
    key = ECKey.generate_key("P-256")
    token = sign_access_token(_claims(), key=key, kid="k", alg="ES256")
    assert jwt.decode(token, key, algorithms=["ES256"]).claims == _claims()
