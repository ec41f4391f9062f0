"""`synchub clients …` and `synchub keys …`: API clients and access-token signing keys.

Run these with the same settings as the server (database and key-encryption key): a key made
here is sealed with this process's key-encryption key, and the server must be able to open it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from synchub.auth.model import ApiClient, SigningKey, format_scope, parse_scope, pick_signing_key
from synchub.auth.service import AuthorizationServer
from synchub.bootstrap import build_authorization_server
from synchub.config import Settings
from synchub.core.clock import SystemClock, isoformat_z
from synchub.core.errors import HubError, ValidationError
from synchub.db import Database, make_database
from synchub.migrations.runner import upgrade

clients_app = typer.Typer(help="OAuth clients of the /v1 API.", no_args_is_help=True)
keys_app = typer.Typer(help="The keys that sign access tokens.", no_args_is_help=True)
CLI_ACTOR = "cli"
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON")]


@contextmanager
def _opened() -> Iterator[tuple[Database, AuthorizationServer]]:
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = make_database(settings.resolved_database_url())
    try:
        upgrade(db)
        yield db, build_authorization_server(settings, db, SystemClock())
    except HubError as exc:
        _fail(exc)
    finally:
        db.dispose()


def _fail(error: HubError) -> NoReturn:
    typer.echo(f"error: {error}", err=True)
    if isinstance(error, ValidationError):
        for problem in error.problems:
            typer.echo(f"  {problem.pointer}: {problem.detail}", err=True)
    raise typer.Exit(2)


def _print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")


def _when(value: datetime | None) -> str | None:
    return isoformat_z(value) if value is not None else None


def _client_row(client: ApiClient) -> dict[str, object]:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "workspace": client.workspace,
        "scopes": format_scope(client.scopes),
        "created_at": _when(client.created_at),
        "revoked_at": _when(client.revoked_at),
    }


@clients_app.command("create")
def create_client(
    name: Annotated[str, typer.Option(help="who the client is for, e.g. the partner")],
    scopes: Annotated[str, typer.Option(help='space-separated, e.g. "read:customers"')],
    workspace: Annotated[str, typer.Option(help="live, or a sandbox-… workspace")] = "live",
    as_json: JsonOption = False,
) -> None:
    """Register a client and print its id and secret. The secret is shown only this once."""
    with _opened() as (db, server), db.write() as conn:
        client_id, secret = server.create_client(
            conn, name=name, scopes=parse_scope(scopes), workspace=workspace, actor=CLI_ACTOR
        )
    if as_json:
        _print_json(
            {
                "client_id": client_id,
                "client_secret": secret,
                "workspace": workspace,
                "scopes": format_scope(parse_scope(scopes)),
            }
        )
        return
    typer.echo(f"client_id:     {client_id}\nclient_secret: {secret}")
    typer.echo("The secret is shown only now: store it somewhere safe.", err=True)


@clients_app.command("list")
def list_clients(as_json: JsonOption = False) -> None:
    """List every client, revoked ones included."""
    with _opened() as (db, server), db.read() as conn:
        rows = [_client_row(client) for client in server.list_clients(conn)]
    if as_json:
        _print_json(rows)
        return
    table = Table("client_id", "name", "workspace", "scopes", "created_at", "revoked_at")
    for row in rows:
        table.add_row(*(str(value) if value is not None else "-" for value in row.values()))
    Console().print(table)


@clients_app.command("revoke")
def revoke_client(client_id: Annotated[str, typer.Argument(help="the client to revoke")]) -> None:
    """Revoke a client: it gets no new tokens and its current tokens stop working."""
    with _opened() as (db, server), db.write() as conn:
        client = server.revoke_client(conn, client_id, actor=CLI_ACTOR)
    typer.echo(f"revoked {client.client_id} at {_when(client.revoked_at)}")


def _key_row(key: SigningKey, *, signing: str | None, now: datetime) -> dict[str, object]:
    if not key.is_published(now):
        status = "retired"
    elif key.kid == signing:
        status = "signing"
    else:
        status = "pending" if key.activates_at > now else "verifying"
    return {
        "kid": key.kid,
        "alg": key.alg,
        "status": status,
        "created_at": _when(key.created_at),
        "activates_at": _when(key.activates_at),
        "retired_at": _when(key.retired_at),
    }


@keys_app.command("rotate")
def rotate_keys(
    publish_ahead_hours: Annotated[
        float, typer.Option(help="publish now, sign from this many hours on (24 recommended)")
    ] = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Make a new signing key; older keys keep verifying until their tokens have expired."""
    with _opened() as (db, server), db.write() as conn:
        key = server.rotate_keys(
            conn, publish_ahead=timedelta(hours=publish_ahead_hours), actor=CLI_ACTOR
        )
    row = {"kid": key.kid, "alg": key.alg, "activates_at": _when(key.activates_at)}
    if as_json:
        _print_json(row)
        return
    typer.echo(f"new signing key {key.kid} ({key.alg}), signing from {row['activates_at']}")


@keys_app.command("list")
def list_keys(as_json: JsonOption = False) -> None:
    """List the signing keys and what each does now (signing, verifying, pending, retired)."""
    now = SystemClock().now()
    with _opened() as (db, server), db.read() as conn:
        keys = server.list_keys(conn)
    signing = pick_signing_key(keys, now)
    rows = [_key_row(k, signing=signing.kid if signing else None, now=now) for k in keys]
    if as_json:
        _print_json(rows)
        return
    table = Table("kid", "alg", "status", "created_at", "activates_at", "retired_at")
    for row in rows:
        table.add_row(*(str(value) if value is not None else "-" for value in row.values()))
    Console().print(table)
