"""The `synchub` command. Every command calls the same services the API calls."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Column, Table

from synchub.auth.cli import clients_app, keys_app
from synchub.config import Settings
from synchub.contract.cli import contract_app
from synchub.core.errors import HubError
from synchub.events.cli import deliveries_app, dlq_app
from synchub.mdm.cli import reconcile_command
from synchub.mdm.match_cli import match_app
from synchub.mdm.merges_cli import merges_app
from synchub.observability.logging import configure_logging
from synchub.ratelimit.cli import show_usage
from synchub.register.loader import RegisterError
from synchub.vault.cli import connections_app, vault_app

app = typer.Typer(
    help="synchub: one truth about customers, invoices and payments.",
    no_args_is_help=True,
    add_completion=False,
)
register_app = typer.Typer(help="The integration register.", no_args_is_help=True)
app.add_typer(register_app, name="register")
app.add_typer(clients_app, name="clients")
app.add_typer(keys_app, name="keys")
app.add_typer(contract_app, name="contract")
app.command("usage")(show_usage)
app.add_typer(deliveries_app, name="deliveries")
app.add_typer(dlq_app, name="dlq")
app.add_typer(merges_app, name="merges")
app.add_typer(match_app, name="match")
app.command("reconcile")(reconcile_command)
sandbox_app = typer.Typer(help="Vendor sandboxes over HTTP (chaos tests).", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(vault_app, name="vault")
app.add_typer(connections_app, name="connections")
err = Console(stderr=True, soft_wrap=True)


def _settings(**overrides: Any) -> Settings:
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    configure_logging(level=settings.log_level, json=settings.log_json)
    return settings


def _fail(error: HubError) -> None:
    err.print(f"[red]error:[/red] {error}", markup=True, highlight=False)
    raise typer.Exit(2)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to bind (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 8080)")] = None,
    role: Annotated[str, typer.Option(help="all | api: api runs no workers")] = "all",
) -> None:
    """Run the hub: the HTTP API plus in-process workers."""
    import uvicorn

    from synchub.api.app import create_app
    from synchub.bootstrap import build_hub
    from synchub.migrations.runner import upgrade
    from synchub.worker import Worker

    settings = _settings(host=host, port=port)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        hub = build_hub(settings)
    except (RegisterError, HubError) as exc:
        _fail(exc)
    upgrade(hub.db)
    worker = Worker(hub) if role == "all" else None
    api = create_app(hub, on_event_received=worker.wake if worker else None)
    if worker:
        worker.start()
    modes = ", ".join(f"{c.name} ({c.mode})" for c in hub.register.connections.values())
    err.print(
        f"synchub {hub.version} on http://{settings.host}:{settings.port} "
        f"(docs: /docs) · store {hub.db.engine.url.render_as_string(hide_password=True)} · "
        f"register {settings.register_dir}: {modes} · workers: {'on' if worker else 'off'}",
        highlight=False,
    )
    try:
        uvicorn.run(api, host=settings.host, port=settings.port, log_level="warning")
    finally:
        if worker:
            worker.stop()
        hub.close()


@app.command()
def worker() -> None:
    """Run only the workers (inbox, outbox fan-out, deliveries) until interrupted."""
    from synchub.bootstrap import build_hub
    from synchub.migrations.runner import upgrade
    from synchub.worker import Worker

    settings = _settings()
    try:
        hub = build_hub(settings)
    except (RegisterError, HubError) as exc:
        _fail(exc)
    upgrade(hub.db)
    runner = Worker(hub)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runner.start()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        runner.stop()
        hub.close()


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    from synchub.db import make_database
    from synchub.migrations.runner import upgrade

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = make_database(settings.resolved_database_url())
    upgrade(db)
    db.dispose()
    err.print("migrations: up to date")


@register_app.command("check")
def register_check() -> None:
    """Validate the register; print every problem with file and line."""
    from synchub.bootstrap import load_checked_register, missing_credentials

    settings = _settings()
    try:
        register, _ = load_checked_register(settings)
    except RegisterError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(1) from exc
    missing = missing_credentials(register, settings)
    for line in missing:
        typer.echo(f"{settings.register_dir}: {line}", err=True)
    if missing:
        raise typer.Exit(1)
    modes = ", ".join(f"{c.name} ({c.mode})" for c in register.connections.values())
    print(
        f"register ok ({settings.register_dir}): {len(register.connections)} connections "
        f"[{modes}], {len(register.flows)} flows, {len(register.ownership)} field owners"
    )


@app.command()
def demo(
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    data_dir: Annotated[Path, typer.Option(help="where the demo keeps its store")] = Path(
        ".synchub/demo"
    ),
    verbose: Annotated[bool, typer.Option(help="show the hub's logs on stderr")] = False,
) -> None:
    """Start the hub with vendor sandboxes and drive a realistic day of traffic through it."""
    from synchub.demo.run import run_demo

    settings = _settings(data_dir=data_dir, log_level=None if verbose else "ERROR")
    # The demo wipes its store first, so it always gets its own SQLite file in data_dir.
    settings = settings.model_copy(update={"database_url": None})
    try:
        summary = run_demo(settings)
    except (RegisterError, HubError) as exc:
        _fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
    else:
        from synchub.demo.report import print_summary

        print_summary(summary, Console())
    if not summary["consistent"]:
        raise typer.Exit(1)


@app.command()
def replay(
    directory: Annotated[Path, typer.Argument(help="a folder of Stripe event JSON files")],
    url: Annotated[str | None, typer.Option(help="post to a running hub instead")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Feed exported Stripe event files through the webhook path, signed with the local secret.

    Without --url an in-process hub runs on the configured store (SYNCHUB_DATABASE_URL, or
    SQLite in SYNCHUB_DATA_DIR) until the work settles. Exits 1 if any file was rejected,
    any event failed or is still waiting, or any delivery became a dead letter.
    """
    from synchub.replay import is_clean, replay_directory

    settings = _settings()
    try:
        result = replay_directory(settings, directory, url=url)
    except (RegisterError, HubError) as exc:
        _fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    else:
        _print_replay(directory, result)
    if not is_clean(result):
        raise typer.Exit(1)


def _print_replay(directory: Path, result: dict[str, Any]) -> None:
    console = Console()
    console.print(
        f"replayed {result['files']} file(s) from {directory}",
        highlight=False,
    )
    table = Table(show_header=False)
    for key in (
        "accepted",
        "duplicates",
        "rejected",
        "processed",
        "failed",
        "parked",
        "events_emitted",
    ):
        table.add_row(key.replace("_", " "), str(result[key]))
    for destination, counts in result.get("deliveries", {}).items():
        table.add_row(
            f"deliveries to {destination}",
            ", ".join(f"{n} {status}" for status, n in sorted(counts.items())),
        )
    console.print(table)
    if result.get("database"):
        console.print(f"store: {result['database']}", highlight=False)
    for problem in result["problems"]:
        err.print(problem, highlight=False, markup=False)
    if result["parked"]:
        err.print(
            "parked events wait for records they refer to; they are retried with backoff "
            "(see the inbox_events table for the reason)",
            highlight=False,
        )


@app.command("audit")
def audit_log(
    limit: Annotated[
        int, typer.Option(min=1, max=1000, help="how many entries: the newest N")
    ] = 50,
    workspace: Annotated[str | None, typer.Option(help="only this workspace")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show the newest audit log entries (printed oldest first) and check that its hash
    chain is intact."""
    from synchub.audit.service import chain_key, head_hash, verify_chain
    from synchub.bootstrap import key_encryption_key
    from synchub.db import make_database
    from synchub.events.outbox import to_json_safe
    from synchub.migrations.runner import upgrade

    settings = _settings(log_level="ERROR")
    db = make_database(settings.resolved_database_url())
    upgrade(db)
    with db.read() as conn:
        rows = _newest_audit_entries(conn, workspace=workspace, limit=limit)
        broken = verify_chain(conn, key=chain_key(key_encryption_key(settings)))
        head = head_hash(conn)
    db.dispose()
    if as_json:
        sys.stdout.write(
            json.dumps({"entries": to_json_safe(rows), "broken": broken, "head_hash": head}) + "\n"
        )
    else:
        table = Table(
            "at",
            "workspace",
            _whole("actor", rows, "actor"),
            "action",
            _whole("target", rows, "target"),
            "outcome",
        )
        for row in rows:
            table.add_row(
                str(to_json_safe(row["at"])),
                row["workspace"] or "-",
                row["actor"],
                row["action"],
                row["target"] or "-",
                row["outcome"],
            )
        Console(width=max(160, Console().width)).print(table)
        err.print(
            f"chain intact; head {head} (keep it elsewhere to detect truncation)"
            if not broken
            else f"chain BROKEN at {broken}",
            highlight=False,
        )
    if broken:
        raise typer.Exit(1)


def _newest_audit_entries(conn: Any, *, workspace: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` audit entries (of a workspace), oldest of them first."""
    import sqlalchemy as sa

    from synchub.audit.store import audit_log as log_table

    query = sa.select(log_table).order_by(log_table.c.seq.desc()).limit(limit)
    if workspace is not None:
        query = query.where(log_table.c.workspace == workspace)
    newest = [dict(r) for r in conn.execute(query).mappings()]
    return [{k: v for k, v in r.items() if k not in ("prev_hash", "seq")} for r in reversed(newest)]


def _whole(header: str, rows: list[dict[str, Any]], key: str) -> Column:
    """A table column whose values (ids) are always printed whole: never wrapped or cut."""
    widest = max((len(str(r[key] or "-")) for r in rows), default=0)
    return Column(header, no_wrap=True, overflow="fold", min_width=max(widest, len(header)))


@app.command("openapi")
def openapi_export(
    write: Annotated[bool, typer.Option("--write", help="write openapi/v1.yaml")] = False,
) -> None:
    """Print the OpenAPI document the API serves (or write it to openapi/v1.yaml)."""
    import yaml

    from synchub.api.app import contract_document
    from synchub.api.docs import CONTRACT
    from synchub.bootstrap import build_hub

    settings = _settings(log_level="ERROR")
    hub = build_hub(settings.model_copy(update={"database_url": "sqlite://"}))
    text = yaml.safe_dump(contract_document(hub), sort_keys=False, allow_unicode=True, width=100)
    hub.close()
    if write:
        CONTRACT.parent.mkdir(parents=True, exist_ok=True)
        CONTRACT.write_text(text, encoding="utf-8")
        err.print(f"wrote {CONTRACT}")
    else:
        sys.stdout.write(text)


Rate = Annotated[float, typer.Option(min=0.0, max=1.0)]


@sandbox_app.command("serve")
def sandbox_serve(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0: any free one)")] = 8099,
    error_rate: Rate = 0.0,
    timeout_rate: Rate = 0.0,
    throttle_rate: Rate = 0.0,
    retry_after: Annotated[int, typer.Option(min=0, help="Retry-After of a 429, s")] = 1,
    hang_seconds: Annotated[
        float, typer.Option(help="how long a timeout holds the connection before closing it")
    ] = 20.0,
    seed: Annotated[int | None, typer.Option(help="fault draws repeat for one seed")] = None,
) -> None:
    """Serve the Stripe, HubSpot, Xero and product sandboxes over HTTP, with random faults.

    Point every synchub process at it with SYNCHUB_SANDBOX_URL=http://HOST:PORT: they then
    share one vendor state, so a duplicate created by any of them shows (ADR 0011).
    """
    import contextlib
    from datetime import timedelta

    from synchub.connectors.chaos import ChaosRates
    from synchub.connectors.sandbox_server import HostedSandboxes, serve_sandboxes
    from synchub.core.clock import SystemClock

    rates = ChaosRates(error=error_rate, timeout=timeout_rate, throttle=throttle_rate,
                       retry_after_seconds=retry_after)  # fmt: skip
    hosted = HostedSandboxes(rates=rates, hang_seconds=hang_seconds, seed=seed,
                             stripe_start=SystemClock().now() - timedelta(days=1))  # fmt: skip

    def ready(url: str) -> None:
        err.print(f"sandboxes on {url} (stripe, hubspot, xero, product) · faults "
                  f"{rates.as_dict()} · state: {url}/_sandbox/state", highlight=False)  # fmt: skip

    with contextlib.suppress(KeyboardInterrupt):
        serve_sandboxes(hosted, host=host, port=port, on_ready=ready)


def main() -> None:
    """Entry point for the `synchub` script."""
    app()


if __name__ == "__main__":
    main()
