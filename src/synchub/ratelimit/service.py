"""Fair-use use cases shared by the API and the CLI: whose counters are whose, and the usage
report of a workspace's clients for the current month."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from synchub.core.clock import to_utc
from synchub.ratelimit.limiter import RateLimiter
from synchub.ratelimit.model import UsageCounts, month_window
from synchub.register.model import ClientOverride, PlanTier, Register

_INSTANT = TypeAdapter(datetime)


def tenant_key(workspace: str, client_id: str) -> str:
    """The key of one API client's fair-use state: (workspace, client), never an address."""
    return f"{workspace}/{client_id}"


def api_timestamp(value: datetime) -> str:
    """An instant as every /v1 answer writes one (RFC 3339 in UTC with a trailing Z, fractional
    seconds only when there are any: `2026-12-31T11:00:00Z`), so the CLI, the API and the
    429 details agree to the character."""
    text: str = _INSTANT.dump_python(to_utc(value), mode="json")
    return text


def overridden_limits(register: Register, client_id: str) -> tuple[str, ...]:
    """Names of the limits the register's `client_overrides` set for this client (in the
    order of `ClientOverride`); every other limit is its plan's."""
    override = register.client_overrides.get(client_id)
    if override is None:
        return ()
    return tuple(f.name for f in fields(ClientOverride) if getattr(override, f.name) is not None)


def limit_source(register: Register, client_id: str, *names: str) -> tuple[str, str]:
    """Whose limit `names` are, for a 429 detail: ("the partner plan's", "") when the plan
    sets them, else ("this client's", " (set in client_overrides, in place of the partner
    plan's)") when the register overrides any of them for this client."""
    plan = register.plan_for(client_id).name
    if set(names) & set(overridden_limits(register, client_id)):
        return "this client's", f" (set in client_overrides, in place of the {plan} plan's)"
    return f"the {plan} plan's", ""


@dataclass(frozen=True)
class ClientUsage:
    """One client's plan (overrides applied) and its counters this month."""

    client_id: str
    name: str | None
    plan: PlanTier
    counts: UsageCounts
    overrides: tuple[str, ...] = ()


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
        rows.append(ClientUsage(client_id, name, register.plan_for(client_id), counts,
                                overridden_limits(register, client_id)))  # fmt: skip
    return UsageReport(workspace, month.period, register.timezone, month.ends_at, rows)


def client_usage_body(usage: ClientUsage) -> dict[str, Any]:
    """One client's usage as JSON (the /v1/usage item and `synchub usage --json`)."""
    plan, counts = usage.plan, usage.counts
    return {
        "client_id": usage.client_id,
        "name": usage.name,
        "plan": plan.name,
        "overrides": list(usage.overrides),
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
        "resets_at": api_timestamp(report.resets_at),
        "clients": [client_usage_body(c) for c in report.clients],
    }
