"""`synchub reconcile`: drift between the connected systems and the golden records."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

from synchub.config import Settings
from synchub.core.errors import HubError
from synchub.observability.logging import configure_logging
from synchub.register.loader import RegisterError
from synchub.register.model import Mode

err = Console(stderr=True, soft_wrap=True)


def reconcile_command(
    workspace: Annotated[
        str | None, typer.Option(help="the workspace (default: the register's)")
    ] = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="put drift right through the outbox")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Compare every connected system with the golden records, field by field.

    Drift is reported per customer and system. With --repair, a golden record behind its
    owner takes the owner's view (as an observation) and systems behind the golden record get
    a canonical event through the outbox, which the workers (`synchub serve`/`worker`)
    deliver with retries; run `synchub reconcile` again once they have.

    Not drift, listed apart: `held` (the record's delivery is a dead letter: replay it) and
    `orphaned` (a source such as Stripe no longer or never held the record and no flow
    reaches it, e.g. after a hand-sent test webhook: nothing to repair).

    Exit codes: 0 no drift (held and orphaned records do not count), or --repair queued its
    fixes; 1 drift remains (without --repair); 2 the register, store or a system failed.
    """
    from synchub.bootstrap import build_hub, sandbox_state_dir
    from synchub.migrations.runner import upgrade
    from synchub.reconciliation import reconcile
    from synchub.reconciliation import repair as run_repair

    settings = Settings()
    configure_logging(level="ERROR", json=settings.log_json)
    try:
        hub = build_hub(settings)
    except (RegisterError, HubError) as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from exc
    try:
        upgrade(hub.db)
        sandboxed = any(c.mode is Mode.SANDBOX for c in hub.register.connections.values())
        kept = sandbox_state_dir(settings)
        if sandboxed and not settings.sandbox_url and not any(kept.glob("*.json")):
            err.print(f"note: no sandbox vendor state is kept in {kept} yet, so the "
                      "sandboxes are empty; run `synchub demo`/`serve` on this data dir first, "
                      "or share a `synchub sandbox serve` (SYNCHUB_SANDBOX_URL)",
                      highlight=False)  # fmt: skip
        report = reconcile(hub, workspace=workspace, record_conflicts=True, actor="cli")
        if repair and report.drift:
            run_repair(hub, report, actor="cli")
    except HubError as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from exc
    finally:
        hub.close()
    data = report.as_dict()
    if as_json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    else:
        print_report(data, Console(soft_wrap=True))
    if data["drift"] and not repair:
        raise typer.Exit(1)


def print_report(data: dict[str, Any], console: Console) -> None:
    """The report in plain words: one line per customer, one per drifted field."""
    checked = data["checked"]
    console.print(
        f"reconciled workspace {data['workspace']}: {checked['customers']} customer(s), "
        f"{checked['records']} record view(s), {checked['fields']} field(s) compared",
        highlight=False,
    )
    for item in data["unreachable"]:
        console.print(f"  ! {item['system']} unreachable: {item['error']}", highlight=False)
    if data["unsettled_deliveries"]:
        console.print(f"  … {data['unsettled_deliveries']} deliveries still pending: drift may "
                      "be work in flight", highlight=False)  # fmt: skip
    for customer in data["customers"]:
        console.print(f"\n{customer['name']} ({customer['canonical_id']}): "
                      f"{customer['in_words']}", highlight=False)  # fmt: skip
        for system, items in customer["systems"].items():
            for d in items:
                console.print(f"  {_line(system, d)}", highlight=False)
        for d in customer.get("orphaned", []):
            console.print(f"  {_line(d['system'], d)}", highlight=False)
    conflicts = data["conflicts"]
    console.print(
        f"\ndrift: {data['drift']} field(s)"
        + (f"; held in the dead-letter queue: {data['held']} record(s)" if data["held"] else "")
        + (f"; orphaned: {data['orphaned']} record(s)" if data.get("orphaned") else "")
        + f"; conflicts recorded {conflicts['recorded']}, resolved {conflicts['resolved']}",
        highlight=False,
    )
    if data.get("orphaned_hint"):
        console.print(f"orphaned: {data['orphaned_hint']}", highlight=False)
    if data["repair"]:
        console.print(repair_words(data["repair"]), highlight=False)


def _line(system: str, d: dict[str, Any]) -> str:
    what = "record" if d["field"] == "*" else d["field"]
    return (f"{system} {d['entity']} {what}: golden {d['golden']!r}, {system} {d['value']!r}; "
            f"owner {d['owner'] or '-'} → {d['action']} ({d['reason']})")  # fmt: skip


def repair_words(r: dict[str, Any]) -> str:
    """What a repair did and queued, and how to see it delivered."""
    events = sum(r["events"].values())
    kinds = ", ".join(f"{n} {t}" for t, n in r["events"].items()) or "none"
    steps = r.get("events_from") or {}
    text = (f"repair: {r['observed']} owner view(s) applied ({steps.get('observed', 0)} "
            f"event(s)), {r['pushed']} record(s) pushed ({steps.get('pushed', 0)} event(s)); "
            f"{events} event(s) queued in the outbox: {kinds}.")  # fmt: skip
    if events:
        text += (" Nothing is delivered yet (nor counted by `synchub deliveries status` until a "
                 "worker fans the events out): run `synchub worker` (or keep `synchub serve` "
                 "running), then re-run `synchub reconcile` — drift 0 once they are "
                 "delivered.")  # fmt: skip
    return text
