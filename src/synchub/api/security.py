"""Bearer access tokens on /v1: who is calling, and whether they hold the operation's scope.

Each operation declares its one scope through `require(scope)`; FastAPI writes it into the
OpenAPI document as `security: [{"oauth2": [scope]}]`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request, Security
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


def _principal(
    security_scopes: SecurityScopes,
    request: Request,
    _token: Annotated[str | None, Depends(oauth2)],
) -> Principal:
    principal: Principal = request.app.state.hub.auth.verify_token(bearer_token(request))
    for scope in security_scopes.scopes:
        if not principal.has_scope(scope):
            raise InsufficientScopeError(f"this needs the {scope} scope", scope=scope)
    request.state.principal = principal
    enforce(request, principal)
    return principal


def require(scope: str) -> Any:
    """A dependency that yields the caller's Principal if the token grants `scope`."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    return Security(_principal, scopes=[scope])
