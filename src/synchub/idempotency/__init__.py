"""Idempotency-Key for inbound API writes (STANDARDS.md §1)."""
