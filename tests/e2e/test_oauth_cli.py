"""`synchub clients …` and `synchub keys …` against a fresh SQLite store in a temp directory."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from synchub.audit.service import entries
from synchub.auth.cli import clients_app, keys_app
from synchub.auth.keys import load_or_create_kek
from synchub.auth.service import AuthorizationServer
from synchub.core.clock import SystemClock
from synchub.db import make_database

app = typer.Typer()
app.add_typer(clients_app, name="clients")
app.add_typer(keys_app, name="keys")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SYNCHUB_DATA_DIR", str(tmp_path / "hub"))
    monkeypatch.delenv("SYNCHUB_DATABASE_URL", raising=False)
    monkeypatch.delenv("SYNCHUB_KEY_ENCRYPTION_KEY", raising=False)
    return tmp_path / "hub"


def run(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "--json" in args else result.stdout


def test_a_created_client_gets_tokens_until_it_is_revoked(data_dir: Path) -> None:
    made = run(
        "clients", "create", "--name", "Acme", "--scopes", "read:invoices read:customers", "--json"
    )
    assert made["client_id"].startswith("cli_")
    assert made["client_secret"].startswith("shs_")
    assert (made["workspace"], made["scopes"]) == ("live", "read:customers read:invoices")

    db = make_database(f"sqlite:///{data_dir / 'synchub.db'}")
    server = AuthorizationServer(
        db,
        kek=load_or_create_kek(data_dir, None),
        clock=SystemClock(),
        issuer="http://127.0.0.1:8080",
        audit=lambda **entry: None,
    )
    with db.write() as conn:
        client = server.authenticate_client(conn, made["client_id"], made["client_secret"])
        assert server.issue_token(conn, client, "read:invoices").scope == "read:invoices"

    (listed,) = run("clients", "list", "--json")
    assert listed["client_id"] == made["client_id"]
    assert listed["revoked_at"] is None
    assert "client_secret" not in listed

    assert made["client_id"] in run("clients", "revoke", made["client_id"])
    (listed,) = run("clients", "list", "--json")
    assert listed["revoked_at"] is not None
    with db.read() as conn:  # the CLI's changes are in the audit log, with ids only
        actions = [
            e["action"] for e in entries(conn, workspace=None, limit=100, starting_after=None)[0]
        ]
    assert "api_client.created" in actions
    assert "api_client.revoked" in actions
    db.dispose()


def test_plain_output_shows_the_secret_once(data_dir: Path) -> None:
    output = run(
        "clients",
        "create",
        "--name",
        "Acme",
        "--scopes",
        "read:customers",
        "--workspace",
        "sandbox-acme",
    )
    assert "client_secret: shs_" in output
    assert "shs_" not in run("clients", "list")


def test_bad_input_exits_2_naming_the_field(data_dir: Path) -> None:
    result = CliRunner().invoke(
        app, ["clients", "create", "--name", "Acme", "--scopes", "read:customers write:planets"]
    )
    assert result.exit_code == 2
    assert "/scopes" in result.output
    assert "write:planets" in result.output
    missing = CliRunner().invoke(app, ["clients", "revoke", "cli_nobody"])
    assert missing.exit_code == 2
    assert "no client cli_nobody" in missing.output


def test_rotation_makes_a_new_signing_key_and_keeps_the_old_one_verifying(data_dir: Path) -> None:
    first = run("keys", "rotate", "--json")
    second = run("keys", "rotate", "--json")
    assert first["kid"] != second["kid"]
    statuses = {row["kid"]: row["status"] for row in run("keys", "list", "--json")}
    assert statuses == {first["kid"]: "verifying", second["kid"]: "signing"}
    assert stat.S_IMODE((data_dir / "kek").stat().st_mode) == 0o600
    ahead = run("keys", "rotate", "--publish-ahead-hours", "24", "--json")
    statuses = {row["kid"]: row["status"] for row in run("keys", "list", "--json")}
    assert statuses[ahead["kid"]] == "pending"
    assert statuses[second["kid"]] == "signing"
