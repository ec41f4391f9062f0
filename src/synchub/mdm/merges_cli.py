"""`synchub merges`: list merges of golden records and undo one (the API's services)."""

from __future__ import annotations

from typing import Annotated

import typer

from synchub.audit.service import record as record_audit
from synchub.events.cli import (
    CLI_ACTOR,
    JsonOption,
    WorkspaceOption,
    _audit_key,
    _opened,
    _print_json,
)
from synchub.events.outbox import EventContext, to_json_safe
from synchub.mdm import merge

merges_app = typer.Typer(help="Merges of golden records: list, unmerge.", no_args_is_help=True)


@merges_app.command("list")
def merges_list(
    customer: Annotated[str | None, typer.Option(help="only merges involving this record")] = None,
    status: Annotated[str | None, typer.Option(help="merged or undone")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="how many")] = 100,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Merges, oldest first: survivor, merged record, rule, and whether it was undone."""
    if status not in (None, "merged", "undone"):
        raise typer.BadParameter("--status is merged or undone")
    undone = None if status is None else status == "undone"
    with _opened(workspace) as hub, hub.db.read() as conn:
        page = merge.list_merges(conn, workspace=hub.workspace, canonical_id=customer,
                                 undone=undone, limit=limit, starting_after=None)  # fmt: skip
    if as_json:
        _print_json({"data": to_json_safe(page.items), "has_more": page.has_more})
        return
    for item in page.items:
        typer.echo(f"{item['id']}  {item['status']:<6}  {item['survivor_id']} <- "
                   f"{item['merged_id']}  {item['rule']}  by {item['actor']}")  # fmt: skip


@merges_app.command("unmerge")
def merges_unmerge(
    merge_id: Annotated[str, typer.Argument(help="the merge to undo (mrg_...)")],
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Undo a merge: both records as they were before it (changes since stay on the
    survivor). Exit 2 if it was undone already or cannot be undone yet."""
    with _opened(workspace) as hub, hub.db.write() as conn:
        now = hub.clock.now()
        ctx = EventContext(workspace=hub.workspace, source=f"/synchub/{hub.workspace}/cli",
                           traceparent=None, mapping_version=None, app_version="cli",
                           now=now)  # fmt: skip
        done = merge.unmerge(conn, ctx, merge_id=merge_id, actor=CLI_ACTOR)
        record_audit(conn, key=_audit_key(hub.settings), at=now, actor=CLI_ACTOR,
                     action="merge.unmerge", workspace=hub.workspace, target=merge_id)  # fmt: skip
    if as_json:
        _print_json(to_json_safe(done))
        return
    unmerge = done["unmerge"] or {}
    typer.echo(f"{merge_id} undone: {done['merged_id']} lives again beside {done['survivor_id']}")
    restored = ", ".join(unmerge.get("restored_fields", [])) or "-"
    kept = ", ".join(unmerge.get("kept_fields", [])) or "-"
    typer.echo(f"restored fields: {restored}; kept (changed since): {kept}")
    for note in unmerge.get("left", []):
        typer.echo(f"left: {note}", err=True)
