"""STYLE.md rules that a reviewer should not have to repeat."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "synchub"


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_model_modules_import_only_the_standard_library_and_other_models() -> None:
    offenders = []
    for path in SRC.rglob("model.py"):
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "synchub":
                allowed = name.endswith(".model") or name.startswith(
                    ("synchub.core.", "synchub.mapping.transform")
                )
                if not allowed:
                    offenders.append(f"{path.relative_to(SRC)} imports {name}")
            elif top not in sys.stdlib_module_names and top != "__future__":
                offenders.append(f"{path.relative_to(SRC)} imports {name}")
    assert offenders == []


def test_no_vague_module_names() -> None:
    vague = {"utils.py", "helpers.py", "common.py", "manager.py", "misc.py"}
    assert [p for p in SRC.rglob("*.py") if p.name in vague] == []


# Entry points compose features (like the CLI); they are not features themselves.
ENTRY_POINTS = {
    "cli.py",
    "worker.py",
    "replay.py",
    "server.py",
    "bootstrap.py",
    "demo",
    "migrations",
}


def test_features_never_import_another_features_store() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        feature = path.relative_to(SRC).parts[0]
        if feature in ENTRY_POINTS:
            continue
        for name in _imports(path):
            parts = name.split(".")
            if (
                len(parts) >= 3
                and parts[0] == "synchub"
                and parts[-1] == "store"
                and parts[1] != feature
            ):
                offenders.append(f"{path.relative_to(SRC)} imports {name}")
    assert offenders == []
