"""Fixtures for driving the whole hub in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from synchub.core.clock import FixedClock
from synchub.db import Database
from tests.harness import Harness, make_harness


@pytest.fixture
def harness(db: Database, clock: FixedClock, tmp_path: Path) -> Iterator[Harness]:
    """The hub over a real database, with fresh sandboxes and the test clock."""
    made = make_harness(db, clock, data_dir=tmp_path)
    yield made
    made.worker.stop()
    made.http.close()
    for client in made.hub.http_clients:
        client.close()
