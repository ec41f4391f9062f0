"""Reading golden records: pages, one record with its system ids, and the crosswalk seen
from a destination or the product."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from synchub.core.errors import NotFoundError
from synchub.mdm import store

# The crosswalk rule of a vendor id merged away at its vendor: it still resolves, but nothing
# is sent to it (ADR 0019). Here so that other features need not import the mdm store.
MERGED_AWAY = store.MERGED_AWAY

# One statement for every id a delivery (or a claimed batch) needs: text, so SQLAlchemy keys
# it by its string instead of building and walking a Core select per call (ADR 0014).
_LINKS_AT = sa.text(
    "SELECT canonical_id, external_id FROM crosswalk WHERE workspace = :workspace"
    " AND system = :system AND canonical_id IN :ids AND reason != :merged_away"
).bindparams(sa.bindparam("ids", expanding=True, type_=sa.String))


def links_at(
    conn: Connection, *, workspace: str, canonical_ids: list[str], system: str
) -> dict[str, str]:
    """For each canonical id, its id at one system (when linked; not ids the system merged
    away, as `store.external_ids`). One query for all of them."""
    if not canonical_ids:
        return {}
    rows = conn.execute(_LINKS_AT, {"workspace": workspace, "system": system,
                                    "ids": sorted(set(canonical_ids)),
                                    "merged_away": store.MERGED_AWAY})  # fmt: skip
    return {str(canonical_id): str(external_id) for canonical_id, external_id in rows}


@dataclass(frozen=True)
class Page:
    """One page of records and whether more follow."""

    items: list[dict[str, Any]]
    has_more: bool


def list_records(
    conn: Connection,
    entity: str,
    *,
    workspace: str,
    limit: int,
    starting_after: str | None,
    updated_since: Any,
) -> Page:
    """Golden records of one entity in a workspace, with their system ids, in id order."""
    rows, has_more = store.page_golden(conn, entity, workspace=workspace, limit=limit,
                                       starting_after=starting_after,
                                       updated_since=updated_since)  # fmt: skip
    return Page([_present(conn, entity, row, workspace) for row in rows], has_more)


def get_record(
    conn: Connection, entity: str, *, workspace: str, canonical_id: str
) -> dict[str, Any]:
    """One golden record with its system ids (and lines for invoices); NotFoundError if absent.

    A record of another workspace is not found, never forbidden: callers learn nothing of it.
    """
    row = store.get_golden_in(conn, entity, workspace=workspace, canonical_id=canonical_id)
    if row is None:
        raise NotFoundError(f"no {entity} {canonical_id}")
    return _present(conn, entity, row, workspace)


def _present(conn: Connection, entity: str, row: dict[str, Any], workspace: str) -> dict[str, Any]:
    record = {k: v for k, v in row.items() if k not in ("workspace", "version")}
    links = store.external_ids_of(conn, workspace=workspace, canonical_ids=[row["id"]])
    record["external_ids"] = links.get(row["id"], {})
    if entity == "invoice":
        record["lines"] = [{k: v for k, v in ln.items() if k not in ("workspace", "invoice_id")}
                           for ln in store.lines_of(conn, row["id"])]  # fmt: skip
    return record


def product_id_of(
    conn: Connection, *, workspace: str, entity: str, canonical_id: str, source: str
) -> str:
    """The product's own id for a golden record (its canonical id when the product has none)."""
    if store.get_golden_in(conn, entity, workspace=workspace, canonical_id=canonical_id) is None:
        raise NotFoundError(f"no {entity} {canonical_id}")
    links = store.external_ids_of(conn, workspace=workspace, canonical_ids=[canonical_id])
    return links.get(canonical_id, {}).get(source, canonical_id)


def canonical_for(
    conn: Connection, *, workspace: str, entity: str, system: str, external_id: str
) -> str | None:
    """The canonical id a system's id is linked to, if any (holding that id's lock on PG)."""
    store.lock_source_record(
        conn, workspace=workspace, system=system, object_type=entity, external_id=external_id
    )
    return store.find_canonical_id(
        conn, workspace=workspace, entity=entity, system=system, external_id=external_id
    )
