"""Envelope encryption, pure: data keys wrapped by the key-encryption key, secrets sealed by a
data key whose version travels with the ciphertext (ADR 0023).

- A data key is 32 random bytes, stored wrapped: AES-256-GCM under the KEK
  (auth/keys.py `load_or_create_kek`), its version bound as associated data.
- A sealed secret is `0x01 | version (4 bytes, big-endian) | nonce (12) | AES-GCM ciphertext`;
  the associated data names what the secret is (its row and purpose), so a ciphertext moved to
  another row or relabelled with another version does not decrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from synchub.core.errors import ConfigError

DATA_KEY_BYTES = 32
NONCE_BYTES = 12
FORMAT = b"\x01"
_HEADER = struct.Struct(">I")
HEADER_BYTES = len(FORMAT) + _HEADER.size


class VaultError(ConfigError):
    """A secret or data key that cannot be opened: a different KEK, or a tampered row."""

    code = "vault_unreadable"


def kek_fingerprint(kek: bytes) -> str:
    """A short public name of the KEK (HMAC, not the key): tells which KEK wrapped a data key."""
    return hmac.new(kek, b"synchub vault kek id", hashlib.sha256).hexdigest()[:16]


def new_data_key() -> bytes:
    """32 random bytes."""
    return os.urandom(DATA_KEY_BYTES)


def _key_label(version: int) -> bytes:
    return f"synchub vault data key v{version}".encode()


def wrap_data_key(kek: bytes, version: int, data_key: bytes) -> bytes:
    """The data key sealed under the KEK, bound to its version."""
    nonce = os.urandom(NONCE_BYTES)
    return FORMAT + nonce + AESGCM(kek).encrypt(nonce, data_key, _key_label(version))


def unwrap_data_key(kek: bytes, version: int, wrapped: bytes) -> bytes:
    """The data key of `version`; VaultError when the KEK is not the one that wrapped it."""
    if wrapped[:1] != FORMAT:
        raise VaultError(f"vault data key v{version} is in an unknown format")
    nonce, body = wrapped[1 : 1 + NONCE_BYTES], wrapped[1 + NONCE_BYTES :]
    try:
        return AESGCM(kek).decrypt(nonce, body, _key_label(version))
    except InvalidTag as exc:
        raise VaultError(
            f"cannot unwrap vault data key v{version}: is SYNCHUB_KEY_ENCRYPTION_KEY (or the "
            "kek file) the one the vault was made with?"
        ) from exc


def seal(data_key: bytes, version: int, plaintext: bytes, *, label: str) -> bytes:
    """Encrypt `plaintext` under data key `version`; `label` names the secret (bound)."""
    nonce = os.urandom(NONCE_BYTES)
    header = FORMAT + _HEADER.pack(version)
    return header + nonce + AESGCM(data_key).encrypt(nonce, plaintext, header + label.encode())


def version_of(sealed: bytes) -> int:
    """The data key version a sealed secret names."""
    if len(sealed) < HEADER_BYTES + NONCE_BYTES or sealed[:1] != FORMAT:
        raise VaultError("a vault secret is in an unknown format")
    return int(_HEADER.unpack(sealed[1:HEADER_BYTES])[0])


def open_sealed(data_key: bytes, sealed: bytes, *, label: str) -> bytes:
    """Decrypt a sealed secret with its data key; VaultError when it does not authenticate."""
    version = version_of(sealed)
    header = sealed[:HEADER_BYTES]
    nonce = sealed[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
    body = sealed[HEADER_BYTES + NONCE_BYTES :]
    try:
        return AESGCM(data_key).decrypt(nonce, body, header + label.encode())
    except InvalidTag as exc:
        raise VaultError(f"vault secret {label!r} (key v{version}) does not authenticate") from exc
