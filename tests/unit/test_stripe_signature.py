"""Stripe-Signature verification on the raw bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synchub.connectors.stripe.webhooks import compute_signature, sign_header, verify_signature
from synchub.core.errors import SignatureError
from tests.conftest import REPO

SECRET = "whsec_test_secret"
NOW = 1_700_000_000


def test_matches_the_vendor_test_vector() -> None:
    """The vector in shared/vendor/FACTS.md, checked there with stripe-python."""
    body = (REPO / "tests/data/stripe/events/customer.created.json").read_bytes()
    expected = "55f381d464093534be85fd510575b6c0995a9098d705c7dac374c8e18ca9ad09"
    assert compute_signature(body, secret=SECRET, timestamp=NOW) == expected
    header = f"t={NOW},v1={expected}"
    assert verify_signature(body, header, secrets=[SECRET], now=NOW) == NOW


def test_any_of_several_v1_signatures_may_match() -> None:
    body = b'{"id":"evt_1"}'
    good = compute_signature(body, secret=SECRET, timestamp=NOW)
    header = f"t={NOW},v1={'0' * 64},v0=ignored,v1={good}"
    assert verify_signature(body, header, secrets=[SECRET], now=NOW) == NOW


def test_a_rolled_secret_verifies_with_either_secret() -> None:
    body = b'{"id":"evt_1"}'
    header = sign_header(body, secret="whsec_new", timestamp=NOW)
    assert verify_signature(body, header, secrets=["whsec_old", "whsec_new"], now=NOW) == NOW


@pytest.mark.parametrize("skew", [-301, 301, -10_000, 10_000])
def test_timestamps_outside_the_window_are_refused_in_both_directions(skew: int) -> None:
    body = b"{}"
    header = sign_header(body, secret=SECRET, timestamp=NOW + skew)
    with pytest.raises(SignatureError, match="tolerance"):
        verify_signature(body, header, secrets=[SECRET], now=NOW)


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_timestamps_inside_the_window_are_accepted(skew: int) -> None:
    header = sign_header(b"{}", secret=SECRET, timestamp=NOW + skew)
    assert verify_signature(b"{}", header, secrets=[SECRET], now=NOW) == NOW + skew


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "v1=abc",
        f"t={NOW}",
        f"t=abc,v1={'0' * 64}",
        f"t={NOW},t={NOW},v1=00",
        f"t={NOW},v0={'0' * 64}",
        "garbage",
    ],
)
def test_malformed_headers_are_refused(header: str | None) -> None:
    with pytest.raises(SignatureError):
        verify_signature(b"{}", header, secrets=[SECRET], now=NOW)


def test_wrong_secret_is_refused() -> None:
    header = sign_header(b"{}", secret="whsec_other", timestamp=NOW)
    with pytest.raises(SignatureError, match="no signature matches"):
        verify_signature(b"{}", header, secrets=[SECRET], now=NOW)


@given(
    body=st.binary(min_size=1, max_size=512),
    position=st.integers(min_value=0),
    flip=st.integers(min_value=1, max_value=255),
)
def test_verification_accepts_what_signing_produced_and_rejects_any_change(
    body: bytes, position: int, flip: int
) -> None:
    header = sign_header(body, secret=SECRET, timestamp=NOW)
    assert verify_signature(body, header, secrets=[SECRET], now=NOW) == NOW
    index = position % len(body)
    tampered = body[:index] + bytes([body[index] ^ flip]) + body[index + 1 :]
    with pytest.raises(SignatureError):
        verify_signature(tampered, header, secrets=[SECRET], now=NOW)
