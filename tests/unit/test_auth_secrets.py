"""Client secrets: their shape, their scrypt hashes, and the cache of successful checks."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synchub.auth.secret import VerifiedSecrets, hash_secret, new_client_secret, verify_secret

CHEAP = {"n": 2, "r": 1, "p": 1}  # the property tests check the format, not the cost
secret_texts = st.text(st.characters(blacklist_characters="\x00"), min_size=1, max_size=80)


def test_secrets_are_shs_and_43_url_safe_characters() -> None:
    secrets = {new_client_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert all(re.fullmatch(r"shs_[A-Za-z0-9_-]{43}", s) for s in secrets)


def test_hashes_record_the_cost_a_salt_and_the_hash() -> None:
    stored = hash_secret("shs_example")
    kind, n, r, p, salt, digest = stored.split("$")
    assert (kind, n, r, p) == ("scrypt", "16384", "8", "1")
    assert salt
    assert digest
    assert "shs_example" not in stored
    assert verify_secret("shs_example", stored)


def test_the_same_secret_hashes_differently_each_time() -> None:
    assert hash_secret("shs_same", **CHEAP) != hash_secret("shs_same", **CHEAP)


@settings(max_examples=60)
@given(secret=secret_texts, other=secret_texts)
def test_verification_accepts_the_secret_and_rejects_any_other(secret: str, other: str) -> None:
    stored = hash_secret(secret, **CHEAP)
    assert verify_secret(secret, stored)
    assert verify_secret(other, stored) == (other == secret)


@settings(max_examples=60)
@given(secret=secret_texts, position=st.integers(min_value=0))
def test_changing_one_character_is_rejected(secret: str, position: int) -> None:
    stored = hash_secret(secret, **CHEAP)
    index = position % len(secret)
    changed = secret[:index] + chr(ord(secret[index]) % 0x10FFFF + 1) + secret[index + 1 :]
    assert not verify_secret(changed, stored)
    assert not verify_secret(secret + "x", stored)
    assert not verify_secret(secret[:-1], stored)


def test_a_trailing_nul_does_not_pass_for_the_secret() -> None:
    stored = hash_secret("shs_secret", **CHEAP)
    assert not verify_secret("shs_secret\x00", stored)
    with pytest.raises(ValueError, match="NUL"):
        hash_secret("shs_\x00", **CHEAP)


def test_a_changed_hash_rejects_the_right_secret() -> None:
    stored = hash_secret("shs_right", **CHEAP)
    kind, n, r, p, salt, digest = stored.split("$")
    flipped = ("A" if digest[0] != "A" else "B") + digest[1:]
    assert not verify_secret("shs_right", "$".join((kind, n, r, p, salt, flipped)))
    assert not verify_secret("shs_right", "$".join((kind, "4", r, p, salt, digest)))


def test_malformed_or_absurd_hashes_are_rejected_without_an_error() -> None:
    for stored in [
        "",
        "plain",
        "bcrypt$1$2$3$x$y",
        "scrypt$16384$8$1$!!$!!",
        "scrypt$3$8$1$AAAA$AAAA",
        "scrypt$1073741824$8$1$AAAA$AAAA",
        "scrypt$16384$8$1$$" + "A" * 44,
    ]:
        assert not verify_secret("shs_any", stored)


def test_a_remembered_check_needs_the_same_secret_and_the_same_hash() -> None:
    cache = VerifiedSecrets()
    cache.remember("cli_1", "hash-a", "shs_secret")
    assert cache.is_known("cli_1", "hash-a", "shs_secret")
    assert not cache.is_known("cli_1", "hash-a", "shs_other")
    assert not cache.is_known("cli_1", "hash-b", "shs_secret")
    assert not cache.is_known("cli_2", "hash-a", "shs_secret")
    cache.forget("cli_1")
    assert not cache.is_known("cli_1", "hash-a", "shs_secret")


def test_the_cache_keeps_only_the_most_recently_used_entries() -> None:
    cache = VerifiedSecrets(capacity=2)
    cache.remember("cli_1", "h", "s1")
    cache.remember("cli_2", "h", "s2")
    assert cache.is_known("cli_1", "h", "s1")  # now the most recently used
    cache.remember("cli_3", "h", "s3")
    assert cache.is_known("cli_1", "h", "s1")
    assert not cache.is_known("cli_2", "h", "s2")
    assert cache.is_known("cli_3", "h", "s3")
