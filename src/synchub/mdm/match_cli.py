"""`synchub match train`: learn an entity's match weights from the workspace's own golden
records (mdm/weights.py, ADR 0018) and print them, or write them into the register."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from synchub.config import Settings
from synchub.core.entities import ENTITIES
from synchub.core.errors import HubError
from synchub.observability.logging import configure_logging
from synchub.register.loader import RegisterError

match_app = typer.Typer(help="Matching: learn weights from the records.", no_args_is_help=True)


@match_app.command("train")
def train_command(
    entity: Annotated[str, typer.Option(help="the entity whose records to learn from")],
    workspace: Annotated[
        str | None, typer.Option(help="the workspace (default: the register's)")
    ] = None,
    write: Annotated[
        bool, typer.Option("--write", help="write accepted weights into register/matching.yaml")
    ] = False,
    random_pairs: Annotated[
        int, typer.Option(min=1_000, help="random pairs of records for u")
    ] = 1_000_000,
) -> None:
    """Fit Fellegi-Sunter weights on the golden records: u from random pairs, m by EM over
    the pairs the matcher's keys bring together, starting from the weights in force.

    The fit is kept only if it passes the safeguard (ADR 0018); otherwise the report says
    why and the weights in force stay. Prints the report as JSON; with --write, accepted
    weights go into the register under `matching.<entity>.weights`.

    Exit codes: 0 accepted (and written with --write); 1 rejected; 2 the register or store
    failed, or too few records.
    """
    from synchub.bootstrap import load_checked_register
    from synchub.db import make_database
    from synchub.mdm import store
    from synchub.mdm.matcher import record_of
    from synchub.mdm.weights import train, weights_as_mapping, weights_for
    from synchub.migrations.runner import upgrade

    if entity not in ENTITIES:
        raise typer.BadParameter(f"unknown entity {entity!r}", param_hint="--entity")
    settings = Settings()
    configure_logging(level="ERROR", json=settings.log_json)
    try:
        register, _ = load_checked_register(settings)
        db = make_database(settings.resolved_database_url())
        try:
            upgrade(db)
            with db.read() as conn:
                rows = store.list_golden(conn, entity, workspace=workspace or register.workspace)
        finally:
            db.dispose()
    except (RegisterError, HubError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    records = [record_of(entity, row) for row in rows if not row.get("deleted")]
    if len(records) < 2:
        typer.echo(f"error: {len(records)} {entity} records: too few to learn from", err=True)
        raise typer.Exit(2)
    thresholds = register.match_thresholds(entity)
    fit = train(
        records,
        link_at=thresholds.link_at,
        start=weights_for(register, entity),
        random_count=random_pairs,
    )
    report: dict[str, Any] = {
        "entity": entity,
        "records": len(records),
        "accepted": fit.accepted,
        "reasons": list(fit.reasons),
        "match_share_of_candidates": round(fit.match_share, 5),
        "matched_pairs": round(fit.matched_pairs),
        "certain_pairs": fit.certain_pairs,
        "weights": weights_as_mapping(fit.fitted),
        "written": False,
    }
    if write and fit.accepted:
        report["written"] = str(_write(settings.register_dir, entity, report["weights"]))
    typer.echo(json.dumps(report, indent=2))
    if not fit.accepted:
        raise typer.Exit(1)


def _write(register_dir: Path, entity: str, weights: dict[str, Any]) -> Path:
    """Set `matching.<entity>.weights` in the register file that declares the entity's
    matching (else matching.yaml), keeping the file's leading comment."""
    target = register_dir / "matching.yaml"
    for path in sorted(register_dir.glob("*.y*ml")):
        document = yaml.safe_load(path.read_text()) or {}
        if entity in (document.get("matching") or {}):
            target = path
            break
    text = target.read_text() if target.exists() else ""
    lines = text.splitlines(keepends=True)
    header = "".join(itertools.takewhile(lambda line: line.startswith("#"), lines))
    document = yaml.safe_load(text) or {}
    section = document.setdefault("matching", {}).setdefault(entity, {})
    section["weights"] = weights
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    target.write_text(header + body)
    return target
