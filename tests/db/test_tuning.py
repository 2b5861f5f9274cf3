"""PostgreSQL session tuning (db/tuning.py): set for the work that asks for it, and set
back afterwards, whatever happened meanwhile; nothing at all on SQLite."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from mailbot.db.session import open_database
from mailbot.db.tuning import many_marks


def _settings(conn) -> tuple[str, str]:
    return (conn.execute(text("SHOW plan_cache_mode")).scalar(),
            conn.execute(text("SHOW synchronous_commit")).scalar())


def test_many_marks_keeps_plans_and_skips_the_flush_wait_then_sets_both_back():
    # Inside: generic plans allowed and commits not waiting for the WAL flush; after, even
    # when the work inside failed, the connection is as make_engine left it.
    from tests.databases import fresh_postgres

    with fresh_postgres() as url:
        engine = open_database(url).kw["bind"]
        try:
            with engine.connect() as plain:
                conn = plain.execution_options(isolation_level="AUTOCOMMIT")
                before = _settings(conn)
                assert before[0] == "force_custom_plan"
                with many_marks(conn):
                    assert _settings(conn) == ("auto", "off")
                assert _settings(conn) == before
                with pytest.raises(ZeroDivisionError):
                    with many_marks(conn):
                        1 / 0
                assert _settings(conn) == before
        finally:
            engine.dispose()


def test_many_marks_on_sqlite_changes_nothing(tmp_path):
    # No such settings there: the block simply runs.
    engine = open_database(f"sqlite:///{tmp_path}/t.db").kw["bind"]
    with engine.connect() as conn:
        ran = False
        with many_marks(conn):
            ran = True
        assert ran and conn.scalar(text("SELECT 1")) == 1
