"""Alembic migrations (issue 7): one schema history for SQLite and PostgreSQL, in step with
the models, applied on first use and by `mailbot db upgrade`."""

from __future__ import annotations

import sqlite3
from types import SimpleNamespace

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mailbot.db.migrate import current_revision, ensure_schema, head_revision, upgrade
from mailbot.db.models import Base
from mailbot.db.session import make_engine, open_database
from mailbot.errors import MailbotError
from tests.botenv import make_bot
from tests.databases import fresh_postgres


def _differences(engine) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), Base.metadata)


def test_the_migrations_build_exactly_the_models_on_sqlite(tmp_path):
    # Upgrading an empty SQLite database gives the models' schema, nothing more or less.
    engine = make_engine(f"sqlite:///{tmp_path}/m.db")
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert _differences(engine) == []


def test_the_migrations_build_exactly_the_models_on_postgresql():
    # The same history on PostgreSQL: no difference between migrations and models.
    with fresh_postgres() as url:
        engine = make_engine(url)
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert _differences(engine) == []
        engine.dispose()


def test_a_new_database_is_set_up_on_first_use_and_db_upgrade_reports(tmp_path, capsys):
    # `mailbot db current` only reads: with no database yet it says so and creates none;
    # `db upgrade` creates it with the schema and says so; open_database on an empty file
    # creates the schema too.
    bot = make_bot(tmp_path, smtp=SimpleNamespace(host="127.0.0.1", port=1), mailboxes=[])
    assert bot.cli("db", "current") == 2
    assert "no database at" in capsys.readouterr().err
    assert not (tmp_path / "mailbot.db").exists()
    assert bot.cli("db", "upgrade") == 0
    assert f"schema empty -> {head_revision()}" in capsys.readouterr().out
    assert bot.cli("db", "current") == 0
    assert f"schema {head_revision()} (this mailbot: {head_revision()})" in \
        capsys.readouterr().out
    assert bot.cli("status") == 0
    open_database(bot.settings().database_url)  # idempotent


def test_postgresql_tables_without_history_are_refused_clearly():
    # A database with mailbot's tables but no migration history is not touched.
    with fresh_postgres() as url:
        engine = make_engine(url)
        Base.metadata.create_all(engine)
        with pytest.raises(MailbotError, match="no migration history"):
            ensure_schema(engine)
        engine.dispose()


def test_a_sqlite_file_from_a_development_build_is_refused_clearly(tmp_path):
    # An SQLite file with tables but no history: a clear error naming the database.
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE libraries (id VARCHAR(64) PRIMARY KEY, name VARCHAR(200))")
    with pytest.raises(MailbotError, match="old.db.*no migration history"):
        open_database(f"sqlite:///{db}")


def test_an_older_sqlite_file_is_upgraded_in_place(tmp_path):
    # A database left at the first revision is brought to the latest one on open.
    url = f"sqlite:///{tmp_path}/old.db"
    upgrade(make_engine(url), "0001")
    open_database(url)
    assert current_revision(make_engine(url)) == head_revision()


def test_a_database_a_newer_mailbot_upgraded_is_refused_with_what_to_do(tmp_path, capsys):
    # A rollback without restoring the backup: no Alembic traceback, neither on open nor
    # from `mailbot db upgrade`, and the database is left as it is.
    bot = make_bot(tmp_path, smtp=SimpleNamespace(host="127.0.0.1", port=1), mailboxes=[])
    url = bot.settings().database_url
    open_database(url)
    with sqlite3.connect(tmp_path / "mailbot.db") as con:
        con.execute("UPDATE alembic_version SET version_num = '0099'")
    with pytest.raises(MailbotError, match="schema 0099, made by a newer mailbot.*restore"):
        open_database(url)
    capsys.readouterr()
    assert bot.cli("db", "upgrade") == 1
    assert bot.cli("status") == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("made by a newer mailbot") == 2, err
    assert current_revision(make_engine(url)) == "0099"


def test_an_older_postgresql_database_waits_for_db_upgrade(tmp_path, capsys):
    # A shared database at an older revision is refused with the command to run; after
    # `mailbot db upgrade` the bot starts.
    with fresh_postgres() as url:
        engine = make_engine(url)
        upgrade(engine, "0001")
        with pytest.raises(MailbotError, match="mailbot db upgrade"):
            open_database(url)
        bot = make_bot(tmp_path, smtp=SimpleNamespace(host="127.0.0.1", port=1),
                       mailboxes=[], database_url=url)
        assert bot.cli("db", "upgrade") == 0
        assert "0001 -> " + head_revision() in capsys.readouterr().out
        assert bot.cli("status") == 0
        engine.dispose()


def test_the_head_recorded_for_the_quick_start_check_is_alembics_head() -> None:
    # ensure_schema trusts HEAD to skip importing Alembic: a new migration must move it.
    from mailbot.db.migrate import HEAD

    assert HEAD == head_revision()
