"""Fan-out in tests as a worker does it: pass after pass until the expected count moved.

On PostgreSQL one pass may move nothing while an older transaction of the database (an
autovacuum's included) may still commit an outbox row (ADR 0008); a worker simply runs its
next pass, and so do these helpers.
"""

from __future__ import annotations

import time

from synchub.core.clock import Clock
from synchub.db import Database
from synchub.events.dispatch import Dispatcher, dispatch_outbox
from synchub.register.model import Register


def dispatch_until(db: Database, register: Register, clock: Clock, expected: int) -> int:
    """Run dispatch passes until `expected` outbox events have moved (at most ~2 s)."""
    state, moved = Dispatcher(), 0
    for _ in range(200):
        moved += dispatch_outbox(db, register, clock, state=state)
        if moved >= expected:
            break
        time.sleep(0.01)
    return moved
