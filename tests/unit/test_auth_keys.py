"""The key-encryption key, sealed private keys, new signing keys and the public-key cache."""

from __future__ import annotations

import base64
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from joserfc.jwk import ECKey

from synchub.auth.keys import (
    PublicKeys,
    generate_signing_key,
    load_or_create_kek,
    open_private_key,
    seal_private_key,
)
from synchub.auth.model import SigningKey
from synchub.core.errors import ConfigError

NOW = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)


def test_the_kek_file_is_made_once_and_readable_by_its_owner_only(tmp_path: Path) -> None:
    first = load_or_create_kek(tmp_path / "data", None)
    second = load_or_create_kek(tmp_path / "data", None)
    path = tmp_path / "data" / "kek"
    assert first == second
    assert len(first) == 32
    assert base64.b64decode(path.read_text().strip()) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["kek"]  # no temporary file left


def test_a_configured_kek_wins_and_no_file_is_made(tmp_path: Path) -> None:
    raw = os.urandom(32)
    assert load_or_create_kek(tmp_path, base64.b64encode(raw).decode()) == raw
    assert load_or_create_kek(tmp_path, base64.urlsafe_b64encode(raw).decode()) == raw
    assert not (tmp_path / "kek").exists()


@pytest.mark.parametrize("configured", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_bad_configured_kek_is_refused(tmp_path: Path, configured: str) -> None:
    with pytest.raises(ConfigError, match="SYNCHUB_KEY_ENCRYPTION_KEY"):
        load_or_create_kek(tmp_path, configured)


def test_a_kek_file_others_can_read_is_refused(tmp_path: Path) -> None:
    load_or_create_kek(tmp_path, None)
    (tmp_path / "kek").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_or_create_kek(tmp_path, None)


def test_a_sealed_key_opens_only_with_its_kek_and_its_kid() -> None:
    kek, pem = os.urandom(32), generate_signing_key().private_pem
    sealed = seal_private_key(kek, "kid-1", pem)
    assert b"PRIVATE KEY" not in sealed
    assert open_private_key(kek, "kid-1", sealed) == pem
    with pytest.raises(ConfigError, match="cannot decrypt"):
        open_private_key(os.urandom(32), "kid-1", sealed)
    with pytest.raises(ConfigError, match="cannot decrypt"):
        open_private_key(kek, "kid-2", sealed)
    with pytest.raises(ConfigError, match="cannot decrypt"):
        open_private_key(kek, "kid-1", sealed[:-1] + bytes([sealed[-1] ^ 1]))
    with pytest.raises(ConfigError, match="unknown format"):
        open_private_key(kek, "kid-1", b"\x02" + sealed[1:])


def test_new_keys_are_p256_with_a_thumbprint_kid_and_a_public_jwk() -> None:
    made = generate_signing_key()
    assert set(made.public_jwk) == {"kty", "crv", "x", "y", "kid", "use", "alg"}
    assert made.public_jwk["kty"] == "EC"
    assert made.public_jwk["crv"] == "P-256"
    assert made.public_jwk["use"] == "sig"
    assert made.public_jwk["alg"] == "ES256"
    assert made.kid == made.public_jwk["kid"] == ECKey.import_key(made.private_pem).thumbprint()


def _record(kid: str, retired_at: datetime | None = None) -> SigningKey:
    made = generate_signing_key()
    return SigningKey(
        kid=kid,
        alg="ES256",
        public_jwk={**made.public_jwk, "kid": kid},
        created_at=NOW,
        activates_at=NOW,
        retired_at=retired_at,
    )


def test_the_cache_reloads_when_empty_stale_or_missing_a_kid_at_most_once_a_minute() -> None:
    cache = PublicKeys()
    assert cache.needs_reload("a", NOW)
    cache.replace([_record("a")], NOW)
    assert not cache.needs_reload("a", NOW + timedelta(minutes=4))
    assert not cache.needs_reload("b", NOW + timedelta(seconds=59))
    assert cache.needs_reload("b", NOW + timedelta(seconds=60))
    assert cache.needs_reload("a", NOW + timedelta(minutes=5))


def test_the_cache_forgets_nothing_it_was_told_and_hides_retired_keys() -> None:
    cache = PublicKeys()
    cache.replace([_record("a", retired_at=NOW + timedelta(hours=1))], NOW)
    cache.add(_record("b"))
    assert cache.find("b", NOW) is not None
    assert cache.find("a", NOW) is not None
    assert cache.find("a", NOW + timedelta(hours=1)) is None
    assert cache.find("zzz", NOW) is None


def test_keys_of_a_type_we_cannot_use_are_ignored() -> None:
    cache = PublicKeys()
    odd = SigningKey(
        kid="odd",
        alg="ES256",
        public_jwk={"kty": "XYZ", "kid": "odd"},
        created_at=NOW,
        activates_at=NOW,
    )
    cache.replace([odd, _record("a")], NOW)
    assert cache.find("odd", NOW) is None
    assert cache.find("a", NOW) is not None
