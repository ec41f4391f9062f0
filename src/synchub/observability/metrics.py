"""Prometheus metrics of this process: what the code counts, and the registry that shows it.

Prometheus keeps counters per process: every `synchub serve` or `synchub worker` process
has its own registry, exposed by its own `GET /metrics`, and Prometheus scrapes each process
as a target and sums across them (ADR 0013). The registry is created on first use, never at
import time, and is the one piece of process-wide state here: a counter that callers had to
thread through every function would be a registry by another name.

Names follow STANDARDS.md §7: the `synchub_` prefix, base units, counters ending `_total`.
Label values are bounded sets (plan names, layers, register connections, catalogue event
types); never a customer, client, event or object id.
"""

from __future__ import annotations

import threading

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

# The classic text format that generate_latest writes and every Prometheus version scrapes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ADMITTED = "admitted"
REJECTED = "rejected"
# Vendor calls and webhook deliveries take milliseconds to the 15 s timeout (STANDARDS §4).
DELIVERY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)


class Metrics:
    """One process's metrics and the registry that exposes them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.ratelimit_decisions = Counter(
            "synchub_ratelimit_decisions_total",
            "Fair-use decisions on API requests, by plan policy, layer "
            "(throttle, quota, concurrency, ...) and outcome (admitted or rejected).",
            ["policy", "layer", "outcome"],
            registry=self.registry,
        )
        self.delivery_attempts = Counter(
            "synchub_delivery_attempts_total",
            "Delivery attempts to a destination (a register connection), by outcome.",
            ["destination", "outcome"],
            registry=self.registry,
        )
        self.delivery_duration = Histogram(
            "synchub_delivery_attempt_duration_seconds",
            "How long one delivery attempt to a destination took, in seconds.",
            ["destination"],
            buckets=DELIVERY_BUCKETS,
            registry=self.registry,
        )
        self.events_written = Counter(
            "synchub_events_written_total",
            "Canonical events committed to the outbox, by event type (e.g. invoice.paid).",
            ["event_type"],
            registry=self.registry,
        )
        self.build_info = Gauge(
            "synchub_build_info",
            "Always 1; the running synchub version is the label.",
            ["version"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        """Every metric of this registry in the Prometheus text format (version 0.0.4)."""
        return generate_latest(self.registry)


_process_metrics: Metrics | None = None
_process_lock = threading.Lock()


def process_metrics() -> Metrics:
    """This process's metrics, created on first use."""
    global _process_metrics  # the one process-wide registry (module docstring)
    if _process_metrics is None:
        with _process_lock:
            if _process_metrics is None:
                _process_metrics = Metrics()
    return _process_metrics


def record_rate_limit(policy: str, layer: str, admitted: bool) -> None:
    """Count one fair-use decision: `policy` is the plan, `layer` e.g. throttle or quota."""
    outcome = ADMITTED if admitted else REJECTED
    process_metrics().ratelimit_decisions.labels(policy, layer, outcome).inc()


def record_delivery(destination: str, outcome: str, *, seconds: float | None = None) -> None:
    """Count one delivery attempt (succeeded, retry, dead or lease_lost) and observe its
    duration (call after the outcome's transaction committed)."""
    metrics = process_metrics()
    metrics.delivery_attempts.labels(destination, outcome).inc()
    if seconds is not None:
        metrics.delivery_duration.labels(destination).observe(seconds)


def record_event(event_type: str) -> None:
    """Count one canonical event written (call after its transaction committed)."""
    process_metrics().events_written.labels(event_type).inc()


def record_build(version: str) -> None:
    """Publish the running version as `synchub_build_info{version}` = 1."""
    process_metrics().build_info.labels(version).set(1)
