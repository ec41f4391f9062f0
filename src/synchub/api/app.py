"""The app factory: routes, problem+json for every error, a request id on every response."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from synchub.api import health, webhooks
from synchub.api.problems import problem, problem_for
from synchub.bootstrap import Hub
from synchub.core.errors import HubError
from synchub.core.ids import new_id
from synchub.observability.tracecontext import trace_id_of

log = structlog.get_logger(__name__)


def _trace_id(request: Request) -> str | None:
    return getattr(request.state, "trace_id", None)


class RequestIdMiddleware:
    """Gives every request an id (X-Request-Id) and its trace id; plain ASGI, no task groups."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = "req_" + new_id("message").partition("_")[2]
        traceparent = next((v.decode("latin-1") for k, v in scope["headers"]
                            if k == b"traceparent"), None)  # fmt: skip
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        state["trace_id"] = trace_id_of(traceparent)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_app(hub: Hub, *, on_event_received: Callable[[], None] | None = None) -> FastAPI:
    """Build the FastAPI app over an already-built hub."""
    app = FastAPI(title="synchub", version=hub.version, docs_url=None, redoc_url=None)
    app.state.hub = hub
    app.state.on_event_received = on_event_received
    app.include_router(webhooks.router)
    app.include_router(health.router)

    app.add_middleware(RequestIdMiddleware)

    @app.exception_handler(HubError)
    async def hub_error(request: Request, exc: HubError) -> JSONResponse:
        log.info("api.rejected", path=request.url.path, code=exc.code)
        return problem_for(exc, trace_id=_trace_id(request))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"pointer": "/" + "/".join(str(p) for p in e["loc"][1:]), "detail": e["msg"]}
            for e in exc.errors()
        ]
        return problem(
            422,
            "validation-failed",
            "Request is invalid",
            errors=errors,
            detail="One or more fields are invalid.",
            trace_id=_trace_id(request),
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem(exc.status_code, slug, str(exc.detail), trace_id=_trace_id(request))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("api.crashed", path=request.url.path)
        return problem(
            500,
            "internal",
            "Internal error",
            trace_id=_trace_id(request),
            detail="Something went wrong on our side; the trace id identifies it.",
        )

    return app
