"""The token-signing key ring: create, seal, rotate, publish, and cache keys by kid."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from joserfc.jwk import Key
from sqlalchemy.engine import Connection

from synchub.auth import store
from synchub.auth.keys import (
    KEK_BYTES,
    SIGNING_ALGORITHM,
    PublicKeys,
    VerificationKey,
    generate_signing_key,
    load_private_key,
    open_private_key,
    seal_private_key,
)
from synchub.auth.model import KEY_RETIREMENT_DELAY, SigningKey, jwks_document, pick_signing_key
from synchub.core.clock import Clock
from synchub.core.errors import ConfigError, FieldProblem, ValidationError
from synchub.db import Database


@contextmanager
def reading(db: Database, conn: Connection | None) -> Iterator[Connection]:
    """The caller's connection if it has one, else a read-only transaction of our own."""
    if conn is not None:
        yield conn
        return
    with db.read() as reader:
        yield reader


class KeyRing:
    """Our signing keys. Signs with the newest active key; verifies with any published one.

    Public keys are cached by kid (re-read every few minutes, or on an unknown kid at most
    once a minute): a kid is the key's thumbprint, so a cached key never goes out of date,
    only out of publication, which the cache re-reads. Private keys are cached once opened.
    Which key signs is read from the store on each grant, so a key from a rolled-back
    transaction is never used to sign.
    """

    def __init__(
        self, db: Database, *, kek: bytes, clock: Clock, audit: Callable[..., None]
    ) -> None:
        if len(kek) != KEK_BYTES:
            raise ConfigError(f"the key-encryption key must be {KEK_BYTES} bytes")
        self._db = db
        self._kek = kek
        self._clock = clock
        self._audit = audit
        self._public = PublicKeys()
        self._private: dict[str, Key] = {}

    def rotate(self, conn: Connection, *, publish_ahead: timedelta, actor: str) -> SigningKey:
        """Make a new key, published now and signing from now + `publish_ahead`.

        With no published key yet, the new key signs at once. Older keys keep verifying and
        stay in the JWKS until KEY_RETIREMENT_DELAY (longest token lifetime + JWKS cache
        time) after the new key takes over, so no token they signed is cut short.
        """
        if publish_ahead < timedelta(0):
            raise ValidationError(
                "publish_ahead cannot be negative",
                [FieldProblem("/publish_ahead", "use 0 or more")],
            )
        now = self._clock.now()
        published = store.published_signing_keys(conn, now=now)
        starts = now + publish_ahead if published else now
        key = self._create(conn, activates_at=starts, actor=actor, action="signing_key.rotated")
        retiring = [k.kid for k in published if k.retired_at is None]
        store.schedule_retirement(conn, retiring, at=starts + KEY_RETIREMENT_DELAY)
        for kid in retiring:
            self._record(conn, "signing_key.retirement_scheduled", actor, target=kid)
        return key

    def list_keys(self, conn: Connection) -> list[SigningKey]:
        """Every key, retired ones included, oldest first."""
        return store.list_signing_keys(conn)

    def jwks(self, conn: Connection) -> dict[str, list[dict[str, str]]]:
        """The RFC 7517 JWK Set of every published key."""
        now = self._clock.now()
        return jwks_document(store.published_signing_keys(conn, now=now), now)

    def signing_key(self, conn: Connection) -> tuple[SigningKey, Key]:
        """The key to sign with now, made on first use if there is none."""
        now = self._clock.now()
        record = pick_signing_key(store.published_signing_keys(conn, now=now), now)
        if record is None:
            record = self._create(
                conn, activates_at=now, actor="system", action="signing_key.created"
            )
        private = self._private.get(record.kid)
        if private is None:
            sealed = store.find_sealed_private_key(conn, record.kid)
            if sealed is None:
                raise ConfigError(f"signing key {record.kid} has no private half")
            private = load_private_key(open_private_key(self._kek, record.kid, sealed))
            self._private[record.kid] = private
        self._public.add(record)
        return record, private

    def verification_key(self, kid: str, conn: Connection | None) -> VerificationKey | None:
        """The published key `kid`, from the cache or (rate-limited) from the store."""
        now = self._clock.now()
        if self._public.needs_reload(kid, now):
            with reading(self._db, conn) as reader:
                self._public.replace(store.published_signing_keys(reader, now=now), now)
        return self._public.find(kid, now)

    def cached_verification_key(self, kid: str, now: datetime) -> VerificationKey | None:
        """The published key `kid` if the cache can answer without a store read, else None."""
        if self._public.needs_reload(kid, now):
            return None
        return self._public.find(kid, now)

    def _create(
        self, conn: Connection, *, activates_at: datetime, actor: str, action: str
    ) -> SigningKey:
        made = generate_signing_key()
        key = SigningKey(
            kid=made.kid,
            alg=SIGNING_ALGORITHM,
            public_jwk=made.public_jwk,
            created_at=self._clock.now(),
            activates_at=activates_at,
        )
        store.insert_signing_key(
            conn, key, sealed=seal_private_key(self._kek, key.kid, made.private_pem)
        )
        self._private[key.kid] = load_private_key(made.private_pem)
        self._public.add(key)
        self._record(conn, action, actor, target=key.kid)
        return key

    def _record(self, conn: Connection, action: str, actor: str, *, target: str) -> None:
        self._audit(
            conn=conn, action=action, actor=actor, outcome="ok", target=target, workspace=None
        )
