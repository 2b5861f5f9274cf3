"""Schema migrations with Alembic, for SQLite and PostgreSQL alike.

A new, empty database is brought to the latest schema on first use (``mailbot demo`` and a
first ``mailbot run`` need no extra step). An existing database at an older revision is
upgraded automatically only when it is SQLite (one process owns it); on a shared server
the operator runs ``mailbot db upgrade`` once, before restarting the bot processes.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from mailbot.errors import MailbotError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = _config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def ensure_schema(engine: Engine) -> None:
    """Creates or upgrades the schema where that is safe; refuses otherwise."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
    if current is None and tables:
        raise MailbotError(
            f"the database {engine.url.render_as_string(hide_password=True)} has mailbot "
            "tables but no migration history (made by a development build); start from a "
            "new database")
    if current is None or engine.dialect.name == "sqlite":
        upgrade(engine)
        return
    raise MailbotError(
        f"the database schema is at revision {current}, this mailbot needs {head}: run "
        "`mailbot db upgrade` once (with the bot processes stopped), then start them")
