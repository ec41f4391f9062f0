"""The app factory: routes, problem+json for every error, a request id on every response."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from synchub.api import (
    audit,
    connections,
    deliveries,
    docs,
    events,
    exports,
    fair_use,
    health,
    hubspot_webhooks,
    intercom_webhooks,
    matching,
    merges,
    metrics,
    oauth,
    product_writes,
    reconcile,
    records,
    usage,
    vendor_oauth,
    webhook_endpoints,
    webhooks,
)
from synchub.api.fair_use import FairUseError
from synchub.api.problems import problem, problem_for
from synchub.api.security import authenticate, authentication_attempted, requires_token
from synchub.auth.model import InvalidAuthorizationError
from synchub.bootstrap import Hub
from synchub.core.errors import HubError, SignatureError
from synchub.core.ids import new_id
from synchub.observability.tracecontext import continue_or_start, trace_id_of

log = structlog.get_logger(__name__)


def _trace_id(request: Request) -> str | None:
    return getattr(request.state, "trace_id", None)


MAX_BODY_BYTES = 1024 * 1024
HTTP_PROBLEMS = {
    404: ("not-found", "Resource not found"),
    405: ("method-not-allowed", "Method not allowed"),
}


def _has_bearer(header: bytes) -> bool:
    scheme, _, token = header.decode("latin-1").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


def _rejected(request: Request, exc: HubError) -> JSONResponse:
    """The problem answer for a HubError, logged (a signature failure with its reason)."""
    if isinstance(exc, FairUseError):
        return fair_use.refused(request, exc)
    principal = getattr(request.state, "principal", None)
    # The reason a signature failed stays in our log: the answer's detail is fixed (ADR 0005).
    # The messages name the failed check only, never a secret or the header's value.
    reason = str(exc) if isinstance(exc, SignatureError) else None
    log.info("api.rejected", path=request.url.path, method=request.method, code=exc.code,
             request_id=getattr(request.state, "request_id", None),
             client_id=getattr(principal, "client_id", None),
             **({"reason": reason} if reason else {}))  # fmt: skip
    return problem_for(exc, trace_id=_trace_id(request))


async def authentication_first(request: Request) -> JSONResponse | None:
    """Run authentication and fair use for a /v1 answer made before the route's own check.

    FastAPI reads and parses a JSON body before it solves the route's dependencies, and the
    middleware refuses an oversized body before routing, so a malformed body (400), an
    oversized one (413) or an unknown path (404) would otherwise be answered before we know
    who is calling. Every such answer comes through here first: a bad or missing token is
    401 whatever the body was, and an authenticated caller's request is counted by fair use
    (429 when over) and carries the RateLimit fields like every /v1 answer past
    authentication. None means: go on with the original answer. Runs at most once per
    request, and not at all where the route's dependency already ran.
    """
    if not requires_token(request.url.path) or authentication_attempted(request):
        return None
    try:
        await authenticate(request)
    except HubError as exc:
        return _rejected(request, exc)
    return None


class RequestIdMiddleware:
    """Gives every request an id (X-Request-Id) and its trace id; plain ASGI, no task groups.

    It also refuses, before any routing, what needs no knowledge of the caller: a NUL in the
    URL, a /v1 request without a bearer token or with two Authorization headers. A body over
    MAX_BODY_BYTES (declared, or counted as it streams in) is refused with 413 only after the
    caller is authenticated (see `authentication_first`).
    """

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
        # One traceparent per request: the trace id in problems and logs is the one the
        # request's events carry (api/writes.py request_traceparent).
        state["traceparent"] = continue_or_start(traceparent)
        state["trace_id"] = trace_id_of(state["traceparent"])

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"x-request-id", rid.encode())]
                extra += [
                    (k.lower().encode(), v.encode())
                    for k, v in state.get("ratelimit_headers", {}).items()
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        raw = scope.get("raw_path", b"") + b"?" + scope.get("query_string", b"")
        if b"%00" in raw or b"\x00" in raw or "\x00" in scope.get("path", ""):
            response = problem(
                400,
                "bad-request",
                "Request cannot be processed",
                code="nul_in_url",
                trace_id=state["trace_id"],
                detail="the URL contains a NUL byte",
            )
            await response(scope, receive, send_with_id)
            return
        path = scope.get("path", "")
        authorization = [v for k, v in scope["headers"] if k == b"authorization"]
        if requires_token(path) and len(authorization) > 1:
            response = problem_for(
                InvalidAuthorizationError("send one Authorization header"),
                trace_id=state["trace_id"],
            )
            await response(scope, receive, send_with_id)
            return
        if requires_token(path) and not _has_bearer(authorization[0] if authorization else b""):
            response = problem(
                401,
                "unauthorized",
                "Authentication required",
                code="invalid_token",
                trace_id=state["trace_id"],
                detail="send an access token: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": 'Bearer realm="synchub"'},
            )
            await response(scope, receive, send_with_id)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            # Not read: refused as soon as the caller is known (and counted).
            request = Request(scope)
            refusal = await authentication_first(request) if "app" in scope else None
            response = refusal or _too_large(state["trace_id"])
            await response(scope, receive, send_with_id)
            return

        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:  # a body sent without Content-Length
                    raise HTTPException(413, detail=_TOO_LARGE)
            return message

        await self.app(scope, receive_limited, send_with_id)


_TOO_LARGE = f"bodies are limited to {MAX_BODY_BYTES} bytes"


def _too_large(trace_id: str | None) -> JSONResponse:
    return problem(413, "payload-too-large", "Request body too large",
                   code="payload_too_large", trace_id=trace_id, detail=_TOO_LARGE)  # fmt: skip


API_DESCRIPTION = """The synchub public API: golden customers, accounts, subscriptions, plans,
invoices and payments; canonical events; deliveries and dead letters; connections; the audit
log.

- Authenticate with OAuth 2.0 client credentials (`POST /oauth/token`, HTTP Basic client
  authentication) and send `Authorization: Bearer <token>`. Each operation needs one scope.
- Lists are cursor-paginated: `limit` (1-100) and `starting_after` (the last id you saw).
- Every POST and PATCH accepts `Idempotency-Key` (a token or quoted string, at most 255
  characters). A retry with the same key and body replays the first response with
  `Idempotent-Replayed: true`; a different body gets 422; while the first request runs, 409
  with `Retry-After: 1`. Keys are kept for at least 24 hours.
- Errors are RFC 9457 `application/problem+json` with a stable `code`, a `trace_id` and, for
  invalid input, `errors` with JSON pointers to the fields.
- Every response carries `X-Request-Id`; JSON bodies of lists and writes also carry
  `request_id`.
"""


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details. Clients must ignore unknown members.",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "code": {"type": "string", "description": "Stable, snake_case."},
        "trace_id": {"type": "string"},
        "layer": {
            "type": "string",
            "description": "On a 429: the fair-use limit that was hit (throttle, quota or "
            "concurrency).",
        },
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["pointer", "detail"],
                "properties": {
                    "pointer": {"type": "string", "description": "RFC 6901"},
                    "detail": {"type": "string"},
                },
            },
        },
    },
}
PROBLEMS = {
    "400": "Malformed request or Idempotency-Key",
    "401": "No valid access token",
    "403": "The token lacks the operation's scope",
    "404": "Not found, or not visible to this workspace",
    "409": "The same Idempotency-Key is still being processed",
    "413": "Body too large",
    "422": "Invalid input; `errors` points at the fields",
    "429": "Over the client's rate, monthly quota or concurrency limit (`layer` says "
    "which); see Retry-After",
    "500": "Something went wrong on our side",
}
WRITE_ONLY_PROBLEMS = frozenset({"409", "413"})
IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "A token or RFC 8941 quoted string of at most 255 characters. Replays "
                   "the first response for 24 h or more.",
    "schema": {"type": "string",
               "pattern": r'^(?:[A-Za-z0-9._:-]{1,255}|"(?:[\x20-\x21\x23-\x5b\x5d-\x7e]'
                          r'|\\["\\]){1,255}")$'},
}  # fmt: skip


def document_conventions(schema: dict[str, Any]) -> None:
    """Write the API's shared conventions into every operation of the document."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["Problem"] = PROBLEM_SCHEMA
    problem_ref = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    request_id = {
        "X-Request-Id": {"description": "This request's id.", "schema": {"type": "string"}}
    }
    for item in schema.get("paths", {}).values():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            for code, description in PROBLEMS.items():
                if code in WRITE_ONLY_PROBLEMS and method not in ("post", "patch"):
                    continue
                responses[code] = {"description": description, "content": problem_ref}
            for response in responses.values():
                response["headers"] = request_id
            if method in ("post", "patch"):
                operation.setdefault("parameters", []).append(IDEMPOTENCY_HEADER)


def _v1_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(title="synchub API", version="1.0.0", openapi_version="3.1.0",
                             description=API_DESCRIPTION, routes=app.routes,
                             servers=[{"url": "/"}])  # fmt: skip
        schema["info"]["contact"] = {"name": "synchub", "url": "https://synchub.dev"}
        schema["security"] = [{"oauth2": []}]  # every operation needs a token (and a scope)
        document_conventions(schema)
        app.openapi_schema = schema
    return app.openapi_schema


def create_app(hub: Hub, *, on_event_received: Callable[[], None] | None = None) -> FastAPI:
    """Build the FastAPI app over an already-built hub."""
    app = FastAPI(title="synchub API", version="1.0.0", docs_url=None, redoc_url=None)
    app.state.hub = hub
    app.state.on_event_received = on_event_received
    app.include_router(webhooks.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(webhook_endpoints.router)
    for router in records.routers():
        app.include_router(router)
    for router in exports.routers():
        app.include_router(router)
    app.include_router(usage.router)
    app.include_router(matching.router)
    app.include_router(merges.router)
    app.include_router(hubspot_webhooks.router)
    app.include_router(intercom_webhooks.router)
    app.include_router(reconcile.router)
    app.include_router(vendor_oauth.router)
    for module in (oauth, product_writes, events, deliveries, connections, audit, docs):
        app.include_router(module.router)
    app.openapi = lambda: _v1_openapi(app)  # type: ignore[method-assign]  # FastAPI's hook

    app.add_middleware(RequestIdMiddleware)
    app.add_exception_handler(FairUseError, fair_use.refused)

    @app.exception_handler(HubError)
    async def hub_error(request: Request, exc: HubError) -> JSONResponse:
        return await authentication_first(request) or _rejected(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # A malformed JSON body is found before the route's auth dependency runs.
        refusal = await authentication_first(request)
        if refusal is not None:
            return refusal
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return problem(
                400,
                "malformed-json",
                "Body is not valid JSON",
                detail="Send a JSON object with Content-Type: application/json.",
                errors=[{"pointer": "", "detail": "not valid JSON"}],
                trace_id=_trace_id(request),
            )
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
        # 404/405 before routing, 400 for an unreadable body, 413 for one that streamed past
        # the limit: all before the route's auth dependency.
        refusal = await authentication_first(request)
        if refusal is not None:
            return refusal
        if exc.status_code == 413:
            return _too_large(_trace_id(request))
        slug, title = HTTP_PROBLEMS.get(exc.status_code, ("http-error", "HTTP error"))
        return problem(
            exc.status_code,
            slug,
            title,
            trace_id=_trace_id(request),
            detail=str(exc.detail),
            headers=getattr(exc, "headers", None),
        )

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


def contract_document(hub: Hub) -> dict[str, Any]:
    """The OpenAPI document the app serves (what `openapi/v1.yaml` must equal)."""
    return create_app(hub).openapi()
