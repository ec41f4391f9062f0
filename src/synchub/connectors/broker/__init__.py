"""Broker sinks: canonical events on a team's own message bus (ADR 0010)."""
