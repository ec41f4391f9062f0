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
    deliver with retries. Exits 1 while drift remains (0 after --repair once it is queued).
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
                what = "record" if d["field"] == "*" else d["field"]
                console.print(f"  {system} {d['entity']} {what}: golden {d['golden']!r}, "
                              f"{system} {d['value']!r}; owner {d['owner'] or '-'} → "
                              f"{d['action']} ({d['reason']})", highlight=False)  # fmt: skip
    conflicts = data["conflicts"]
    console.print(
        f"\ndrift: {data['drift']} field(s)"
        + (f", {data['held']} held in the dead-letter queue" if data["held"] else "")
        + f"; conflicts recorded {conflicts['recorded']}, resolved {conflicts['resolved']}",
        highlight=False,
    )
    if data["repair"]:
        r = data["repair"]
        events = ", ".join(f"{n} {t}" for t, n in r["events"].items()) or "none"
        console.print(f"repair: {r['observed']} owner view(s) applied, {r['pushed']} record(s) "
                      f"pushed; events queued: {events}; the workers deliver them — run "
                      "`synchub reconcile` again to confirm", highlight=False)  # fmt: skip
