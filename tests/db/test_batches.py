"""Batch inserts (db/batches.py insert_rows): on PostgreSQL by COPY in binary, elsewhere by
executemany — the same rows either way, defaults included."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from mailbot.db.batches import insert_rows
from mailbot.db.models import Library, LedgerEntry, Mailbox, Outbox, Reader, Request
from mailbot.db.session import open_database
from tests.databases import PG_ADMIN

WARSAW_SUMMER = timezone(timedelta(hours=2))


def _inserts_seen(engine) -> list[str]:
    """INSERT statements SQLAlchemy sends from now on (COPY does not go through it)."""
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _seen(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if statement.lstrip().upper().startswith("INSERT"):
            seen.append(statement)

    return seen


def test_rows_inserted_in_a_batch_read_back_exactly_with_their_defaults(database_url):
    sessions = open_database(database_url)
    engine = sessions.kw["bind"]
    received = datetime(2026, 11, 2, 0, 3, 7, 250000, tzinfo=WARSAW_SUMMER)
    with sessions.begin() as session:
        session.add(Library(id="lib", name="Biblioteka"))
        session.add(Mailbox(id=1, key="k", library_id="lib", address="ebooki@biblioteka.test"))
    inserts = _inserts_seen(engine)
    with sessions.begin() as session:
        insert_rows(session, Request.__table__, [
            {"library_id": "lib", "mailbox_id": 1, "uidvalidity": 7, "uid": uid,
             "received_at": received, "fetched_at": received, "message_id": f"<{uid}@x>",
             "raw": bytes(range(256)) * 40, "raw_size": 10240, "date_header": None,
             "from_address": "żółw@przykład.pl", "subject": "Legimi — prośba",
             "service": "legimi"} for uid in (1, 2)])
        insert_rows(session, Request.__table__, [{
            "library_id": "lib", "mailbox_id": 1, "uidvalidity": 7, "uid": 3,
            "received_at": received, "fetched_at": received, "message_id": "<3@x>",
            "state": "decided", "trail": [{"rule": "pool", "note": "kod #1 — żółw"}]}])
        insert_rows(session, Outbox.__table__, [{
            "library_id": "lib", "mail_from": "a@x", "to_address": "b@x",
            "message_id": "<r@x>", "outcome": "issued", "message": "Zażółć ".encode() * 2000,
            "created_at": received, "due_at": received}])
        insert_rows(session, Reader.__table__, [{
            "library_id": "lib", "card_number": "0012345", "last_name": "Kowalska",
            "balance_due": Decimal("12.50"), "valid_until": date(2027, 12, 31),
            "updated_at": received}])
        insert_rows(session, LedgerEntry.__table__, [])  # nothing: no statement at all
    with sessions() as session:
        reqs = session.scalars(select(Request).order_by(Request.uid)).all()
        assert [r.uid for r in reqs] == [1, 2, 3] and len({r.id for r in reqs}) == 3
        assert (reqs[2].state, reqs[2].trail, reqs[2].raw) == (
            "decided", [{"rule": "pool", "note": "kod #1 — żółw"}], None)
        req = reqs[0]
        assert req.raw == bytes(range(256)) * 40
        assert req.received_at == received and req.received_at.tzinfo is not None
        assert req.date_header is None
        assert (req.from_address, req.subject) == ("żółw@przykład.pl", "Legimi — prośba")
        # Python-side defaults, as executemany would have applied them:
        assert (req.kind, req.state, req.trail, req.outcome) == ("request", "new", [], None)
        out = session.scalars(select(Outbox)).one()
        assert out.message == "Zażółć ".encode() * 2000
        assert (out.kind, out.state, out.attempts, out.sent_at) == ("reply", "pending", 0,
                                                                      None)
        reader = session.scalars(select(Reader)).one()
        assert (reader.card_number, reader.first_name, reader.balance_due,
                reader.overdue_items, reader.valid_until) == (
            "0012345", "", Decimal("12.50"), 0, date(2027, 12, 31))
    copied = "postgresql" in database_url
    # PostgreSQL: every row went by COPY; elsewhere by executemany (one INSERT a table).
    assert len(inserts) == (0 if copied else 4), inserts
    engine.dispose()


@pytest.fixture
def library_db(database_url):
    """Sessions on a database with one library, and an outbox row's values (no id)."""
    sessions = open_database(database_url)
    with sessions.begin() as session:
        session.add(Library(id="lib", name="Biblioteka"))
    now = datetime.now(UTC)
    yield sessions, {"library_id": "lib", "mail_from": "a@x", "to_address": "b@x",
                     "outcome": "issued", "message": b"x", "created_at": now, "due_at": now}
    with sessions() as session:  # whatever a test tried, nothing reached the outbox
        assert session.scalar(select(Outbox.message_id)) is None
    sessions.kw["bind"].dispose()


def test_a_batch_insert_is_part_of_its_transaction(library_db):
    # Rolled back with the rest of the transaction (COPY runs on the session's connection).
    sessions, row = library_db
    session = sessions()
    with session.begin():
        insert_rows(session, Outbox.__table__, [{**row, "message_id": "<r@x>"}])
        assert session.scalar(select(Outbox.message_id)) == "<r@x>"
        session.rollback()


def test_rows_with_different_keys_are_refused_not_cut(library_db):
    # A value only some rows carry must not be dropped silently.
    sessions, row = library_db
    with pytest.raises(ValueError, match="outbox differ"), sessions.begin() as session:
        insert_rows(session, Outbox.__table__, [{**row, "message_id": "<1@x>"},
                                                {**row, "message_id": "<2@x>", "code_id": 5}])


def test_database_errors_are_raised_as_sqlalchemy_raises_them(library_db, database_url):
    # Intake and deciding tell a refused row (IntegrityError: store mail one by one) from a
    # database that is gone (OperationalError: nothing is skipped, try again later).
    sessions, row = library_db
    row = {**row, "message_id": "<same@x>"}
    with pytest.raises(IntegrityError), sessions.begin() as session:
        insert_rows(session, Outbox.__table__, [row, dict(row)])
    if "postgresql" in database_url:
        with pytest.raises(OperationalError), sessions.begin() as session:
            pid = session.scalar(text("SELECT pg_backend_pid()"))
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            insert_rows(session, Outbox.__table__, [row])
