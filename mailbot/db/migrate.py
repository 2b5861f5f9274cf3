"""Schema migrations with Alembic, for SQLite and PostgreSQL alike.

A new, empty database is brought to the latest schema on first use (``mailbot demo`` and a
first ``mailbot run`` need no extra step). An existing database at an older revision is
upgraded automatically only when it is SQLite (one process owns it); on a shared server
the operator runs ``mailbot db upgrade`` once, before restarting the bot processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from mailbot.db.readonly import read_only
from mailbot.errors import MailbotError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The newest revision in migrations/versions (tests/db check it is). A database already
# there is recognised with one query, without importing Alembic (a third of a second at
# every start of `mailbot run --once`).
HEAD = "0009"


def _config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    cfg = _config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def known_revisions() -> frozenset[str]:
    """Every revision this mailbot's migrations know (a database at another was made by a
    newer mailbot)."""
    from alembic.script import ScriptDirectory

    return frozenset(s.revision for s in ScriptDirectory(str(MIGRATIONS)).walk_revisions())


def refuse_newer(engine: Engine, current: str | None) -> None:
    """Refuses a database a newer mailbot upgraded (a rollback to this version without
    restoring the backup made before that upgrade), which Alembic would fail on with a
    traceback."""
    if current is None or current in known_revisions():
        return
    from mailbot import __version__

    raise MailbotError(
        f"the database {engine.url.render_as_string(hide_password=True)} is at schema "
        f"{current}, made by a newer mailbot; this mailbot ({__version__}) knows schemas up "
        f"to {HEAD}. Install the newer mailbot again, or restore the backup made before "
        "the upgrade (mailbot restore FILE)")


def ensure_schema(engine: Engine) -> None:
    """Creates or upgrades the schema where that is safe; refuses otherwise."""
    if _stamped(engine) == HEAD:
        return
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    refuse_newer(engine, current)
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


def _stamped(engine: Engine) -> str | None:
    """The revision Alembic recorded, read directly; None if there is none (yet)."""
    try:  # without SQLite's write lock: a command started mid-burst does not wait for it
        with read_only(engine).connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except DBAPIError:
        return None  # no table: a new database
    return rows[0][0] if len(rows) == 1 else None
