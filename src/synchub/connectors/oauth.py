"""synchub as an OAuth 2.0 client of Xero and HubSpot (RFC 6749, RFC 7636, RFC 9700; ADR 0023):
the vendors' authorization servers, PKCE, the token endpoint client, and which register
connections use OAuth. The connections' tokens, their refresh and holds are vault/service.py."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from synchub.connectors.http import VendorResponseError, send, summarize_response
from synchub.core.clock import Clock
from synchub.core.errors import (
    ConfigError,
    DependencyPendingError,
    PermanentError,
    RejectedError,
    TransientError,
)
from synchub.register.model import Connection as RegisterConnection

VERIFIER_BYTES = 32  # base64url of 32 random bytes: 43 characters (STANDARDS §6)


@dataclass(frozen=True)
class Provider:
    """One vendor's authorization server."""

    system: str
    authorize_url: str
    token_url: str
    scopes: tuple[str, ...]
    client_auth: str  # basic: HTTP Basic client_id:client_secret; body: in the form
    tenants_url: str | None = None  # Xero: GET /connections lists the organisations
    issuer: str | None = None  # checked against an `iss` the callback carries (RFC 9207)


XERO = Provider(
    system="xero",
    authorize_url="https://login.xero.com/identity/connect/authorize",
    token_url="https://identity.xero.com/connect/token",  # noqa: S106 - a URL
    scopes=("offline_access", "accounting.contacts", "accounting.transactions"),
    client_auth="basic",
    tenants_url="https://api.xero.com/connections",
    issuer="https://identity.xero.com",
)
# HubSpot issues refresh tokens without asking (it has no offline_access scope); `oauth` is
# the scope every HubSpot app must request. Its v1 token endpoint takes the client in the form.
HUBSPOT = Provider(
    system="hubspot",
    authorize_url="https://app.hubspot.com/oauth/authorize",
    token_url="https://api.hubapi.com/oauth/v1/token",  # noqa: S106 - a URL
    scopes=(
        "oauth",
        "crm.objects.contacts.read",
        "crm.objects.contacts.write",
        "crm.objects.companies.read",
        "crm.objects.companies.write",
    ),
    client_auth="body",
)
PROVIDERS = {p.system: p for p in (XERO, HUBSPOT)}


@dataclass(frozen=True)
class OAuthApp:
    """Our registered app at one vendor, for one connection."""

    provider: Provider
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str


@dataclass(frozen=True)
class TokenSet:
    """What a token endpoint answered."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: datetime
    scope: str | None


class InvalidGrantError(PermanentError):
    """The vendor refused the grant (revoked, expired or superseded): re-authorise."""

    code = "invalid_grant"


class ReauthorizationRequiredError(DependencyPendingError):
    """A connection has no usable grant. Transient for the delivery (it waits, held, for a
    person to re-authorise) and no signal to the circuit breaker: the vendor is not down."""

    code = "reauthorization_required"


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge): a 43-character verifier and BASE64URL(SHA256(verifier))."""
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(VERIFIER_BYTES)).rstrip(b"=")
    digest = hashlib.sha256(verifier).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return verifier.decode("ascii"), challenge


def authorization_url(app: OAuthApp, *, state: str, challenge: str) -> str:
    """The URL a person opens to grant access."""
    query = urlencode(
        {
            "response_type": "code",
            "client_id": app.client_id,
            "redirect_uri": app.redirect_uri,
            "scope": " ".join(app.provider.scopes),
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    return f"{app.provider.authorize_url}?{query}"


class OAuthClient:
    """Calls one vendor's token endpoint (and Xero's tenant list). Receives its HTTP client."""

    def __init__(self, http: httpx.Client, app: OAuthApp, *, clock: Clock) -> None:
        self._http = http
        self.app = app
        self._clock = clock

    def exchange_code(self, code: str, verifier: str) -> TokenSet:
        """authorization_code grant with the PKCE verifier."""
        return self._grant(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.app.redirect_uri,
                "code_verifier": verifier,
            }
        )

    def refresh(self, refresh_token: str) -> TokenSet:
        """refresh_token grant."""
        return self._grant({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def tenant_id(self, access_token: str) -> str | None:
        """Xero: the first organisation the grant reaches (None for vendors without tenants)."""
        url = self.app.provider.tenants_url
        if url is None:
            return None
        request = self._http.build_request(
            "GET",
            url,
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        )
        response = send(self._http, request, vendor=self.app.provider.system)
        if response.status_code >= 300:
            raise RejectedError(
                f"{self.app.provider.system} tenants answered {response.status_code}",
                status=response.status_code,
            )
        tenants = [
            t for t in response.json() if t.get("tenantType", "ORGANISATION") == "ORGANISATION"
        ]
        if not tenants:
            raise RejectedError(f"{self.app.provider.system}: the grant reaches no organisation")
        return str(tenants[0]["tenantId"])

    def consent_in_sandbox(self, url: str) -> dict[str, str]:
        """Open an authorization URL through this client's transport (a sandbox consents at
        once); the query of the redirect it answers with (code and state, or error)."""
        response = self._http.get(url)
        location = response.headers.get("Location")
        if response.status_code != 302 or not location:
            raise RejectedError(f"the sandbox did not redirect (HTTP {response.status_code})")
        return {k: v[-1] for k, v in parse_qs(urlsplit(location).query).items()}

    def _grant(self, form: dict[str, str]) -> TokenSet:
        vendor = self.app.provider.system
        headers = {"Accept": "application/json"}
        if self.app.provider.client_auth == "basic":
            pair = f"{self.app.client_id}:{self.app.client_secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        else:
            form = {
                **form,
                "client_id": self.app.client_id,
                "client_secret": self.app.client_secret,
            }
        request = self._http.build_request(
            "POST", self.app.provider.token_url, data=form, headers=headers
        )
        response = send(self._http, request, vendor=vendor)
        status = response.status_code
        if status in (400, 401) and _is_invalid_grant(response):
            cause = VendorResponseError(summarize_response(response))
            raise InvalidGrantError(f"{vendor} refused the grant (invalid_grant)") from cause
        if status == 429 or status >= 500 or status == 408:
            cause = VendorResponseError(summarize_response(response))
            raise TransientError(
                f"{vendor} token endpoint answered {status}", status=status
            ) from cause
        if status >= 300:
            cause = VendorResponseError(summarize_response(response))
            raise RejectedError(
                f"{vendor} token endpoint answered {status}", status=status
            ) from cause
        return _token_set(response, now=self._clock.now(), vendor=vendor)


def _is_invalid_grant(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    # RFC 6749 `error`; HubSpot's v1 endpoint names a bad refresh token in `status` [R].
    return body.get("error") == "invalid_grant" or body.get("status") == "BAD_REFRESH_TOKEN"


def _token_set(response: httpx.Response, *, now: datetime, vendor: str) -> TokenSet:
    try:
        body = response.json()
        access, expires_in = str(body["access_token"]), int(body["expires_in"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RejectedError(f"{vendor} token response is not a token set") from exc
    if str(body.get("token_type", "bearer")).lower() != "bearer":
        raise RejectedError(f"{vendor} issued a token that is not a bearer token")
    refresh = body.get("refresh_token")
    return TokenSet(
        access_token=access,
        refresh_token=str(refresh) if refresh else None,
        expires_at=now + timedelta(seconds=expires_in),
        scope=body.get("scope"),
    )


# -- wiring (bootstrap) ----------------------------------------------------------------------

AUTH_SETTING = "auth"  # a register connection's `settings.auth`: token (default) or oauth
OAUTH_SETTINGS = {
    "xero": ("xero_client_id", "xero_client_secret"),
    "hubspot": ("hubspot_client_id", "hubspot_client_secret"),
}


def is_oauth(connection: RegisterConnection) -> bool:
    """Whether a register connection authenticates with OAuth tokens from the vault."""
    return connection.settings.get(AUTH_SETTING) == "oauth"


def auth_problem(connection: RegisterConnection) -> str | None:
    """What is wrong with a connection's `settings.auth`, if anything."""
    auth = connection.settings.get(AUTH_SETTING)
    if auth is None or auth == "token":
        return None
    if auth != "oauth":
        return f"connection {connection.name!r}: settings.auth must be token or oauth"
    if connection.system not in PROVIDERS:
        return f"connection {connection.name!r}: OAuth is for xero and hubspot connections"
    return None


def callback_url(public_url: str, connection: str) -> str:
    """The redirect URI registered with the vendor for a connection."""
    return f"{public_url.rstrip('/')}/oauth/callback/{connection}"


def oauth_app(
    connection: RegisterConnection,
    *,
    public_url: str,
    client_id: str | None,
    client_secret: str | None,
) -> OAuthApp:
    """The app a connection authorises with (its sandbox's, or the configured one)."""
    provider = PROVIDERS[connection.system]
    if not client_id or not client_secret:
        names = " and ".join(f"SYNCHUB_{n.upper()}" for n in OAUTH_SETTINGS[connection.system])
        raise ConfigError(f"connection {connection.name!r} uses OAuth: set {names}")
    return OAuthApp(
        provider,
        client_id=client_id,
        client_secret=client_secret,
        redirect_uri=callback_url(public_url, connection.name),
    )
