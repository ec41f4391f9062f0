"""Three `synchub serve` processes sharing PostgreSQL and Redis admit one client only as far
as its plan allows, all together: the throttle is shared, not per process."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
import sqlalchemy as sa
from typer.testing import CliRunner

from synchub.cli import app as cli
from synchub.db import make_database
from synchub.migrations.runner import upgrade
from tests.conftest import PG_ADMIN_URL, REPO

REDIS_URL = os.environ.get("SYNCHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PROCESSES = 3
THREADS_PER_PROCESS = 2
WINDOW_SECONDS = 10.0
RATE, PERIOD, BURST = 30, 60, 10  # one request every 2 s after a burst of 10
PLANS = f"""plans:
  default: {{rate: {RATE}, period_seconds: {PERIOD}, burst: {BURST}, monthly_quota: 1000000}}
client_plans: {{}}
"""
START_TIMEOUT_SECONDS = 60.0


@dataclass
class Tally:
    """What the load generator saw, per server."""

    admitted: list[int] = field(default_factory=lambda: [0] * PROCESSES)
    answered: list[int] = field(default_factory=lambda: [0] * PROCESSES)
    refusals: list[httpx.Response] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database of this test's own, dropped afterwards."""
    if not PG_ADMIN_URL:
        pytest.skip("SYNCHUB_TEST_DATABASE_URL is not set")
    name = f"synchub_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    db = make_database(url)
    upgrade(db)  # once, here: the servers then find the schema current
    db.dispose()
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """The shared Redis; skips if it is unreachable."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"Redis is unreachable at {REDIS_URL} ({exc}); set SYNCHUB_TEST_REDIS_URL")
    yield client
    client.close()


def free_ports(count: int) -> list[int]:
    """Loopback ports nobody listens on right now."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def hub_env(tmp_path: Path, database_url: str, public_url: str) -> dict[str, str]:
    """The settings every process shares: store, Redis, register, key-encryption key."""
    register = tmp_path / "register"
    shutil.copytree(REPO / "register", register)
    (register / "plans.yaml").write_text(PLANS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCHUB_")}
    env.update(
        SYNCHUB_DATABASE_URL=database_url,
        SYNCHUB_REDIS_URL=REDIS_URL,
        SYNCHUB_REGISTER_DIR=str(register),
        SYNCHUB_DATA_DIR=str(tmp_path / "hub"),
        # Set, not a file each process might create at once: every process must share it.
        SYNCHUB_KEY_ENCRYPTION_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
        SYNCHUB_PUBLIC_URL=public_url,
        SYNCHUB_LOG_LEVEL="WARNING",
    )
    return env


def synchub(*args: str) -> list[str]:
    """The command line running the synchub CLI with this interpreter."""
    return [sys.executable, "-m", "synchub.cli", *args]


@dataclass(frozen=True)
class Fleet:
    """The API processes' URLs and a client registered in their store."""

    urls: list[str]
    client_id: str
    secret: str


@pytest.fixture
def fleet(tmp_path: Path, database_url: str, redis_client: redis.Redis) -> Iterator[Fleet]:
    """Three API processes on one store and one Redis, and a client of theirs."""
    ports = free_ports(PROCESSES)
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    env = hub_env(tmp_path, database_url, public_url=urls[0])
    procs = []
    for number, port in enumerate(ports):
        command = synchub("serve", "--role", "api", "--port", str(port))
        with (tmp_path / f"serve-{number}.log").open("wb") as log:  # the child keeps its copy
            procs.append(subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
                command, env=env, stdout=log, stderr=subprocess.STDOUT))  # fmt: skip
    try:
        client_id, secret = new_client(env)  # while the servers start
        for number, url in enumerate(urls):
            wait_until_healthy(url, procs[number], tmp_path / f"serve-{number}.log")
        yield Fleet(urls, client_id, secret)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


def wait_until_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait for a server's /healthz; fail with its output if it exits or never answers."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if client.get(url + "/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.1)
    pytest.fail(f"{url} did not start; its output:\n{log.read_text(errors='replace')[-3000:]}")


def new_client(env: dict[str, str]) -> tuple[str, str]:
    """`synchub clients create` (in this process) on the shared store: (client id, secret)."""
    settings = {k: v for k, v in env.items() if k.startswith("SYNCHUB_")}
    args = ["clients", "create", "--name", "hammer", "--scopes", "read:customers", "--json"]
    result = CliRunner().invoke(cli, args, env=settings)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    return answer["client_id"], answer["client_secret"]


def access_token(url: str, client_id: str, secret: str) -> str:
    """A client-credentials access token from one of the servers."""
    reply = httpx.post(
        url + "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        trust_env=False,
    )
    assert reply.status_code == 200, reply.text
    return str(reply.json()["access_token"])


def hammer(
    url: str, number: int, token: str, start: threading.Barrier, until: list[float], tally: Tally
) -> None:
    """GET /v1/customers on one server as fast as one thread can until the window closes."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30.0, trust_env=False) as client:
        start.wait()
        while time.monotonic() < until[0]:
            reply = client.get("/v1/customers")
            with tally.lock:
                tally.answered[number] += 1
                if reply.status_code == 200:
                    tally.admitted[number] += 1
                elif reply.status_code == 429:
                    tally.refusals.append(reply)
                else:
                    tally.unexpected.append(f"{reply.status_code} {reply.text[:200]}")


@pytest.mark.slow
def test_three_api_processes_together_admit_no_more_than_the_plan(
    fleet: Fleet, redis_client: redis.Redis
) -> None:
    urls, client_id = fleet.urls, fleet.client_id
    token = access_token(urls[0], client_id, fleet.secret)
    tally, until = Tally(), [0.0]
    start = threading.Barrier(PROCESSES * THREADS_PER_PROCESS + 1)
    threads = [
        threading.Thread(target=hammer, args=(url, number, token, start, until, tally))
        for number, url in enumerate(urls)
        for _ in range(THREADS_PER_PROCESS)
    ]
    for thread in threads:
        thread.start()

    until[0] = time.monotonic() + WINDOW_SECONDS
    began = time.monotonic()
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began

    try:
        admitted = sum(tally.admitted)
        # Every decision happened inside [began, began + elapsed] on any clock, Redis's too.
        limit = RATE * elapsed / PERIOD + BURST
        assert tally.unexpected == []
        assert all(count > 0 for count in tally.answered), tally.answered
        assert sum(count > 0 for count in tally.admitted) >= 2, tally.admitted  # really shared
        assert admitted <= limit, (admitted, limit, tally.admitted)
        # Close to it: at most one refill interval lost at each end of the window.
        assert admitted >= limit - 2, (admitted, limit, tally.admitted)
        assert len(tally.refusals) > 0
        for refused in tally.refusals:
            wait = int(refused.headers["Retry-After"])
            assert wait >= 1
            assert refused.headers["content-type"] == "application/problem+json"
            problem = refused.json()
            assert problem["status"] == 429
            assert problem.get("layer") == "throttle" or "throttle" in problem["detail"]
            # The throttle's member of the RateLimit list resets when Retry-After says.
            members = [m.strip() for m in refused.headers["RateLimit"].split(",")]
            assert f'"default";r=0;t={wait}' in members, members
    finally:
        for key in redis_client.scan_iter(match=f"synchub:rl:*{client_id}*"):
            redis_client.delete(key)
