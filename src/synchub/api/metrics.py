"""GET /metrics: this process's Prometheus metrics, for the operator's scraper (ADR 0013).

Outside /v1 and outside the public contract. The caller needs an access token with the
`read:metrics` scope from a client of the register's own workspace: the figures cover every
workspace, so a partner's (or a sandbox workspace's) client never sees them. Prometheus gets
such tokens itself with its `oauth2` (client credentials) scrape setting.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response

from synchub.api.security import require
from synchub.auth.model import Principal
from synchub.core.errors import InsufficientScopeError
from synchub.observability.metrics import CONTENT_TYPE, process_metrics, record_build

router = APIRouter()
SCOPE = "read:metrics"


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, principal: Annotated[Principal, require(SCOPE)]) -> Response:
    """This process's metrics in the Prometheus text format (0.0.4)."""
    hub = request.app.state.hub
    if principal.workspace != hub.register.workspace:
        raise InsufficientScopeError(
            f"metrics cover every workspace: only clients of the {hub.register.workspace!r} "
            "workspace may read them",
            scope=SCOPE,
        )
    record_build(hub.version)
    return Response(
        content=process_metrics().exposition(),
        media_type=CONTENT_TYPE,
        headers={"Cache-Control": "no-store"},
    )
