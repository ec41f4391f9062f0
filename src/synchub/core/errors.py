"""The error tree. Everything synchub raises on purpose is a HubError.

HubError
├── TransientError            retry later: timeouts, 408/425/429, 5xx, a lock in use
│   ├── RateLimitedError      carries retry_after (seconds) from the vendor
│   └── DependencyPendingError  something this needs has not arrived yet
└── PermanentError            retrying will not help
    ├── ValidationError       bad input; carries JSON pointers to the fields
    │   └── PayloadTooLargeError  a body over the endpoint's limit
    ├── SignatureError        a webhook signature is missing, wrong or stale
    ├── NotFoundError
    ├── AuthenticationError   401: no valid access token
    ├── InsufficientScopeError  403: a valid token without the scope
    ├── ConflictError         409: e.g. the same Idempotency-Key still running
    ├── LinkConflictError     a system id already belongs to another canonical record
    ├── ConfigError           the register or settings are invalid
    ├── MappingError          a payload does not fit any known mapping version
    └── RejectedError         a vendor refused the request (4xx other than 408/409/425/429)
"""

from __future__ import annotations

from dataclasses import dataclass


class HubError(Exception):
    """Root of every error synchub raises on purpose."""

    code = "hub_error"


class TransientError(HubError):
    """Retrying later may succeed; retry_after (seconds) is set when the other side said when."""

    code = "transient"

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class RateLimitedError(TransientError):
    """The other side asked us to slow down."""

    code = "rate_limited"


class DependencyPendingError(TransientError):
    """A record this one refers to has not been seen yet."""

    code = "dependency_pending"


class PermanentError(HubError):
    """Retrying will not help."""

    code = "permanent"


@dataclass(frozen=True)
class FieldProblem:
    """One invalid field, addressed by an RFC 6901 JSON pointer."""

    pointer: str
    detail: str


class ValidationError(PermanentError):
    """Input is well-formed but invalid."""

    code = "validation_failed"

    def __init__(self, message: str, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class PayloadTooLargeError(ValidationError):
    """A request body is larger than the endpoint accepts."""

    code = "payload_too_large"


class AuthenticationError(PermanentError):
    """Missing, malformed, expired, revoked or untrusted credentials (HTTP 401)."""

    code = "invalid_token"


class InsufficientScopeError(PermanentError):
    """The caller is authenticated but was not granted the scope this needs (HTTP 403)."""

    code = "insufficient_scope"

    def __init__(self, message: str, *, scope: str) -> None:
        super().__init__(message)
        self.scope = scope


class ConflictError(PermanentError):
    """The request conflicts with the current state (HTTP 409)."""

    code = "conflict"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LinkConflictError(PermanentError):
    """A system id is already linked to a different canonical record."""

    code = "link_conflict"


class SignatureError(PermanentError):
    """A webhook signature is missing, malformed, wrong or outside the time window."""

    code = "invalid_signature"


class NotFoundError(PermanentError):
    """The thing asked for does not exist (or is not visible)."""

    code = "not_found"


class ConfigError(PermanentError):
    """The register or the settings are invalid."""

    code = "invalid_config"


class MappingError(PermanentError):
    """A payload does not fit the mapping it was given."""

    code = "mapping_failed"


class RejectedError(PermanentError):
    """A vendor refused the request for a reason retrying cannot fix."""

    code = "rejected"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
