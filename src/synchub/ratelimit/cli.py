"""`synchub usage`: fair-use counters this month for the clients of a workspace.

Reads the shared rate-limit store, so it needs the same `SYNCHUB_REDIS_URL` (and database and
register) as the servers. With the in-memory default, counters live inside each serving process
and no other process can see them: ask the running hub with `GET /v1/usage` instead.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, NoReturn

import typer

from synchub.bootstrap import build_authorization_server, build_ratelimiter, load_checked_register
from synchub.config import Settings
from synchub.core.clock import SystemClock
from synchub.core.errors import HubError
from synchub.db import make_database
from synchub.migrations.runner import upgrade
from synchub.observability.logging import configure_logging
from synchub.ratelimit.service import usage_body, usage_report
from synchub.register.loader import RegisterError

MEMORY_BACKEND = (
    "usage counters live in the memory of each serving process (SYNCHUB_REDIS_URL is not "
    "set), so this command cannot see them: ask the running hub with GET /v1/usage (scope "
    "read:usage; with admin:audit, every client of the workspace), or run every process "
    "with SYNCHUB_REDIS_URL so they share one store"
)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def show_usage(
    workspace: Annotated[str, typer.Option(help="live, or a sandbox-… workspace")] = "live",
    client: Annotated[str | None, typer.Option(help="only this client id")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """This month's calls, rejections by layer, quota and concurrency per client."""
    settings = Settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    if not settings.redis_url:
        _fail(MEMORY_BACKEND)
    clock = SystemClock()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = make_database(settings.resolved_database_url())
    try:
        upgrade(db)
        register, _ = load_checked_register(settings)
        server = build_authorization_server(settings, db, clock)
        with db.read() as conn:
            clients = server.list_clients(conn, workspace=workspace)
        chosen: list[tuple[str, str | None]] = [
            (c.client_id, c.name) for c in clients if client in (None, c.client_id)
        ]
        report = usage_report(build_ratelimiter(settings, clock), register, workspace=workspace,
                              clients=chosen, now=clock.now())  # fmt: skip
    except (RegisterError, HubError) as exc:
        _fail(str(exc))
    finally:
        db.dispose()
    body = usage_body(report)
    if as_json:
        sys.stdout.write(json.dumps(body, ensure_ascii=False) + "\n")
        return
    _print_report(body)


def _print_report(body: dict[str, Any]) -> None:
    """One block per client, a value per line, so nothing is cut at any width: ids are
    printed whole (they are what you paste into client_overrides or `--client`)."""
    lines = [
        f"{body['workspace']}, {body['period']} ({body['timezone']}); quotas reset at "
        f"{body['resets_at']}"
    ]
    for row in body["clients"]:
        rejected, quota, throttle = row["rejections"], row["quota"], row["throttle"]
        slots = row["concurrency"]
        overrides = row["overrides"]
        plan = row["plan"] + (f" (client_overrides: {', '.join(overrides)})" if overrides else "")
        lines += [
            "",
            row["client_id"] + (f"  {row['name']}" if row["name"] else ""),
            f"  plan          {plan}",
            f"  admitted      {row['calls_admitted']}",
            f"  refused       throttle {rejected['throttle']}, quota {rejected['quota']}, "
            f"concurrency {rejected['concurrency']}",
            f"  quota         {quota['used']} of {quota['limit']} used, {quota['remaining']} left",
            f"  throttle      {throttle['rate']} per {throttle['period_seconds']} s, "
            f"burst {throttle['burst']}",
            f"  slots         {slots['in_use']} of {slots['limit']} in use",
        ]
    sys.stdout.write("\n".join(lines) + "\n")
