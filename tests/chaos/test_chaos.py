"""Issue 4's chaos test: under random vendor faults, duplicated and reordered webhooks and
workers SIGKILLed every few seconds, every event reaches every subscribed destination, no
vendor gets anything created twice, each customer's changes arrive in order, nothing is left
in flight. PostgreSQL with three worker processes; the same, smaller, on SQLite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.run import ChaosResult, RunPlan, run_chaos

# Sizes fit the CI budget (both runs in about five minutes on a 2-core machine): about 1,000
# Stripe events and as many canonical events on PostgreSQL. Raise them for a longer soak.
POSTGRES_CUSTOMERS = int(os.environ.get("SYNCHUB_CHAOS_CUSTOMERS", "120"))
SQLITE_CUSTOMERS = int(os.environ.get("SYNCHUB_CHAOS_SQLITE_CUSTOMERS", "30"))


def _verdict(result: ChaosResult, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n" + result.summary)
    if result.verdict.problems:
        shown = "\n".join(f"- {p}" for p in result.verdict.problems[:40])
        more = len(result.verdict.problems) - 40
        logs = "\n".join(f"--- {name} ---\n{tail}" for name, tail in result.logs.items())
        pytest.fail(
            f"{result.summary}\n{shown}"
            + (f"\n(and {more} more)" if more > 0 else "")
            + f"\n{logs}",
            pytrace=False,
        )


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.postgres
def test_three_killed_workers_on_postgres_lose_repeat_and_reorder_nothing(
    chaos_postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = RunPlan(
        label="postgres, 3 workers",
        database_url=chaos_postgres_url,
        workers=3,
        customers=POSTGRES_CUSTOMERS,
        kill_seconds=60,
    )
    _verdict(run_chaos(plan, tmp_path), capsys)


@pytest.mark.slow
@pytest.mark.chaos
def test_a_killed_worker_on_sqlite_loses_repeats_and_reorders_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = RunPlan(
        label="sqlite, 1 worker",
        database_url=f"sqlite:///{tmp_path / 'hub.db'}",
        workers=1,
        customers=SQLITE_CUSTOMERS,
        chunk=15,
        kill_seconds=40,
    )
    _verdict(run_chaos(plan, tmp_path), capsys)
