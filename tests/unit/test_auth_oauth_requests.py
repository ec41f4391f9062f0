"""Parsing token-endpoint requests: HTTP Basic client credentials and form bodies."""

from __future__ import annotations

import base64
from urllib.parse import quote, quote_plus

import pytest

from synchub.api.oauth import OAuthError, parse_basic_credentials, parse_form


def _basic(raw: str) -> str:
    return "Basic " + base64.b64encode(raw.encode()).decode()


def test_basic_credentials_split_at_the_first_colon() -> None:
    assert parse_basic_credentials(_basic("cli_1:shs_secret")) == ("cli_1", "shs_secret")
    assert parse_basic_credentials(_basic("cli_1:se:cr:et")) == ("cli_1", "se:cr:et")


def test_basic_credentials_are_form_url_decoded() -> None:
    client_id, secret = "cli 1", "s:e%c+r/é"
    header = _basic(f"{quote_plus(client_id)}:{quote_plus(secret)}")
    assert parse_basic_credentials(header) == (client_id, secret)
    every_char = "".join(f"%{b:02X}" for b in b"shs_abc-_XYZ")
    assert parse_basic_credentials(_basic(f"cli_1:{every_char}")) == ("cli_1", "shs_abc-_XYZ")
    assert parse_basic_credentials(_basic(f"cli_1:{quote('a:b')}")) == ("cli_1", "a:b")


def test_the_scheme_is_case_insensitive() -> None:
    header = "bAsIc " + base64.b64encode(b"cli_1:s").decode()
    assert parse_basic_credentials(header) == ("cli_1", "s")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer abc",
        "Basic",
        "Basic !!!",
        _basic("no-colon"),
        _basic(":secret"),
        _basic("cli_1:"),
        "Basic " + base64.b64encode(b"cli_1:\xff").decode(),
        _basic("cli_1:%FF"),
    ],
)
def test_unusable_basic_credentials_are_invalid_client(header: str) -> None:
    with pytest.raises(OAuthError) as caught:
        parse_basic_credentials(header)
    assert (caught.value.status, caught.value.error) == (401, "invalid_client")


def test_forms_decode_and_drop_empty_values() -> None:
    form = parse_form(b"grant_type=client_credentials&scope=read%3Acustomers+read%3Ainvoices&x=")
    assert form == {"grant_type": "client_credentials", "scope": "read:customers read:invoices"}
    assert parse_form(b"") == {}
    assert parse_form(b"&grant_type=x&&novalue&") == {"grant_type": "x"}


@pytest.mark.parametrize(
    "body",
    [b"scope=a&scope=b", b"x=1&x=", b"a=%FF", b"\xff=1", b"&".join([b"a=1"] * 40)],
)
def test_bad_forms_are_invalid_request(body: bytes) -> None:
    with pytest.raises(OAuthError) as caught:
        parse_form(body)
    assert (caught.value.status, caught.value.error) == (400, "invalid_request")
