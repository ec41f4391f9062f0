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
from rich.table import Table

from synchub.config import Settings
from synchub.core.errors import HubError
from synchub.observability.logging import configure_logging
from synchub.register.loader import RegisterError

app = typer.Typer(
    help="synchub: one truth about customers, invoices and payments.",
    no_args_is_help=True,
    add_completion=False,
)
register_app = typer.Typer(help="The integration register.", no_args_is_help=True)
app.add_typer(register_app, name="register")
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
    from synchub.bootstrap import load_checked_register

    settings = _settings()
    try:
        register, _ = load_checked_register(settings)
    except RegisterError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(1) from exc
    print(
        f"register ok: {len(register.connections)} connections, {len(register.flows)} flows, "
        f"{len(register.ownership)} field owners"
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

    settings = _settings(
        data_dir=data_dir, database_url=None, log_level=None if verbose else "WARNING"
    )
    settings = settings.model_copy(update={"database_url": None, "data_dir": data_dir})
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
    """Feed raw Stripe events through the webhook path, signed with the local secret."""
    from synchub.replay import replay_directory

    settings = _settings()
    try:
        result = replay_directory(settings, directory, url=url)
    except (RegisterError, HubError) as exc:
        _fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
        return
    table = Table(title=f"replayed {directory}")
    for key in (
        "files",
        "accepted",
        "duplicates",
        "rejected",
        "processed",
        "failed",
        "events_emitted",
    ):
        table.add_row(key, str(result[key]))
    Console().print(table)
    for problem in result["problems"]:
        err.print(problem, highlight=False, markup=False)


def main() -> None:
    """Entry point for the `synchub` script."""
    app()


if __name__ == "__main__":
    main()
