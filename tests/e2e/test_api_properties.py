"""Property-based tests generated from the committed contract (schemathesis): no 5xx, and
every response conforms to the document (status codes, headers, content types, schemas)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from synchub.auth.model import SCOPES
from synchub.core.clock import FixedClock
from synchub.db import make_database
from synchub.migrations.runner import upgrade
from tests.conftest import REPO
from tests.harness import Harness, make_harness

CONTRACT = REPO / "openapi" / "v1.yaml"
LABELS = [f"{method.upper()} {path}"
          for path, item in yaml.safe_load(CONTRACT.read_text())["paths"].items()
          for method in item]  # fmt: skip


@pytest.fixture
def api_harness(tmp_path: Path, clock: FixedClock) -> Iterator[Harness]:
    """A hub on SQLite with a little data."""
    db = make_database(f"sqlite:///{tmp_path / 'api.db'}")
    upgrade(db)
    harness = make_harness(db, clock, data_dir=tmp_path)
    harness.boxes.stripe.create_customer(email="a@b.nz", name="A", currency="nzd")
    harness.deliver_stripe()
    yield harness
    harness.worker.stop()
    harness.http.close()
    db.dispose()


def _bearer(h: Harness) -> str:
    assert h.hub.auth is not None
    with h.hub.db.write() as conn:
        client = h.hub.auth.create_client(
            conn, name="fuzz", scopes=list(SCOPES), workspace="live", actor="test"
        )
    basic = base64.b64encode(f"{client[0]}:{client[1]}".encode()).decode()
    token = h.http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    ).json()["access_token"]
    return f"Bearer {token}"


@pytest.mark.slow
@pytest.mark.parametrize("label", LABELS)
def test_the_api_keeps_its_contract(api_harness: Harness, label: str) -> None:
    """Generated requests never get a 5xx, and every response matches the document."""
    schema = schemathesis.openapi.from_asgi("/openapi.yaml", api_harness.http.app)
    operation = schema.find_operation_by_label(label)
    assert operation is not None
    headers = {"Authorization": _bearer(api_harness)}

    @given(case=operation.as_strategy())
    @settings(
        max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
    )
    def check(case: schemathesis.Case) -> None:
        response = case.call(headers=headers)
        assert response.status_code < 500, response.text
        # Not positive_data_acceptance: a schema-valid write may still break a business rule
        # (a field owned by another system, a reused key) and is then 422 by design.
        case.validate_response(
            response, headers=headers, excluded_checks=[positive_data_acceptance]
        )

    check()


def test_every_operation_is_covered() -> None:
    assert len(LABELS) >= 25
    assert st  # strategies are drawn per operation above
