"""The committed contract, served: GET /openapi.yaml and the HTML reference at GET /docs."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, PlainTextResponse

router = APIRouter(include_in_schema=False)

CONTRACT = Path(__file__).resolve().parents[3] / "openapi" / "v1.yaml"


def _contract_text() -> str:
    return CONTRACT.read_text(encoding="utf-8")


@router.get("/openapi.yaml")
def openapi_yaml() -> PlainTextResponse:
    """The committed OpenAPI document, as written in the repository."""
    return PlainTextResponse(_contract_text(), media_type="application/yaml")


@router.get("/docs")
def docs_page() -> HTMLResponse:
    """A self-contained reference page rendered from the committed document."""
    import yaml

    from synchub.contract.docs import render_html

    return HTMLResponse(render_html(yaml.safe_load(_contract_text())))
