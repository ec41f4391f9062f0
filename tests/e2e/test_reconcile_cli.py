"""`synchub reconcile` in a process of its own: the drift it sees in sandboxes that lost what
the hub sent them (their kept state removed), and a --repair queued through the outbox."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from synchub.cli import app
from tests.conftest import REPO

EVENTS = REPO / "tests" / "data" / "stripe" / "events"


def test_reconcile_reports_drift_and_repair_queues_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNCHUB_DATA_DIR", str(tmp_path / "hub"))
    monkeypatch.setenv("SYNCHUB_REGISTER_DIR", str(REPO / "register"))
    runner = CliRunner()
    runner.invoke(app, ["replay", str(EVENTS), "--json"])  # a customer, delivered in-process
    shutil.rmtree(tmp_path / "hub" / "sandboxes")  # the vendors forget it: drift to find

    found = runner.invoke(app, ["reconcile", "--json"])
    assert found.exit_code == 1, found.output  # drift remains: exit 1
    report = json.loads(found.stdout.strip().splitlines()[-1])
    assert report["drift"] >= 2
    items = [d for c in report["customers"] for ds in c["systems"].values() for d in ds]
    items += [d for c in report["customers"] for d in c["orphaned"]]
    missing = {(d["system"], d["action"]) for d in items if d["field"] == "*"}
    assert {("xero", "push"), ("product", "push")} <= missing  # the vendors forgot it
    assert ("hubspot", "held") in missing  # no email: its HubSpot delivery is a dead letter
    assert ("stripe", "orphaned") in missing  # Stripe is no destination: nothing to push
    assert "missing in hubspot" in report["customers"][0]["in_words"]

    repaired = runner.invoke(app, ["reconcile", "--repair", "--json"])
    assert repaired.exit_code == 0, repaired.output
    result = json.loads(repaired.stdout.strip().splitlines()[-1])
    assert result["repair"]["pushed"] == len(report["customers"])
    assert result["repair"]["events"]["customer.updated"] == len(report["customers"])
    assert result["repair"]["events"]["subscription.activated"] == 1  # the product's event

    plain = runner.invoke(app, ["reconcile"])
    assert "→ push" in plain.stdout
    assert "drift:" in plain.stdout

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'hub' / 'synchub.db'}")
    with engine.connect() as conn:
        sources = conn.execute(sa.text(
            "SELECT source, traceparent FROM outbox_events WHERE type = 'customer.updated' "
            "AND source LIKE '%/reconcile'")).all()  # fmt: skip
        audit = conn.execute(sa.text(
            "SELECT actor FROM audit_log WHERE action = 'reconcile.repair'")).all()  # fmt: skip
    engine.dispose()
    assert len(sources) == result["repair"]["pushed"]
    assert {tp for _, tp in sources} == {result["repair"]["traceparent"]}
    assert [a for (a,) in audit] == ["cli"]
