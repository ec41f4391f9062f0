"""Rate-limit benchmark: Redis `check` against raw EVALSHA, the memory store, and accuracy.

Run `python bench/ratelimit.py` (about half a minute) or `--quick` (a few seconds) with Redis at
`--redis-url` (default redis://127.0.0.1:6379/0). Three variants run interleaved in one process,
A B C A B C ...: A calls EVALSHA on a minimal GCRA Lua script straight through redis-py (the
baseline); B calls RedisRateLimiter.check (the same round trip plus key building and the model's
Decision); C calls MemoryRateLimiter.check on the system clock. Rounds are short so that
neighbouring A and B blocks share the machine's background load. Each figure is the median over
the rounds; B/A, the median of the per-round ratios, should be at least 0.9. Then a 1000/s
limit (burst 10) is offered more load than that for a few seconds on each store, and
admitted / (rate * elapsed + burst) is reported: within 1% of 1, and never above it.

This script measures the store alone. The HTTP-level ratio (a rate-limited POST carrying an
Idempotency-Key ÷ a bare POST) is measured elsewhere, by an HTTP benchmark, not here.

The last line of stdout is one JSON object with the figures. The exit status is 1 only when
correctness broke (more admitted than the limit allows), never because a speed target was missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from synchub.core.clock import SystemClock
from synchub.ratelimit.model import Limit
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


@dataclass(frozen=True)
class BenchConfig:
    """How long each part runs."""

    rounds: int
    redis_calls: int
    memory_calls: int
    accuracy_seconds: float
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


def measure_interleaved(client: redis.Redis, prefix: str, config: BenchConfig) -> dict[str, Any]:
    """A B C rounds; the median of each variant and the median of the per-round B/A ratios."""
    sha = client.script_load(MINIMAL_GCRA)
    raw_key = f"{prefix}:{{raw}}:bench"
    raw_args = (OPEN_LIMIT.interval_us, OPEN_LIMIT.tolerance_us, 1)
    shared = RedisRateLimiter(client, prefix=prefix)
    memory = MemoryRateLimiter(SystemClock())
    variants: dict[str, tuple[int, Callable[[], object]]] = {
        "raw_evalsha": (config.redis_calls, lambda: client.evalsha(sha, 1, raw_key, *raw_args)),
        "redis_check": (config.redis_calls, lambda: shared.check("tenant", OPEN_LIMIT)),
        "memory_check": (config.memory_calls, lambda: memory.check("tenant", OPEN_LIMIT)),
    }
    for calls, run in variants.values():  # warm up: scripts loaded, connections open
        per_second(max(calls // 10, 100), run)
    results: dict[str, list[float]] = {name: [] for name in variants}
    for number in range(config.rounds):
        for name, (calls, run) in variants.items():
            results[name].append(per_second(calls, run))
        if number % 10 == 0 or number == config.rounds - 1:
            say(
                f"round {number + 1}: "
                + ", ".join(f"{n} {r[-1]:,.0f}/s" for n, r in results.items())
            )
    ratios = [b / a for a, b in zip(results["raw_evalsha"], results["redis_check"], strict=True)]
    return {
        "raw_evalsha_per_second": round(statistics.median(results["raw_evalsha"])),
        "redis_check_per_second": round(statistics.median(results["redis_check"])),
        "memory_check_per_second": round(statistics.median(results["memory_check"])),
        "ratio_redis_check_vs_raw_evalsha": round(statistics.median(ratios), 3),
        "ratio_quartiles": [round(q, 3) for q in statistics.quantiles(ratios, n=4)],
    }


def measure_accuracy(
    limiter: RateLimiter, now: Callable[[], float], seconds: float
) -> dict[str, Any]:
    """Offer as much load as one thread can for `seconds`; count what the limit admits."""
    offered = admitted = 0
    started = now()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        offered += 1
        admitted += limiter.check("tenant", ACCURACY_LIMIT).allowed
    elapsed = now() - started
    expected = ACCURACY_LIMIT.rate * elapsed / ACCURACY_LIMIT.period_seconds + ACCURACY_LIMIT.burst
    return {
        "seconds": round(elapsed, 3),
        "offered_per_second": round(offered / elapsed),
        "admitted": admitted,
        "expected": round(expected, 1),
        "admitted_over_expected": round(admitted / expected, 4),
        "over_limit": admitted > expected,
    }


def redis_seconds(client: redis.Redis) -> float:
    """The Redis server's clock, which the Redis store decides by."""
    seconds, micros = client.time()
    return int(seconds) + int(micros) / 1_000_000


def run(config: BenchConfig) -> dict[str, Any]:
    """Every measurement, with Redis keys under a prefix of this run's own, deleted after."""
    client = redis.Redis.from_url(config.redis_url)
    prefix = f"synchub:bench:{uuid.uuid4().hex}:rl"
    try:
        speed = measure_interleaved(client, prefix, config)
        clock = SystemClock()
        accuracy = {
            "redis": measure_accuracy(
                RedisRateLimiter(client, prefix=prefix),
                lambda: redis_seconds(client),
                config.accuracy_seconds,
            ),
            "memory": measure_accuracy(
                MemoryRateLimiter(clock), lambda: clock.now().timestamp(), config.accuracy_seconds
            ),
        }
        server = str(client.info("server").get("redis_version"))
    finally:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
        client.close()
    return summarise(config, speed, accuracy, server)


def summarise(
    config: BenchConfig, speed: dict[str, Any], accuracy: dict[str, Any], server: str
) -> dict[str, Any]:
    """The JSON figures."""
    within = all(
        abs(a["admitted_over_expected"] - 1) <= ACCURACY_TOLERANCE for a in accuracy.values()
    )
    return {
        **speed,
        "target_ratio": TARGET_RATIO,
        "meets_target": speed["ratio_redis_check_vs_raw_evalsha"] >= TARGET_RATIO,
        "accuracy_limit": f"{ACCURACY_LIMIT.rate}/{ACCURACY_LIMIT.period_seconds:g}s"
        f" burst {ACCURACY_LIMIT.burst}",
        "accuracy": accuracy,
        "accuracy_within_1_percent": within,
        "rounds": config.rounds,
        "redis_calls_per_round": config.redis_calls,
        "memory_calls_per_round": config.memory_calls,
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
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    # Many short rounds: neighbouring A and B blocks then see the same background load.
    redis_calls = args.redis_calls or (300 if args.quick else 1000)
    config = BenchConfig(
        rounds=args.rounds or (7 if args.quick else 41),
        redis_calls=redis_calls,
        memory_calls=redis_calls * 10,
        accuracy_seconds=args.accuracy_seconds or (1.0 if args.quick else 5.0),
        redis_url=args.redis_url,
    )
    if config.rounds < 2 or config.redis_calls < 10 or config.accuracy_seconds <= 0:
        raise SystemExit("--rounds must be >= 2, --redis-calls >= 10, --accuracy-seconds > 0")
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
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
        + ", ".join(f"{k} {v['admitted_over_expected']}" for k, v in summary["accuracy"].items())
    )
    print(json.dumps(summary), flush=True)
    return 1 if any(a["over_limit"] for a in summary["accuracy"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
