"""Who is calling and what they may do. Pure."""

from __future__ import annotations

from dataclasses import dataclass

# One scope per resource and action. Every /v1 operation declares exactly one of these.
SCOPES: dict[str, str] = {
    "read:customers": "Read golden customer records.",
    "write:customers": "Create and update customers (fields the product owns).",
    "read:accounts": "Read accounts (companies).",
    "write:accounts": "Create and update accounts (fields the product owns).",
    "read:subscriptions": "Read subscriptions.",
    "read:plans": "Read plans.",
    "read:invoices": "Read invoices and their lines.",
    "read:payments": "Read payments.",
    "read:events": "Read canonical events.",
    "read:deliveries": "Read deliveries and dead letters.",
    "admin:deliveries": "Replay deliveries and dead letters.",
    "read:connections": "Read connections and their status.",
    "admin:audit": "Read the audit log.",
}


@dataclass(frozen=True)
class Principal:
    """An authenticated API caller: an OAuth client acting in one workspace."""

    client_id: str
    workspace: str
    scopes: frozenset[str]
    token_id: str | None = None  # the access token's jti

    def has_scope(self, scope: str) -> bool:
        """Whether the caller was granted a scope."""
        return scope in self.scopes


def parse_scope(text: str | None) -> frozenset[str]:
    """A space-separated scope string as a set (empty for None)."""
    return frozenset(part for part in (text or "").split(" ") if part)
