"""What a decide batch writes: its decisions, the codes it issued with their ledger
entries, and the replies into the outbox, in a few bulk statements at the batch's end.

The rows are collected as the batch is decided and written at once (Core statements on
the tables, not the ORM's unit of work: the batch's requests were read as rows, there are
no ORM objects to keep in step, and the ORM's bulk forms would only add their own
bookkeeping). A reply is composed in place, or handed to the worker processes when the
batch is given a ``Composer`` (mailbot.offload): its message is then filled in before the
outbox rows are written.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailbot.config import LibrarySettings, Settings
from mailbot.db.batches import insert_rows
from mailbot.db.models import Code, LedgerEntry, Mailbox, Outbox, Request, address_key
from mailbot.db.tuning import many_writes
from mailbot.outcomes import OutboxState
from mailbot.respond.compose import compose_reply, reply_message_id_for
from mailbot.rules.base import FreeCode
from mailbot.rules.window import next_send_time

if TYPE_CHECKING:
    from mailbot.offload import Composer

# UPDATE … WHERE id = :key for a list of rows given as {"id": …, column: value, …}; the SET
# clause comes from the first row's other keys (every row of a batch has the same ones).
_DECIDED = update(Request.__table__).where(Request.__table__.c.id == bindparam("key"))
_CODE_ISSUED = update(Code.__table__).where(Code.__table__.c.id == bindparam("key"))


def _by_key(row: dict[str, Any]) -> dict[str, Any]:
    values = dict(row)
    values["key"] = values.pop("id")
    return values


class BatchWrites:
    """One batch's rows, written by ``write``. ``composer``: the batch's replies are
    composed by worker processes (a burst)."""

    def __init__(self, composer: Composer | None = None) -> None:
        self.composer = composer
        self.requests: list[dict[str, Any]] = []
        self.codes_issued: list[dict[str, Any]] = []
        self.ledger: list[dict[str, Any]] = []
        self.outbox: list[dict[str, Any]] = []
        self.alerts: list[dict[str, Any]] = []  # outbox rows of messages to staff
        # (service, month) whose staff alert this batch has looked at (pool_not_ready).
        self.alerted: set[tuple[str, str]] = set()

    def decided(self, row: dict[str, Any]) -> None:
        """A decided request's new values (with its ``id``)."""
        self.requests.append(row)

    def issued(self, code: FreeCode, entry: dict[str, Any]) -> None:
        """mailbot.ledger.Book: ``code`` issued to the entry's request."""
        self.codes_issued.append({"id": code.id, "request_id": entry["request_id"],
                                  "issued_at": entry["issued_at"]})
        self.ledger.append(entry)

    def reply(self, *, request: Any, mailbox: Mailbox, outcome: str, context: dict[str, Any],
              references: tuple[str, ...], library: LibrarySettings, tz: Any,
              settings: Settings, now: datetime) -> None:
        """The outbox row of the reply to ``request`` (a queued request's row)."""
        request_key = (f"{mailbox.key}|{request.uidvalidity}|{request.uid}|"
                       f"{request.message_id}")
        job = dict(
            outcome=outcome, context=context, languages=library.languages,
            library_name=library.name, mailbox_address=mailbox.address,
            to=request.from_address or "", original_subject=request.subject,
            original_message_id=request.message_id, original_references=references,
            templates_dir=settings.templates_dir, request_key=request_key, now=now,
            texts_dir=library.texts_dir,
        )
        row = {"request_id": request.id, "library_id": library.id, "kind": "reply",
               "mail_from": mailbox.address, "to_address": request.from_address or "",
               "message_id": reply_message_id_for(mailbox.address, request_key),
               "outcome": outcome, "message": None, "state": OutboxState.PENDING,
               "created_at": now, "due_at": next_send_time(library, tz, now), "attempts": 0}
        if self.composer is not None:
            self.composer.add(request.id, row, job)  # composed by a worker meanwhile
        else:
            # A template error here leaves the request as it was (the batch is rolled
            # back and this request set aside).
            row["message"] = compose_reply(**job).message
        self.outbox.append(row)

    def alert(self, row: dict[str, Any]) -> None:
        """An outbox row of a message to staff (mailbot.respond.staff_alert), written with
        the replies but apart from them (see write)."""
        self.alerts.append(row)

    @property
    def request_ids(self) -> list[int]:
        return [row["id"] for row in self.requests]

    @property
    def code_ids(self) -> list[int]:
        return [row["id"] for row in self.codes_issued]

    def write(self, session: Session, *, decisions: bool = True, outbox: bool = True) -> None:
        """Writes what the batch decided in four bulk statements in ``session`` (the
        decisions and the replies may be written separately, in the same transaction)."""
        if decisions:
            # The decisions are always a transaction's first write (the replies may follow
            # separately): once per transaction is enough.
            many_writes(session)
        if decisions and self.requests:
            session.execute(_DECIDED, [_by_key(row) for row in self.requests])
        if decisions and self.codes_issued:
            session.execute(_CODE_ISSUED, [_by_key(row) for row in self.codes_issued])
        if decisions and self.ledger:
            for row in self.ledger:
                row["email_key"] = address_key(row["email"])
            insert_rows(session, LedgerEntry.__table__, self.ledger)
        if outbox and self.outbox:
            for row in self.outbox:
                row["to_key"] = address_key(row["to_address"])
            insert_rows(session, Outbox.__table__, self.outbox)
        if outbox and self.alerts:
            _insert_alerts(session, self.alerts)


def _insert_alerts(session: Session, rows: list[dict[str, Any]]) -> None:
    """The staff alerts, each skipped if its Message-ID is in the outbox already (another
    process decided the library's first pool_not_ready meanwhile: it is the same alert).
    A duplicate never raises: it would roll back the batch and leave the patrons'
    requests undecided for the sake of a message already on its way."""
    dialect = session.get_bind().dialect.name
    for row in rows:
        row = {**row, "to_key": address_key(row["to_address"])}
        if dialect in ("sqlite", "postgresql"):
            insert = sqlite_insert if dialect == "sqlite" else pg_insert
            session.execute(insert(Outbox.__table__).values(**row)
                            .on_conflict_do_nothing(index_elements=["message_id"]))
            continue
        try:
            with session.begin_nested():
                session.execute(Outbox.__table__.insert().values(**row))
        except IntegrityError:
            pass
