"""`synchub match train`: weights learnt from the workspace's golden records, printed, and
written into the register only when the safeguard accepts them (ADR 0018)."""

from __future__ import annotations

import json
import random
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synchub.bootstrap import load_checked_register
from synchub.cli import app
from synchub.config import Settings
from synchub.db import make_database
from synchub.mdm import store
from synchub.mdm.matching import DEFAULT_WEIGHTS
from synchub.mdm.weights import weights_for, weights_from_mapping
from synchub.migrations.runner import upgrade
from tests.conftest import REPO

AT = datetime(2026, 12, 4, tzinfo=UTC)
GIVEN = ["Aroha", "Mere", "Tama", "Wiremu", "Ana", "Hemi", "Kiri", "Rangi", "Sam", "Jo"]
FAMILY = ["Ngata", "Smith", "Walker", "Parata", "Brown", "Tūhoe", "Wilson", "Kereama"]


def _customers(count: int, duplicates: int, companies: int) -> list[dict[str, str]]:
    """Customers at `companies` companies; `duplicates` of them entered twice (same email
    and phone, the name retyped), as two systems that nobody has matched yet would."""
    rng = random.Random(3)
    rows = []
    for n in range(count):
        given, family = rng.choice(GIVEN), rng.choice(FAMILY)
        company = f"Company {n % companies}"
        rows.append({
            "name": f"{given} {family}",
            "company_name": f"{company} Ltd",
            "email": f"{given.lower()}.{family.lower()}{n}@company{n % companies}.co.nz",
            "phone": f"+64 21 {n:07d}",
        })  # fmt: skip
    for row in rng.sample(rows, duplicates):
        retyped = row["name"].upper() if rng.random() < 0.5 else row["name"].replace("a", "e", 1)
        rows.append(row | {"name": retyped, "company_name": row["company_name"][:-4] + " Limited"})
    return rows


def _workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, companies: int, duplicates: int
) -> Path:
    """A SQLite store holding golden customers, and a copy of the register."""
    register_dir = tmp_path / "register"
    shutil.copytree(REPO / "register", register_dir)
    url = f"sqlite:///{tmp_path / 'synchub.db'}"
    db = make_database(url)
    upgrade(db)
    name = load_checked_register(Settings(register_dir=register_dir))[0].workspace
    with db.write() as conn:
        for n, fields in enumerate(_customers(600, duplicates, companies)):
            store.insert_golden(conn, "customer", {"id": f"cus_{n:05d}", "workspace": name,
                                                    "created_at": AT, "updated_at": AT,
                                                    **fields})  # fmt: skip
    db.dispose()
    monkeypatch.setenv("SYNCHUB_DATABASE_URL", url)
    monkeypatch.setenv("SYNCHUB_REGISTER_DIR", str(register_dir))
    monkeypatch.setenv("SYNCHUB_DATA_DIR", str(tmp_path))
    return register_dir


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each customer at a company of their own: the blocks hold the duplicates."""
    return _workspace(tmp_path, monkeypatch, companies=600, duplicates=120)


def test_train_prints_the_fit_and_writes_accepted_weights(workspace: Path) -> None:
    printed = CliRunner().invoke(app, ["match", "train", "--entity", "customer"])
    report = json.loads(printed.stdout)
    assert report["records"] == 720
    assert report["certain_pairs"] == 120  # each retyped record shares its email
    assert report["accepted"] is True, report["reasons"]
    assert printed.exit_code == 0
    assert report["written"] is False
    register = load_checked_register(Settings(register_dir=workspace))[0]
    assert weights_for(register, "customer") == DEFAULT_WEIGHTS  # printing writes nothing

    written = CliRunner().invoke(app, ["match", "train", "--entity", "customer", "--write"])

    assert written.exit_code == 0, written.stdout
    assert json.loads(written.stdout)["written"] == str(workspace / "matching.yaml")
    text = (workspace / "matching.yaml").read_text()
    assert text.startswith("# Matching a new source record")  # the comment is kept
    register = load_checked_register(Settings(register_dir=workspace))[0]
    learnt = weights_for(register, "customer")
    assert learnt == weights_from_mapping(report["weights"])
    assert learnt != DEFAULT_WEIGHTS
    assert register.match_thresholds("customer").link_at == 0.95  # thresholds untouched


def test_train_refuses_an_unknown_entity_and_too_few_records(workspace: Path) -> None:
    unknown = CliRunner().invoke(app, ["match", "train", "--entity", "customers"])
    assert unknown.exit_code == 2
    empty = CliRunner().invoke(app, ["match", "train", "--entity", "account"])
    assert empty.exit_code == 2
    assert "too few to learn from" in empty.stderr


def test_a_fit_that_learns_same_company_is_rejected_and_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 colleagues per company share its domain and only 20 customers are entered twice,
    so EM takes "same company" for "same customer"; the certain links (same email) show it."""
    register_dir = _workspace(tmp_path, monkeypatch, companies=30, duplicates=20)
    before = (register_dir / "matching.yaml").read_text()

    done = CliRunner().invoke(app, ["match", "train", "--entity", "customer", "--write"])

    assert done.exit_code == 1
    report = json.loads(done.stdout)
    assert report["accepted"] is False
    assert report["matched_pairs"] > 10 * 20  # colleagues taken for the 20 duplicates
    assert any("do not look like the certain links" in r for r in report["reasons"])
    assert report["written"] is False
    assert (register_dir / "matching.yaml").read_text() == before
