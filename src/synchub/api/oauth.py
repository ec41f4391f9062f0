"""OAuth 2.0 endpoints of the hub's authorization server: token, revocation, introspection,
JWKS and RFC 8414 metadata.

Errors use the RFC 6749 §5.2 JSON body ({"error", "error_description"}), not problem+json:
OAuth clients parse that format. Clients authenticate with client_secret_basic only. A
client_secret (or client_assertion) in the body is answered 401 invalid_client, the code
RFC 6749 §5.2 gives an unsupported authentication method, and the WWW-Authenticate: Basic
challenge tells the client which method to use instead.

Token, revocation and introspection each check the client's secret, so each attempt on any of
them spends the client id's one budget (`client_attempts_refused`) before the secret is checked.
Over that budget the answer is the fair-use 429 of /v1 (problem+json with `"layer": "token"`,
`trace_id`, Retry-After and the RateLimit fields), not an RFC 6749 error: it is not one.
"""

from __future__ import annotations

import base64
import binascii
from typing import Protocol
from urllib.parse import parse_qsl, unquote_plus

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy.engine import Connection

from synchub.api.fair_use import OAUTH_LAYER, FairUseError, refusal, token_limit
from synchub.auth.model import SCOPES, RevocationOutcome, TokenGrant
from synchub.auth.service import AuthorizationServer
from synchub.core.errors import AuthenticationError, ValidationError
from synchub.db import Database
from synchub.observability.metrics import record_rate_limit
from synchub.ratelimit.model import ratelimit_headers, retry_after_header

router = APIRouter(include_in_schema=False)

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 32
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
PUBLIC_CACHE = {"Cache-Control": "public, max-age=300"}  # well under JWKS_CACHE_TTL
BASIC_CHALLENGE = 'Basic realm="synchub"'
# We issue only access tokens. A refresh_token hint is still fine: RFC 7009 lets us ignore a
# hint and search every type we have. Any other hint names a type we cannot revoke.
KNOWN_TOKEN_HINTS = frozenset({"access_token", "refresh_token"})
# RFC 6749 §5.2: error_description is printable ASCII without '"' and '\\'
_DESCRIPTION_CHARACTERS = frozenset(chr(c) for c in range(0x20, 0x7F)) - {'"', "\\"}


class OAuthHub(Protocol):
    """What these endpoints need from the hub on app.state."""

    db: Database
    auth: AuthorizationServer


class OAuthError(Exception):
    """An RFC 6749 §5.2 error answer: HTTP status, error code and a short description."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


def invalid_request(description: str) -> OAuthError:
    """A 400 invalid_request."""
    return OAuthError(400, "invalid_request", description)


def invalid_client(description: str) -> OAuthError:
    """A 401 invalid_client (answered with a Basic challenge)."""
    return OAuthError(401, "invalid_client", description)


def error_response(error: OAuthError) -> JSONResponse:
    """The RFC 6749 §5.2 JSON answer for an error."""
    headers = dict(NO_STORE)
    if error.status == 401:
        headers["WWW-Authenticate"] = BASIC_CHALLENGE
    description = error.description
    if not set(description) <= _DESCRIPTION_CHARACTERS:  # it may echo what the client sent
        description = error.error.replace("_", " ")
    body = {"error": error.error, "error_description": description}
    return JSONResponse(body, status_code=error.status, headers=headers)


def parse_form(body: bytes) -> dict[str, str]:
    """A form-urlencoded body; a repeated parameter is refused (RFC 6749 §3.1).

    Parameters sent without a value are treated as omitted, as RFC 6749 §3.1 requires;
    empty segments ("a=1&") are skipped, as the WHATWG form parser does.
    """
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FORM_FIELDS
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise invalid_request("the body is not a valid form") from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise invalid_request(f"the parameter {name} is repeated")
        form[name] = value
    return {name: value for name, value in form.items() if value}


def parse_basic_credentials(header: str) -> tuple[str, str]:
    """(client_id, secret) from `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).

    The first ':' separates id and secret, so a secret sent with a bare ':' still works.
    """
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise invalid_client("authenticate the client with HTTP Basic (client_secret_basic)")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        raw_id, colon, raw_secret = decoded.partition(":")
        client_id = unquote_plus(raw_id, errors="strict")
        secret = unquote_plus(raw_secret, errors="strict")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise invalid_client("the Basic credentials are malformed") from exc
    if not colon or not client_id or not secret:
        raise invalid_client("the Basic credentials need a client id and a secret")
    return client_id, secret


def client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    """The client's Basic credentials; body secrets and conflicting ids are refused."""
    if "client_secret" in form or "client_assertion" in form:
        raise invalid_client(
            "client credentials in the body are not accepted: use HTTP Basic authentication"
        )
    headers = request.headers.getlist("authorization")
    if len(headers) > 1:
        raise invalid_request("send one Authorization header")
    if not headers:
        raise invalid_client("client authentication is required (HTTP Basic)")
    client_id, secret = parse_basic_credentials(headers[0])
    if form.get("client_id", client_id) != client_id:
        raise invalid_request("client_id in the body is not the authenticated client")
    return client_id, secret


async def read_form(request: Request) -> dict[str, str]:
    """The request's form parameters (body only: never take parameters from the URL)."""
    if request.url.query:
        raise invalid_request("send parameters in the body, never in the URL")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != FORM_MEDIA_TYPE:
        raise invalid_request(f"send the parameters as {FORM_MEDIA_TYPE}")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise invalid_request("the body is too large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise invalid_request("the body is too large")
    return parse_form(bytes(body))


def required(form: dict[str, str], name: str) -> str:
    """A parameter that must be present."""
    value = form.get(name)
    if value is None:
        raise invalid_request(f"{name} is required")
    return value


def grant_token(hub: OAuthHub, credentials: tuple[str, str], scope: str | None) -> TokenGrant:
    """Authenticate the client and issue its token; refusals are committed (audited) too."""

    def attempt(conn: Connection) -> TokenGrant | OAuthError:
        try:
            client = hub.auth.authenticate_client(conn, *credentials)
            return hub.auth.issue_token(conn, client, scope)
        except AuthenticationError:
            return invalid_client("client authentication failed")
        except ValidationError as exc:
            detail = exc.problems[0].detail if exc.problems else str(exc)
            return OAuthError(400, "invalid_scope", detail)

    with hub.db.write() as conn:
        outcome = attempt(conn)
    if isinstance(outcome, OAuthError):
        raise outcome
    return outcome


def revoke_token(hub: OAuthHub, credentials: tuple[str, str], token: str) -> None:
    """Revoke a token for its own client (RFC 7009 §2.1)."""

    def attempt(conn: Connection) -> OAuthError | None:
        try:
            client = hub.auth.authenticate_client(conn, *credentials)
        except AuthenticationError:
            return invalid_client("client authentication failed")
        outcome = hub.auth.revoke(conn, token, requester=client.client_id)
        if outcome is RevocationOutcome.NOT_OWNER:
            return OAuthError(400, "unauthorized_client", "the token was issued to another client")
        return None

    with hub.db.write() as conn:
        failure = attempt(conn)
    if failure is not None:
        raise failure


def introspect_token(hub: OAuthHub, credentials: tuple[str, str], token: str) -> dict[str, object]:
    """RFC 7662 for the calling client's own tokens."""

    def attempt(conn: Connection) -> dict[str, object] | OAuthError:
        try:
            client = hub.auth.authenticate_client(conn, *credentials)
        except AuthenticationError:
            return invalid_client("client authentication failed")
        return hub.auth.introspect(conn, token, requester=client.client_id)

    with hub.db.write() as conn:
        outcome = attempt(conn)
    if isinstance(outcome, OAuthError):
        raise outcome
    return outcome


def _client_attempt(request: Request, client_id: str) -> Response | None:
    hub = request.app.state.hub
    limiter = hub.ratelimiter
    limit = token_limit(hub.register, client_id)
    decision = limiter.check(f"oauth/{client_id.replace('{', '').replace('}', '')}", limit)
    record_rate_limit(limit.policy, "throttle", decision.allowed)
    if decision.allowed:
        return None
    wait = retry_after_header(decision.retry_after_seconds)
    error = FairUseError(
        "too many client authentication attempts for this client id; "
        f"retry in {wait} s (layer: token)",
        layer=OAUTH_LAYER,
        retry_after=wait,
    )
    return refusal(request, error, headers={**NO_STORE, **ratelimit_headers(decision)})


async def client_attempts_refused(request: Request, client_id: str) -> Response | None:
    """429 (problem+json, Retry-After) when a client id presents its secret too often.

    Every endpoint that checks a client secret (token, revocation, introspection) spends one
    unit of the same budget, keyed on the client id being authenticated (the only trustworthy
    key before the secret is checked), before the secret is checked: a wrong guess on any of
    them counts, so the budget bounds guessing, and the scrypt work each guess costs us,
    across all three. The rate is the token limit of the client's plan tier in the register
    (the default plan's if the id is unknown).
    """
    limiter = getattr(request.app.state.hub, "ratelimiter", None)
    if limiter is None:
        return None
    if limiter.does_io:  # a Redis round trip: off the event loop
        return await run_in_threadpool(_client_attempt, request, client_id)
    return _client_attempt(request, client_id)


@router.post("/oauth/token")
async def token_endpoint(request: Request) -> Response:
    """The client credentials grant (RFC 6749 §4.4)."""
    hub: OAuthHub = request.app.state.hub
    try:
        form = await read_form(request)
        credentials = client_credentials(request, form)
        refused = await client_attempts_refused(request, credentials[0])
        if refused is not None:
            return refused
        grant_type = required(form, "grant_type")
        if grant_type != "client_credentials":
            raise OAuthError(400, "unsupported_grant_type", "only client_credentials is supported")
        grant = await run_in_threadpool(grant_token, hub, credentials, form.get("scope"))
    except OAuthError as error:
        return error_response(error)
    body = {
        "access_token": grant.access_token,
        "token_type": "Bearer",
        "expires_in": grant.expires_in,
        "scope": grant.scope,
    }
    return JSONResponse(body, headers=NO_STORE)


@router.post("/oauth/revoke")
async def revocation_endpoint(request: Request) -> Response:
    """Token revocation (RFC 7009): 200 for any token, known or not."""
    hub: OAuthHub = request.app.state.hub
    try:
        form = await read_form(request)
        credentials = client_credentials(request, form)
        refused = await client_attempts_refused(request, credentials[0])
        if refused is not None:
            return refused
        token = required(form, "token")
        hint = form.get("token_type_hint")
        if hint is not None and hint not in KNOWN_TOKEN_HINTS:
            raise OAuthError(400, "unsupported_token_type", "only access tokens can be revoked")
        await run_in_threadpool(revoke_token, hub, credentials, token)
    except OAuthError as error:
        return error_response(error)
    return Response(status_code=200, headers=NO_STORE)


@router.post("/oauth/introspect")
async def introspection_endpoint(request: Request) -> Response:
    """Token introspection (RFC 7662); the answer always has "active"."""
    hub: OAuthHub = request.app.state.hub
    try:
        form = await read_form(request)
        credentials = client_credentials(request, form)
        refused = await client_attempts_refused(request, credentials[0])
        if refused is not None:
            return refused
        token = required(form, "token")
        answer = await run_in_threadpool(introspect_token, hub, credentials, token)
    except OAuthError as error:
        return error_response(error)
    return JSONResponse(answer, headers=NO_STORE)


@router.get("/.well-known/jwks.json")
def jwks_endpoint(request: Request) -> JSONResponse:
    """The public keys that verify our access tokens (RFC 7517)."""
    hub: OAuthHub = request.app.state.hub
    with hub.db.read() as conn:
        document = hub.auth.jwks(conn)
    return JSONResponse(document, headers=PUBLIC_CACHE)


@router.get("/.well-known/oauth-authorization-server")
def metadata_endpoint(request: Request) -> JSONResponse:
    """Authorization server metadata (RFC 8414)."""
    hub: OAuthHub = request.app.state.hub
    return JSONResponse(server_metadata(hub.auth.issuer), headers=PUBLIC_CACHE)


def server_metadata(issuer: str) -> dict[str, object]:
    """The RFC 8414 metadata document for an issuer."""
    basic = ["client_secret_basic"]
    return {
        "issuer": issuer,
        "token_endpoint": f"{issuer}/oauth/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": basic,
        "revocation_endpoint_auth_methods_supported": basic,
        "introspection_endpoint_auth_methods_supported": basic,
        "scopes_supported": list(SCOPES),
        "code_challenge_methods_supported": ["S256"],
    }
