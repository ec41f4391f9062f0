"""`synchub deliveries status` and `synchub dlq list|show|replay`: the delivery backbone from
a terminal. Run them with the same SYNCHUB_* settings as the hub (the same store); they call
the services the API calls (events/service.py)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Column, Table

from synchub.audit.service import chain_key
from synchub.audit.service import record as record_audit
from synchub.config import Settings
from synchub.core.clock import Clock, SystemClock
from synchub.core.errors import HubError, ValidationError
from synchub.db import Database, make_database
from synchub.events.outbox import to_json_safe
from synchub.events.service import (
    DeliveryFilter,
    breaker_policies,
    check_replay_request,
    destination_status,
    get_delivery,
    list_deliveries,
    replay,
    workspace_of,
)
from synchub.migrations.runner import upgrade
from synchub.observability.logging import configure_logging
from synchub.register.model import Register

deliveries_app = typer.Typer(help="Deliveries to destinations.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead letters: list, show, replay.", no_args_is_help=True)
CLI_ACTOR = "cli"

JsonOption = Annotated[bool, typer.Option("--json", help="print JSON")]
WorkspaceOption = Annotated[
    str | None, typer.Option(help="the workspace (default: the register's)")
]
Destination = Annotated[str | None, typer.Option(help="only this destination")]
EventType = Annotated[str | None, typer.Option("--event-type", help="only this event type")]
Since = Annotated[str | None, typer.Option(help="created at or after (ISO 8601; UTC if no zone)")]
Until = Annotated[str | None, typer.Option(help="created before (ISO 8601; UTC if no zone)")]
ErrorCode = Annotated[
    int | None, typer.Option("--error-code", min=100, max=599, help="last HTTP status")
]


@dataclass
class _Opened:
    db: Database
    register: Register
    settings: Settings
    clock: Clock
    workspace: str


@contextmanager
def _opened(workspace: str | None) -> Iterator[_Opened]:
    from synchub.bootstrap import load_checked_register

    settings = Settings()
    configure_logging(level=settings.log_level, json=settings.log_json)  # on stderr
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        register, _ = load_checked_register(settings)
    except HubError as exc:
        _fail(exc)
    db = make_database(settings.resolved_database_url())
    try:
        upgrade(db)
        yield _Opened(db, register, settings, SystemClock(), workspace or register.workspace)
    except HubError as exc:
        _fail(exc)
    finally:
        db.dispose()


def _fail(error: HubError) -> NoReturn:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(2)


def _id_column(header: str, items: list[dict[str, Any]], key: str = "id") -> Column:
    """A column that always prints its ids whole: never wrapped, cut or shrunk."""
    widest = max((len(str(item[key])) for item in items), default=len(header))
    return Column(header, no_wrap=True, overflow="fold", min_width=max(widest, len(header)))


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_json_safe(value), ensure_ascii=False) + "\n")


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value else "-"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _instant(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"not an ISO 8601 time: {value!r}", param_hint=option) from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@deliveries_app.command("status")
def status(workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """Per destination: state, breaker, open/paused until, next attempt, counts, oldest pending.

    A partner webhook endpoint (webhook:<id>) shows whether it is enabled; a disabled one
    shows why and since when, and its deliveries are counted as held (sent once it is
    enabled again), not attempted.
    """
    with _opened(workspace) as hub, hub.db.read() as conn:
        rows = destination_status(conn, workspace=hub.workspace, now=hub.clock.now(),
                                  breaker_for=breaker_policies(hub.register))  # fmt: skip
    if as_json:
        _print_json({"workspace": hub.workspace, "destinations": rows})
        return
    table = Table("destination", "state", "breaker", "until", "next attempt", "pending",
                  "in flight", "held", "succeeded", "dead", "oldest pending", "retry tokens",
                  title=f"deliveries in {hub.workspace}")  # fmt: skip
    for name in sorted(rows):
        row, b = rows[name], rows[name]["breaker"]
        counts = row["deliveries"]
        label = b["state"] + (" (paused)" if b["paused_until"] else "")
        tokens = f"{b['retry_tokens']:g}" + (" throttled" if b["throttled"] else "")
        table.add_row(name, _endpoint_state(row.get("endpoint")), label,
                      _when(b["blocked_until"]), _when(row["next_attempt_at"]),
                      *(str(counts.get(s, 0)) for s in ("pending", "in_flight", "held",
                                                        "succeeded", "dead")),
                      _age(row["oldest_pending_age_seconds"]), tokens)  # fmt: skip
    Console(width=200).print(table)


def _endpoint_state(endpoint: dict[str, Any] | None) -> str:
    """`enabled`, or `disabled (why) since when`, for a partner webhook endpoint; `-` else."""
    if endpoint is None:
        return "-"
    if endpoint["enabled"]:
        return "enabled"
    return f"disabled ({endpoint['disabled_reason']}) since {_when(endpoint['disabled_at'])}"


def _filter(
    destination: str | None,
    event_type: str | None,
    since: str | None,
    until: str | None,
    error_code: int | None,
) -> DeliveryFilter:
    return DeliveryFilter(status="dead", destination=destination, event_type=event_type,
                          since=_instant(since, "--since"), until=_instant(until, "--until"),
                          error_code=error_code)  # fmt: skip


@dlq_app.command("list")
def dlq_list(
    destination: Destination = None,
    event_type: EventType = None,
    since: Since = None,
    until: Until = None,
    error_code: ErrorCode = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="how many")] = 50,
    starting_after: Annotated[str | None, typer.Option(help="page after this id")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Dead letters in id order, with their reason and last HTTP status."""
    where = _filter(destination, event_type, since, until, error_code)
    with _opened(workspace) as hub, hub.db.read() as conn:
        page = list_deliveries(conn, workspace=hub.workspace, limit=limit,
                               starting_after=starting_after, where=where)  # fmt: skip
    if as_json:
        _print_json({"data": page.items, "has_more": page.has_more})
        return
    if not page.items:  # on stderr: stdout stays empty, --json prints {"data": []}
        typer.echo("no dead letters" + (" matching the filters" if where != DeliveryFilter(
            status="dead") or starting_after else ""), err=True)  # fmt: skip
        return
    table = Table(_id_column("id", page.items), "destination", "event type", "http", "attempts",
                  "created", "reason")  # fmt: skip
    for item in page.items:
        reason = item["dead_reason"] or ""
        table.add_row(item["id"], item["destination"], item["event_type"],
                      str(item["last_status_code"] or "-"), str(item["attempts"]),
                      _when(item["created_at"]),
                      reason if len(reason) <= 80 else reason[:77] + "...")  # fmt: skip
    Console(width=200).print(table)
    if page.has_more and page.items:
        typer.echo(f"more: --starting-after {page.items[-1]['id']}", err=True)


@dlq_app.command("show")
def dlq_show(
    delivery_id: Annotated[str, typer.Argument(help="the dead letter's id")],
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """One dead letter: its reason, the last (redacted) response and every attempt.

    Delivery ids are unique across workspaces: without --workspace the id is looked up in all.
    """
    with _opened(workspace) as hub, hub.db.read() as conn:
        try:
            found_in = workspace or workspace_of(conn, delivery_id) or hub.workspace
            item = get_delivery(conn, workspace=found_in, delivery_id=delivery_id,
                                dead_only=True)  # fmt: skip
        except HubError as exc:
            _fail(exc)
    if as_json:
        _print_json(item)
        return
    console = Console(width=160, highlight=False)
    console.print(f"workspace: {found_in}", markup=False)
    for label in ("id", "destination", "event_type", "event_id", "subject", "idempotency_key",
                  "attempts", "last_status_code", "created_at", "completed_at"):  # fmt: skip
        value = item.get(label)
        shown = _when(value) if isinstance(value, datetime) else value
        console.print(f"{label}: {shown if shown is not None else '-'}", markup=False)
    console.print(f"reason: {item['dead_reason']}", markup=False)
    _print_response(console, "last response", item["last_response"])
    table = Table("attempt", "finished", "outcome", "status", "error")
    for attempt in item["attempt_history"]:
        table.add_row(str(attempt["attempt"]), _when(attempt["finished_at"]), attempt["outcome"],
                      str(attempt["status_code"] or "-"), attempt["error"] or "")  # fmt: skip
    console.print(table)


def _print_response(console: Console, label: str, response: dict[str, Any] | None) -> None:
    if not response:
        console.print(f"{label}: none (no HTTP answer)")
        return
    headers = ", ".join(f"{k}: {v}" for k, v in response["headers"].items())
    cut = " (truncated)" if response.get("truncated") else ""
    console.print(f"{label}: HTTP {response['status']} [{headers}]", markup=False)
    if response.get("body_withheld"):
        console.print(f"  body: withheld ({response['body_withheld']})", markup=False)
        return
    console.print(f"  body{cut}: {response['body']}", markup=False)


@dlq_app.command("replay")
def dlq_replay(
    ids: Annotated[list[str] | None, typer.Argument(help="dead letter ids")] = None,
    destination: Destination = None,
    event_type: EventType = None,
    since: Since = None,
    until: Until = None,
    error_code: ErrorCode = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Queue dead letters again with their original idempotency keys (ids or filters).

    Named ids are replayed whatever their status: a finished delivery is queued again, a
    pending one (waiting for a retry) is made due now; one in flight or held is refused
    (exit 2).

    Output: the id of each delivery queued or made due, one per line, on stdout (for
    scripts); the summary on stderr. --json prints one JSON object on stdout instead.
    """
    where = _filter(destination, event_type, since, until, error_code)
    if not ids and where == DeliveryFilter(status="dead"):
        raise typer.BadParameter("give dead letter ids or at least one filter")
    with _opened(workspace) as hub, hub.db.write() as conn:
        try:  # the API's checks: a known destination, since not after until, …
            check_replay_request(conn, workspace=hub.workspace, where=where,
                                 delivery_ids=list(ids) if ids else None,
                                 connections=hub.register.connections)  # fmt: skip
        except ValidationError as exc:
            for problem in exc.problems:
                option = _OPTIONS.get(problem.pointer, problem.pointer or "filters")
                typer.echo(f"error: {option}: {problem.detail}", err=True)
            raise typer.Exit(2) from exc
        now = hub.clock.now()
        done = replay(conn, workspace=hub.workspace, where=where, now=now,
                      delivery_ids=list(ids) if ids else None)  # fmt: skip
        record_audit(conn, key=_audit_key(hub.settings), at=now, actor=CLI_ACTOR,
                     action="deliveries.replay", workspace=hub.workspace,
                     target=str(len(done.replayed) + len(done.due_now)))  # fmt: skip
    if as_json:
        _print_json({"replayed": done.replayed, "count": len(done.replayed),
                     "due_now": done.due_now})  # fmt: skip
        return
    for delivery_id in done.replayed + done.due_now:
        typer.echo(delivery_id)
    typer.echo(f"replayed {len(done.replayed)} finished delivery(ies) with their original keys",
               err=True)  # fmt: skip
    if done.due_now:
        typer.echo(f"made {len(done.due_now)} pending delivery(ies) due now (same keys, "
                   "attempts kept): " + " ".join(done.due_now), err=True)  # fmt: skip


_OPTIONS = {"/ids": "IDS", "/destination": "--destination", "/event_type": "--event-type",
            "/since": "--since", "/until": "--until", "/error_code": "--error-code"}  # fmt: skip


def _audit_key(settings: Settings) -> bytes:
    from synchub.bootstrap import key_encryption_key

    return chain_key(key_encryption_key(settings))
