"""Canonical entities, money, time, ids and the error tree (pure, no I/O)."""
