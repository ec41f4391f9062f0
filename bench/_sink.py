"""The delivery bench's no-op HTTP sink, and the bare httpx loop that posts to it.

`python bench/_sink.py READY_FILE` serves HTTP/1.1 on a free loopback port from a bare asyncio
protocol (far faster than any Python web framework, so the sink is not what limits either
variant). Every POST is answered 204 at once and recorded as (receive time, path, trace id of
its `traceparent`). Control routes: `GET /_wait?n=N&timeout=S` answers once N requests have
arrived (or the timeout passed) with the count; `GET /_records?since=I` returns the records
from index I as JSON; `POST /_reset` forgets them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
START_TIMEOUT_SECONDS = 30.0


class _State:
    """What the sink has received, and who is waiting for it."""

    def __init__(self) -> None:
        self.records: list[tuple[float, str, str]] = []
        self.waiters: list[tuple[int, asyncio.Future[None]]] = []

    def add(self, path: str, trace_id: str) -> None:
        self.records.append((time.time(), path, trace_id))
        if self.waiters:
            ready = [w for w in self.waiters if len(self.records) >= w[0]]
            self.waiters = [w for w in self.waiters if len(self.records) < w[0]]
            for _, future in ready:
                if not future.done():
                    future.set_result(None)


class _Connection(asyncio.Protocol):
    """One keep-alive client connection: parse requests, answer each at once."""

    def __init__(self, state: _State) -> None:
        self.state = state
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.pending: set[asyncio.Future[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # always a stream transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            fields = {
                k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])
            }
            size = int(fields.get("content-length", "0"))
            if len(self.buffer) < end + 4 + size:
                return  # the body is still arriving
            self.buffer = self.buffer[end + 4 + size :]
            method, target = head[0].split(" ")[:2]
            self.handle(method, target, fields.get("traceparent", ""))

    def handle(self, method: str, target: str, traceparent: str) -> None:
        assert self.transport is not None
        url = urlsplit(target)
        if not url.path.startswith("/_"):
            self.state.add(url.path, traceparent[3:35])
            self.transport.write(NO_CONTENT)
        elif url.path == "/_wait":
            query = parse_qs(url.query)
            wanted, timeout = int(query["n"][0]), float(query.get("timeout", ["60"])[0])
            self.pending.add(task := asyncio.ensure_future(self.answer_when(wanted, timeout)))
            task.add_done_callback(self.pending.discard)
        elif url.path == "/_records":
            since = int(parse_qs(url.query).get("since", ["0"])[0])
            self.reply(self.state.records[since:])
        elif url.path == "/_reset" and method == "POST":
            self.state.records.clear()
            self.reply({"count": 0})

    async def answer_when(self, wanted: int, timeout: float) -> None:
        if len(self.state.records) < wanted:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.state.waiters.append((wanted, future))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, timeout)
        self.reply({"count": len(self.state.records)})

    def reply(self, body: Any) -> None:
        assert self.transport is not None
        raw = json.dumps(body).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(raw)}"
        self.transport.write(head.encode() + b"\r\n\r\n" + raw)


async def _serve(ready_file: Path) -> None:
    state = _State()
    server = await asyncio.get_running_loop().create_server(
        lambda: _Connection(state), "127.0.0.1", 0, backlog=1024
    )
    port = server.sockets[0].getsockname()[1]
    partial = ready_file.with_suffix(".partial")
    partial.write_text(json.dumps({"port": port}))
    partial.replace(ready_file)
    await server.serve_forever()


@dataclass
class Sink:
    """A running sink subprocess and a client for its control routes."""

    proc: subprocess.Popen[bytes]
    url: str
    control: httpx.Client

    def wait_for(self, count: int, *, timeout: float = 120.0) -> int:
        """Block until the sink has received `count` requests; return how many it has."""
        reply = self.control.get(
            "/_wait", params={"n": count, "timeout": timeout}, timeout=timeout + 10
        )
        return int(reply.json()["count"])

    def records(self, since: int = 0) -> list[tuple[float, str, str]]:
        """(receive time, path, trace id) of every request from index `since`."""
        rows = self.control.get("/_records", params={"since": since}).json()
        return [(float(at), str(path), str(trace)) for at, path, trace in rows]

    def reset(self) -> None:
        """Forget every record."""
        self.control.post("/_reset")

    def stop(self) -> None:
        """Stop the sink process."""
        self.control.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)


def start_sink(work_dir: Path) -> Sink:
    """Start the sink in a child process and wait until it listens."""
    ready = work_dir / "sink.json"
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(ready)])
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the sink did not start")
        time.sleep(0.02)
    url = f"http://127.0.0.1:{json.loads(ready.read_text())['port']}"
    return Sink(proc=proc, url=url, control=httpx.Client(base_url=url, trust_env=False))


# -- the bare httpx loop (baseline) ----------------------------------------------------------

BARE_BODY = json.dumps(
    {
        "type": "invoice.paid",
        "timestamp": "2026-01-01T00:00:00Z",
        "data": {
            "customer_id": "cus_01JBENCH0000000000000000000",
            "billing_status": "active",
            "entitled": True,
            "object_id": "inv_01JBENCH0000000000000000000",
            "status": "paid",
        },
    },
    separators=(",", ":"),
).encode()
BARE_HEADERS = {
    "Content-Type": "application/json",
    "webhook-id": "msg_01JBENCH0000000000000000000",
    "webhook-timestamp": "1767225600",
    "webhook-signature": "v1," + "A" * 44,
}


def post_many(client: httpx.Client, urls: Sequence[str], count: int, *, threads: int) -> float:
    """POST `count` callback-sized bodies from `threads` threads sharing one client; the
    requests go round-robin over `urls`. Returns the wall-clock start (time.time())."""
    shares = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]
    start = threading.Barrier(threads + 1)

    def loop(share: int, offset: int) -> None:
        start.wait()
        for i in range(share):
            client.post(urls[(offset + i) % len(urls)], content=BARE_BODY, headers=BARE_HEADERS)

    workers = [threading.Thread(target=loop, args=(s, i)) for i, s in enumerate(shares)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.time()
    for worker in workers:
        worker.join()
    return began


if __name__ == "__main__":
    asyncio.run(_serve(Path(sys.argv[1])))
