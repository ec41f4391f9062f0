"""`synchub vault status|rotate` and `synchub connections list|authorize` (ADR 0023).

Run them with the same SYNCHUB_* settings as the hub (the same store and key-encryption key).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from synchub.config import Settings
from synchub.core.errors import HubError
from synchub.observability.logging import configure_logging

vault_app = typer.Typer(help="Vendor secrets encrypted at rest.", no_args_is_help=True)
connections_app = typer.Typer(
    help="Vendor connections and their credentials.", no_args_is_help=True
)
err = Console(stderr=True, soft_wrap=True, highlight=False)
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON")]


def _fail(error: HubError) -> NoReturn:
    err.print(f"[red]error:[/red] {error}", markup=True)
    raise typer.Exit(2)


def _settings() -> Settings:
    settings = Settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


def _print_json(value: Any) -> None:
    default = lambda v: v.isoformat() if isinstance(v, datetime) else str(v)  # noqa: E731
    sys.stdout.write(json.dumps(value, default=default, ensure_ascii=False) + "\n")


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value else "-"


@contextmanager
def _store() -> Iterator[tuple[Settings, Any]]:
    from synchub.db import make_database
    from synchub.migrations.runner import upgrade

    settings = _settings()
    db = make_database(settings.resolved_database_url())
    try:
        upgrade(db)
        yield settings, db
    except HubError as exc:
        _fail(exc)
    finally:
        db.dispose()


@vault_app.command("status")
def vault_status(as_json: JsonOption = False) -> None:
    """Data key versions and how many secrets each one seals."""
    from synchub.vault.store import key_status

    with _store() as (_, db), db.read() as conn:
        keys = key_status(conn)
    if as_json:
        _print_json({"keys": keys})
        return
    table = Table("version", "created", "retired", "secrets", "kek id", title="vault data keys")
    for k in keys:
        table.add_row(
            str(k["version"]),
            _when(k["created_at"]),
            _when(k["retired_at"]),
            str(k["secrets"]),
            k["kek_id"],
        )
    Console().print(table)


@vault_app.command("rotate")
def vault_rotate(as_json: JsonOption = False) -> None:
    """Re-encrypt every secret under a new data key version. Safe to re-run: a rotation that
    stopped half-way is resumed (every secret stays readable throughout)."""
    from synchub.bootstrap import key_encryption_key
    from synchub.core.clock import SystemClock
    from synchub.vault.store import Vault, rotate

    with _store() as (settings, db):
        vault = Vault(key_encryption_key(settings))
        report = rotate(db, vault, now=SystemClock().now())
        _audit(settings, db, action="vault.rotated", target=f"v{report.version}")
    if as_json:
        _print_json(vars(report))
        return
    verb = "rotated to a new" if report.new_key else "resumed the rotation to"
    err.print(
        f"vault: {verb} data key v{report.version}; {report.resealed} secrets "
        f"re-encrypted, {report.remaining} still under older keys"
    )


def _audit(settings: Settings, db: Any, *, action: str, target: str) -> None:
    from synchub.audit.service import chain_key
    from synchub.audit.service import record as record_audit
    from synchub.bootstrap import key_encryption_key
    from synchub.core.clock import SystemClock

    with db.write() as conn:
        record_audit(
            conn,
            key=chain_key(key_encryption_key(settings)),
            at=SystemClock().now(),
            actor="cli",
            action=action,
            target=target,
        )


@connections_app.command("list")
def connections_list(as_json: JsonOption = False) -> None:
    """Every register connection with how it authenticates and its credential state."""
    from synchub.bootstrap import load_checked_register
    from synchub.connectors.oauth import is_oauth
    from synchub.vault.credentials import read_all

    try:
        register, _ = load_checked_register(_settings())
    except HubError as exc:
        _fail(exc)
    with _store() as (_, db), db.read() as conn:
        stored = read_all(conn, register.workspace)
    rows: list[dict[str, Any]] = []
    for c in register.connections.values():
        credential = stored.get(c.name)
        auth = "oauth" if is_oauth(c) else "token"
        state = credential.public() if credential else None
        status = state["status"] if state else ("not_authorized" if auth == "oauth" else "-")
        rows.append(
            {
                "name": c.name,
                "system": c.system,
                "mode": str(c.mode),
                "auth": auth,
                "status": status,
                "credential": state,
            }
        )
    if as_json:
        _print_json({"workspace": register.workspace, "connections": rows})
        return
    table = Table(
        "connection",
        "system",
        "mode",
        "auth",
        "status",
        "access token expires",
        "since",
        title=f"connections in {register.workspace}",
    )
    for row in rows:
        state = row["credential"] or {}
        since = state.get("needs_reauthorization_since") or state.get("authorized_at")
        table.add_row(
            row["name"],
            row["system"],
            row["mode"],
            row["auth"],
            row["status"],
            _when(state.get("access_expires_at")),
            _when(since),
        )
    Console().print(table)


@connections_app.command("authorize")
def connections_authorize(
    name: Annotated[str, typer.Argument(help="the connection (settings.auth: oauth)")],
    follow: Annotated[
        bool,
        typer.Option(help="sandbox connections: consent in the sandbox and finish here"),
    ] = False,
) -> None:
    """Print the URL that grants synchub access (authorization code + PKCE). Open it; the
    vendor sends you back to /oauth/callback/NAME on this hub, which stores the tokens."""
    from synchub.bootstrap import build_hub
    from synchub.migrations.runner import upgrade
    from synchub.register.model import Mode

    settings = _settings()
    try:
        hub = build_hub(settings)
    except HubError as exc:
        _fail(exc)
    try:
        upgrade(hub.db)
        credentials = hub.credentials
        connection = hub.register.connections.get(name)
        if credentials is None or connection is None or name not in credentials.clients:
            _fail(HubError(f"{name!r} is not a connection with settings.auth: oauth"))
        url = credentials.begin_authorization(name)
        if not follow:
            sys.stdout.write(url + "\n")
            err.print(
                f"open the URL above; the vendor redirects to "
                f"{credentials.clients[name].app.redirect_uri}"
            )
            return
        if connection.mode is not Mode.SANDBOX:
            _fail(HubError("--follow is for sandbox connections: open the URL in a browser"))
        query = credentials.clients[name].consent_in_sandbox(url)
        stored = credentials.complete_authorization(
            name, state=query.get("state"), code=query.get("code"), error=query.get("error")
        )
        err.print(f"{name}: {stored.status} (tenant {stored.tenant_id or '-'})")
    except HubError as exc:
        _fail(exc)
    finally:
        hub.close()
