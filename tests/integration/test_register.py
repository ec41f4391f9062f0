"""The register is loaded, validated, and refused with file, line and reason when wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synchub.bootstrap import build_hub, load_checked_register
from synchub.cli import app
from synchub.config import Settings
from synchub.register.loader import RegisterError
from tests.conftest import REPO


@pytest.fixture
def register_dir(tmp_path: Path) -> Path:
    target = tmp_path / "register"
    shutil.copytree(REPO / "register", target)
    return target


def _problems(register_dir: Path) -> list[str]:
    with pytest.raises(RegisterError) as info:
        load_checked_register(Settings(register_dir=register_dir))
    return [str(p) for p in info.value.problems]


def test_the_demo_register_is_valid() -> None:
    register, _ = load_checked_register(Settings(register_dir=REPO / "register"))
    assert set(register.connections) == {"stripe", "hubspot", "xero", "product"}
    assert register.destinations_for("invoice.paid") == ["xero", "product"]
    assert register.owner_of("customer", "email") == "stripe"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_an_unknown_key_is_reported_with_its_file_and_line(register_dir: Path) -> None:
    _edit(
        register_dir / "connections.yaml",
        "    criticality: medium\n",
        "    criticality: medium\n    colour: blue\n",
    )
    [problem] = _problems(register_dir)
    assert problem.startswith(f"{register_dir / 'connections.yaml'}:")
    line = int(problem.split(":")[1])
    assert (
        (register_dir / "connections.yaml")
        .read_text()
        .splitlines()[line - 1]
        .strip()
        .startswith("colour")
    )
    assert "connections.hubspot: unknown key 'colour'" in problem


def test_a_flow_to_a_missing_connection_is_reported(register_dir: Path) -> None:
    _edit(register_dir / "flows.yaml", "destination: xero", "destination: quickbooks")
    [problem] = _problems(register_dir)
    assert "flows.yaml:" in problem
    assert "destination 'quickbooks' is not a connection" in problem
    line = int(problem.split(":")[1])
    assert "quickbooks" in (register_dir / "flows.yaml").read_text().splitlines()[line - 1]


def test_unknown_event_types_and_mapping_versions_are_reported(register_dir: Path) -> None:
    _edit(register_dir / "flows.yaml", "invoice.paid,", "invoice.payed,")
    _edit(register_dir / "connections.yaml", "mapping: stripe.v1", "mapping: stripe.v9")
    problems = _problems(register_dir)
    assert any("unknown event type 'invoice.payed'" in p for p in problems)
    assert any("mapping version 'stripe.v9' does not exist" in p for p in problems)


def test_yaml_syntax_errors_and_duplicate_keys_are_reported(register_dir: Path) -> None:
    (register_dir / "extra.yaml").write_text("connections:\n  a: [unclosed\n")
    (register_dir / "dup.yaml").write_text("flows: {}\nflows: {}\n")
    problems = _problems(register_dir)
    assert any("extra.yaml:" in p for p in problems)
    assert any("dup.yaml:2: duplicate key 'flows'" in p for p in problems)


def test_ownership_must_name_real_fields_and_connections(register_dir: Path) -> None:
    _edit(
        register_dir / "ownership.yaml",
        "    email: {owner: stripe}",
        "    emale: {owner: stripe}\n    name: {owner: salesforce}",
    )
    problems = _problems(register_dir)
    assert any("customer has no field 'emale'" in p for p in problems)
    assert any("owner 'salesforce' is not a connection" in p for p in problems)


def test_the_hub_refuses_to_start_on_an_invalid_register(register_dir: Path) -> None:
    _edit(register_dir / "workspace.yaml", "Pacific/Auckland", "Pacific/Atlantis")
    with pytest.raises(RegisterError, match="unknown time zone 'Pacific/Atlantis'"):
        build_hub(Settings(register_dir=register_dir, database_url="sqlite://"))


def test_register_check_command_prints_every_problem_and_fails(
    register_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _edit(register_dir / "flows.yaml", "source: stripe", "source: stripey")
    monkeypatch.setenv("SYNCHUB_REGISTER_DIR", str(register_dir))
    result = CliRunner().invoke(app, ["register", "check"])
    assert result.exit_code == 1
    assert "flows.yaml:" in result.output
    assert "source 'stripey' is not a connection" in result.output
