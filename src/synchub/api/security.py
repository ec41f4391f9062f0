"""Bearer access tokens on /v1: who is calling, and whether they hold the operation's scope.

Each operation declares its one scope through `require(scope)`; FastAPI writes it into the
OpenAPI document as `security: [{"oauth2": [scope]}]`.

The check runs on the event loop when it needs no I/O: a token checked recently is answered
from the authorization server's memory (ADR 0015) and the in-memory rate limiter is a few
dictionary operations, so a hop to the thread pool would cost more than the work. A store
read (first sight of a token, a stale revocation answer) or a Redis round trip goes to a
thread, so the loop never waits on I/O.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import OAuth2, SecurityScopes

from synchub.api.fair_use import enforce
from synchub.auth.model import SCOPES, InvalidAuthorizationError, Principal
from synchub.core.errors import AuthenticationError, InsufficientScopeError

oauth2 = OAuth2(
    flows=OAuthFlows(
        clientCredentials=OAuthFlowClientCredentials(tokenUrl="/oauth/token", scopes=SCOPES)
    ),
    scheme_name="oauth2",
    description="OAuth 2.0 client credentials; send the access token as `Authorization: "
    "Bearer <token>`.",
    auto_error=False,
)


def bearer_token(request: Request) -> str:
    """The access token from the Authorization header (never from the URL).

    Two Authorization headers are refused (400 invalid_request, as on /oauth/token): which
    one a proxy or framework would pick differs, so neither is trusted.
    """
    headers = request.headers.getlist("authorization")
    if len(headers) > 1:
        raise InvalidAuthorizationError("send one Authorization header")
    scheme, _, token = (headers[0] if headers else "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("an access token is required")
    return token.strip()


def requires_token(path: str) -> bool:
    """Whether a path is a /v1 API path that needs a bearer token (vendor webhooks do not)."""
    return path.startswith("/v1/") and not path.startswith("/v1/webhooks/")


async def authenticate(request: Request) -> Principal:
    """The caller (401 otherwise), admitted by fair use (429 otherwise); once per request.

    Fair use comes right after authentication, before anything looks at the request itself,
    so every answer past authentication (including 400, 403, 413 and 422) is counted and
    carries the RateLimit fields.
    """
    state = request.state
    known: Principal | None = getattr(state, "principal", None)
    if known is not None:
        return known
    state.authentication_attempted = True
    hub = request.app.state.hub
    token = bearer_token(request)
    remembered: Principal | None = hub.auth.principal_from_memory(token)
    principal: Principal = (
        remembered
        if remembered is not None
        else await run_in_threadpool(hub.auth.verify_token, token)
    )
    state.principal = principal
    if hub.ratelimiter is None or not hub.ratelimiter.does_io:
        enforce(request, principal)
    else:
        await run_in_threadpool(enforce, request, principal)
    return principal


def authentication_attempted(request: Request) -> bool:
    """Whether `authenticate` already ran (or began) for this request."""
    return bool(getattr(request.state, "authentication_attempted", False))


async def _principal(
    security_scopes: SecurityScopes,
    request: Request,
    _token: Annotated[str | None, Depends(oauth2)],
) -> Principal:
    # Fair use (in authenticate) before the scope check: a client that keeps calling what it
    # may not is still throttled, and its 403 carries the RateLimit headers like every other
    # /v1 answer.
    principal = await authenticate(request)
    for scope in security_scopes.scopes:
        if not principal.has_scope(scope):
            raise InsufficientScopeError(f"this needs the {scope} scope", scope=scope)
    return principal


def require(scope: str) -> Any:
    """A dependency that yields the caller's Principal if the token grants `scope`."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    return Security(_principal, scopes=[scope])
