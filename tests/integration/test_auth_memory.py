"""What the authorization server remembers between checks (ADR 0015), on real databases.

Checked tokens and "not revoked" answers are remembered; these tests show that memory never
outlives what it stands for: a revocation here (at once), a revocation by another process on
the same database (after the revocation cache ttl, measured by the injected clock), a retired
signing key, an expired token, and a forged token that shares a remembered token's claims.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from synchub.auth import store
from synchub.auth.access_token import CheckedToken, CheckedTokens, RecentlyUsable
from synchub.auth.model import CLOCK_SKEW, AccessTokenClaims, TokenGrant
from synchub.auth.service import REVOCATION_CACHE_TTL, AuthorizationServer
from synchub.core.clock import FixedClock, from_unix
from synchub.core.errors import AuthenticationError
from synchub.db import Database
from tests.integration.test_auth_service import (
    ISSUER,
    AuditTrail,
    claims_of,
    issue,
    kid_of,
    make_client,
)

TTL = REVOCATION_CACHE_TTL
JUST_UNDER_TTL = TTL - timedelta(milliseconds=1)


@pytest.fixture
def kek() -> bytes:
    return os.urandom(32)


def make_server(db: Database, clock: FixedClock, kek: bytes) -> AuthorizationServer:
    return AuthorizationServer(db, kek=kek, clock=clock, issuer=ISSUER, audit=AuditTrail())


@pytest.fixture
def here(db: Database, clock: FixedClock, kek: bytes) -> AuthorizationServer:
    """The process under test."""
    return make_server(db, clock, kek)


@pytest.fixture
def there(db: Database, clock: FixedClock, kek: bytes) -> AuthorizationServer:
    """Another process on the same database (its own memory, the same clock)."""
    return make_server(db, clock, kek)


def remembered(server: AuthorizationServer, db: Database) -> tuple[str, TokenGrant]:
    """A client and a token `server` has checked once, so it now answers from memory."""
    client_id, secret = make_client(server, db)
    grant = issue(server, db, client_id, secret)
    server.verify_token(grant.access_token)
    assert server.principal_from_memory(grant.access_token) is not None
    return client_id, grant


def refused(server: AuthorizationServer, token: str, reason: str) -> None:
    assert server.principal_from_memory(token) is None
    with pytest.raises(AuthenticationError, match=reason):
        server.verify_token(token)


# --- revocation ----------------------------------------------------------------------------


def test_a_token_revoked_here_is_refused_at_once(here: AuthorizationServer, db: Database) -> None:
    _, grant = remembered(here, db)
    with db.write() as conn:
        here.revoke(conn, grant.access_token)
    refused(here, grant.access_token, "token revoked")


def test_a_check_made_before_the_revocation_commits_is_not_remembered(
    here: AuthorizationServer, db: Database
) -> None:
    _, grant = remembered(here, db)
    with db.write() as conn:
        here.revoke(conn, grant.access_token)
        # another request, before the commit: the store still says "usable"
        assert here.verify_token(grant.access_token).token_id == grant.token_id
    refused(here, grant.access_token, "token revoked")


def test_a_token_revoked_by_another_process_is_refused_once_the_ttl_has_passed(
    here: AuthorizationServer, there: AuthorizationServer, db: Database, clock: FixedClock
) -> None:
    _, grant = remembered(here, db)
    with db.write() as conn:
        there.revoke(conn, grant.access_token)
    clock.advance(JUST_UNDER_TTL)
    assert here.principal_from_memory(grant.access_token) is not None
    assert here.verify_token(grant.access_token).token_id == grant.token_id
    clock.advance(TTL - JUST_UNDER_TTL)
    refused(here, grant.access_token, "token revoked")
    refused(there, grant.access_token, "token revoked")


def test_a_client_revoked_here_loses_its_tokens_at_once(
    here: AuthorizationServer, db: Database
) -> None:
    client_id, grant = remembered(here, db)
    with db.write() as conn:
        here.revoke_client(conn, client_id, actor="test")
        assert here.verify_token(grant.access_token).client_id == client_id  # not committed
    refused(here, grant.access_token, "token revoked")


def test_a_client_revoked_by_another_process_loses_its_tokens_once_the_ttl_has_passed(
    here: AuthorizationServer, there: AuthorizationServer, db: Database, clock: FixedClock
) -> None:
    client_id, grant = remembered(here, db)
    with db.write() as conn:
        there.revoke_client(conn, client_id, actor="test")
    clock.advance(JUST_UNDER_TTL)
    assert here.principal_from_memory(grant.access_token) is not None
    assert here.verify_token(grant.access_token).client_id == client_id
    clock.advance(TTL - JUST_UNDER_TTL)
    refused(here, grant.access_token, "token revoked")


def test_introspection_reads_the_store_inside_the_ttl(
    here: AuthorizationServer, there: AuthorizationServer, db: Database
) -> None:
    _, grant = remembered(here, db)
    with db.write() as conn:
        there.revoke(conn, grant.access_token)
    with db.read() as conn:
        assert here.introspect(conn, grant.access_token) == {"active": False}


# --- keys and time ---------------------------------------------------------------------------


def retire(db: Database, token: str, *, at: timedelta, clock: FixedClock) -> None:
    """Retire the key that signed `token` (as a key-ring change in another process would)."""
    with db.write() as conn:
        store.schedule_retirement(conn, [kid_of(token)], at=clock.now() + at)


def test_a_token_whose_key_is_retired_is_refused_once_the_key_cache_reloads(
    here: AuthorizationServer, db: Database, clock: FixedClock
) -> None:
    _, grant = remembered(here, db)
    retire(db, grant.access_token, at=timedelta(0), clock=clock)
    # Public keys are re-read every 5 minutes; the token lives 10. Just before the reload the
    # cached key still verifies, and a fresh "not revoked" is remembered past the reload.
    clock.advance(timedelta(minutes=5) - TTL / 2)
    here.verify_token(grant.access_token)
    clock.advance(TTL / 2)
    refused(here, grant.access_token, "unknown signing key")


def test_a_token_whose_cached_key_passes_its_retirement_is_refused_without_a_reload(
    here: AuthorizationServer, db: Database, clock: FixedClock
) -> None:
    _, grant = remembered(here, db)
    retire(db, grant.access_token, at=timedelta(minutes=5) + TTL / 2, clock=clock)
    clock.advance(timedelta(minutes=5))  # reload: the key, now with its retirement time
    here.verify_token(grant.access_token)
    assert here.principal_from_memory(grant.access_token) is not None
    clock.advance(TTL / 2)  # retired; the key cache is not due a reload, "not revoked" is fresh
    refused(here, grant.access_token, "unknown signing key")


def test_an_expired_token_is_refused_from_memory(
    here: AuthorizationServer, db: Database, clock: FixedClock
) -> None:
    _, grant = remembered(here, db)
    last_moment = from_unix(claims_of(grant.access_token)["exp"]) + CLOCK_SKEW
    clock.advance(last_moment - clock.now() - TTL / 2)
    here.verify_token(grant.access_token)  # a fresh "not revoked", trusted past the expiry
    assert here.principal_from_memory(grant.access_token) is not None
    clock.advance(TTL / 2)
    refused(here, grant.access_token, "token expired")


# --- what is remembered ----------------------------------------------------------------------


def test_a_forged_token_is_not_remembered_even_with_a_remembered_tokens_claims(
    here: AuthorizationServer, db: Database
) -> None:
    _, grant = remembered(here, db)
    claims = {**claims_of(grant.access_token), "scope": "admin:webhooks admin:audit"}
    header = {"alg": "ES256", "typ": "at+jwt", "kid": kid_of(grant.access_token)}
    forged = jwt.encode(header, claims, ECKey.generate_key("P-256"))
    for _ in range(2):
        refused(here, forged, "bad signature")
    assert here.verify_token(grant.access_token).scopes == {"read:customers", "read:invoices"}


def checked(n: int) -> CheckedToken:
    claims = AccessTokenClaims(
        issuer=ISSUER, audience=(ISSUER,), client_id="cli_x", workspace="live",
        scopes=frozenset(), token_id=f"jti-{n}", iat=0, nbf=0, exp=60,
    )  # fmt: skip
    return CheckedToken(kid="k", alg="ES256", public_jwk={}, claims=claims)


def test_checked_tokens_are_bounded_and_forget_the_oldest_first() -> None:
    memory = CheckedTokens(max_entries=3)
    for n in range(3):
        memory.add(f"token-{n}", checked(n))
    memory.add("token-1", checked(1))  # already there: nothing is pushed out
    assert all(memory.find(f"token-{n}") is not None for n in range(3))
    memory.add("token-3", checked(3))
    assert memory.find("token-0") is None
    assert [memory.find(f"token-{n}") for n in (1, 2, 3)] == [checked(1), checked(2), checked(3)]


def test_usable_answers_are_bounded_and_expire_by_the_clock(clock: FixedClock) -> None:
    memory = RecentlyUsable(TTL, max_entries=2)
    now = clock.now()
    for n in range(3):
        memory.remember(f"t{n}", "c", read_at=now, generation=memory.generation)
    assert [memory.is_usable(f"t{n}", "c", now) for n in range(3)] == [False, True, True]
    assert memory.is_usable("t2", "c", now + JUST_UNDER_TTL)
    assert not memory.is_usable("t2", "c", now + TTL)
    assert not memory.is_usable("t2", "c", now - timedelta(milliseconds=1))  # clock stepped back


def test_an_answer_read_before_a_revocation_here_is_not_stored(clock: FixedClock) -> None:
    memory = RecentlyUsable(TTL)
    now = clock.now()
    generation = memory.generation
    memory.forget(token_id="other", until=now + timedelta(minutes=1), now=now)
    memory.remember("t", "c", read_at=now, generation=generation)
    assert not memory.is_usable("t", "c", now)
    memory.remember("t", "c", read_at=now, generation=memory.generation)
    assert memory.is_usable("t", "c", now)
