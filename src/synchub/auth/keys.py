"""Signing keys: the key-encryption key, making ES256 keys, sealing them at rest, caching.

Private signing keys are stored encrypted with AES-256-GCM under a key-encryption key (KEK).
Live deployments should set SYNCHUB_KEY_ENCRYPTION_KEY (base64 of 32 bytes) from a vault or
KMS: the fallback key file in the data directory sits next to the database it protects, so it
only guards against leaked database dumps and backups, not against a copied data directory.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, import_key

from synchub.auth.model import SigningKey
from synchub.core.errors import ConfigError

KEK_BYTES = 32
KEK_FILE = "kek"
KEK_SETTING = "SYNCHUB_KEY_ENCRYPTION_KEY"
SIGNING_ALGORITHM = "ES256"
_SEAL_VERSION = b"\x01"
_NONCE_BYTES = 12


def load_or_create_kek(data_dir: Path, configured: str | None) -> bytes:
    """The key-encryption key: `configured` (base64) if set, else data_dir/kek, made once.

    The file holds base64 of 32 random bytes, readable by its owner only (0600). Set the
    SYNCHUB_KEY_ENCRYPTION_KEY setting in live deployments instead of relying on the file.
    """
    if configured:
        return decode_kek(configured, source=KEK_SETTING)
    path = data_dir / KEK_FILE
    if not path.exists():
        _create_kek_file(path)
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise ConfigError(f"{path} must be readable by its owner only: chmod 600 {path}")
    return decode_kek(path.read_text(encoding="ascii").strip(), source=str(path))


def decode_kek(text: str, *, source: str) -> bytes:
    """A base64 (standard or URL-safe) key-encryption key of exactly 32 bytes."""
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"{source} is not base64") from exc
    if len(raw) != KEK_BYTES:
        raise ConfigError(f"{source} must decode to {KEK_BYTES} bytes, not {len(raw)}")
    return raw


def _create_kek_file(path: Path) -> None:
    # Write a private temporary file, then link it into place: a concurrent process either
    # wins the link or reads the winner's complete file, never half of one.
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(base64.b64encode(os.urandom(KEK_BYTES)).decode("ascii") + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@dataclass(frozen=True)
class NewSigningKey:
    """A freshly generated key pair: PEM private key and public JWK."""

    kid: str
    private_pem: bytes
    public_jwk: dict[str, str]


def generate_signing_key() -> NewSigningKey:
    """A new P-256 key for ES256; its kid is the RFC 7638 JWK thumbprint."""
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key = ECKey.import_key(private)
    kid = key.thumbprint()
    public = {str(k): str(v) for k, v in key.as_dict(private=False).items()}
    jwk = {**public, "kid": kid, "use": "sig", "alg": SIGNING_ALGORITHM}
    return NewSigningKey(kid=kid, private_pem=pem, public_jwk=jwk)


def seal_private_key(kek: bytes, kid: str, pem: bytes) -> bytes:
    """Encrypt a private key PEM with AES-GCM; the kid is bound as associated data."""
    nonce = os.urandom(_NONCE_BYTES)
    return _SEAL_VERSION + nonce + AESGCM(kek).encrypt(nonce, pem, _associated_data(kid))


def open_private_key(kek: bytes, kid: str, sealed: bytes) -> bytes:
    """Decrypt a sealed private key PEM; ConfigError when the KEK or row does not match."""
    version, nonce = sealed[:1], sealed[1 : 1 + _NONCE_BYTES]
    ciphertext = sealed[1 + _NONCE_BYTES :]
    if version != _SEAL_VERSION:
        raise ConfigError(f"signing key {kid} is sealed in an unknown format")
    try:
        return AESGCM(kek).decrypt(nonce, ciphertext, _associated_data(kid))
    except InvalidTag as exc:
        raise ConfigError(
            f"cannot decrypt signing key {kid}: is {KEK_SETTING} (or the kek file) the one "
            "the key was made with?"
        ) from exc


def _associated_data(kid: str) -> bytes:
    return b"synchub signing key " + kid.encode("utf-8")


def load_private_key(pem: bytes) -> Key:
    """A private signing key from PEM."""
    return ECKey.import_key(pem)


@dataclass(frozen=True)
class VerificationKey:
    """One published key, ready to check signatures."""

    record: SigningKey
    key: Key


class PublicKeys:
    """Our published keys by kid, for verification without a database read per request.

    The whole set is re-read when older than `max_age`, and on an unknown kid at most once
    per `miss_interval` (a flood of made-up kids cannot hammer the store).
    """

    def __init__(
        self,
        *,
        miss_interval: timedelta = timedelta(seconds=60),
        max_age: timedelta = timedelta(minutes=5),
    ) -> None:
        self._miss_interval = miss_interval
        self._max_age = max_age
        self._keys: dict[str, VerificationKey] = {}
        self._loaded_at: datetime | None = None
        self._lock = threading.Lock()

    def needs_reload(self, kid: str, now: datetime) -> bool:
        """Whether to re-read the keys before looking `kid` up."""
        with self._lock:
            if self._loaded_at is None or now - self._loaded_at >= self._max_age:
                return True
            return kid not in self._keys and now - self._loaded_at >= self._miss_interval

    def replace(self, records: Iterable[SigningKey], now: datetime) -> None:
        """Replace the cached set with freshly read keys."""
        keys = {v.record.kid: v for v in map(_verification_key, records) if v is not None}
        with self._lock:
            self._keys, self._loaded_at = keys, now

    def add(self, record: SigningKey) -> None:
        """Add a key this process just created or signed with."""
        entry = _verification_key(record)
        if entry is not None:
            with self._lock:
                self._keys[record.kid] = entry

    def find(self, kid: str, now: datetime) -> VerificationKey | None:
        """The key for `kid` if it is published at `now`."""
        with self._lock:
            entry = self._keys.get(kid)
        return entry if entry is not None and entry.record.is_published(now) else None


def _verification_key(record: SigningKey) -> VerificationKey | None:
    try:
        return VerificationKey(record=record, key=import_key(dict(record.public_jwk)))
    except (JoseError, ValueError, TypeError):
        return None  # a kty or curve we cannot use: ignore the key, as RFC 7517 allows
