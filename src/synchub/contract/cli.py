"""`synchub contract`: breaking-change checks for the OpenAPI document, and its reference page.

Exit codes: 0 no breaking change (or nothing to compare), 1 breaking changes, 2 bad input.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Annotated, NoReturn

import typer
import yaml

from synchub.contract.docs import render_html
from synchub.contract.model import Change, Json, compare

contract_app = typer.Typer(
    help="The REST contract: openapi/v1.yaml.", no_args_is_help=True, add_completion=False
)

SPEC = Path("openapi/v1.yaml")
_ORDER = {"breaking": 0, "warning": 1, "safe": 2}


@contract_app.command("check")
def check(
    old: Annotated[
        str | None,
        typer.Option(help="the old document: a FILE, or REV:PATH (e.g. HEAD~1:openapi/v1.yaml)"),
    ] = None,
    new: Annotated[Path, typer.Option(help="the new document (a file)")] = SPEC,
    previous: Annotated[
        bool,
        typer.Option(
            "--previous", help="compare --new with its last committed version that differs"
        ),
    ] = False,
) -> None:
    """Print every change between two OpenAPI documents; exit 1 if any is breaking."""
    if previous == (old is not None):
        _fail("give exactly one of --old and --previous")
    before = _previous_text(new) if previous else _old_text(str(old))
    if before is None:
        raise typer.Exit(0)
    changes = compare(_parse(before[1], before[0]), _parse(_read(new), str(new)))
    _print_changes(changes, f"{before[0]} -> {new}")
    if any(c.severity == "breaking" for c in changes):
        raise typer.Exit(1)


@contract_app.command("docs")
def docs(
    out: Annotated[Path, typer.Option(help="folder to write index.html into")],
    spec: Annotated[Path, typer.Option(help="the OpenAPI document")] = SPEC,
) -> None:
    """Write the self-contained HTML reference page for an OpenAPI document."""
    page = render_html(_parse(_read(spec), str(spec)))
    out.mkdir(parents=True, exist_ok=True)
    target = out / "index.html"
    target.write_text(page, encoding="utf-8")
    typer.echo(f"wrote {target}")


def _print_changes(changes: list[Change], label: str) -> None:
    for change in sorted(changes, key=lambda c: _ORDER[c.severity]):
        typer.echo(f"{change.severity.upper()} {change.code} {change.location}: {change.message}")
    counts = {s: sum(c.severity == s for c in changes) for s in _ORDER}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    typer.echo(f"{label}: {summary}", err=True)


def _old_text(spec: str) -> tuple[str, str] | None:
    """The old document as (label, text), from a file or `git show REV:PATH`; None if absent."""
    if Path(spec).is_file():
        return spec, _read(Path(spec))
    revision, colon, path = spec.partition(":")
    if not colon or not revision or not path:
        _fail(f"{spec}: no such file (for a git revision write REV:PATH)")
    if _git(["rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], Path()) is None:
        _fail(f"{revision}: not a git revision here")
    text = _git(["show", spec], Path())
    if text is None:
        typer.echo(f"{path} does not exist at {revision}: nothing to compare", err=True)
        return None
    return spec, text


def _previous_text(spec: Path) -> tuple[str, str] | None:
    """spec's newest committed version that differs from the working tree, as (label, text)."""
    folder, name = spec.parent, spec.name
    if not spec.is_file():
        _fail(f"{spec}: no such file")
    if _git(["rev-parse", "--git-dir"], folder) is None:
        _fail(f"{spec}: not in a git repository")
    log = _git(["log", "--format=%H", "--", name], folder) or ""  # fails before the first commit
    commit = _differing_commit(log.split(), name, folder)
    text = _git(["show", f"{commit}:./{name}"], folder) if commit else None
    if commit is None or text is None:
        typer.echo(f"{spec}: first version, nothing to compare", err=True)
        return None
    return f"{commit[:12]}:{spec}", text


def _differing_commit(commits: list[str], name: str, folder: Path) -> str | None:
    """The newest commit whose blob differs from the file, else the one before the newest."""
    current = (_git(["hash-object", "--", name], folder) or "").strip()
    for commit in commits:
        blob = _git(["rev-parse", "--verify", "--quiet", f"{commit}:./{name}"], folder)
        if blob is not None and blob.strip() != current:
            return commit
    return commits[1] if len(commits) > 1 else None


def _git(args: list[str], folder: Path) -> str | None:
    """git's output for args run in folder, or None when git fails."""
    done = subprocess.run(  # noqa: S603 - fixed git subcommands; arguments are not shell-parsed
        ["git", *args],  # noqa: S607 - git from PATH, as a developer or CI runner has it
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout if done.returncode == 0 else None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        _fail(f"{path}: {exc.strerror or exc}")


def _parse(text: str, label: str) -> Json:
    """An OpenAPI document from YAML or JSON text."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        _fail(f"{label}: not YAML or JSON: {exc}")
    if not isinstance(document, dict):
        _fail(f"{label}: not an OpenAPI document (expected a mapping at the top)")
    return document


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)
