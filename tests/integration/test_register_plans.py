"""Plan tiers in the register: three layers per plan, per-client overrides, token and webhook
limits, and problems reported with file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from synchub.bootstrap import load_checked_register
from synchub.config import Settings
from synchub.register.loader import RegisterError
from synchub.register.model import DEFAULT_WEBHOOK_RATE, Rate, Register
from tests.conftest import REPO


@pytest.fixture
def register_dir(tmp_path: Path) -> Path:
    target = tmp_path / "register"
    shutil.copytree(REPO / "register", target)
    return target


def load(register_dir: Path, plans: str) -> Register:
    (register_dir / "plans.yaml").write_text(plans)
    register, _ = load_checked_register(Settings(register_dir=register_dir))
    return register


def problems(register_dir: Path, plans: str) -> list[str]:
    (register_dir / "plans.yaml").write_text(plans)
    with pytest.raises(RegisterError) as info:
        load_checked_register(Settings(register_dir=register_dir))
    return [str(p) for p in info.value.problems]


def test_the_shipped_plans_have_all_three_layers_and_a_token_limit() -> None:
    register, _ = load_checked_register(Settings(register_dir=REPO / "register"))

    default = register.plan_for("cli_anyone")

    assert (default.name, default.rate, default.period_seconds, default.burst) == (
        "default", 600, 60, 60
    )  # fmt: skip
    assert (default.monthly_quota, default.concurrency) == (1_000_000, 2)
    assert default.token == Rate(rate=60, period_seconds=60, burst=20)
    assert register.webhook_limit_for("stripe") == Rate(rate=100, period_seconds=1, burst=500)


def test_a_client_override_changes_single_values_on_top_of_its_plan(register_dir: Path) -> None:
    register = load(register_dir, """plans:
  default: {rate: 600, period_seconds: 60, burst: 60, monthly_quota: 1000, concurrency: 2}
  partner: {rate: 1200, period_seconds: 60, burst: 120, monthly_quota: 5000, concurrency: 4,
            token: {rate: 6, period_seconds: 60, burst: 3}}
client_plans:
  cli_partner: partner
client_overrides:
  cli_partner: {monthly_quota: 20000, concurrency: 1}
  cli_other: {rate: 10, burst: 5}
""")  # fmt: skip

    partner = register.plan_for("cli_partner")
    other = register.plan_for("cli_other")

    assert (partner.name, partner.rate, partner.monthly_quota, partner.concurrency) == (
        "partner", 1200, 20000, 1
    )  # fmt: skip
    assert partner.token == Rate(rate=6, period_seconds=60, burst=3)
    assert (other.name, other.rate, other.burst, other.monthly_quota) == ("default", 10, 5, 1000)
    assert register.plan_for("cli_nobody") == register.plans["default"]


def test_webhook_limits_fall_back_to_default_then_to_the_built_in_limit(
    register_dir: Path,
) -> None:
    register = load(register_dir, """webhook_limits:
  stripe: {rate: 5, period_seconds: 1, burst: 10}
""")  # fmt: skip
    bare = load(register_dir, "plans: {}\n")

    assert register.webhook_limit_for("stripe") == Rate(rate=5, period_seconds=1, burst=10)
    assert register.webhook_limit_for("xero") == DEFAULT_WEBHOOK_RATE
    assert bare.webhook_limit_for("stripe") == DEFAULT_WEBHOOK_RATE


def test_bad_limits_are_reported_with_file_and_line(register_dir: Path) -> None:
    found = problems(register_dir, """plans:
  default: {rate: 600, period_seconds: 0.5, burst: 60}
  partner: {rate: 10, concurrency: 0, token: {rate: 1, period_seconds: 60}}
client_overrides:
  cli_x: {monthly_quota: 0, colour: blue}
webhook_limits:
  stripee: {rate: 1, period_seconds: 1, burst: 1}
""")  # fmt: skip

    plans = str(register_dir / "plans.yaml")
    assert f"{plans}:2: plans.default.period_seconds: Input should be greater than or equal " in (
        "\n".join(found)
    )
    text = "\n".join(found)
    assert f"{plans}:3: plans.partner.concurrency:" in text
    assert f"{plans}:3: plans.partner.token.burst: Field required" in text
    assert f"{plans}:5: client_overrides.cli_x.monthly_quota:" in text
    assert f"{plans}:5: client_overrides.cli_x: unknown key 'colour'" in text
    assert len(found) == 5


def test_a_window_must_be_whole_seconds_and_webhook_limits_name_connections(
    register_dir: Path,
) -> None:
    found = problems(register_dir, """plans:
  default: {rate: 600, period_seconds: 90.5, burst: 60}
webhook_limits:
  stripee: {rate: 1, period_seconds: 1, burst: 1}
""")  # fmt: skip
    later = problems(register_dir, """webhook_limits:
  stripee: {rate: 1, period_seconds: 1, burst: 1}
""")  # fmt: skip

    plans = str(register_dir / "plans.yaml")
    assert found == [
        f"{plans}:2: plans.default.period_seconds: Value error, must be a whole number of seconds"
    ]
    assert later == [f"{plans}:2: webhook_limits: 'stripee' is neither default nor a connection"]
