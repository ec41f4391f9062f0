"""Logs, trace context and metrics."""
