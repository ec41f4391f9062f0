"""Reading conflict records (written by survivorship and by reconciliation)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from synchub.core.errors import FieldProblem, ValidationError
from synchub.mdm.store import conflicts

PREFIX = "cfl_"


def public_id(row_id: int) -> str:
    """A conflict's id in the API: `cfl_` and its sequence number."""
    return f"{PREFIX}{row_id}"


def _row_id(cursor: str) -> int:
    number = cursor.removeprefix(PREFIX)
    if not cursor.startswith(PREFIX) or not number.isdigit():
        raise ValidationError(
            "invalid cursor", [FieldProblem("/starting_after", "not a conflict id (cfl_…)")]
        )
    return int(number)


def page(
    conn: Connection,
    *,
    workspace: str,
    limit: int,
    starting_after: str | None = None,
    entity: str | None = None,
    canonical_id: str | None = None,
    field: str | None = None,
    status: str | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """One page of a workspace's conflicts in the order they were found; (items, has_more)."""
    query = sa.select(conflicts).where(conflicts.c.workspace == workspace)
    for column, value in (("entity", entity), ("canonical_id", canonical_id), ("field", field),
                          ("status", status)):  # fmt: skip
        if value is not None:
            query = query.where(conflicts.c[column] == value)
    if starting_after is not None:
        query = query.where(conflicts.c.id > _row_id(starting_after))
    rows = conn.execute(query.order_by(conflicts.c.id).limit(limit + 1)).mappings().all()
    items = [{**{k: v for k, v in r.items() if k != "workspace"}, "id": public_id(r["id"])}
             for r in rows[:limit]]  # fmt: skip
    return items, len(rows) > limit
