"""The committed OpenAPI document is the contract: the served one must equal it."""

from __future__ import annotations

import yaml

from tests.conftest import REPO
from tests.harness import Harness

COMMITTED = REPO / "openapi" / "v1.yaml"


def test_the_served_document_equals_the_committed_one(harness: Harness) -> None:
    served = harness.http.get("/openapi.json").json()
    committed = yaml.safe_load(COMMITTED.read_text())
    assert served == committed, (
        "openapi/v1.yaml is out of date: run `synchub openapi --write`, review the diff and "
        "`synchub contract check --previous`, and say so in CHANGELOG.md"
    )


def test_the_contract_is_openapi_3_1_with_problem_details_and_scopes() -> None:
    spec = yaml.safe_load(COMMITTED.read_text())
    assert spec["openapi"] == "3.1.0"
    assert (
        spec["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]["tokenUrl"]
        == "/oauth/token"
    )
    for path in spec["paths"]:
        assert path.startswith("/v1/")


def test_docs_are_rendered_from_the_committed_document(harness: Harness) -> None:
    page = harness.http.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/v1/customers" in page.text
    assert "read:customers" in page.text
    assert '<script src="http' not in page.text  # nothing from a CDN
    assert harness.http.get("/openapi.yaml").text == COMMITTED.read_text()
