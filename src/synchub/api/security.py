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
from synchub.auth.model import SCOPES, Principal
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
    """The access token from the Authorization header (never from the URL)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("an access token is required")
    return token.strip()


async def _principal(
    security_scopes: SecurityScopes,
    request: Request,
    _token: Annotated[str | None, Depends(oauth2)],
) -> Principal:
    hub = request.app.state.hub
    token = bearer_token(request)
    remembered: Principal | None = hub.auth.principal_from_memory(token)
    principal: Principal = (
        remembered
        if remembered is not None
        else await run_in_threadpool(hub.auth.verify_token, token)
    )
    request.state.principal = principal
    # Fair use before the scope check: a client that keeps calling what it may not is still
    # throttled, and its 403 carries the RateLimit headers like every other /v1 answer.
    if hub.ratelimiter is None or not hub.ratelimiter.does_io:
        enforce(request, principal)
    else:
        await run_in_threadpool(enforce, request, principal)
    for scope in security_scopes.scopes:
        if not principal.has_scope(scope):
            raise InsufficientScopeError(f"this needs the {scope} scope", scope=scope)
    return principal


def require(scope: str) -> Any:
    """A dependency that yields the caller's Principal if the token grants `scope`."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    return Security(_principal, scopes=[scope])
