"""Prefixed ULIDs: synchub's own ids (`cus_01J…`), sortable by creation time."""

from __future__ import annotations

import os
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

PREFIXES = {
    "customer": "cus",
    "account": "acc",
    "subscription": "sub",
    "plan": "plan",
    "invoice": "inv",
    "invoice_line": "invl",
    "payment": "pay",
    "contact": "con",
    "refund": "rfd",
    "event": "evt",
    "delivery": "dlv",
    "inbox": "ibx",
    "message": "msg",
}


def encode_ulid(timestamp_ms: int, randomness: int) -> str:
    """Encode a 48-bit millisecond time and 80 random bits as 26 Crockford base32 chars."""
    value = (timestamp_ms << 80) | randomness
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


class UlidFactory:
    """Makes ULIDs that are strictly increasing within one process (monotonic per ms)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0

    def new(self) -> str:
        """Return the next ULID."""
        with self._lock:
            now_ms = time.time_ns() // 1_000_000
            if now_ms <= self._last_ms:
                now_ms = self._last_ms
                self._last_rand += 1
            else:
                self._last_rand = int.from_bytes(os.urandom(10), "big") >> 1
            self._last_ms = now_ms
            return encode_ulid(now_ms, self._last_rand)


_FACTORY = UlidFactory()


def new_id(kind: str) -> str:
    """Return a new prefixed id for an entity kind, e.g. new_id("customer") -> "cus_01J…"."""
    return f"{PREFIXES[kind]}_{_FACTORY.new()}"
