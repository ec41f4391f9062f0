"""Canonical events: catalogue, outbox, dispatch, delivery, dead letters."""
