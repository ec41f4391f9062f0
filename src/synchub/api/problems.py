"""RFC 9457 problem+json responses, and the one table from error class to HTTP status."""

from __future__ import annotations

import math
from typing import Any

from fastapi.responses import JSONResponse

from synchub.auth.model import InvalidAuthorizationError
from synchub.core.errors import (
    AuthenticationError,
    ConfigError,
    ConflictError,
    HubError,
    InsufficientScopeError,
    NotFoundError,
    PayloadTooLargeError,
    PermanentError,
    RateLimitedError,
    SignatureError,
    TransientError,
    ValidationError,
)
from synchub.idempotency.model import IdempotencyKeyError
from synchub.idempotency.service import KeyReusedError

PROBLEM_BASE = "https://synchub.dev/problems/"
# ADR 0005: one fixed detail for every signature failure, never which check failed (the
# reason is logged server-side); telling a forger which part to fix next helps only them.
SIGNATURE_DETAIL = "The webhook signature does not verify."
MEDIA_TYPE = "application/problem+json"

# error class -> (status, slug, fixed title); the first matching class wins
ERROR_STATUS: list[tuple[type[HubError], int, str, str]] = [
    (SignatureError, 400, "invalid-signature", "Webhook signature is invalid"),
    (PayloadTooLargeError, 413, "payload-too-large", "Request body too large"),
    (IdempotencyKeyError, 400, "invalid-idempotency-key", "Idempotency-Key is invalid"),
    (InvalidAuthorizationError, 400, "bad-request", "Request cannot be processed"),
    (KeyReusedError, 422, "idempotency-key-reused", "Idempotency-Key reused"),
    (AuthenticationError, 401, "unauthorized", "Authentication required"),
    (InsufficientScopeError, 403, "insufficient-scope", "Insufficient scope"),
    (ConflictError, 409, "conflict", "Conflict"),
    (ValidationError, 422, "validation-failed", "Request is invalid"),
    (NotFoundError, 404, "not-found", "Resource not found"),
    (RateLimitedError, 429, "rate-limited", "Too many requests"),
    (ConfigError, 500, "configuration", "Server configuration error"),
    (TransientError, 503, "unavailable", "Temporarily unavailable"),
    (PermanentError, 400, "bad-request", "Request cannot be processed"),
]


def _headers_for(error: HubError) -> dict[str, str] | None:
    if isinstance(error, AuthenticationError):
        return {"WWW-Authenticate": 'Bearer realm="synchub", error="invalid_token"'}
    if isinstance(error, InvalidAuthorizationError):
        return {"WWW-Authenticate": 'Bearer realm="synchub", error="invalid_request"'}
    if isinstance(error, InsufficientScopeError):
        return {
            "WWW-Authenticate": f'Bearer realm="synchub", error="insufficient_scope", '
            f'scope="{error.scope}"'
        }
    if isinstance(error, ConflictError) and error.retry_after is not None:
        return {"Retry-After": str(error.retry_after)}
    if isinstance(error, RateLimitedError) and error.retry_after is not None:
        return {
            "Retry-After": str(max(1, math.ceil(error.retry_after))),
            "Cache-Control": "no-store",
        }
    return None


def problem(
    status: int,
    slug: str,
    title: str,
    *,
    detail: str | None = None,
    trace_id: str | None = None,
    code: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "code": code or slug.replace("-", "_"),
    }
    if detail:
        body["detail"] = detail
    if trace_id:
        body["trace_id"] = trace_id
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def problem_for(error: HubError, *, trace_id: str | None) -> JSONResponse:
    """The problem response for a HubError, per ERROR_STATUS."""
    for cls, status, slug, title in ERROR_STATUS:
        if isinstance(error, cls):
            errors = (
                [{"pointer": p.pointer, "detail": p.detail} for p in error.problems]
                if isinstance(error, ValidationError)
                else None
            )
            detail = str(error) if status < 500 else None  # never leak internals on 5xx
            if isinstance(error, SignatureError):
                detail = SIGNATURE_DETAIL
            return problem(
                status,
                slug,
                title,
                detail=detail,
                trace_id=trace_id,
                code=error.code,
                errors=errors,
                headers=_headers_for(error),
            )
    return problem(500, "internal", "Internal error", trace_id=trace_id)
