"""Match thresholds live in the register, validated with file and line like everything else."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from synchub.bootstrap import load_checked_register
from synchub.config import Settings
from synchub.register.loader import RegisterError
from synchub.register.model import MatchThresholds
from tests.conftest import REPO


@pytest.fixture
def register_dir(tmp_path: Path) -> Path:
    target = tmp_path / "register"
    shutil.copytree(REPO / "register", target)
    return target


def _write(register_dir: Path, text: str) -> Path:
    path = register_dir / "matching.yaml"
    path.write_text(text)
    return path


def _problems(register_dir: Path) -> list[str]:
    with pytest.raises(RegisterError) as info:
        load_checked_register(Settings(register_dir=register_dir))
    return [str(p) for p in info.value.problems]


def test_the_demo_register_declares_the_customer_thresholds() -> None:
    register, _ = load_checked_register(Settings(register_dir=REPO / "register"))
    assert register.match_thresholds("customer") == MatchThresholds(link_at=0.95, review_at=0.6)


def test_entities_without_thresholds_get_the_defaults(register_dir: Path) -> None:
    _write(register_dir, "matching:\n  customer: {link_at: 0.9, review_at: 0.7}\n")
    register, _ = load_checked_register(Settings(register_dir=register_dir))
    assert register.match_thresholds("customer") == MatchThresholds(link_at=0.9, review_at=0.7)
    assert register.match_thresholds("account") == MatchThresholds()


def test_review_above_link_is_refused_with_file_and_line(register_dir: Path) -> None:
    path = _write(
        register_dir, "# comment\nmatching:\n  customer: {link_at: 0.6, review_at: 0.9}\n"
    )
    [problem] = _problems(register_dir)
    assert problem.startswith(f"{path}:3:")
    assert "review_at must not be above link_at" in problem


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("matching:\n  customers: {link_at: 0.9}\n", "matching: unknown entity 'customers'"),
        ("matching:\n  customer: {link_at: 1.5}\n", "matching.customer.link_at"),
        ("matching:\n  customer: {link_at: 0.9, reveiw_at: 0.5}\n", "did you mean 'review_at'"),
    ],
)
def test_bad_thresholds_are_named(register_dir: Path, text: str, message: str) -> None:
    _write(register_dir, text)
    assert any(message in p for p in _problems(register_dir))


def test_thresholds_are_declared_once(register_dir: Path) -> None:
    (register_dir / "more.yaml").write_text("matching:\n  customer: {link_at: 0.9}\n")
    assert any("matching for 'customer' is also declared in" in p for p in _problems(register_dir))


def test_learnt_weights_in_the_register_are_used_for_that_entity(register_dir: Path) -> None:
    from synchub.mdm.matching import DEFAULT_WEIGHTS, Level
    from synchub.mdm.weights import weights_for

    _write(
        register_dir,
        "matching:\n  customer:\n    link_at: 0.95\n    review_at: 0.6\n    weights:\n"
        "      prior: -11.5\n"
        "      fields: {name: {exact: 7.5, close: 5, similar: 1, different: -4.25}}\n",
    )
    register, _ = load_checked_register(Settings(register_dir=register_dir))
    weights = weights_for(register, "customer")
    assert weights.prior == -11.5
    assert weights.fields["name"][Level.DIFFERENT] == -4.25
    assert weights.fields["phone"] == DEFAULT_WEIGHTS.fields["phone"]
    assert weights_for(register, "account") == DEFAULT_WEIGHTS


def test_bad_weights_are_refused_naming_the_field(register_dir: Path) -> None:
    path = _write(
        register_dir,
        "matching:\n  customer:\n    link_at: 0.95\n    weights:\n"
        "      fields: {name: {exact: 7.5, close: 5}}\n",
    )
    problems = _problems(register_dir)
    assert any(
        p.startswith(f"{path}:") and "weights.fields.name needs exactly" in p for p in problems
    ), problems
