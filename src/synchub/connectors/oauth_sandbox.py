"""The authorization server of a vendor sandbox: authorization code + PKCE, refresh tokens.

Shared by the Xero and HubSpot sandboxes (ADR 0023). It follows RFC 6749/7636 as those vendors
apply them: the authorize endpoint consents at once (there is no person in a sandbox) and
redirects to the registered URI with `code` and `state`; the token endpoint checks the client,
the code's redirect URI and the PKCE verifier (S256 only).

Refresh tokens either rotate (Xero: every refresh returns a new one, the old one is spent) or
stay (HubSpot). It is stricter than Xero on purpose: a spent refresh token is refused with
`invalid_grant` at once (Xero allows a 30-minute grace), and every such reuse is counted in
`reused_refresh_tokens`, so a test sees any refresh token used twice.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx

from synchub.connectors.sandbox import json_response

ACCESS_SECONDS = 1800  # both vendors: 30 minutes


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of a verifier: BASE64URL(SHA256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class SandboxAuthServer:
    """Clients, codes and tokens of one sandbox vendor, in memory (guarded by its own lock)."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        client_auth: str,  # "basic" (Xero) or "body" (HubSpot v1)
        rotate_refresh_tokens: bool,
        prefix: str,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.client_auth = client_auth
        self.rotate = rotate_refresh_tokens
        self.prefix = prefix
        self.codes: dict[str, dict[str, str]] = {}
        self.access_tokens: set[str] = set()
        self.refresh_tokens: dict[str, str] = {}  # live refresh token -> scope
        self.spent_refresh_tokens: set[str] = set()
        self.refreshes = 0  # successful refresh grants
        self.reused_refresh_tokens = 0  # refresh grants with a spent token (must stay 0)
        self._lock = threading.Lock()

    # -- state kept with the sandbox's -------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Issued tokens (so a later process's sandbox still accepts them)."""
        with self._lock:
            return {
                "access": sorted(self.access_tokens),
                "refresh": dict(self.refresh_tokens),
                "spent": sorted(self.spent_refresh_tokens),
            }

    def from_state(self, state: dict[str, Any]) -> None:
        """Take up tokens issued by an earlier process."""
        with self._lock:
            self.access_tokens = set(state.get("access", []))
            self.refresh_tokens = dict(state.get("refresh", {}))
            self.spent_refresh_tokens = set(state.get("spent", []))

    # -- what tests and the vendor's resource server ask ---------------------------------------

    def accepts(self, request: httpx.Request) -> bool:
        """Whether the request's bearer token is an access token issued here."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        with self._lock:
            return scheme == "Bearer" and token in self.access_tokens

    def revoke_all(self) -> None:
        """The user disconnected the app: every token stops working."""
        with self._lock:
            self.spent_refresh_tokens |= set(self.refresh_tokens)
            self.refresh_tokens.clear()
            self.access_tokens.clear()

    # -- endpoints -----------------------------------------------------------------------------

    def authorize(self, request: httpx.Request, _match: re.Match[str]) -> httpx.Response:
        """GET authorize: consent at once and redirect with a code, or an error body."""
        q = {k: v[-1] for k, v in parse_qs(request.url.query.decode("ascii")).items()}
        redirect = q.get("redirect_uri", "")
        problem = None
        if q.get("client_id") != self.client_id:
            problem = "unknown client_id"
        elif not redirect.startswith(("http://", "https://")):
            problem = "redirect_uri missing"
        elif q.get("response_type") != "code":
            problem = "response_type must be code"
        elif q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            problem = "PKCE with S256 required"
        if problem is not None:
            return json_response(400, {"error": "invalid_request", "error_description": problem})
        code = self.prefix + "code-" + secrets.token_urlsafe(16)
        with self._lock:
            self.codes[code] = {
                "challenge": q["code_challenge"],
                "redirect_uri": redirect,
                "scope": q.get("scope", ""),
            }
        query = urlencode({"code": code, "state": q.get("state", ""), "scope": q.get("scope", "")})
        return httpx.Response(302, headers={"Location": f"{redirect}?{query}"})

    def token(self, request: httpx.Request, _match: re.Match[str]) -> httpx.Response:
        """POST token: authorization_code or refresh_token grants (form-encoded)."""
        form = {k: v[-1] for k, v in parse_qs(request.content.decode("utf-8")).items()}
        if not self._client_ok(request, form):
            return _error(401, "invalid_client")
        grant = form.get("grant_type")
        with self._lock:
            if grant == "authorization_code":
                return self._code_grant(form)
            if grant == "refresh_token":
                return self._refresh_grant(form.get("refresh_token", ""))
        return _error(400, "unsupported_grant_type")

    def _client_ok(self, request: httpx.Request, form: dict[str, str]) -> bool:
        if self.client_auth == "basic":
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            if scheme != "Basic":
                return False
            try:
                decoded = base64.b64decode(value).decode("utf-8")
            except ValueError:
                return False
            return decoded == f"{self.client_id}:{self.client_secret}"
        return form.get("client_id") == self.client_id and secrets.compare_digest(
            form.get("client_secret", ""), self.client_secret
        )

    def _code_grant(self, form: dict[str, str]) -> httpx.Response:
        grant = self.codes.pop(form.get("code", ""), None)  # single use
        if grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
            return _error(400, "invalid_grant")
        if s256(form.get("code_verifier", "")) != grant["challenge"]:
            return _error(400, "invalid_grant")
        return self._issue(grant["scope"], refresh=None)

    def _refresh_grant(self, refresh: str) -> httpx.Response:
        if refresh in self.spent_refresh_tokens:
            self.reused_refresh_tokens += 1
            return _error(400, "invalid_grant")
        scope = self.refresh_tokens.get(refresh)
        if scope is None:
            return _error(400, "invalid_grant")
        self.refreshes += 1
        return self._issue(scope, refresh=None if self.rotate else refresh, spent=refresh)

    def _issue(
        self, scope: str, *, refresh: str | None, spent: str | None = None
    ) -> httpx.Response:
        access = self.prefix + "at-" + secrets.token_urlsafe(24)
        if spent is not None and self.rotate:
            del self.refresh_tokens[spent]
            self.spent_refresh_tokens.add(spent)
        refresh = refresh or self.prefix + "rt-" + secrets.token_urlsafe(24)
        self.access_tokens.add(access)
        self.refresh_tokens[refresh] = scope
        body = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ACCESS_SECONDS,
            "refresh_token": refresh,
            "scope": scope,
        }
        return json_response(200, body, {"Cache-Control": "no-store"})


def _error(status: int, code: str) -> httpx.Response:
    return json_response(status, {"error": code}, {"Cache-Control": "no-store"})
