"""Rate-limit benchmark: the store against raw EVALSHA, accuracy, and the HTTP cost of fair use.

Run `python bench/ratelimit.py` (about three minutes on two cores) or `--quick` (under a
minute) with Redis at `--redis-url` (default redis://127.0.0.1:6379/0).

1. The store. Three Redis variants run interleaved in one process, the order reversed every
   other round (A S B, B S A, ...), so each has the same neighbours in time: A calls EVALSHA on
   a minimal GCRA Lua script straight through redis-py (the baseline); S calls EVALSHA on the
   store's own GCRA script the same way (so the gap between A and B splits into script and
   wrapper); B calls RedisRateLimiter.check (the same round trip plus key building and the
   model's Decision). A, S and B share one redis-py client (one connection pool, one
   protocol), and every script is loaded once before the rounds. Rounds are short so that
   neighbouring blocks share the machine's background load. Each figure is the median over
   the rounds; B/A, the median of the per-round ratios, should be at least 0.9. Then
   MemoryRateLimiter.check on the system clock runs in rounds of its own (it is compared with
   nothing, and its allocation-heavy blocks would otherwise sit next to B's).
2. Accuracy. A 1000/s limit (burst 10) is offered more load than that for a few seconds on
   each store. Two ratios: admitted / (rate * elapsed + burst), which must never exceed 1
   (`over_limit`, the hard check) and should be within 1% of it; and admitted / what an ideal
   GCRA (STANDARDS §2, exact integer nanoseconds, no rounding) admits when the recorded offer
   times are replayed through it, which should be 1 within rounding. The first can fall short
   on a loaded machine without any fault of the limiter: GCRA cannot admit requests that were
   never offered, and a gap between offers longer than the burst (10 ms) loses the capacity of
   its excess. The longest gap and the capacity lost to gaps are reported beside it. The
   memory store's offer times are the exact instants its clock returned; the Redis store
   decides by the server's TIME, so its offer times are this process's clock halfway through
   each round trip (close to, not exactly, the server's reading).
3. HTTP. Two real uvicorn servers run as child processes (`--serve`), each the synchub app over
   its own SQLite store, one with the memory rate limiter and one with Redis
   (SYNCHUB_REDIS_URL); the load comes from client threads in this process over keep-alive
   connections. On each server, in turn and repeatedly (bare, fair use, customer, bare, ...),
   for a fixed time each:
   - bare: POST /bench/bare, a route added to the same app that reads the body and answers
     201 with a small JSON body. It passes the app's middleware (request id, size checks) and
     routing, and nothing else: no token, no rate limit, no Idempotency-Key, no database.
   - fair use: POST /v1/bench/echo, a route added to the same app exactly like a /v1 write
     (CustomerCreate body, `require("write:customers")`: the access token is verified and the
     client's plan is enforced; then `run_write`: the Idempotency-Key row and the audit entry in
     one transaction), whose handler itself writes nothing. Every request has a new key.
   - customer: POST /v1/customers, the real create (matching, golden record, outbox events) on
     top of the same path: reported for context, it has no target.
   The ratio is the median of the per-round fair use / bare ratios: at least 0.5 with memory,
   0.35 with Redis (issue 7). The plan is far above the offered load, so nothing is refused;
   any answer other than 201 stops the benchmark.

The last line of stdout is one JSON object with the figures. The exit status is 1 only when
correctness broke (more admitted than the limit allows), never because a speed target was missed.
"""

from __future__ import annotations

import argparse
import array
import itertools
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import redis
from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Connection

from synchub.api import schemas
from synchub.api.security import require
from synchub.api.writes import run_write
from synchub.auth.model import Principal
from synchub.config import Settings
from synchub.core.clock import Clock, SystemClock
from synchub.events.outbox import EventContext
from synchub.ratelimit.lua import GCRA_SCRIPT
from synchub.ratelimit.model import Limit, epoch_microseconds
from synchub.ratelimit.store import MemoryRateLimiter, RateLimiter, RedisRateLimiter

TARGET_RATIO = 0.9
ACCURACY_TOLERANCE = 0.01
# Never refuses (T = 1 us, tau = 1 s of traffic), so both Redis variants take the write path.
OPEN_LIMIT = Limit(policy="bench", rate=1_000_000, period_seconds=1, burst=1_000_000)
ACCURACY_LIMIT = Limit(policy="accuracy", rate=1000, period_seconds=1, burst=10)

# The baseline: the least a §2 GCRA check in Redis does (TIME, GET, cost * T, compare, SET
# with a TTL), returning one integer like RedisRateLimiter's script. ARGV: T (us), tau (us), cost.
MINIMAL_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
local new_tat = math.max(tat, now) + tonumber(ARGV[3]) * tonumber(ARGV[1])
if now < new_tat - tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
  'EX', math.ceil((new_tat - now) / 1000000))
return 1
"""

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
HTTP_PATHS = {"bare": "/bench/bare", "fair_use": "/v1/bench/echo", "customer": "/v1/customers"}
HTTP_TARGETS = {"memory": 0.5, "redis": 0.35}  # fair use / bare, issue 7
# Far above anything one machine can offer: the throttle and the quota never refuse.
OPEN_PLANS = """plans:
  default: {rate: 60000000, period_seconds: 60, burst: 1000000, monthly_quota: 1000000000}
client_plans: {}
"""
START_TIMEOUT_SECONDS = 60.0
Runs = dict[str, list[tuple[float, float]]]  # variant -> (requests/s, server CPU ms) per round


@dataclass(frozen=True)
class BenchConfig:
    """How long each part runs."""

    rounds: int
    redis_calls: int
    memory_calls: int
    accuracy_seconds: float
    http_rounds: int
    http_seconds: float
    http_threads: int
    redis_url: str


def say(line: str) -> None:
    """Print a progress line for a human (stderr, so stdout ends with the JSON line)."""
    print(line, file=sys.stderr, flush=True)


def per_second(calls: int, run: Callable[[], object]) -> float:
    """Call `run` `calls` times and return calls per second."""
    started = time.perf_counter()
    for _ in range(calls):
        run()
    return calls / (time.perf_counter() - started)


# -- 1 and 2: the store -----------------------------------------------------------------------


def measure_interleaved(client: redis.Redis, prefix: str, config: BenchConfig) -> dict[str, Any]:
    """Interleaved rounds; the median of each variant and of the per-round ratios to A."""
    sha = client.script_load(MINIMAL_GCRA)
    store_sha = client.script_load(GCRA_SCRIPT)  # the store's script, loaded once here too
    raw_key = f"{prefix}:{{raw}}:bench"
    same_key = f"{prefix}:{{same}}:bench"
    raw_args = (OPEN_LIMIT.interval_us, OPEN_LIMIT.tolerance_us, 1)
    shared = RedisRateLimiter(client, prefix=prefix)  # the same client: same pool and protocol
    memory = MemoryRateLimiter(SystemClock())
    variants: dict[str, tuple[int, Callable[[], object]]] = {
        "raw_evalsha": (config.redis_calls, lambda: client.evalsha(sha, 1, raw_key, *raw_args)),
        "raw_evalsha_store_script": (
            config.redis_calls,
            lambda: client.evalsha(store_sha, 1, same_key, *raw_args),
        ),
        "redis_check": (config.redis_calls, lambda: shared.check("tenant", OPEN_LIMIT)),
    }
    for calls, run in variants.values():  # warm up: scripts loaded, connections open
        per_second(max(calls // 10, 100), run)
    results: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants.items())
    for number in range(config.rounds):
        # Reversed every other round, so a drift in background load favours no variant.
        for name, (calls, run) in order if number % 2 == 0 else reversed(order):
            results[name].append(per_second(calls, run))
        if number % 10 == 0 or number == config.rounds - 1:
            say(
                f"round {number + 1}: "
                + ", ".join(f"{n} {r[-1]:,.0f}/s" for n, r in results.items())
            )

    results["memory_check"] = [
        per_second(config.memory_calls, lambda: memory.check("tenant", OPEN_LIMIT))
        for _ in range(max(config.rounds // 4, 2))
    ]

    def ratios_to_raw(name: str) -> list[float]:
        return [b / a for a, b in zip(results["raw_evalsha"], results[name], strict=True)]

    ratios = ratios_to_raw("redis_check")
    return {
        "raw_evalsha_per_second": round(statistics.median(results["raw_evalsha"])),
        "raw_evalsha_store_script_per_second": round(
            statistics.median(results["raw_evalsha_store_script"])
        ),
        "redis_check_per_second": round(statistics.median(results["redis_check"])),
        "memory_check_per_second": round(statistics.median(results["memory_check"])),
        "ratio_redis_check_vs_raw_evalsha": round(statistics.median(ratios), 3),
        "ratio_quartiles": [round(q, 3) for q in statistics.quantiles(ratios, n=4)],
        # Script alone (S/A) and wrapper alone (B/S): how the gap to the baseline splits.
        "ratio_store_script_vs_raw_evalsha": round(
            statistics.median(ratios_to_raw("raw_evalsha_store_script")), 3
        ),
        "ratio_redis_check_vs_store_script": round(
            statistics.median(
                [
                    b / s
                    for s, b in zip(
                        results["raw_evalsha_store_script"], results["redis_check"], strict=True
                    )
                ]
            ),
            3,
        ),
    }


class RecordingClock:
    """The system clock, remembering every instant it tells (whole microseconds since the
    epoch, as the memory store rounds them): the offer times its limiter decided at."""

    def __init__(self, stamps: array.array[int]) -> None:
        self._inner = SystemClock()
        self._stamps = stamps

    def now(self) -> datetime:
        """The system clock's time, recorded."""
        at = self._inner.now()
        self._stamps.append(epoch_microseconds(at))
        return at


def ideal_gcra(stamps_us: Sequence[int], limit: Limit) -> tuple[int, float]:
    """What an ideal GCRA (STANDARDS §2) does with these unit-cost offers, in exact integers
    (times scaled by `rate`, so T = period / rate is never rounded): how many it admits, and
    the requests' worth of capacity that went unused while the bucket was full (TAT in the
    past) and nobody asked: what no limiter could have admitted."""
    period = round(limit.period_seconds * 1_000_000_000)  # T * rate, in ns
    tolerance = limit.burst * period  # tau * rate
    admitted, unused = 0, 0
    tat = previous = stamps_us[0] * 1000 * limit.rate if stamps_us else 0
    for stamp in stamps_us:
        now = stamp * 1000 * limit.rate
        unused += max(0, now - max(tat, previous))  # full since max(tat, previous): wasted
        previous = now
        new_tat = max(tat, now) + period
        if now >= new_tat - tolerance:
            tat = new_tat
            admitted += 1
    return admitted, unused / period


def longest_gap_ms(stamps_us: Sequence[int]) -> float:
    """The longest time between two consecutive offers, in milliseconds."""
    return max((b - a for a, b in itertools.pairwise(stamps_us)), default=0) / 1000


def measure_accuracy(
    limiter: RateLimiter,
    now: Callable[[], float],
    seconds: float,
    stamps: array.array[int],
    *,
    stamp_here: bool,
) -> dict[str, Any]:
    """Offer as much load as one thread can for `seconds`; count what the limit admits, and
    what an ideal GCRA admits for the same offer times (`stamps`: filled by the limiter's
    recording clock, or here before each call when `stamp_here`)."""
    offered = admitted = 0
    started = now()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        offered += 1
        if stamp_here:  # the middle of the round trip: about when the server read its TIME
            sent = time.time_ns()
            admitted += limiter.check("tenant", ACCURACY_LIMIT).allowed
            stamps.append((sent + time.time_ns()) // 2000)
        else:
            admitted += limiter.check("tenant", ACCURACY_LIMIT).allowed
    elapsed = now() - started
    expected = ACCURACY_LIMIT.rate * elapsed / ACCURACY_LIMIT.period_seconds + ACCURACY_LIMIT.burst
    if len(stamps) != offered:
        raise RuntimeError(f"recorded {len(stamps)} offer times for {offered} offers")
    reference, lost = ideal_gcra(stamps, ACCURACY_LIMIT)
    return {
        "seconds": round(elapsed, 3),
        "offered_per_second": round(offered / elapsed),
        "admitted": admitted,
        "expected": round(expected, 1),
        "admitted_over_expected": round(admitted / expected, 4),
        "over_limit": admitted > expected,
        "reference_admitted": reference,
        "reference_times_exact": not stamp_here,
        "admitted_over_reference": round(admitted / reference, 4),
        "reference_over_expected": round(reference / expected, 4),
        "longest_gap_between_offers_ms": round(longest_gap_ms(stamps), 3),
        "capacity_unused_while_full_requests": round(lost, 1),
    }


def redis_seconds(client: redis.Redis) -> float:
    """The Redis server's clock, which the Redis store decides by."""
    seconds, micros = client.time()
    return int(seconds) + int(micros) / 1_000_000


# -- 3. HTTP: the server side (--serve) -------------------------------------------------------


async def receive_bare(request: Request) -> Response:
    """The baseline: read the body, answer 201 with a small JSON body, nothing else."""
    await request.body()
    return Response(b'{"object":"bench"}', status_code=201, media_type="application/json")


async def receive_fair_use(
    request: Request,
    body: schemas.CustomerCreate,
    principal: Annotated[Principal, require("write:customers")],
) -> JSONResponse:
    """A /v1 write whose handler writes nothing: token, plan, Idempotency-Key and audit."""

    def handler(_conn: Connection, _ctx: EventContext) -> tuple[int, dict[str, Any]]:
        return 201, {"id": body.external_id, "object": "bench"}

    return await run_in_threadpool(
        run_write,
        request,
        principal,
        route=HTTP_PATHS["fair_use"],
        body=body,
        action="bench.echo",
        handler=handler,
    )


def serve(ready_file: Path) -> None:
    """synchub's app plus the two bench routes under uvicorn, until terminated."""
    import uvicorn

    from synchub.api.app import create_app
    from synchub.bootstrap import build_hub
    from synchub.observability.logging import configure_logging

    settings = Settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    hub = build_hub(settings)
    try:
        app = create_app(hub)
        app.add_api_route(HTTP_PATHS["bare"], receive_bare, methods=["POST"])
        app.add_api_route(HTTP_PATHS["fair_use"], receive_fair_use, methods=["POST"])
        # proto must say TCP: asyncio sets TCP_NODELAY on accepted sockets only when it does.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind((HOST, 0))
        partial = ready_file.with_suffix(".partial")
        partial.write_text(json.dumps({"port": sock.getsockname()[1]}))
        os.replace(partial, ready_file)
        config = uvicorn.Config(app, log_level="warning", access_log=False)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        hub.close()


# -- 3. HTTP: starting servers and offering load ----------------------------------------------


@dataclass
class HttpServer:
    """A running `--serve` child, with a client's token and keep-alive connections to it."""

    backend: str
    proc: subprocess.Popen[bytes]
    client_id: str
    connections: list[httpx.Client]
    auth: dict[str, str]


def hub_settings(data_dir: Path, backend: str, redis_url: str) -> tuple[Settings, dict[str, str]]:
    """The settings of one bench server, and the same as the child's environment."""
    register = data_dir / "register"
    shutil.copytree(REPO_ROOT / "register", register)
    (register / "plans.yaml").write_text(OPEN_PLANS)
    # Explicit values beat this process's own SYNCHUB_* variables, as in the child.
    settings = Settings(
        data_dir=data_dir,
        register_dir=register,
        database_url=f"sqlite:///{data_dir / 'synchub.db'}",
        redis_url=redis_url if backend == "redis" else None,
        key_encryption_key=None,
        log_level="WARNING",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCHUB_")}
    env.update(
        SYNCHUB_DATA_DIR=str(data_dir),
        SYNCHUB_REGISTER_DIR=str(register),
        SYNCHUB_DATABASE_URL=settings.resolved_database_url(),
        SYNCHUB_LOG_LEVEL=settings.log_level,
    )
    if settings.redis_url:
        env["SYNCHUB_REDIS_URL"] = settings.redis_url
    return settings, env


def create_client(settings: Settings) -> tuple[str, str]:
    """Migrate the server's store and register a client that may create customers."""
    from synchub.bootstrap import build_authorization_server
    from synchub.db import make_database
    from synchub.migrations.runner import upgrade

    db = make_database(settings.resolved_database_url())
    try:
        upgrade(db)
        server = build_authorization_server(settings, db, SystemClock())
        with db.write() as conn:
            return server.create_client(
                conn, name="bench", scopes=["write:customers"], workspace="live", actor="bench"
            )
    finally:
        db.dispose()


@contextmanager
def http_server(root: Path, backend: str, config: BenchConfig) -> Iterator[HttpServer]:
    """Start one `--serve` child on its own store, get a token, and always stop it after."""
    data_dir = root / backend
    data_dir.mkdir()
    settings, env = hub_settings(data_dir, backend, config.redis_url)
    client_id, secret = create_client(settings)
    ready, log_path = data_dir / "ready.json", data_dir / "server.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(ready)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, env=env, cwd=data_dir, stdout=log, stderr=log)
    try:
        url = wait_until_ready(proc, ready, log_path)
        token = httpx.post(
            url + "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret),
            trust_env=False,
        ).json()["access_token"]
        nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        connections = [
            httpx.Client(
                base_url=url,
                timeout=30.0,
                trust_env=False,
                transport=httpx.HTTPTransport(socket_options=nodelay),
            )
            for _ in range(config.http_threads)
        ]
        try:
            yield HttpServer(
                backend, proc, client_id, connections, {"Authorization": f"Bearer {token}"}
            )
        finally:
            for connection in connections:
                connection.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def wait_until_ready(proc: subprocess.Popen[bytes], ready: Path, log_path: Path) -> str:
    """The child's URL once it answers /healthz; raise with its output if it cannot start."""
    deadline = time.perf_counter() + START_TIMEOUT_SECONDS
    while time.perf_counter() < deadline and proc.poll() is None:
        if ready.exists():
            url = f"http://{HOST}:{json.loads(ready.read_text())['port']}"
            try:
                if httpx.get(url + "/healthz", trust_env=False).status_code == 200:
                    return url
            except httpx.TransportError:
                pass  # bound, not listening yet
        time.sleep(0.05)
    raise RuntimeError(f"a bench server did not start:\n{log_path.read_text()[-3000:]}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a process has used (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_numbers = itertools.count()
_RUN = uuid.uuid4().hex[:12]


def post_until(
    connection: httpx.Client,
    path: str,
    auth: dict[str, str],
    *,
    start: threading.Barrier,
    deadline: list[float],
    done: list[int],
    failures: list[str],
) -> None:
    """POST new customers' bodies, each with a new Idempotency-Key, until the deadline."""
    start.wait()
    while time.perf_counter() < deadline[0]:
        number = next(_numbers)
        body = {
            "external_id": f"b-{_RUN}-{number}",
            "email": f"b{number}@bench.example",
            "name": "Bench",
        }
        headers = {**auth, "Idempotency-Key": f"bench-{_RUN}-{number}"}
        reply = connection.post(path, json=body, headers=headers)
        if reply.status_code != 201:
            failures.append(f"{path}: {reply.status_code} {reply.text[:300]}")
            return
        done[0] += 1


def offer(server: HttpServer, variant: str, seconds: float) -> tuple[float, float]:
    """Requests per second and server CPU ms per request of one variant over `seconds`.

    Every variant sends the same headers (token and key), so the client's work is the same.
    """
    start = threading.Barrier(len(server.connections) + 1)
    deadline, failures = [0.0], list[str]()
    counts = [[0] for _ in server.connections]
    threads = [
        threading.Thread(
            target=post_until,
            args=(c, HTTP_PATHS[variant], server.auth),
            kwargs={"start": start, "deadline": deadline, "done": n, "failures": failures},
        )
        for c, n in zip(server.connections, counts, strict=True)
    ]
    for thread in threads:
        thread.start()
    cpu_before = cpu_seconds(server.proc.pid)
    deadline[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise RuntimeError(f"{server.backend} server refused a request: {failures[0]}")
    done = sum(n[0] for n in counts)
    return done / elapsed, 1000 * (cpu_seconds(server.proc.pid) - cpu_before) / max(done, 1)


def measure_http(config: BenchConfig) -> dict[str, Any]:
    """Rounds of bare, fair use, customer on the memory server, then the same on Redis."""
    with tempfile.TemporaryDirectory(prefix="synchub-bench-") as root, ExitStack() as stack:
        servers = [stack.enter_context(http_server(Path(root), b, config)) for b in HTTP_TARGETS]
        try:
            for server in servers:  # warm up: connections, tokens, keys and scripts cached
                for variant in HTTP_PATHS:
                    offer(server, variant, config.http_seconds / 2)
            runs: dict[str, Runs] = {s.backend: {v: [] for v in HTTP_PATHS} for s in servers}
            for number in range(1, config.http_rounds + 1):
                for server in servers:
                    for variant in HTTP_PATHS:
                        runs[server.backend][variant].append(
                            offer(server, variant, config.http_seconds)
                        )
                report_http_round(number, runs)
        finally:
            delete_keys(config.redis_url, [s.client_id for s in servers])
    return {backend: summarise_http(backend, by_variant) for backend, by_variant in runs.items()}


def delete_keys(redis_url: str, client_ids: Sequence[str]) -> None:
    """Remove the rate-limit keys the bench clients left in Redis."""
    client = redis.Redis.from_url(redis_url)
    for client_id in client_ids:
        for key in client.scan_iter(match=f"synchub:rl:*{client_id}*"):
            client.delete(key)
    client.close()


def report_http_round(number: int, runs: dict[str, Runs]) -> None:
    """Print one HTTP round's figures for a human."""
    parts = []
    for backend, by_variant in runs.items():
        rates = {v: r[-1][0] for v, r in by_variant.items()}
        parts.append(
            f"{backend}: "
            + " ".join(f"{v} {r:,.0f}/s" for v, r in rates.items())
            + f" (fair use/bare {rates['fair_use'] / rates['bare']:.3f})"
        )
    say(f"http round {number}: " + "; ".join(parts))


def summarise_http(backend: str, by_variant: Runs) -> dict[str, Any]:
    """Medians per variant and of the per-round ratios, against the issue's target."""
    rates = {v: [rate for rate, _ in runs] for v, runs in by_variant.items()}
    cpu = {v: [ms for _, ms in runs] for v, runs in by_variant.items()}
    ratios = [f / b for f, b in zip(rates["fair_use"], rates["bare"], strict=True)]
    ratio = round(statistics.median(ratios), 3)
    return {
        **{f"{v}_per_second": round(statistics.median(r)) for v, r in rates.items()},
        **{f"{v}_server_cpu_ms": round(statistics.median(ms), 3) for v, ms in cpu.items()},
        "ratio_fair_use_vs_bare": ratio,
        "ratio_quartiles": [round(q, 3) for q in statistics.quantiles(ratios, n=4)],
        "ratio_customer_vs_bare": round(
            statistics.median(
                [c / b for c, b in zip(rates["customer"], rates["bare"], strict=True)]
            ),
            3,
        ),
        "target": HTTP_TARGETS[backend],
        "meets_target": ratio >= HTTP_TARGETS[backend],
    }


# -- the run ----------------------------------------------------------------------------------


def run(config: BenchConfig) -> dict[str, Any]:
    """Every measurement, with Redis keys under a prefix of this run's own, deleted after."""
    client = redis.Redis.from_url(config.redis_url)
    prefix = f"synchub:bench:{uuid.uuid4().hex}:rl"
    try:
        speed = measure_interleaved(client, prefix, config)
        clock = SystemClock()
        memory_stamps = array.array("q")
        recording: Clock = RecordingClock(memory_stamps)
        accuracy = {
            "redis": measure_accuracy(
                RedisRateLimiter(client, prefix=prefix),
                lambda: redis_seconds(client),
                config.accuracy_seconds,
                array.array("q"),
                stamp_here=True,
            ),
            "memory": measure_accuracy(
                MemoryRateLimiter(recording),
                lambda: clock.now().timestamp(),
                config.accuracy_seconds,
                memory_stamps,
                stamp_here=False,
            ),
        }
        server = str(client.info("server").get("redis_version"))
    finally:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
        client.close()
    http = measure_http(config)
    return summarise(config, speed, accuracy, http, server)


def summarise(
    config: BenchConfig,
    speed: dict[str, Any],
    accuracy: dict[str, Any],
    http: dict[str, Any],
    server: str,
) -> dict[str, Any]:
    """The JSON figures."""
    within = all(
        abs(a["admitted_over_expected"] - 1) <= ACCURACY_TOLERANCE for a in accuracy.values()
    )
    within_reference = all(
        abs(a["admitted_over_reference"] - 1) <= ACCURACY_TOLERANCE for a in accuracy.values()
    )
    return {
        **speed,
        "target_ratio": TARGET_RATIO,
        "meets_target": speed["ratio_redis_check_vs_raw_evalsha"] >= TARGET_RATIO,
        "accuracy_limit": f"{ACCURACY_LIMIT.rate}/{ACCURACY_LIMIT.period_seconds:g}s"
        f" burst {ACCURACY_LIMIT.burst}",
        "accuracy": accuracy,
        "accuracy_within_1_percent": within,
        "accuracy_within_1_percent_of_reference": within_reference,
        **{
            f"ratio_http_fair_use_vs_bare_{b}": h["ratio_fair_use_vs_bare"] for b, h in http.items()
        },
        "http": http,
        "rounds": config.rounds,
        "redis_calls_per_round": config.redis_calls,
        "memory_calls_per_round": config.memory_calls,
        "http_rounds": config.http_rounds,
        "http_seconds_per_variant": config.http_seconds,
        "http_client_threads": config.http_threads,
        "python": platform.python_version(),
        "redis_server": server,
        "load_average": round(os.getloadavg()[0], 2),
    }


def parse_args(argv: Sequence[str] | None) -> BenchConfig:
    """The command line: defaults for a full or a quick run, overridden by explicit flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--rounds", type=int, help="A B C rounds (default 41, quick 7)")
    parser.add_argument("--redis-calls", type=int, help="calls per Redis variant per round")
    parser.add_argument("--accuracy-seconds", type=float, help="seconds per accuracy run")
    parser.add_argument("--http-rounds", type=int, help="HTTP rounds (default 15, quick 5)")
    parser.add_argument("--http-seconds", type=float, help="seconds per HTTP variant per round")
    parser.add_argument("--http-threads", type=int, default=4, help="HTTP client threads")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    # Many short rounds: neighbouring A and B blocks then see the same background load.
    redis_calls = args.redis_calls or (300 if args.quick else 1000)
    config = BenchConfig(
        rounds=args.rounds or (7 if args.quick else 41),
        redis_calls=redis_calls,
        memory_calls=redis_calls * 10,
        accuracy_seconds=args.accuracy_seconds or (1.0 if args.quick else 5.0),
        http_rounds=args.http_rounds or (5 if args.quick else 15),
        http_seconds=args.http_seconds or (0.5 if args.quick else 1.0),
        http_threads=args.http_threads,
        redis_url=args.redis_url,
    )
    if min(config.rounds, config.http_rounds) < 2 or config.redis_calls < 10:
        raise SystemExit("--rounds and --http-rounds must be >= 2, --redis-calls >= 10")
    if min(config.accuracy_seconds, config.http_seconds) <= 0 or config.http_threads < 1:
        raise SystemExit("--accuracy-seconds and --http-seconds > 0, --http-threads >= 1")
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    if argv is None and sys.argv[1:2] == ["--serve"]:
        serve(Path(sys.argv[2]))
        return 0
    config = parse_args(argv)
    say(
        f"ratelimit bench: {config.rounds} rounds, python {platform.python_version()},"
        f" load average {os.getloadavg()[0]:.2f} (other work on the machine skews the figures)"
    )
    summary = run(config)
    say(
        f"check/raw EVALSHA {summary['ratio_redis_check_vs_raw_evalsha']} (target {TARGET_RATIO}:"
        f" {'met' if summary['meets_target'] else 'MISSED'}), memory"
        f" {summary['memory_check_per_second']:,}/s, accuracy "
        + ", ".join(
            f"{k} {v['admitted_over_expected']} of the limit, {v['admitted_over_reference']} of"
            f" an ideal GCRA (longest gap {v['longest_gap_between_offers_ms']} ms)"
            for k, v in summary["accuracy"].items()
        )
    )
    for backend, figures in summary["http"].items():
        say(
            f"http {backend}: fair use/bare {figures['ratio_fair_use_vs_bare']} (target"
            f" {figures['target']}: {'met' if figures['meets_target'] else 'MISSED'}),"
            f" customer/bare {figures['ratio_customer_vs_bare']}"
        )
    print(json.dumps(summary), flush=True)
    return 1 if any(a["over_limit"] for a in summary["accuracy"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
