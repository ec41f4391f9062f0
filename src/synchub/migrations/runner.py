"""Running migrations from code (the CLI and start-up call these)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from synchub.db import Database

HERE = Path(__file__).parent


def _config(db: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["engine"] = db.engine
    return config


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema up to a revision (head by default)."""
    command.upgrade(_config(db), revision)


def head_revision() -> str | None:
    """The newest migration's revision id."""
    return ScriptDirectory.from_config(_config_without_db()).get_current_head()


def _config_without_db() -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    return config


def is_current(db: Database) -> bool:
    """Whether the database is at the newest migration."""
    with db.engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current == head_revision()
