"""Drive the ASGI app by hand, to hold a streamed answer open or drop the connection mid-way
(TestClient always reads a whole answer before returning it)."""

from __future__ import annotations

from typing import Any

import anyio
from starlette.types import ASGIApp, Message


class AsgiCall:
    """One request. Each body chunk waits at a gate until `let_one_through` or `open`;
    `go_away` makes the client disconnect (a disconnect message, or a failing send on ASGI
    spec 2.4, as uvicorn does)."""

    def __init__(
        self,
        app: ASGIApp,
        path: str,
        headers: dict[str, str],
        *,
        method: str = "GET",
        body: bytes = b"",
        spec_version: str = "2.3",
        gated: bool = True,
    ) -> None:
        self.app = app
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": spec_version},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
            + [(b"host", b"testserver"), (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        self.request_body = body
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.ended_by: str | None = None
        self.chunk_seen = anyio.Event()
        self._gate = anyio.Event()
        self._asked = False
        self._gone = anyio.Event()
        if not gated:
            self.open()

    async def run(self) -> None:
        """Run the app to the end; `ended_by` says how it ended."""
        try:
            await self.app(self.scope, self._receive, self._send)
            self.ended_by = "returned"
        except Exception as exc:  # noqa: BLE001 - recorded for the test to look at
            self.ended_by = type(exc).__name__

    def let_one_through(self) -> None:
        """Let the waiting chunk go; the next one waits again."""
        gate, self._gate = self._gate, anyio.Event()
        self.chunk_seen = anyio.Event()
        gate.set()

    def open(self) -> None:
        """Let every chunk through from now on."""
        self._gate.set()

    def go_away(self) -> None:
        """The client disconnects."""
        self._gone.set()
        self._gate.set()

    async def _receive(self) -> Message:
        if not self._asked:
            self._asked = True
            return {"type": "http.request", "body": self.request_body, "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
            return
        if self._gone.is_set():
            raise OSError("the client went away")
        chunk = message.get("body", b"")
        self.body += chunk
        if chunk:
            self.chunk_seen.set()
            await self._gate.wait()
            if self._gone.is_set() and self.scope["asgi"]["spec_version"] == "2.4":
                raise OSError("the client went away")


async def asgi_request(
    app: ASGIApp, path: str, headers: dict[str, str], *, method: str = "GET", body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    """One whole request: (status, lower-case headers, body)."""
    call = AsgiCall(app, path, headers, method=method, body=body, gated=False)
    await call.run()
    assert call.status is not None, call.ended_by
    return call.status, call.headers, bytes(call.body)
