"""Ingest: webhook receivers and the inbox."""
