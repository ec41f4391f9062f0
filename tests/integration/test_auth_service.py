"""The authorization server on real databases: clients, tokens, revocation, keys, JWKS."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

import synchub.auth.store  # noqa: F401 - registers the auth tables (until env.py imports it)
from synchub.auth.model import RevocationOutcome, TokenGrant, audience_for
from synchub.auth.service import AuthorizationServer
from synchub.auth.store import api_clients, revoked_tokens, signing_keys, workspaces
from synchub.core.clock import FixedClock
from synchub.core.errors import AuthenticationError, ConfigError, NotFoundError, ValidationError
from synchub.db import Database

ISSUER = "https://hub.example.test"
SCOPES = ("read:customers", "read:invoices")


@dataclass
class AuditTrail:
    """Collects what the server audits."""

    entries: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, **entry: Any) -> None:
        assert entry.pop("conn") is not None
        self.entries.append(entry)

    def actions(self) -> list[str]:
        return [e["action"] for e in self.entries]


@pytest.fixture
def audit() -> AuditTrail:
    return AuditTrail()


@pytest.fixture
def kek() -> bytes:
    return os.urandom(32)


@pytest.fixture
def server(db: Database, clock: FixedClock, audit: AuditTrail, kek: bytes) -> AuthorizationServer:
    return AuthorizationServer(db, kek=kek, clock=clock, issuer=ISSUER, audit=audit)


def make_client(
    server: AuthorizationServer,
    db: Database,
    scopes: tuple[str, ...] = SCOPES,
    workspace: str = "live",
) -> tuple[str, str]:
    with db.write() as conn:
        return server.create_client(
            conn, name="Partner", scopes=scopes, workspace=workspace, actor="test"
        )


def issue(
    server: AuthorizationServer, db: Database, client_id: str, secret: str, scope: str | None = None
) -> TokenGrant:
    with db.write() as conn:
        client = server.authenticate_client(conn, client_id, secret)
        return server.issue_token(conn, client, scope)


def signed_by_us(
    server: AuthorizationServer, db: Database, claims: dict[str, Any], **header: Any
) -> str:
    """A token signed with the server's real signing key, with chosen header and claims."""
    with db.write() as conn:
        record, key = server.keys.signing_key(conn)
    return jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": record.kid, **header}, claims, key)


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def kid_of(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def test_an_issued_token_verifies_until_it_is_revoked(
    server: AuthorizationServer, db: Database, audit: AuditTrail
) -> None:
    client_id, secret = make_client(server, db)
    grant = issue(server, db, client_id, secret)

    principal = server.verify_token(grant.access_token)
    assert principal.client_id == client_id
    assert principal.workspace == "live"
    assert principal.scopes == set(SCOPES)
    assert principal.token_id == grant.token_id
    assert (grant.expires_in, grant.scope) == (600, "read:customers read:invoices")

    with db.write() as conn:
        assert server.revoke(conn, grant.access_token) is RevocationOutcome.REVOKED
        assert server.revoke(conn, grant.access_token) is RevocationOutcome.NOT_ACTIVE
    with pytest.raises(AuthenticationError, match="token revoked"):
        server.verify_token(grant.access_token)
    assert "access_token.issued" in audit.actions()
    assert "access_token.revoked" in audit.actions()


def test_verification_can_share_the_callers_transaction(
    server: AuthorizationServer, db: Database
) -> None:
    grant = issue(server, db, *make_client(server, db))
    with db.read() as conn:
        assert server.verify_token(grant.access_token, conn=conn).scopes == set(SCOPES)


def test_a_token_expires_after_ten_minutes_and_sixty_seconds_of_skew(
    server: AuthorizationServer, db: Database, clock: FixedClock
) -> None:
    grant = issue(server, db, *make_client(server, db))
    clock.advance(timedelta(minutes=10, seconds=59))
    server.verify_token(grant.access_token)
    clock.advance(timedelta(seconds=1))
    with pytest.raises(AuthenticationError, match="token expired"):
        server.verify_token(grant.access_token)


def test_a_tampered_signature_or_payload_fails(server: AuthorizationServer, db: Database) -> None:
    token = issue(server, db, *make_client(server, db)).access_token
    header, payload, signature = token.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    with pytest.raises(AuthenticationError, match="bad signature"):
        server.verify_token(f"{header}.{payload}.{flipped}")
    more_scope = b64({**claims_of(token), "scope": "admin:audit read:customers"})
    with pytest.raises(AuthenticationError, match="bad signature"):
        server.verify_token(f"{header}.{more_scope}.{signature}")


def test_a_token_without_typ_at_jwt_fails(server: AuthorizationServer, db: Database) -> None:
    claims = claims_of(issue(server, db, *make_client(server, db)).access_token)
    with pytest.raises(AuthenticationError, match="typ"):
        server.verify_token(signed_by_us(server, db, claims, typ="JWT"))


def test_a_token_from_another_issuer_fails(server: AuthorizationServer, db: Database) -> None:
    claims = claims_of(issue(server, db, *make_client(server, db)).access_token)
    forged = signed_by_us(server, db, {**claims, "iss": "https://other.example"})
    with pytest.raises(AuthenticationError, match="wrong issuer"):
        server.verify_token(forged)


def test_a_token_for_another_audience_fails(server: AuthorizationServer, db: Database) -> None:
    claims = claims_of(issue(server, db, *make_client(server, db)).access_token)
    forged = signed_by_us(server, db, {**claims, "aud": "https://other.example/api"})
    with pytest.raises(AuthenticationError, match="wrong audience"):
        server.verify_token(forged)


def test_an_unsigned_token_fails(server: AuthorizationServer, db: Database) -> None:
    token = issue(server, db, *make_client(server, db)).access_token
    kid = kid_of(token)
    for alg in ("none", "None", "HS256"):
        header = b64({"alg": alg, "typ": "at+jwt", "kid": kid})
        with pytest.raises(AuthenticationError, match="algorithm not allowed"):
            server.verify_token(f"{header}.{b64(claims_of(token))}.")


def test_an_hmac_token_keyed_with_our_public_key_fails(
    server: AuthorizationServer, db: Database
) -> None:
    token = issue(server, db, *make_client(server, db)).access_token
    with db.read() as conn:
        public = json.dumps(server.jwks(conn)["keys"][0])
    forged = jwt.encode(
        {"alg": "HS256", "typ": "at+jwt", "kid": json.loads(public)["kid"]},
        claims_of(token),
        OctKey.import_key(public.encode()),
    )
    with pytest.raises(AuthenticationError, match="algorithm not allowed"):
        server.verify_token(forged)


def test_a_token_signed_by_a_key_we_do_not_know_fails(
    server: AuthorizationServer, db: Database
) -> None:
    token = issue(server, db, *make_client(server, db)).access_token
    kid = kid_of(token)
    stranger = ECKey.generate_key("P-256")
    header = {"alg": "ES256", "typ": "at+jwt"}
    with pytest.raises(AuthenticationError, match="unknown signing key"):
        server.verify_token(jwt.encode({**header, "kid": "not-ours"}, claims_of(token), stranger))
    with pytest.raises(AuthenticationError, match="unknown signing key"):
        server.verify_token(jwt.encode(header, claims_of(token), stranger))
    with pytest.raises(AuthenticationError, match="bad signature"):
        server.verify_token(jwt.encode({**header, "kid": kid}, claims_of(token), stranger))


def test_rotation_keeps_old_tokens_valid_and_signs_new_ones_with_the_new_key(
    server: AuthorizationServer, db: Database, clock: FixedClock, audit: AuditTrail
) -> None:
    client_id, secret = make_client(server, db)
    old = issue(server, db, client_id, secret)
    with db.write() as conn:
        new_key = server.rotate_keys(conn, actor="test")
    new = issue(server, db, client_id, secret)

    old_kid, new_kid = kid_of(old.access_token), kid_of(new.access_token)
    assert new_kid == new_key.kid != old_kid
    assert server.verify_token(old.access_token).token_id == old.token_id
    assert server.verify_token(new.access_token).token_id == new.token_id
    with db.read() as conn:
        assert {k["kid"] for k in server.jwks(conn)["keys"]} == {old_kid, new_kid}
    assert {
        "signing_key.created",
        "signing_key.rotated",
        "signing_key.retirement_scheduled",
    } <= set(audit.actions())

    clock.advance(timedelta(minutes=15, hours=1))  # the old key's tokens are long expired
    with db.read() as conn:
        assert [k["kid"] for k in server.jwks(conn)["keys"]] == [new_kid]


def test_a_key_published_ahead_signs_only_once_it_is_active(
    server: AuthorizationServer, db: Database, clock: FixedClock
) -> None:
    client_id, secret = make_client(server, db)
    first = issue(server, db, client_id, secret)
    with db.write() as conn:
        pending = server.rotate_keys(conn, publish_ahead=timedelta(hours=24), actor="test")
        assert pending.kid in {k["kid"] for k in server.jwks(conn)["keys"]}
    same_key = issue(server, db, client_id, secret)
    clock.advance(timedelta(hours=24))
    next_key = issue(server, db, client_id, secret)
    assert kid_of(first.access_token) == kid_of(same_key.access_token) != pending.kid
    assert kid_of(next_key.access_token) == pending.kid
    assert server.verify_token(next_key.access_token).token_id == next_key.token_id


def test_another_process_learns_new_keys_on_an_unknown_kid_at_most_once_a_minute(
    server: AuthorizationServer, db: Database, clock: FixedClock, audit: AuditTrail, kek: bytes
) -> None:
    other = AuthorizationServer(db, kek=kek, clock=clock, issuer=ISSUER, audit=audit)
    client_id, secret = make_client(server, db)
    other.verify_token(issue(server, db, client_id, secret).access_token)  # loads the keys
    with db.write() as conn:
        server.rotate_keys(conn, actor="test")
    fresh = issue(server, db, client_id, secret).access_token

    with pytest.raises(AuthenticationError, match="unknown signing key"):
        other.verify_token(fresh)  # loaded less than a minute ago: no re-read yet
    clock.advance(timedelta(seconds=60))
    assert other.verify_token(fresh).client_id == client_id


def test_introspection_describes_active_tokens_and_nothing_else(
    server: AuthorizationServer, db: Database, clock: FixedClock
) -> None:
    client_id, secret = make_client(server, db)
    grant = issue(server, db, client_id, secret, "read:invoices")
    other_id, other_secret = make_client(server, db)
    expired = issue(server, db, other_id, other_secret)
    with db.write() as conn:
        active = server.introspect(conn, grant.access_token, requester=client_id)
        foreign = server.introspect(conn, grant.access_token, requester=other_id)
        garbage = server.introspect(conn, "not-a-token")
    iat = int(clock.now().timestamp())
    assert active == {
        "active": True,
        "scope": "read:invoices",
        "client_id": client_id,
        "sub": client_id,
        "exp": iat + 600,
        "iat": iat,
        "iss": ISSUER,
        "aud": audience_for(ISSUER),
        "jti": grant.token_id,
        "token_type": "Bearer",
        "workspace": "live",
    }
    assert foreign == garbage == {"active": False}

    with db.write() as conn:
        server.revoke(conn, grant.access_token)
        assert server.introspect(conn, grant.access_token) == {"active": False}
    clock.advance(timedelta(minutes=11))
    with db.write() as conn:
        assert server.introspect(conn, expired.access_token) == {"active": False}


def test_a_client_may_revoke_only_its_own_tokens(server: AuthorizationServer, db: Database) -> None:
    grant = issue(server, db, *make_client(server, db))
    other_id, _ = make_client(server, db)
    with db.write() as conn:
        outcome = server.revoke(conn, grant.access_token, requester=other_id)
        garbage = server.revoke(conn, "garbage", requester=other_id)
    assert outcome is RevocationOutcome.NOT_OWNER
    assert garbage is RevocationOutcome.NOT_ACTIVE
    server.verify_token(grant.access_token)


def test_revocations_are_kept_until_the_token_could_no_longer_verify(
    server: AuthorizationServer, db: Database, clock: FixedClock
) -> None:
    client_id, secret = make_client(server, db)
    first = issue(server, db, client_id, secret)
    with db.write() as conn:
        server.revoke(conn, first.access_token)
    clock.advance(timedelta(minutes=11, seconds=1))
    second = issue(server, db, client_id, secret)
    with db.write() as conn:
        server.revoke(conn, second.access_token)  # also clears revocations that expired
        kept = conn.execute(sa.select(revoked_tokens.c.jti)).scalars().all()
    assert kept == [second.token_id]


def test_a_revoked_client_gets_no_tokens_and_its_tokens_stop_working(
    server: AuthorizationServer, db: Database, audit: AuditTrail
) -> None:
    client_id, secret = make_client(server, db)
    grant = issue(server, db, client_id, secret)
    with db.write() as conn:
        revoked = server.revoke_client(conn, client_id, actor="test")
    assert revoked.is_revoked

    with pytest.raises(AuthenticationError):
        issue(server, db, client_id, secret)
    with pytest.raises(AuthenticationError, match="token revoked"):
        server.verify_token(grant.access_token)
    refused = [e for e in audit.entries if e["action"] == "api_client.authentication_failed"]
    assert refused[-1]["outcome"] == "client_revoked"
    assert refused[-1]["actor"] == client_id
    with db.write() as conn, pytest.raises(NotFoundError):
        server.revoke_client(conn, "cli_missing", actor="test")


def test_wrong_or_unknown_credentials_fail_and_are_audited_without_secrets(
    server: AuthorizationServer, db: Database, audit: AuditTrail
) -> None:
    client_id, secret = make_client(server, db)
    unknown = "cli_01JNOSUCHCLIENT0000000000"
    attempts = [(client_id, secret + "x"), (client_id, ""), (unknown, secret), (secret, client_id)]
    for attempt in attempts:
        with db.write() as conn, pytest.raises(AuthenticationError):
            server.authenticate_client(conn, *attempt)
    refused = [e for e in audit.entries if e["action"] == "api_client.authentication_failed"]
    assert [e["outcome"] for e in refused] == [
        "wrong_secret",
        "wrong_secret",
        "unknown_client",
        "unknown_client",
    ]
    assert refused[-1]["actor"] == "unrecognised"  # a secret in the id field is not recorded
    assert secret not in repr(audit.entries)


def test_repeat_authentication_of_the_same_secret_succeeds(
    server: AuthorizationServer, db: Database
) -> None:
    client_id, secret = make_client(server, db)
    for _ in range(3):
        with db.read() as conn:
            assert server.authenticate_client(conn, client_id, secret).client_id == client_id


def test_scope_requests_are_granted_only_within_the_clients_scopes(
    server: AuthorizationServer, db: Database, audit: AuditTrail
) -> None:
    client_id, secret = make_client(server, db)
    assert issue(server, db, client_id, secret, "read:invoices").scope == "read:invoices"
    assert issue(server, db, client_id, secret, "").scope == "read:customers read:invoices"
    with pytest.raises(ValidationError) as caught:
        issue(server, db, client_id, secret, "read:invoices admin:audit")
    assert caught.value.problems[0].pointer == "/scope"
    assert "admin:audit" in caught.value.problems[0].detail
    assert audit.entries[-1]["action"] == "access_token.refused"
    assert audit.entries[-1]["outcome"] == "invalid_scope"


@pytest.mark.parametrize(
    ("fields", "pointer"),
    [
        ({"scopes": ("read:customers", "write:planets")}, "/scopes"),
        ({"scopes": ()}, "/scopes"),
        ({"name": " "}, "/name"),
        ({"workspace": "Live Workspace"}, "/workspace"),
    ],
)
def test_invalid_clients_are_refused_naming_the_field(
    server: AuthorizationServer, db: Database, fields: dict[str, Any], pointer: str
) -> None:
    arguments: dict[str, Any] = {"name": "Partner", "scopes": SCOPES, "workspace": "live"}
    with db.write() as conn, pytest.raises(ValidationError) as caught:
        server.create_client(conn, **{**arguments, **fields}, actor="test")
    assert [p.pointer for p in caught.value.problems] == [pointer]


def test_clients_are_stored_with_a_hash_never_the_secret(
    server: AuthorizationServer, db: Database, audit: AuditTrail
) -> None:
    client_id, secret = make_client(server, db, workspace="sandbox-acme")
    with db.read() as conn:
        row = conn.execute(sa.select(api_clients)).one()
        kind = conn.execute(sa.select(workspaces.c.kind)).scalar_one()
        listed = server.list_clients(conn)
    assert client_id.startswith("cli_")
    assert len(client_id) == 30
    assert secret not in repr(tuple(row))
    assert row.secret_hash.startswith("scrypt$16384$8$1$")
    assert kind == "sandbox"
    assert [c.client_id for c in listed] == [client_id]
    assert audit.entries == [
        {
            "action": "api_client.created",
            "actor": "test",
            "outcome": "ok",
            "target": client_id,
            "workspace": "sandbox-acme",
        }
    ]


def test_the_first_token_makes_the_first_key_sealed_at_rest(
    server: AuthorizationServer, db: Database, clock: FixedClock
) -> None:
    with db.read() as conn:
        assert server.jwks(conn) == {"keys": []}
    grant = issue(server, db, *make_client(server, db))
    with db.read() as conn:
        sealed = conn.execute(sa.select(signing_keys.c.private_key_sealed)).scalar_one()
        (published,) = server.jwks(conn)["keys"]
    assert b"PRIVATE KEY" not in bytes(sealed)
    assert kid_of(grant.access_token) == published["kid"]

    stranger = AuthorizationServer(
        db, kek=os.urandom(32), clock=clock, issuer=ISSUER, audit=AuditTrail()
    )
    client_id, secret = make_client(stranger, db)
    with pytest.raises(ConfigError, match="cannot decrypt"):
        issue(stranger, db, client_id, secret)


def test_a_bad_issuer_kek_or_lifetime_is_refused(db: Database, clock: FixedClock) -> None:
    with pytest.raises(ConfigError, match="https"):
        AuthorizationServer(
            db, kek=os.urandom(32), clock=clock, issuer="http://hub.example", audit=AuditTrail()
        )
    with pytest.raises(ConfigError, match="32 bytes"):
        AuthorizationServer(db, kek=b"short", clock=clock, issuer=ISSUER, audit=AuditTrail())
    with pytest.raises(ConfigError, match="15 minutes"):
        AuthorizationServer(
            db,
            kek=os.urandom(32),
            clock=clock,
            issuer=ISSUER,
            audit=AuditTrail(),
            token_lifetime=timedelta(minutes=16),
        )
