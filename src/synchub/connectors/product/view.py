"""The product's current view of a customer: whether their account is unlocked."""

from __future__ import annotations

from typing import Any

from synchub.connectors.product.client import ProductClient


class ProductView:
    """Reads what the product believes of each account (GET …/accounts/{customer id})."""

    def __init__(self, client: ProductClient) -> None:
        self._client = client

    def customer(self, customer_id: str) -> dict[str, Any] | None:
        """`entitled` (the product's word for unlocked), or None when it has no account."""
        account = self._client.get_account(customer_id)
        if account is None:
            return None
        return {"entitled": bool(account.get("entitled"))}
