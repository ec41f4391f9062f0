"""Sandbox-mode vendor HTTP sent to a shared sandbox server instead of an in-process sandbox.

With `SYNCHUB_SANDBOX_URL` set, every synchub process wires its sandbox-mode connections
through `RemoteSandboxTransport`: the request keeps its method, path, query, headers and
body, and goes to the server started by `synchub sandbox serve` (see `sandbox_server.py`,
ADR 0011), which answers it from the one shared vendor state. The client's timeouts still
apply, so a sandbox that never answers is a timeout here too.
"""

from __future__ import annotations

import httpx

VENDOR_HEADER = "X-Sandbox-Vendor"
HOST_HEADER = "X-Forwarded-Host"


class RemoteSandboxTransport(httpx.BaseTransport):
    """Forwards one vendor's requests to the sandbox server, naming the vendor in a header."""

    def __init__(
        self, base_url: str, *, vendor: str, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._base = httpx.URL(base_url)
        self._vendor = vendor
        self._inner = transport or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send the request to the server as it would have gone to the vendor."""
        headers = httpx.Headers(request.headers)
        headers["Host"] = self._base.netloc.decode("ascii")
        headers[VENDOR_HEADER] = self._vendor
        headers[HOST_HEADER] = request.url.host
        forwarded = httpx.Request(
            request.method,
            self._base.copy_with(raw_path=request.url.raw_path),
            headers=headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return self._inner.handle_request(forwarded)

    def close(self) -> None:
        """Close the connections to the server."""
        self._inner.close()
