"""The demo's human-readable summary."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_summary(summary: dict[str, Any], console: Console) -> None:
    """Print what happened, in the order a newcomer wants to read it."""
    scenario = summary.get("scenario", {})
    console.print(
        "[bold]synchub demo: one business day through Stripe → synchub → "
        "HubSpot, Xero and the product[/bold]\n"
    )
    for step in scenario.get("steps", []):
        console.print(f"  • {step}", highlight=False)
    console.print("\n[bold]Failures injected[/bold]")
    for fault in scenario.get("faults", []):
        console.print(f"  ⚡ {fault}", highlight=False)

    events = summary["events"]
    table = Table(title="Webhooks and inbox", show_header=False)
    for key, label in (
        ("received", "Stripe webhooks received"),
        ("duplicates", "duplicates absorbed"),
        ("rejected", "rejected"),
        ("processed", "events processed"),
        ("ignored", "ignored (unmapped)"),
        ("failed", "failed"),
        ("waiting", "still waiting"),
    ):
        table.add_row(label, str(events[key]))
    console.print(table)

    golden = Table(title="Golden records", show_header=False)
    conflicts = {k: v for k, v in summary["golden"].items() if k.startswith("conflicts")}
    for key, value in summary["golden"].items():
        if key not in conflicts:
            golden.add_row(key, str(value))
    console.print(golden)
    if conflicts:
        still = conflicts.get("conflicts_open")
        recorded = conflicts.get("conflicts", 0)
        console.print(
            f"Conflicts (a non-owner disagreeing with a field's owner): {recorded} recorded"
            + ("" if still is None else f", {still} still open"),
            highlight=False,
        )

    deliveries = Table(title="Deliveries per destination")
    for column in ("destination", "succeeded", "dead", "attempts", "retried"):
        deliveries.add_column(column)
    for name, stats in summary["deliveries"].items():
        deliveries.add_row(
            name, *(str(stats.get(k, 0)) for k in ("succeeded", "dead", "attempts", "retried"))
        )
    console.print(deliveries)

    console.print(f"\n[bold]Dead letters[/bold] ({len(summary['dead_letters'])})")
    for dead in summary["dead_letters"]:
        who = dead["subject"]
        if dead.get("subject_name"):
            who = f"{dead['subject_name']} ({who})"
        console.print(
            f"  ✗ {dead['destination']} {dead['event_type']} for {who} after "
            f"{dead['attempts']} attempt(s): {dead['reason']}",
            highlight=False,
        )

    rec = summary.get("reconciliation")
    if rec:
        _print_reconciliation(rec, console)

    verdict = summary["consistency"]
    ok = summary["consistent"]
    explained = len(verdict["explained_by_dead_letters"])
    answer = "yes" if ok else "NO"
    if ok and explained:
        answer += f", except {explained} record(s) held in the dead-letter queue"
    console.print(
        f"\n[bold]Every system agrees with the golden records:[/bold] {answer} "
        f"({verdict['checked']} checks)"
    )
    for line in verdict["explained_by_dead_letters"]:
        console.print(f"  … {line}", highlight=False)
    for line in verdict["disagreements"] + verdict["duplicates"]:
        console.print(f"  ✗ {line}", highlight=False)
    console.print(f"\nfinished in {summary['duration_seconds']} s; store: {summary['database']}")


def _held(n: int) -> str:
    return f", {n} record(s) held in the dead-letter queue (not drift)" if n else ""


def _print_reconciliation(rec: dict[str, Any], console: Console) -> None:
    """Drift found, repaired and left: fields and held records counted apart."""
    console.print(
        f"\n[bold]Reconciliation[/bold] (the next morning): {rec['drift_found']} drifted "
        f"field(s) found{_held(rec.get('held_found', 0))}; "
        f"{rec['conflicts_recorded']} conflict(s) recorded"
    )
    for customer in rec["found"]:
        console.print(f"  {customer['name']}: {customer['in_words']}", highlight=False)
        for line in customer["drift"]:
            console.print(f"    ↺ {line}", highlight=False)
    if rec["repair"]:
        r = rec["repair"]
        kinds = ", ".join(f"{n} {t}" for t, n in r["events"].items()) or "none"
        steps = r.get("events_from") or {}
        console.print(
            f"  repaired: {r['observed']} owner view(s) applied ({steps.get('observed', 0)} "
            f"event(s)) and {r['pushed']} record(s) pushed ({steps.get('pushed', 0)} event(s)): "
            f"{sum(r['events'].values())} event(s) through the outbox ({kinds})",
            highlight=False,
        )
    console.print(
        f"  after the repair: {rec['drift_after_repair']} drifted field(s)"
        f"{_held(rec['held'])}; {rec['conflicts_resolved']} conflict(s) resolved",
        highlight=False,
    )
