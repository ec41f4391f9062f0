"""Liveness and readiness."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from synchub.bootstrap import Hub
from synchub.migrations.runner import is_current

router = APIRouter()


@router.get("/healthz", include_in_schema=False)
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


def _ready(hub: Hub) -> dict[str, str]:
    checks = {}
    try:
        with hub.db.read() as conn:
            conn.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
        checks["migrations"] = "ok" if is_current(hub.db) else "behind"
    except Exception as exc:  # noqa: BLE001 - readiness reports any failure, never raises
        checks["database"] = f"error: {type(exc).__name__}"
    return checks


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> JSONResponse:
    """The database answers and migrations are current."""
    checks = await run_in_threadpool(_ready, request.app.state.hub)
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )
