"""Delivery benchmark: outbox → signed callbacks to a local no-op HTTP sink, against baselines.

Run `python bench/delivery.py` (about ten minutes on two cores), `--quick` (about two
minutes) or `--smoke` (the smallest run, for the smoke test). PostgreSQL comes from
SYNCHUB_TEST_DATABASE_URL (default postgres@127.0.0.1:5432); the bench creates and drops its
own database there. `--databases sqlite` skips it.

For each database and 1, 2 and 4 workers (4 delivery threads each), three variants run
interleaved, A B C A B C ...: A, a bare httpx loop POSTing callback-sized bodies to the sink
at the workers' total concurrency; B, synchub: events written through the real outbox writer,
fanned out by the Worker to two live `product` connections whose callback_url is the sink,
delivered with signatures, outcomes recorded (timed from the enqueue commit to the last
delivery marked succeeded); C, a bare loop that claims due rows (FOR UPDATE SKIP LOCKED on
PostgreSQL) and marks them done, one loop per worker, no HTTP. Each variant moves the same
number of deliveries. The figures are medians of the per-round ratios B/A and B/C. On SQLite
the workers are threads of this process sharing one hub (one writer), woken when work is
enqueued as `synchub serve` does; on PostgreSQL they are `synchub worker` processes, woken by
the NOTIFY that the outbox write sends on commit (polling is their fallback). See
bench/_fleet.py for how the baselines match each layout.

Then, with the fewest workers: enqueue-to-first-attempt (outbox commit returned → callback
arrived at the sink, per delivery) p50 ÷ the p50 of one small INSERT + COMMIT through the same
transaction factory, interleaved; and end-to-end latency through `synchub serve`
(bench/_e2e.py). The last line of stdout is one JSON object with every figure, ratio and
target. The exit status is 1 only when delivery broke (a delivery failed or a callback never
arrived), never because a target was missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _e2e
from _fleet import Fleet
from _rig import (
    DESTINATIONS,
    IDLE_SLEEP_SECONDS,
    Store,
    delivery_progress,
    enqueue,
    fill_queue,
    open_store,
    settings_env,
    time_commit,
    write_register,
)
from _sink import Sink, start_sink
from synchub.observability.logging import configure_logging

TARGETS = {"synchub_vs_httpx": 0.7, "synchub_vs_claim_loop": 0.5, "first_attempt_vs_commit": 5.0}
THREADS_PER_WORKER = 4
WAIT_SECONDS = 300.0


@dataclass(frozen=True)
class BenchConfig:
    """How much each part does."""

    mode: str
    databases: tuple[str, ...]
    workers: tuple[int, ...]
    rounds: int
    events: int  # events per variant per round; each makes len(DESTINATIONS) deliveries
    samples: int  # enqueue-to-first-attempt samples
    burst: int  # webhooks in the maximum-rate burst
    paced_seconds: float


# workers, rounds, events per round, first-attempt samples, e2e burst, e2e paced seconds
MODES: dict[str, tuple[tuple[int, ...], int, int, int, int, float]] = {
    "full": ((1, 2, 4), 5, 300, 41, 300, 20.0),
    "quick": ((1, 2, 4), 3, 40, 9, 40, 3.0),
    "smoke": ((1,), 1, 10, 3, 10, 1.0),
}


def say(line: str) -> None:
    """Print a progress line for a human (stderr, so stdout ends with the JSON line)."""
    print(line, file=sys.stderr, flush=True)


def run_httpx(fleet: Fleet, sink: Sink, n: int) -> float:
    """A: the bare httpx loop; deliveries (posts) per second."""
    sink.reset()
    began, ended = fleet.post(n)
    if sink.wait_for(n, timeout=WAIT_SECONDS) < n:
        raise RuntimeError("the bare httpx loop lost requests")
    return n / (ended - began)


def run_synchub(fleet: Fleet, sink: Sink, n: int, events: int) -> float:
    """B: enqueue `events` and let the workers deliver them; deliveries per second."""
    sink.reset()
    ok_before, _, _ = delivery_progress(fleet.store.db)
    began = enqueue(fleet.store.db, events)
    fleet.wake()
    deadline = time.monotonic() + WAIT_SECONDS
    while sink.wait_for(n, timeout=2) < n and time.monotonic() < deadline:
        fleet.check_alive()
    while True:
        ok, other, last = delivery_progress(fleet.store.db)
        if ok - ok_before >= n and last is not None:
            return n / (last - began)
        if time.monotonic() > deadline:
            raise RuntimeError(f"synchub delivered {ok - ok_before} of {n} ({other} not done)")
        time.sleep(0.01)


def run_claim_loop(fleet: Fleet, n: int) -> float:
    """C: the bare claim-and-mark-done loop; rows per second."""
    fill_queue(fleet.store.db, n)
    began, ended = fleet.claim()
    return n / (ended - began)


def measure_round(fleet: Fleet, sink: Sink, events: int) -> tuple[float, float, float]:
    """One A B C round; each variant moves events * len(DESTINATIONS) deliveries."""
    n = events * len(DESTINATIONS)
    a = run_httpx(fleet, sink, n)
    b = run_synchub(fleet, sink, n, events)
    c = run_claim_loop(fleet, n)
    return a, b, c


def measure_first_attempt(fleet: Fleet, sink: Sink, samples: int) -> dict[str, Any]:
    """Commit time and enqueue-to-first-attempt (per delivery), interleaved, on idle workers."""
    commits, firsts = [], []
    rng = random.Random()
    for _ in range(samples):
        # Enqueue at a random point of the idle worker's poll cycle, never right after a pass.
        time.sleep(IDLE_SLEEP_SECONDS * (1.25 + rng.random()))
        commits.append(time_commit(fleet.store.db))
        sink.reset()
        enqueued = enqueue(fleet.store.db, 1)
        fleet.wake()
        sink.wait_for(len(DESTINATIONS), timeout=WAIT_SECONDS)
        firsts += [at - enqueued for at, _, _ in sink.records()]
        deadline = time.monotonic() + WAIT_SECONDS
        while delivery_progress(fleet.store.db)[1]:
            if time.monotonic() > deadline:
                raise RuntimeError("a delivery did not finish")
            time.sleep(0.01)
    p50, commit = statistics.median(firsts), statistics.median(commits)
    ratio = p50 / commit
    return {
        "pickup": "woken on enqueue (as synchub serve)"
        if fleet.in_process
        else f"woken by NOTIFY on commit (fallback: a poll every {IDLE_SLEEP_SECONDS} s)",
        "first_attempt_p50_ms": round(p50 * 1000, 2),
        "first_attempt_p90_ms": round(statistics.quantiles(firsts, n=10)[-1] * 1000, 2),
        "commit_p50_ms": round(commit * 1000, 3),
        "ratio_first_attempt_vs_commit": round(ratio, 2),
        "target": TARGETS["first_attempt_vs_commit"],
        "meets_target": ratio <= TARGETS["first_attempt_vs_commit"],
        "samples": samples,
    }


def summarise_rounds(
    store: Store, workers: int, rounds: Sequence[tuple[float, float, float]]
) -> dict[str, Any]:
    """Medians and per-round ratios of one configuration."""
    vs_httpx = [b / a for a, b, _ in rounds]
    vs_claim = [b / c for _, b, c in rounds]
    ratio_httpx, ratio_claim = statistics.median(vs_httpx), statistics.median(vs_claim)
    return {
        "database": store.engine,
        "workers": workers,
        "layout": "threads of one process" if store.engine == "sqlite" else "processes",
        "concurrency": workers * THREADS_PER_WORKER,
        "httpx_posts_per_second": round(statistics.median(r[0] for r in rounds), 1),
        "synchub_deliveries_per_second": round(statistics.median(r[1] for r in rounds), 1),
        "claim_loop_rows_per_second": round(statistics.median(r[2] for r in rounds), 1),
        "ratio_vs_httpx": round(ratio_httpx, 3),
        "target_vs_httpx": TARGETS["synchub_vs_httpx"],
        "meets_httpx_target": ratio_httpx >= TARGETS["synchub_vs_httpx"],
        "ratio_vs_claim_loop": round(ratio_claim, 3),
        "target_vs_claim_loop": TARGETS["synchub_vs_claim_loop"],
        "meets_claim_loop_target": ratio_claim >= TARGETS["synchub_vs_claim_loop"],
        "ratios_vs_httpx": [round(r, 3) for r in vs_httpx],
        "ratios_vs_claim_loop": [round(r, 3) for r in vs_claim],
    }


def measure_configuration(
    store: Store, sink: Sink, env: dict[str, str], workers: int, config: BenchConfig
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Throughput rounds for one worker count (and, for the first, first-attempt latency)."""
    store.reset()
    fleet = Fleet(store, workers, THREADS_PER_WORKER, sink.url, env)
    fleet.start()
    try:
        measure_round(fleet, sink, max(config.events // 4, 10))  # warm-up, not counted
        rounds = []
        for number in range(1, config.rounds + 1):
            a, b, c = measure_round(fleet, sink, config.events)
            say(
                f"{store.engine} x{workers} round {number}: httpx {a:7.0f}/s  synchub {b:6.0f}/s"
                f"  claim loop {c:7.0f}/s  B/A {b / a:.3f}  B/C {b / c:.3f}"
            )
            rounds.append((a, b, c))
        first = None
        if workers == config.workers[0]:
            first = {"workers": workers, **measure_first_attempt(fleet, sink, config.samples)}
    finally:
        fleet.stop()
    return summarise_rounds(store, workers, rounds), first


def measure_database(
    engine: str, sink: Sink, register_dir: Path, work_dir: Path, config: BenchConfig
) -> dict[str, Any]:
    """Every measurement on one database, in a store created (and dropped) for the run."""
    store = open_store(engine, work_dir)
    try:
        env = settings_env(store, register_dir, work_dir / "data", THREADS_PER_WORKER)
        throughput, first = [], None
        for workers in config.workers:
            figures, got = measure_configuration(store, sink, env, workers, config)
            throughput.append(figures)
            first = first or got
        store.reset()
        e2e = _e2e.measure_end_to_end(
            store, sink, env, work_dir, burst=config.burst, seconds=config.paced_seconds
        )
        say(f"{engine} first attempt {first} end to end {e2e}")
        return {"throughput": throughput, "first_attempt": first, "end_to_end": e2e}
    finally:
        store.close()


def run(config: BenchConfig) -> dict[str, Any]:
    """Every database; the JSON summary."""
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="synchub-bench-delivery-") as tmp:
        work_dir = Path(tmp)
        sink = start_sink(work_dir)
        try:
            register_dir = write_register(work_dir / "register", sink.url)
            for engine in config.databases:
                results[engine] = measure_database(engine, sink, register_dir, work_dir, config)
        finally:
            sink.stop()
    throughput = [t for r in results.values() for t in r["throughput"]]
    return {
        "bench": "delivery",
        "mode": config.mode,
        "targets": TARGETS,
        "throughput": throughput,
        "first_attempt": {e: r["first_attempt"] for e, r in results.items()},
        "end_to_end": {e: r["end_to_end"] for e, r in results.items()},
        "all_targets_met": all(
            t["meets_httpx_target"] and t["meets_claim_loop_target"] for t in throughput
        )
        and all(r["first_attempt"]["meets_target"] for r in results.values()),
        "rounds": config.rounds,
        "events_per_round": config.events,
        "deliveries_per_round": config.events * len(DESTINATIONS),
        "threads_per_worker": THREADS_PER_WORKER,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def parse_args(argv: Sequence[str] | None) -> BenchConfig:
    """The command line: a mode's defaults, overridden by explicit flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_const", const="quick", dest="mode")
    parser.add_argument("--smoke", action="store_const", const="smoke", dest="mode")
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma-separated")
    parser.add_argument("--workers", help="comma-separated worker counts (default 1,2,4)")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--events", type=int, help="events per variant per round")
    args = parser.parse_args(argv)
    mode = args.mode or "full"
    databases = tuple(d.strip() for d in args.databases.split(",") if d.strip())
    config = BenchConfig(mode, databases, *MODES[mode])
    config = dataclasses.replace(
        config,
        workers=tuple(int(w) for w in args.workers.split(",")) if args.workers else config.workers,
        rounds=args.rounds or config.rounds,
        events=args.events or config.events,
    )
    if not set(databases) <= {"sqlite", "postgresql"} or config.rounds < 1:
        raise SystemExit("--databases takes sqlite and/or postgresql; --rounds must be >= 1")
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    config = parse_args(argv)
    configure_logging(level="WARNING", json=True)
    say(
        f"delivery bench ({config.mode}): {', '.join(config.databases)}, workers {config.workers},"
        f" {config.rounds} rounds x {config.events} events, python {platform.python_version()},"
        f" load average {os.getloadavg()[0]:.2f} (other work on the machine skews the figures)"
    )
    summary = run(config)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
