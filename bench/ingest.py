"""Ingest benchmark: signed Stripe webhooks per second against a bare endpoint, plus a kill test.

Run `python bench/ingest.py` (one to two minutes on two cores) or `--quick` (a few seconds). The
server runs in a child process (`--serve`) so the load generator never holds its GIL. Three
variants run interleaved, A B C A B C ...: A posts to a bare route on the same app that reads
the body and answers 202; B posts new signed events to /v1/webhooks/stripe; C posts the same
ingest route with half of the events being re-sent duplicates. Then a second server is
SIGKILLed right after it acknowledged event k, and the SQLite file is checked for every
acknowledged event. The last line of stdout is one JSON object with the figures. The exit
status is 1 only when correctness broke (failed requests, wrong duplicate flags, lost events),
never because a speed target was missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import Request, Response

from synchub.connectors.stripe.webhooks import sign_header

REPO_ROOT = Path(__file__).resolve().parents[1]
REGISTER_DIR = REPO_ROOT / "register"
TEMPLATE_PATH = REPO_ROOT.parent / "shared/vendor/stripe/events-assembled/customer.created.json"
BENCH_SECRET = "whsec_bench_fixed_local_only"
HOST = "127.0.0.1"
BARE_PATH = "/bench/bare"
INGEST_PATH = "/v1/webhooks/stripe"
TARGET_RATIO = 0.6
START_TIMEOUT_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 30.0
SYNCHRONOUS_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
FALLBACK_EVENT: dict[str, Any] = {
    "id": "evt_template",
    "object": "event",
    "api_version": "2023-08-16",
    "created": 1_700_000_000,
    "livemode": False,
    "pending_webhooks": 1,
    "type": "customer.created",
    "data": {
        "object": {
            "id": "cus_bench",
            "object": "customer",
            "created": 1_700_000_000,
            "email": "bench@example.com",
            "name": "Bench Customer",
            "currency": "usd",
            "metadata": {},
        }
    },
}


@dataclass(frozen=True)
class BenchConfig:
    """How much load to generate and how the kill test runs."""

    rounds: int
    concurrency: int
    requests_per_round: int
    warmup_requests: int
    kill_events: int
    seed: int
    quick: bool


@dataclass(frozen=True)
class Shot:
    """One request body to post, and whether the server has already accepted its event."""

    body: bytes
    is_duplicate: bool


@dataclass
class Tally:
    """What one client thread saw."""

    ok: int = 0
    errors: int = 0
    wrong_duplicate_flag: int = 0


@dataclass(frozen=True)
class RunResult:
    """One timed run of one variant."""

    requests_per_second: float
    seconds: float
    tally: Tally
    client_cpu_cores: float
    server_cpu_cores: float | None

    @property
    def server_cpu_ms_per_request(self) -> float | None:
        """Server CPU milliseconds per request: unlike req/s, barely moved by other load."""
        if self.server_cpu_cores is None:
            return None
        return 1000 * self.server_cpu_cores / self.requests_per_second


@dataclass
class Server:
    """A running `--serve` child process."""

    proc: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    info: dict[str, Any]


@dataclass
class EventFactory:
    """Makes Stripe event bodies from a template, each with a unique `evt_bench_<n>` id."""

    template: dict[str, Any]
    next_number: int = 0

    def take(self, count: int) -> list[bytes]:
        """Return `count` new event bodies."""
        bodies = []
        for _ in range(count):
            event_id = f"evt_bench_{self.next_number}"
            self.next_number += 1
            bodies.append(json.dumps({**self.template, "id": event_id}).encode())
        return bodies


# -- the server side (--serve) ----------------------------------------------------------------


async def receive_bare(request: Request) -> Response:
    """The baseline: read the body like the webhook route does, answer 202, do nothing else."""
    await request.body()
    return Response(status_code=202)


def run_server(ready_file: Path) -> None:
    """Serve synchub's app plus the bare route under uvicorn until terminated."""
    import uvicorn

    from synchub.api.app import create_app
    from synchub.bootstrap import build_hub
    from synchub.config import Settings
    from synchub.migrations.runner import upgrade
    from synchub.observability.logging import configure_logging

    settings = Settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    hub = build_hub(settings)
    try:
        upgrade(hub.db)
        app = create_app(hub)
        app.add_api_route(BARE_PATH, receive_bare, methods=["POST"])
        sock = bind_loopback()
        with hub.db.read() as conn:
            synchronous = conn.exec_driver_sql("PRAGMA synchronous").scalar()
            journal_mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        info = {
            "port": sock.getsockname()[1],
            "database_url": settings.resolved_database_url(),
            "sqlite_synchronous": SYNCHRONOUS_NAMES.get(int(synchronous or 0), str(synchronous)),
            "sqlite_journal_mode": str(journal_mode).upper(),
        }
        write_atomically(ready_file, json.dumps(info))
        config = uvicorn.Config(app, workers=1, log_level="warning", access_log=False)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        hub.close()


def bind_loopback() -> socket.socket:
    """A TCP socket on a free loopback port for uvicorn to serve on."""
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted sockets only when it does, and
    # without it each response (headers, then body) waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind((HOST, 0))
    return sock


def write_atomically(path: Path, text: str) -> None:
    """Write a file so a reader never sees it half-written."""
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    os.replace(partial, path)


# -- starting and stopping the server ---------------------------------------------------------


def server_env(data_dir: Path) -> dict[str, str]:
    """The child's environment: inherited, minus any SYNCHUB_* setting, plus the bench's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCHUB_")}
    env.update(
        SYNCHUB_DATA_DIR=str(data_dir),
        SYNCHUB_REGISTER_DIR=str(REGISTER_DIR),
        SYNCHUB_LOG_LEVEL="WARNING",
        SYNCHUB_STRIPE_WEBHOOK_SECRET=BENCH_SECRET,
    )
    return env


@contextmanager
def running_server(data_dir: Path) -> Iterator[Server]:
    """Start `--serve` in a child process, wait for /healthz, and always stop it afterwards."""
    ready_file = data_dir / "ready.json"
    log_path = data_dir / "server.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(ready_file)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, env=server_env(data_dir), cwd=data_dir, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield wait_until_ready(proc, ready_file, data_dir=data_dir, log_path=log_path)
        finally:
            stop_process(proc)


def wait_until_ready(
    proc: subprocess.Popen[bytes], ready_file: Path, *, data_dir: Path, log_path: Path
) -> Server:
    """Wait until the child wrote its ready file and answers /healthz; raise if it cannot."""
    deadline = time.perf_counter() + START_TIMEOUT_SECONDS
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                break
            if ready_file.exists():
                info = json.loads(ready_file.read_text())
                url = f"http://{HOST}:{info['port']}"
                try:
                    if client.get(url + "/healthz").status_code == 200:
                        return Server(proc=proc, url=url, data_dir=data_dir, info=info)
                except httpx.TransportError:
                    pass  # bound but not listening yet
            time.sleep(0.05)
    tail = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"the bench server did not become ready; its output:\n{tail}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a child process, killing it if it does not exit in time."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def read_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds a process has used so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- generating load --------------------------------------------------------------------------


def new_client(server: Server) -> httpx.Client:
    """A keep-alive client with Nagle off, so request headers and body leave at once."""
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    return httpx.Client(
        base_url=server.url,
        transport=transport,
        timeout=REQUEST_TIMEOUT_SECONDS,
        trust_env=False,
    )


def signed_headers(body: bytes) -> dict[str, str]:
    """Headers for one webhook, signed now (the server allows 300 s of clock difference)."""
    signature = sign_header(body, secret=BENCH_SECRET, timestamp=int(time.time()))
    return {"Content-Type": "application/json", "Stripe-Signature": signature}


def send_shots(
    client: httpx.Client,
    path: str,
    shots: Sequence[Shot],
    *,
    start: threading.Barrier,
    tally: Tally,
    check_duplicates: bool,
) -> None:
    """Post each shot in turn once every thread is ready, counting outcomes into `tally`."""
    start.wait()
    for shot in shots:
        try:
            response = client.post(path, content=shot.body, headers=signed_headers(shot.body))
        except httpx.HTTPError:
            tally.errors += 1
            continue
        if not response.is_success:
            tally.errors += 1
            continue
        tally.ok += 1
        # A byte search, not a JSON parse, so the client does the same work for every variant.
        said_duplicate = b'"duplicate":true' in response.content
        if check_duplicates and said_duplicate != shot.is_duplicate:
            tally.wrong_duplicate_flag += 1


def split_evenly(shots: Sequence[Shot], parts: int) -> list[Sequence[Shot]]:
    """Contiguous slices of nearly equal length, one per client thread."""
    size, extra = divmod(len(shots), parts)
    slices, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        slices.append(shots[start:end])
        start = end
    return slices


def run_variant(
    server: Server,
    clients: Sequence[httpx.Client],
    path: str,
    shots: Sequence[Shot],
    *,
    check_duplicates: bool = False,
) -> RunResult:
    """Post every shot from one thread per client and time it from a common start."""
    tallies = [Tally() for _ in clients]
    start = threading.Barrier(len(clients) + 1, timeout=START_TIMEOUT_SECONDS)
    threads = [
        threading.Thread(
            target=send_shots,
            args=(client, path, chunk),
            kwargs={"start": start, "tally": tally, "check_duplicates": check_duplicates},
            daemon=True,
        )
        for client, chunk, tally in zip(
            clients, split_evenly(shots, len(clients)), tallies, strict=True
        )
    ]
    for thread in threads:
        thread.start()
    server_cpu_before = read_cpu_seconds(server.proc.pid)
    client_cpu_before = time.process_time()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    server_cpu_after = read_cpu_seconds(server.proc.pid)
    tally = merge_tallies(tallies)
    if tally.ok + tally.errors != len(shots):
        raise RuntimeError(f"a client thread died: {tally.ok + tally.errors} of {len(shots)} sent")
    server_cpu = None
    if server_cpu_before is not None and server_cpu_after is not None:
        server_cpu = (server_cpu_after - server_cpu_before) / seconds
    return RunResult(
        requests_per_second=len(shots) / seconds,
        seconds=seconds,
        tally=tally,
        client_cpu_cores=(time.process_time() - client_cpu_before) / seconds,
        server_cpu_cores=server_cpu,
    )


def merge_tallies(tallies: Sequence[Tally]) -> Tally:
    """Add up per-thread tallies."""
    return Tally(
        ok=sum(t.ok for t in tallies),
        errors=sum(t.errors for t in tallies),
        wrong_duplicate_flag=sum(t.wrong_duplicate_flag for t in tallies),
    )


def plan_round(events: EventFactory, count: int) -> tuple[list[Shot], list[Shot], list[Shot]]:
    """Shots for A (bare), B (all new) and C (every other one a duplicate of a B event)."""
    bodies = events.take(count)
    new = [Shot(body, is_duplicate=False) for body in bodies]
    half = count // 2
    dups = [Shot(body, is_duplicate=True) for body in bodies[:half]]
    fresh = [Shot(body, is_duplicate=False) for body in events.take(count - half)]
    # fresh has one more shot than dups when count is odd; it goes last.
    mixed = [shot for pair in zip(dups, fresh[:half], strict=True) for shot in pair]
    mixed += fresh[half:]
    return new, new, mixed


def run_round(
    server: Server, clients: Sequence[httpx.Client], events: EventFactory, count: int
) -> tuple[RunResult, RunResult, RunResult]:
    """One A B C round, in that order (B must run before C: C re-sends B's events)."""
    bare, new, mixed = plan_round(events, count)
    a = run_variant(server, clients, BARE_PATH, bare)
    b = run_variant(server, clients, INGEST_PATH, new, check_duplicates=True)
    c = run_variant(server, clients, INGEST_PATH, mixed, check_duplicates=True)
    return a, b, c


def measure_interleaved(
    server: Server, events: EventFactory, config: BenchConfig
) -> list[tuple[RunResult, RunResult, RunResult]]:
    """A warm-up round, then the measured rounds; returns one (A, B, C) per measured round."""
    clients = [new_client(server) for _ in range(config.concurrency)]
    try:
        run_round(server, clients, events, config.warmup_requests)
        rounds = []
        for number in range(1, config.rounds + 1):
            result = run_round(server, clients, events, config.requests_per_round)
            report_round(number, result)
            rounds.append(result)
        return rounds
    finally:
        for client in clients:
            client.close()


def report_round(number: int, result: tuple[RunResult, RunResult, RunResult]) -> None:
    """Print one round's figures for a human."""
    a, b, c = (run.requests_per_second for run in result)
    server = "/".join(format_cores(run.server_cpu_cores) for run in result)
    client = "/".join(f"{run.client_cpu_cores:.2f}" for run in result)
    say(
        f"round {number}: bare {a:6.0f}/s  ingest {b:6.0f}/s  ingest-50%-dup {c:6.0f}/s"
        f"  B/A {b / a:.3f}  C/B {c / b:.3f}  cpu cores A/B/C server {server} client {client}"
    )


def format_cores(value: float | None) -> str:
    """A CPU-cores figure, or '?' where it could not be read."""
    return "?" if value is None else f"{value:.2f}"


# -- the kill test ----------------------------------------------------------------------------


def run_kill_test(events: EventFactory, *, count: int, rng: random.Random) -> dict[str, Any]:
    """SIGKILL a fresh server right after it acknowledged event k; check every ack is stored."""
    kill_after = rng.randrange(count // 4, max(count // 4 + 1, 3 * count // 4))
    with tempfile.TemporaryDirectory(prefix="synchub-kill-") as tmp:
        with running_server(Path(tmp)) as server:
            accepted, errors = post_until_kill(server, events.take(kill_after + 1))
            exit_code = server.proc.wait(timeout=10)
        found = count_stored(Path(tmp) / "synchub.db", accepted)
        integrity = check_integrity(Path(tmp) / "synchub.db")
    say(
        f"kill test: killed after event #{kill_after} (exit {exit_code}); "
        f"accepted {len(accepted)}, found {found}, errors {errors}, integrity {integrity}"
    )
    return {
        "accepted": len(accepted),
        "found": found,
        "lost": len(accepted) - found,
        "killed_after_event": kill_after,
        "errors": errors,
        "integrity": integrity,
    }


def post_until_kill(server: Server, bodies: Sequence[bytes]) -> tuple[list[str], int]:
    """Post bodies one by one; SIGKILL the server right after the last one is answered."""
    accepted: list[str] = []
    errors = 0
    with new_client(server) as client:
        for index, body in enumerate(bodies):
            try:
                response = client.post(INGEST_PATH, content=body, headers=signed_headers(body))
                ok = response.is_success
            except httpx.HTTPError:
                ok = False
            if index == len(bodies) - 1:
                os.kill(server.proc.pid, signal.SIGKILL)
            if ok:
                accepted.append(json.loads(body)["id"])
            else:
                errors += 1
    return accepted, errors


def count_stored(db_path: Path, external_ids: Sequence[str]) -> int:
    """How many of the given event ids are in inbox_events, read straight from the file."""
    conn = sqlite3.connect(db_path)
    try:
        stored = {row[0] for row in conn.execute("SELECT external_id FROM inbox_events")}
    finally:
        conn.close()
    return sum(1 for external_id in external_ids if external_id in stored)


def check_integrity(db_path: Path) -> str:
    """SQLite's own integrity check of the file after the kill ('ok' when intact)."""
    conn = sqlite3.connect(db_path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


# -- putting it together ----------------------------------------------------------------------


def say(line: str) -> None:
    """Print a progress line for a human (stderr, so stdout ends with the JSON line)."""
    print(line, file=sys.stderr, flush=True)


def load_template() -> dict[str, Any]:
    """The Stripe event used as the shape of every benchmark event."""
    try:
        template: dict[str, Any] = json.loads(TEMPLATE_PATH.read_text())
    except (OSError, json.JSONDecodeError):
        say(f"template {TEMPLATE_PATH} not readable; using a small inline event")
        return FALLBACK_EVENT
    return template


def summarise(
    config: BenchConfig,
    rounds: Sequence[tuple[RunResult, RunResult, RunResult]],
    *,
    kill_test: dict[str, Any],
    server_info: dict[str, Any],
) -> dict[str, Any]:
    """The final JSON object: medians, ratios, verdicts and the kill test."""
    b_over_a = [b.requests_per_second / a.requests_per_second for a, b, _ in rounds]
    c_over_b = [c.requests_per_second / b.requests_per_second for _, b, c in rounds]
    tallies = merge_tallies([run.tally for result in rounds for run in result])
    ratio_ingest = statistics.median(b_over_a)
    ratio_dup = statistics.median(c_over_b)
    return {
        "bench": "ingest",
        "quick": config.quick,
        "rounds": config.rounds,
        "concurrency": config.concurrency,
        "requests_per_round": config.requests_per_round,
        "bare_rps_median": round(median_rps(rounds, 0), 1),
        "ingest_rps_median": round(median_rps(rounds, 1), 1),
        "ingest_dup_rps_median": round(median_rps(rounds, 2), 1),
        "ratio_ingest_vs_bare": round(ratio_ingest, 3),
        "ratio_dup_vs_new": round(ratio_dup, 3),
        "ratios_ingest_vs_bare": [round(r, 3) for r in b_over_a],
        "ratios_dup_vs_new": [round(r, 3) for r in c_over_b],
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio_ingest >= TARGET_RATIO,
        "dup_at_least_as_fast": ratio_dup >= 1.0,
        "failed_requests": tallies.errors,
        "wrong_duplicate_flags": tallies.wrong_duplicate_flag,
        **summarise_cpu(rounds),
        "kill_test": kill_test,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "sqlite_synchronous": server_info.get("sqlite_synchronous"),
        "sqlite_journal_mode": server_info.get("sqlite_journal_mode"),
        "seed": config.seed,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def median_rps(rounds: Sequence[tuple[RunResult, RunResult, RunResult]], variant: int) -> float:
    """The median requests per second of one variant (0 = A, 1 = B, 2 = C) over the rounds."""
    return statistics.median(r[variant].requests_per_second for r in rounds)


def summarise_cpu(rounds: Sequence[tuple[RunResult, RunResult, RunResult]]) -> dict[str, Any]:
    """CPU figures: cores busy per variant, and the server-CPU view of both ratios."""
    cost = [[run.server_cpu_ms_per_request for run in result] for result in rounds]
    known = [(a, b, c) for a, b, c in cost if a and b and c]
    return {
        "server_cpu_cores_median": [
            median_of([r[i].server_cpu_cores for r in rounds]) for i in range(3)
        ],
        "client_cpu_cores_median": [
            median_of([r[i].client_cpu_cores for r in rounds]) for i in range(3)
        ],
        "server_cpu_ms_per_request_median": [median_of([c[i] for c in cost]) for i in range(3)],
        "ratio_ingest_vs_bare_by_server_cpu": median_of([a / b for a, b, _ in known]),
        "ratio_dup_vs_new_by_server_cpu": median_of([b / c for _, b, c in known]),
    }


def median_of(values: Sequence[float | None]) -> float | None:
    """The median of the known values, rounded for the report; None when none is known."""
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


def report_verdict(summary: dict[str, Any]) -> None:
    """Print the headline figures and verdicts for a human."""
    kill = summary["kill_test"]
    say(
        f"ingest/bare {summary['ratio_ingest_vs_bare']} (target {TARGET_RATIO}:"
        f" {'met' if summary['meets_target'] else 'MISSED'}; by server CPU per request"
        f" {summary['ratio_ingest_vs_bare_by_server_cpu']}), dup/new {summary['ratio_dup_vs_new']}"
        f" ({'ok' if summary['dup_at_least_as_fast'] else 'SLOWER'}), kill test lost"
        f" {kill['lost']} of {kill['accepted']}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--rounds", type=int, help="A B C rounds (default 7, quick 2)")
    parser.add_argument("--concurrency", type=int, help="client threads (default 8, quick 4)")
    parser.add_argument("--requests", type=int, help="requests per variant per round")
    parser.add_argument(
        "--kill-events", type=int, help="the kill point is drawn from the middle half of this many"
    )
    parser.add_argument("--seed", type=int, help="seed for the kill point (default: random)")
    parser.add_argument("--serve", type=Path, metavar="READY_FILE", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace) -> BenchConfig:
    """Defaults for a full or a quick run, overridden by explicit flags."""
    quick = bool(args.quick)
    requests = args.requests or (200 if quick else 800)
    config = BenchConfig(
        rounds=args.rounds or (2 if quick else 7),
        concurrency=args.concurrency or (4 if quick else 8),
        requests_per_round=requests,
        warmup_requests=max(requests // 4, 40),
        kill_events=args.kill_events or (40 if quick else 200),
        seed=args.seed if args.seed is not None else random.SystemRandom().randrange(2**32),
        quick=quick,
    )
    if config.rounds < 1 or config.concurrency < 1 or config.requests_per_round < 2:
        raise SystemExit("--rounds and --concurrency must be >= 1, --requests >= 2")
    if config.kill_events < 4:
        raise SystemExit("--kill-events must be >= 4")
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, with --serve, be its server)."""
    args = parse_args(argv)
    if args.serve is not None:
        run_server(args.serve)
        return 0
    config = config_from(args)
    say(
        f"ingest bench: {config.rounds} rounds x {config.requests_per_round} requests per variant,"
        f" {config.concurrency} client threads, python {platform.python_version()},"
        f" load average {os.getloadavg()[0]:.2f} (other work on the machine skews the figures)"
    )
    events = EventFactory(load_template())
    with (
        tempfile.TemporaryDirectory(prefix="synchub-bench-") as tmp,
        running_server(Path(tmp)) as server,
    ):
        say(f"server at {server.url}: {json.dumps(server.info)}")
        rounds = measure_interleaved(server, events, config)
    kill_test = run_kill_test(events, count=config.kill_events, rng=random.Random(config.seed))
    summary = summarise(config, rounds, kill_test=kill_test, server_info=server.info)
    report_verdict(summary)
    print(json.dumps(summary), flush=True)
    broken = summary["failed_requests"] or summary["wrong_duplicate_flags"] or kill_test["lost"]
    return 1 if broken or kill_test["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
