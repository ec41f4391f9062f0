"""`synchub contract check|docs` against files and a real, throwaway git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from synchub.contract.cli import contract_app

runner = CliRunner()
SPEC = "openapi/v1.yaml"


def _spec(*, email_required: bool = False, extra_path: bool = False) -> dict[str, Any]:
    body = {"type": "object", "properties": {"email": {"type": "string"}}}
    if email_required:
        body["required"] = ["email"]
    paths: dict[str, Any] = {
        "/v1/customers": {
            "post": {
                "requestBody": {"content": {"application/json": {"schema": body}}},
                "responses": {"201": {"description": "created"}},
            }
        }
    }
    if extra_path:
        paths["/v1/invoices"] = {"get": {"responses": {"200": {"description": "ok"}}}}
    return {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": paths}


def _write(path: Path, spec: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def _git(repo: Path, *args: str) -> None:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    subprocess.run(  # noqa: S603 - fixed git commands in a temporary repository
        ["git", *identity, "-c", "commit.gpgsign=false", *args],  # noqa: S607 - git from PATH
        cwd=repo,
        check=True,
        capture_output=True,
    )


def _commit(repo: Path, spec: dict[str, Any], message: str) -> None:
    _write(repo / SPEC, spec)
    _git(repo, "add", SPEC)
    _git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty git repository as the working directory, isolated from any outer git env."""
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)
    _git(tmp_path, "init", "-q")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_breaking_change_between_files_prints_it_and_exits_1(tmp_path: Path) -> None:
    old = _write(tmp_path / "old.yaml", _spec())
    new = _write(tmp_path / "new.yaml", _spec(email_required=True))

    result = runner.invoke(contract_app, ["check", "--old", str(old), "--new", str(new)])

    assert result.exit_code == 1
    assert "BREAKING request-property-became-required POST /v1/customers#/paths/" in result.stdout
    assert "field email: now required" in result.stdout
    assert "1 breaking, 0 warning, 0 safe" in result.stderr


def test_safe_change_exits_0(tmp_path: Path) -> None:
    old = _write(tmp_path / "old.yaml", _spec())
    new = _write(tmp_path / "new.json", _spec(extra_path=True))

    result = runner.invoke(contract_app, ["check", "--old", str(old), "--new", str(new)])

    assert result.exit_code == 0
    assert "SAFE path-added /v1/invoices" in result.stdout


def test_old_document_can_come_from_a_git_revision(repo: Path) -> None:
    _commit(repo, _spec(), "first")
    _commit(repo, _spec(email_required=True), "second")

    result = runner.invoke(contract_app, ["check", "--old", f"HEAD~1:{SPEC}", "--new", SPEC])

    assert result.exit_code == 1
    assert "request-property-became-required" in result.stdout


def test_old_document_missing_at_that_revision_means_nothing_to_compare(repo: Path) -> None:
    _git(repo, "commit", "-q", "--allow-empty", "-m", "empty")
    _write(repo / SPEC, _spec())

    result = runner.invoke(contract_app, ["check", "--old", f"HEAD:{SPEC}", "--new", SPEC])

    assert result.exit_code == 0
    assert "does not exist at HEAD: nothing to compare" in result.stderr


def test_unknown_revision_is_an_input_error(repo: Path) -> None:
    _commit(repo, _spec(), "first")

    result = runner.invoke(contract_app, ["check", "--old", f"nope:{SPEC}", "--new", SPEC])

    assert result.exit_code == 2
    assert "not a git revision" in result.stderr


def test_previous_compares_the_checkout_with_the_last_different_commit(repo: Path) -> None:
    _commit(repo, _spec(), "first")
    _commit(repo, _spec(email_required=True), "second")

    result = runner.invoke(contract_app, ["check", "--previous"])

    assert result.exit_code == 1
    assert "request-property-became-required" in result.stdout


def test_previous_compares_uncommitted_edits_with_the_last_commit(repo: Path) -> None:
    _commit(repo, _spec(), "first")
    _commit(repo, _spec(extra_path=True), "second")
    _write(repo / SPEC, _spec(extra_path=False))

    result = runner.invoke(contract_app, ["check", "--previous"])

    assert result.exit_code == 1
    assert "path-removed" in result.stdout


def test_previous_skips_commits_equal_to_the_checkout(repo: Path) -> None:
    """After a revert the newest different version is the reverted one, not the original."""
    _commit(repo, _spec(), "first")
    _commit(repo, _spec(extra_path=True), "add invoices")
    _commit(repo, _spec(), "revert: drop invoices")

    result = runner.invoke(contract_app, ["check", "--previous"])

    assert result.exit_code == 1
    assert "BREAKING path-removed /v1/invoices" in result.stdout


def test_previous_with_a_single_version_has_nothing_to_compare(repo: Path) -> None:
    _commit(repo, _spec(), "first")

    result = runner.invoke(contract_app, ["check", "--previous"])

    assert result.exit_code == 0
    assert "first version, nothing to compare" in result.stderr


def test_previous_with_a_never_committed_file_has_nothing_to_compare(repo: Path) -> None:
    _write(repo / SPEC, _spec())

    result = runner.invoke(contract_app, ["check", "--previous"])

    assert result.exit_code == 0
    assert "first version, nothing to compare" in result.stderr


def test_previous_outside_a_repository_is_an_input_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / SPEC, _spec())

    result = runner.invoke(contract_app, ["check", "--previous"])

    assert result.exit_code == 2
    assert "not in a git repository" in result.stderr


def test_check_needs_exactly_one_baseline(tmp_path: Path) -> None:
    old = _write(tmp_path / "old.yaml", _spec())

    both = runner.invoke(contract_app, ["check", "--old", str(old), "--previous"])
    neither = runner.invoke(contract_app, ["check"])

    assert both.exit_code == 2
    assert neither.exit_code == 2


def test_unreadable_documents_are_input_errors(tmp_path: Path) -> None:
    old = _write(tmp_path / "old.yaml", _spec())
    (tmp_path / "list.yaml").write_text("- a\n- b\n", encoding="utf-8")
    (tmp_path / "broken.yaml").write_text("paths: [\n", encoding="utf-8")

    for new in ("list.yaml", "broken.yaml", "missing.yaml"):
        args = ["check", "--old", str(old), "--new", str(tmp_path / new)]
        result = runner.invoke(contract_app, args)
        assert result.exit_code == 2, new
        assert "error:" in result.stderr


def test_docs_writes_a_self_contained_page(tmp_path: Path) -> None:
    spec = _write(tmp_path / "v1.yaml", _spec())
    out = tmp_path / "site"

    result = runner.invoke(contract_app, ["docs", "--spec", str(spec), "--out", str(out)])

    assert result.exit_code == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert "/v1/customers" in page
