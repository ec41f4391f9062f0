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
    for key, value in summary["golden"].items():
        golden.add_row(key, str(value))
    console.print(golden)

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
        console.print(
            f"\n[bold]Reconciliation[/bold] (the next morning): {rec['drift_found']} drifted "
            f"field(s) found, {rec['conflicts_recorded']} conflict(s) recorded"
        )
        for customer in rec["found"]:
            console.print(f"  {customer['name']}: {customer['in_words']}", highlight=False)
            for line in customer["drift"]:
                console.print(f"    ↺ {line}", highlight=False)
        if rec["repair"]:
            r = rec["repair"]
            events = ", ".join(f"{n} {t}" for t, n in r["events"].items()) or "none"
            console.print(
                f"  repaired: {r['observed']} owner view(s) applied, {r['pushed']} record(s) "
                f"pushed through the outbox ({events})",
                highlight=False,
            )
        held = f", {rec['held']} held in the dead-letter queue" if rec["held"] else ""
        console.print(
            f"  after the repair: {rec['drift_after_repair']} drifted field(s){held}; "
            f"{rec['conflicts_resolved']} conflict(s) resolved",
            highlight=False,
        )

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
