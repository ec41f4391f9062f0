"""Endpoint signing secrets at rest: AES-256-GCM under the key-encryption key (KEK).

The KEK is the one that seals token-signing keys (auth/keys.py: SYNCHUB_KEY_ENCRYPTION_KEY,
or the key file in the data directory). Each sealed secret is bound to its endpoint and
version as associated data, so a sealed value copied to another row does not open.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from synchub.auth.keys import KEK_SETTING
from synchub.core.errors import ConfigError

_SEAL_VERSION = b"\x01"
_NONCE_BYTES = 12


def _associated_data(endpoint_id: str, version: int) -> bytes:
    return f"synchub webhook secret {endpoint_id} v{version}".encode()


def seal_secret(kek: bytes, *, endpoint_id: str, version: int, secret: str) -> bytes:
    """Encrypt one endpoint secret for storage."""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(kek).encrypt(
        nonce, secret.encode("ascii"), _associated_data(endpoint_id, version)
    )
    return _SEAL_VERSION + nonce + sealed


def open_secret(kek: bytes, *, endpoint_id: str, version: int, sealed: bytes) -> str:
    """Decrypt one endpoint secret; ConfigError when the KEK or the row does not match."""
    head, nonce, body = sealed[:1], sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
    if head != _SEAL_VERSION:
        raise ConfigError(f"the secret of webhook endpoint {endpoint_id} has an unknown format")
    try:
        plain = AESGCM(kek).decrypt(nonce, body, _associated_data(endpoint_id, version))
    except InvalidTag as exc:
        raise ConfigError(
            f"cannot decrypt the secret of webhook endpoint {endpoint_id}: is {KEK_SETTING} "
            "(or the kek file) the one it was sealed with?"
        ) from exc
    return plain.decode("ascii")
