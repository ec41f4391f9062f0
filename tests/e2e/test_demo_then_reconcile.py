"""Issue 5's "done when", in separate processes on one data directory: `synchub demo`, then
`synchub reconcile --json` finds no drift (the vendors' state was kept); a vendor changed by
hand is found, `--repair` queues the fix, `synchub worker` delivers it, and reconcile finds
nothing again. A second demo starts on empty vendors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from synchub.cli import app
from tests.conftest import REPO


def _env(data_dir: Path) -> dict[str, str]:
    return {"SYNCHUB_DATA_DIR": str(data_dir), "SYNCHUB_REGISTER_DIR": str(REPO / "register"),
            "SYNCHUB_LOG_LEVEL": "ERROR"}  # fmt: skip


def _demo(data_dir: Path, cwd: Path) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "synchub.cli", "demo", "--json", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=120, env={**os.environ, **_env(data_dir)},
        cwd=cwd, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _reconcile(data_dir: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["reconcile", "--json", *args], env=_env(data_dir))
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout.strip().splitlines()[-1])


def _contacts(data_dir: Path) -> dict[str, Any]:
    state = json.loads((data_dir / "sandboxes" / "hubspot.json").read_text())
    return dict(state["objects"]["contacts"])


def _billing_status(data_dir: Path, contact_id: str) -> str:
    return str(_contacts(data_dir)[contact_id]["properties"]["synchub_billing_status"])


@pytest.mark.slow
def test_demo_then_reconcile_in_another_process_finds_no_drift(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    summary = _demo(data_dir, tmp_path)
    assert summary["reconciliation"]["drift_after_repair"] == 0

    code, report = _reconcile(data_dir)
    assert (code, report["drift"], report["unreachable"]) == (0, 0, [])
    assert report["checked"]["customers"] == summary["golden"]["customer"]
    assert report["checked"]["records"] > report["checked"]["customers"]  # vendors were read

    # overnight a sales rep marks a paying customer canceled in HubSpot by hand
    kept = data_dir / "sandboxes" / "hubspot.json"
    state = json.loads(kept.read_text())
    contact = next(c for c in state["objects"]["contacts"].values()
                   if c["properties"].get("synchub_billing_status") == "active")  # fmt: skip
    contact["properties"]["synchub_billing_status"] = "canceled"
    kept.write_text(json.dumps(state))
    code, report = _reconcile(data_dir)
    assert code == 1
    assert [d["field"] for c in report["customers"] for d in c["systems"].get("hubspot", [])] == [
        "billing_status"
    ]

    code, repaired = _reconcile(data_dir, "--repair")
    assert code == 0
    assert repaired["repair"]["pushed"] == 1
    log = tmp_path / "worker.log"
    with log.open("w") as out, subprocess.Popen(
        [sys.executable, "-m", "synchub.cli", "worker"],
        env={**os.environ, **_env(data_dir)}, cwd=tmp_path, stdout=out, stderr=out,
    ) as worker:  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while _billing_status(data_dir, contact["id"]) != "active":
                assert worker.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the worker did not deliver the repair"
                time.sleep(0.2)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
    code, report = _reconcile(data_dir)
    assert (code, report["drift"], report["unsettled_deliveries"]) == (0, 0, 0)

    # a second demo wipes its store and the kept vendors with it: the same day, not two
    first = sorted(int(i) for i in _contacts(data_dir))
    assert _demo(data_dir, tmp_path)["consistent"] is True
    second = sorted(int(i) for i in _contacts(data_dir))
    assert (len(second), second[0]) == (len(first), first[0])  # ids start over, none added
