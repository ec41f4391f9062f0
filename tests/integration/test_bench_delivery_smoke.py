"""bench/delivery.py still runs end to end and reports every figure (never checks timings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
THROUGHPUT_KEYS = {
    "database",
    "workers",
    "httpx_posts_per_second",
    "synchub_deliveries_per_second",
    "claim_loop_rows_per_second",
    "ratio_vs_httpx",
    "target_vs_httpx",
    "ratio_vs_claim_loop",
    "target_vs_claim_loop",
}
FIRST_ATTEMPT_KEYS = {"first_attempt_p50_ms", "commit_p50_ms", "ratio_first_attempt_vs_commit"}
END_TO_END_KEYS = {"max_webhooks_per_second", "offered_webhooks_per_second", "p50_ms", "p99_ms"}


@pytest.mark.slow
def test_the_delivery_bench_prints_its_figures_as_a_json_last_line() -> None:
    """The smallest mode on SQLite: the last stdout line is the JSON summary with every ratio."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCHUB_")}

    done = subprocess.run(
        [sys.executable, "bench/delivery.py", "--smoke", "--databases", "sqlite"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["bench"] == "delivery"
    assert set(summary["targets"]) == {
        "synchub_vs_httpx",
        "synchub_vs_claim_loop",
        "first_attempt_vs_commit",
    }
    [throughput] = summary["throughput"]
    assert set(throughput) >= THROUGHPUT_KEYS
    assert (throughput["database"], throughput["workers"]) == ("sqlite", 1)
    assert set(summary["first_attempt"]["sqlite"]) >= FIRST_ATTEMPT_KEYS
    assert set(summary["end_to_end"]["sqlite"]) >= END_TO_END_KEYS
