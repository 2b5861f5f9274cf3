"""Sessions that only read take no lock on SQLite (db.session.reading)."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

import mailbot.db.session as db_session
from mailbot.db.models import Library
from mailbot.db.readonly import read_only
from mailbot.db.session import open_database, reading
from sqlalchemy.orm import sessionmaker


def test_a_reader_neither_waits_for_a_writer_nor_sees_what_it_has_not_committed(
        tmp_path, monkeypatch):
    monkeypatch.setattr(db_session, "SQLITE_TIMEOUT", 0.2)  # a wait fails fast here
    sessions = open_database(f"sqlite:///{tmp_path}/r.db")
    with sessions.begin() as s:
        s.add(Library(id="lib", name="Biblioteka"))
    writer = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    writer.execute("INSERT INTO libraries (id, name) VALUES ('other', 'Inna')")
    try:
        with reading(sessions) as s:
            assert s.scalars(select(Library.id)).all() == ["lib"]
        with read_only(sessions.kw["bind"]).connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Library)) == 1
        with pytest.raises(OperationalError, match="locked"):
            with sessions() as s:  # an ordinary session wants the write lock
                s.scalar(select(Library.id))
    finally:
        writer.execute("COMMIT")
        writer.close()
    with reading(sessions) as s:
        assert sorted(s.scalars(select(Library.id))) == ["lib", "other"]
    assert read_only(read_only(sessions.kw["bind"])) is read_only(sessions.kw["bind"])


def test_many_writes_lets_postgresql_reuse_plans_for_the_rest_of_the_transaction_only():
    from sqlalchemy import text

    from mailbot.db.tuning import many_writes
    from tests.databases import fresh_postgres

    with fresh_postgres() as url:
        sessions = open_database(url)
        try:
            with sessions.begin() as s:
                # The lookups' setting, from make_engine.
                assert s.scalar(text("SHOW plan_cache_mode")) == "force_custom_plan"
                many_writes(s)
                assert s.scalar(text("SHOW plan_cache_mode")) == "auto"
            with sessions() as s:
                assert s.scalar(text("SHOW plan_cache_mode")) == "force_custom_plan"
        finally:
            sessions.kw["bind"].dispose()


def test_a_writer_gets_the_lock_once_another_lets_it_go_and_gives_up_after_the_timeout(
        tmp_path, monkeypatch):
    import threading

    monkeypatch.setattr(db_session, "SQLITE_TIMEOUT", 5.0)
    sessions = open_database(f"sqlite:///{tmp_path}/w.db")
    holder = sqlite3.connect(tmp_path / "w.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, lambda: holder.execute("COMMIT")).start()
    with sessions.begin() as s:  # waits for the holder, then writes
        s.add(Library(id="lib", name="Biblioteka"))
    holder.execute("BEGIN IMMEDIATE")
    monkeypatch.setattr(db_session, "SQLITE_TIMEOUT", 0.2)
    try:
        with pytest.raises(OperationalError, match="locked"):
            with sessions.begin() as s:
                s.add(Library(id="other", name="Inna"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with reading(sessions) as s:
        assert s.scalars(select(Library.id)).all() == ["lib"]


def test_config_sync_writes_only_what_changed_and_nothing_when_all_matches(
        tmp_path, monkeypatch):
    # Every command starts by matching the library and mailbox rows to the configuration;
    # when they match (nearly always) it must not need SQLite's write lock, which the bot
    # may be holding in a burst. A renamed library or a new mailbox address still lands.
    from mailbot.config import settings_from_dict
    from mailbot.db.models import Mailbox
    from mailbot.db.session import sync_config

    monkeypatch.setattr(db_session, "SQLITE_TIMEOUT", 0.2)
    data = {"database_url": f"sqlite:///{tmp_path}/c.db", "smtp": {"host": "127.0.0.1"},
            "libraries": [{"id": "lib", "name": "Biblioteka"}],
            "mailboxes": [{"library": "lib", "address": "ebooki@biblioteka.test",
                           "type": "maildir", "path": str(tmp_path / "md")}]}
    settings = settings_from_dict(data)
    sessions = open_database(settings.database_url)
    sync_config(sessions, settings)
    holder = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        sync_config(sessions, settings)  # unchanged: no lock wanted
        renamed = settings_from_dict({**data, "libraries": [{"id": "lib", "name": "Nowa"}]})
        with pytest.raises(OperationalError, match="locked"):
            sync_config(sessions, renamed)  # a change must be written: it waits its turn
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    moved = settings_from_dict({**data, "libraries": [{"id": "lib", "name": "Nowa"}],
                                "mailboxes": [{**data["mailboxes"][0],
                                               "address": "kody@biblioteka.test"}]})
    sync_config(sessions, moved)
    with reading(sessions) as s:
        assert s.get(Library, "lib").name == "Nowa"
        assert s.scalars(select(Mailbox.address)).all() == ["kody@biblioteka.test"]


def test_a_reading_session_ends_with_commit_so_the_connection_keeps_its_prepared_statements(
        database_url):
    # psycopg forgets (DEALLOCATE ALL) every statement it prepared on a connection at a
    # ROLLBACK; a read that ended that way made the next batch's statements be parsed
    # anew. A read ends with COMMIT (the same for a transaction that wrote nothing); a
    # read that failed is still rolled back.
    from sqlalchemy import event, text

    from mailbot.db.session import make_engine

    engine = make_engine(database_url, pool_size=1, max_overflow=0)  # one connection
    ends: list[str] = []
    event.listen(engine, "commit", lambda conn: ends.append("commit"))
    event.listen(engine, "rollback", lambda conn: ends.append("rollback"))
    sessions = sessionmaker(engine, expire_on_commit=False)
    try:
        with sessions.begin() as s:
            s.execute(text("CREATE TABLE t (x integer)"))
        ends.clear()
        with reading(sessions) as s:
            assert s.scalar(text("SELECT count(*) FROM t")) == 0
        assert ends == ["commit"]
        with pytest.raises(ZeroDivisionError):
            with reading(sessions) as s:
                s.scalar(text("SELECT count(*) FROM t"))
                raise ZeroDivisionError
        assert ends == ["commit", "rollback"]
        if engine.dialect.name == "postgresql":
            prepared = text("SELECT count(*) FROM pg_prepared_statements")
            with engine.connect() as conn:
                for _ in range(6):  # psycopg prepares a statement on its fifth run
                    conn.execute(text("SELECT count(*) FROM t WHERE x = :x"), {"x": 1})
                assert conn.scalar(prepared) >= 1
                conn.commit()
            with reading(sessions) as s:
                s.scalar(text("SELECT count(*) FROM t"))
            with engine.connect() as conn:
                assert conn.scalar(prepared) >= 1  # still there after the read
    finally:
        engine.dispose()


def test_a_reading_session_writes_nothing_even_by_mistake_and_keeps_what_it_loaded(tmp_path):
    # A change to a loaded object in a session that only reads is never written (the
    # transaction is rolled back, as before); what it loaded stays readable after the block.
    sessions = open_database(f"sqlite:///{tmp_path}/r.db")
    with sessions.begin() as s:
        s.add(Library(id="lib", name="Biblioteka"))
    with reading(sessions) as s:
        lib = s.get(Library, "lib")
        lib.name = "changed by mistake"
    with reading(sessions) as s:
        kept = s.get(Library, "lib")
    assert kept.name == "Biblioteka"  # (read after the session closed: not expired)
    factory = sessionmaker(sessions.kw["bind"])  # a factory that expires on commit
    with reading(factory) as s:
        again = s.get(Library, "lib")
    assert again.name == "Biblioteka"


def test_postgresql_connections_are_named_after_their_process_unless_the_url_names_them():
    import os

    from sqlalchemy import text

    from mailbot.db.session import make_engine
    from tests.databases import fresh_postgres

    with fresh_postgres() as url:
        for given, expected in ((url, f"mailbot {os.getpid()}"),
                                (f"{url}?application_name=branch-7", "branch-7")):
            engine = make_engine(given)
            try:
                with engine.connect() as conn:
                    assert conn.scalar(text("SHOW application_name")) == expected
            finally:
                engine.dispose()
