"""Fair-use use cases shared by the API and the CLI: whose counters are whose, and the usage
report of a workspace's clients for the current month."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from synchub.core.clock import isoformat_z
from synchub.ratelimit.limiter import RateLimiter
from synchub.ratelimit.model import UsageCounts, month_window
from synchub.register.model import PlanTier, Register


def tenant_key(workspace: str, client_id: str) -> str:
    """The key of one API client's fair-use state: (workspace, client), never an address."""
    return f"{workspace}/{client_id}"


@dataclass(frozen=True)
class ClientUsage:
    """One client's plan (overrides applied) and its counters this month."""

    client_id: str
    name: str | None
    plan: PlanTier
    counts: UsageCounts


@dataclass(frozen=True)
class UsageReport:
    """Usage of some of a workspace's clients in the current month of the register's zone."""

    workspace: str
    period: str
    timezone: str
    resets_at: datetime
    clients: list[ClientUsage]


def usage_report(
    limiter: RateLimiter | None,
    register: Register,
    *,
    workspace: str,
    clients: list[tuple[str, str | None]],
    now: datetime,
) -> UsageReport:
    """Counters of each (client id, name) in `workspace` for the month containing `now`.

    With the memory backend the counters are this process's only; with Redis, every process's.
    """
    month = month_window(now, register.timezone)
    rows = []
    for client_id, name in clients:
        counts = (
            limiter.usage(tenant_key(workspace, client_id), month.period)
            if limiter is not None
            else UsageCounts()
        )
        rows.append(ClientUsage(client_id, name, register.plan_for(client_id), counts))
    return UsageReport(workspace, month.period, register.timezone, month.ends_at, rows)


def client_usage_body(usage: ClientUsage) -> dict[str, Any]:
    """One client's usage as JSON (the /v1/usage item and `synchub usage --json`)."""
    plan, counts = usage.plan, usage.counts
    return {
        "client_id": usage.client_id,
        "name": usage.name,
        "plan": plan.name,
        "calls_admitted": counts.admitted,
        "rejections": counts.rejections(),
        "quota": {
            "limit": plan.monthly_quota,
            "used": counts.quota_used,
            "remaining": max(0, plan.monthly_quota - counts.quota_used),
        },
        "throttle": {
            "rate": plan.rate,
            "period_seconds": int(plan.period_seconds),
            "burst": plan.burst,
        },
        "concurrency": {"limit": plan.concurrency, "in_use": counts.slots_in_use},
    }


def usage_body(report: UsageReport) -> dict[str, Any]:
    """A usage report as JSON."""
    return {
        "object": "usage",
        "workspace": report.workspace,
        "period": report.period,
        "timezone": report.timezone,
        "resets_at": isoformat_z(report.resets_at),
        "clients": [client_usage_body(c) for c in report.clients],
    }
