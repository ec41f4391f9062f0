"""Scope strings, the subset rule of the client credentials grant, workspaces and issuers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synchub.auth.model import (
    SCOPES,
    format_scope,
    grant_scope,
    is_valid_workspace_id,
    issuer_problem,
    parse_scope,
    unknown_scopes,
    workspace_kind,
)

known_scopes = st.frozensets(st.sampled_from(sorted(SCOPES)))


def test_scope_strings_split_on_spaces_and_ignore_extra_ones() -> None:
    assert parse_scope("read:customers  read:invoices ") == {"read:customers", "read:invoices"}
    assert parse_scope(None) == frozenset()
    assert parse_scope("") == frozenset()


@given(known_scopes)
def test_formatting_and_parsing_round_trip(scopes: frozenset[str]) -> None:
    text = format_scope(scopes)
    assert parse_scope(text) == scopes
    assert text == " ".join(sorted(scopes))


def test_unknown_scopes_are_named_in_order() -> None:
    assert unknown_scopes(["write:planets", "read:customers", "admin:all"]) == [
        "admin:all",
        "write:planets",
    ]
    assert unknown_scopes(SCOPES) == []


def test_an_empty_request_grants_every_scope_the_client_holds() -> None:
    held = frozenset({"read:customers", "read:invoices"})
    assert grant_scope(frozenset(), held) == held


def test_a_subset_is_granted_as_asked() -> None:
    held = frozenset({"read:customers", "read:invoices"})
    assert grant_scope(frozenset({"read:invoices"}), held) == {"read:invoices"}


def test_asking_for_a_scope_not_held_is_refused() -> None:
    held = frozenset({"read:customers"})
    assert grant_scope(frozenset({"read:customers", "admin:audit"}), held) is None
    assert grant_scope(frozenset({"write:planets"}), held) is None


def test_a_scope_that_no_longer_exists_is_never_granted() -> None:
    held = frozenset({"read:customers", "read:retired-thing"})
    assert grant_scope(frozenset(), held) == {"read:customers"}
    assert grant_scope(frozenset({"read:retired-thing"}), held) is None
    assert grant_scope(frozenset(), frozenset({"read:retired-thing"})) is None


@given(requested=known_scopes, held=known_scopes)
def test_the_grant_is_never_more_than_the_client_holds(
    requested: frozenset[str], held: frozenset[str]
) -> None:
    granted = grant_scope(requested, held)
    if granted is None:
        assert not held or not requested <= held
    else:
        assert granted <= held
        assert granted == (requested or held)


@pytest.mark.parametrize(
    ("workspace", "kind"),
    [("live", "live"), ("sandbox", "sandbox"), ("sandbox-acme", "sandbox"), ("acme", "live")],
)
def test_workspace_kind_follows_the_name(workspace: str, kind: str) -> None:
    assert workspace_kind(workspace) == kind


def test_workspace_ids_have_the_registers_shape() -> None:
    assert is_valid_workspace_id("sandbox-acme_2")
    assert not is_valid_workspace_id("")
    assert not is_valid_workspace_id("Live")
    assert not is_valid_workspace_id("x" * 41)


@pytest.mark.parametrize(
    "issuer",
    [
        "https://hub.example.com",
        "http://127.0.0.1:8080",
        "http://localhost:8080",
        "http://[::1]:8080",
    ],
)
def test_good_issuers(issuer: str) -> None:
    assert issuer_problem(issuer) is None


@pytest.mark.parametrize(
    "issuer",
    [
        "http://hub.example.com",
        "https://hub.example.com/",
        "https://hub.example.com?x=1",
        "https://hub.example.com#top",
        "hub.example.com",
    ],
)
def test_bad_issuers(issuer: str) -> None:
    assert issuer_problem(issuer) is not None
