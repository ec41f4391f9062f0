"""The commands a newcomer runs: `synchub demo --json` and `synchub replay DIR`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synchub.cli import app
from tests.conftest import REPO

EVENTS = REPO / "tests" / "data" / "stripe" / "events"


@pytest.mark.slow
def test_demo_json_reports_a_consistent_day(tmp_path: Path) -> None:
    env = {**os.environ, "SYNCHUB_REGISTER_DIR": str(REPO / "register")}
    done = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [
            sys.executable,
            "-m",
            "synchub.cli",
            "demo",
            "--json",
            "--data-dir",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"events", "golden", "deliveries", "dead_letters", "consistent"} <= set(summary)
    assert summary["consistent"] is True
    assert summary["events"]["duplicates"] >= 1
    assert len(summary["dead_letters"]) >= 1
    assert summary["golden"]["customer"] == 6
    assert summary["duration_seconds"] < 60


def test_replay_feeds_a_folder_through_the_webhook_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNCHUB_DATA_DIR", str(tmp_path / "hub"))
    monkeypatch.setenv("SYNCHUB_REGISTER_DIR", str(REPO / "register"))
    runner = CliRunner()
    first = runner.invoke(app, ["replay", str(EVENTS), "--json"])
    assert first.exit_code == 1, first.output  # two events wait for a subscription not exported
    result = json.loads(first.stdout.strip().splitlines()[-1])
    assert (result["files"], result["accepted"], result["rejected"]) == (5, 5, 0)
    assert result["processed"] >= 2  # the customer and its refunded charge
    assert result["processed"] + result["parked"] + result["failed"] == 5
    assert result["parked"] == 2
    assert result["events_emitted"] >= 3
    again = json.loads(
        runner.invoke(app, ["replay", str(EVENTS), "--json"]).stdout.strip().splitlines()[-1]
    )
    assert again["duplicates"] == 5


def test_replay_rejects_a_folder_without_events(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["replay", str(tmp_path)])
    assert result.exit_code == 2
    assert "holds no *.json files" in result.output
