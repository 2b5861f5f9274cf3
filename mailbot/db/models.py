"""The database: SQLAlchemy 2.0 typed models.

A request row is the unit of work: intake creates it (raw mail, INTERNALDATE, mailbox
UIDVALIDITY+UID, Message-ID), decide fills in the outcome and the rule trail in the same
transaction that allocates a code and writes the outbox row, respond marks the outbox row
sent. Each stage can therefore restart from the database alone.

The ledger is append-only: a row per issued code, never updated, never deleted (it outlives
the retention purge of raw mail).

One concept, the schema, in one file: the tables refer to each other, and Alembic's
autogenerate and the migration tests compare it as a whole.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    event,
    false,
    inspect,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from mailbot.outcomes import OutboxState, RequestState


class UTCDateTime(TypeDecorator[datetime]):
    """Stores instants in UTC and always returns them aware, whatever the engine."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; time must be aware")
        value = value.astimezone(UTC)
        # SQLite and MariaDB keep no zone: store naive UTC there.
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Mailbox.caught_up_to while a poll has stored part of what it found (or was killed after
# doing so): nothing of that library may be decided until a poll of the mailbox completes.
MID_POLL = datetime(1970, 1, 1, tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Library(Base):
    __tablename__ = "libraries"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # Health of the library's reader source as last seen by the decide stage.
    source_error: Mapped[str | None] = mapped_column(Text)
    source_down_since: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Mailbox(Base):
    __tablename__ = "mailboxes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(500), unique=True)
    library_id: Mapped[str] = mapped_column(ForeignKey("libraries.id"))
    address: Mapped[str] = mapped_column(String(320))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    last_poll_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Every mail the server held at this instant has been stored (a poll's start time).
    caught_up_to: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Failing since (the first failure after a good poll): after daemon.mailbox_grace the
    # library is decided without this mailbox (decide/horizon.py). None while it works.
    down_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Authentication failures in a row, and when the next login may be tried: a wrong
    # secret is not tried again at full speed, by any process (daemon or run --once).
    login_failures: Mapped[int] = mapped_column(Integer, default=0)
    login_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The credentials those logins were refused with (login/fingerprint.py): changed
    # credentials are tried at once.
    login_refused_for: Mapped[str | None] = mapped_column(String(16))


class Relay(Base):
    """One sending account's health, shared by every process that sends through it
    (respond/relays.py): the last error, and the pauses after an authentication failure
    or a throttling answer. Its sent replies are the outbox rows with its key."""

    __tablename__ = "relays"

    key: Mapped[str] = mapped_column(String(500), primary_key=True)  # SmtpSettings.key
    last_error: Mapped[str | None] = mapped_column(Text)
    down_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Nothing is sent through it before this (after an authentication failure or a
    # throttling answer); failures in a row of that kind, for the growing pause.
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pause_reason: Mapped[str | None] = mapped_column(String(16))  # "auth" | "throttled"
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_ok_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # For an "auth" pause: the credentials refused (login/fingerprint.py); changed ones
    # end the pause.
    refused_for: Mapped[str | None] = mapped_column(String(16))


class Reader(Base):
    __tablename__ = "readers"
    __table_args__ = (UniqueConstraint("library_id", "card_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    library_id: Mapped[str] = mapped_column(ForeignKey("libraries.id"))
    card_number: Mapped[str] = mapped_column(String(64))
    first_name: Mapped[str] = mapped_column(String(200), default="")
    last_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    valid_until: Mapped[date | None] = mapped_column(Date)
    balance_due: Mapped[Decimal] = mapped_column(Numeric(10, 2), default=Decimal("0"))
    overdue_items: Mapped[int] = mapped_column(Integer, default=0)
    data_updated_on: Mapped[date | None] = mapped_column(Date)
    last_loan_on: Mapped[date | None] = mapped_column(Date)
    birth_date: Mapped[date | None] = mapped_column(Date)
    # Confirmed at the desk (False: registered online, never confirmed; NULL: not known).
    confirmed: Mapped[bool | None] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CodePool(Base):
    """One imported file of codes: a library's purchase for one service and month."""

    __tablename__ = "code_pools"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    library_id: Mapped[str] = mapped_column(ForeignKey("libraries.id"))
    service: Mapped[str] = mapped_column(String(20))
    month: Mapped[str] = mapped_column(String(7))
    source_file: Mapped[str] = mapped_column(String(500))
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    size: Mapped[int] = mapped_column(Integer)


class Code(Base):
    __tablename__ = "codes"
    __table_args__ = (Index("ix_codes_free", "library_id", "service", "month", "issued_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # A code is issued at most once, ever, across every pool and library.
    code: Mapped[str] = mapped_column(String(128), unique=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("code_pools.id"))
    library_id: Mapped[str] = mapped_column(ForeignKey("libraries.id"))
    service: Mapped[str] = mapped_column(String(20))
    month: Mapped[str] = mapped_column(String(7))
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id"), unique=True)
    issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set in the transaction that queues the activation reminder: one reminder per code.
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set by the month-close job for codes never issued in their month.
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Request(Base):
    """One mail that reached a mailbox, from intake to outcome."""

    __tablename__ = "requests"
    __table_args__ = (
        UniqueConstraint("mailbox_id", "uidvalidity", "uid"),
        Index("ix_requests_queue", "library_id", "state", "received_at", "uid", "id"),
        Index("ix_requests_message_id", "library_id", "message_id"),
        Index("ix_requests_card_month", "library_id", "card_number", "month"),
        # Monitoring's counts by outcome (/metrics, status's refusals of the month).
        Index("ix_requests_outcome", "library_id", "outcome", "month", "service"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    library_id: Mapped[str] = mapped_column(ForeignKey("libraries.id"))
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id"))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    # Server receipt time (IMAP INTERNALDATE): the arrival order.
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)
    message_id: Mapped[str] = mapped_column(String(998))
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    raw_size: Mapped[int] = mapped_column(Integer, default=0)
    date_header: Mapped[datetime | None] = mapped_column(UTCDateTime)
    from_address: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text, default="")
    service: Mapped[str | None] = mapped_column(String(20))
    card_number: Mapped[str | None] = mapped_column(String(64))
    patron_name: Mapped[str | None] = mapped_column(String(300))
    month: Mapped[str | None] = mapped_column(String(7))
    # "request", or "test": a TEST LEGIMI mail asking for a verdict, issuing nothing.
    kind: Mapped[str] = mapped_column(String(8), default="request")
    # new -> decided | manual | ignored ; error = set aside for staff after a crash on it
    state: Mapped[str] = mapped_column(String(16), default=RequestState.NEW.value)
    outcome: Mapped[str | None] = mapped_column(String(32))
    trail: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    # Where the mail has to go in its mailbox once the database holds it; None when done.
    pending_move: Mapped[str | None] = mapped_column(String(300))

    mailbox: Mapped[Mailbox] = relationship()
    code: Mapped[Code | None] = relationship(foreign_keys=[Code.request_id], viewonly=True,
                                             uselist=False)


def address_key(address: str | None) -> str | None:
    """The mailbox an address reaches, for counting what one sender got (the caps).

    ``Collector+15@x`` and ``collector@x`` reach one mailbox wherever subaddressing works
    (Gmail, Outlook, Fastmail, Postfix and most servers), so a ``+tag`` is dropped for
    every domain, and case everywhere; at gmail.com (and its old name googlemail.com)
    dots are not part of the name either, so they go too. Other tricks (``-tag`` on some
    servers, dots elsewhere) are left: there they name different people's mailboxes. The
    address itself is kept as written: replies go where the patron wrote from."""
    if not address:
        return None
    local, at, domain = address.strip().lower().rpartition("@")
    if not at:
        return domain or None
    local = local.split("+", 1)[0] or local
    if domain in ("gmail.com", "googlemail.com"):
        local, domain = local.replace(".", "") or local, "gmail.com"
    return f"{local}@{domain}"


class Outbox(Base):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_state", "state", "due_at"),
                      Index("ix_outbox_to_key", "library_id", "to_key"),
                      Index("ix_outbox_relay_sent", "relay", "sent_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # "reply" (to a request) or "reminder" (of an unactivated code)
    kind: Mapped[str] = mapped_column(String(16), default="reply")
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id"), unique=True)
    code_id: Mapped[int | None] = mapped_column(ForeignKey("codes.id"))
    library_id: Mapped[str] = mapped_column(ForeignKey("libraries.id"))
    mail_from: Mapped[str] = mapped_column(String(320))
    to_address: Mapped[str] = mapped_column(String(320))
    # address_key(to_address): the daily reply cap counts replies by it.
    to_key: Mapped[str | None] = mapped_column(String(320))
    message_id: Mapped[str] = mapped_column(String(300), unique=True)
    outcome: Mapped[str] = mapped_column(String(32))
    message: Mapped[bytes] = mapped_column(LargeBinary)
    # pending -> sent | failed
    state: Mapped[str] = mapped_column(String(16), default=OutboxState.PENDING.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # After a temporary failure the daemon waits until then (growing pauses).
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The first temporary failure: the daemon gives up daemon.send_retry_for after it (not
    # after created_at: a reply held back by its relay's limits or pause has not failed).
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The sending account (SmtpSettings.key) it was handed to, set with sent_at: a relay's
    # sending limits count its rows sent within the last minute, hour and day.
    relay: Mapped[str | None] = mapped_column(String(500))


class LedgerEntry(Base):
    """Who got which code when. Append-only: survives every purge."""

    __tablename__ = "ledger"
    # Every decision asks "what did this card get this month?" and "how many codes went
    # to this address?": without these, each decision scans the whole ledger.
    __table_args__ = (Index("ix_ledger_card_month", "library_id", "card_number", "month"),
                      Index("ix_ledger_email_key_month", "library_id", "month", "email_key"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_id: Mapped[int] = mapped_column(ForeignKey("codes.id"), unique=True)
    library_id: Mapped[str] = mapped_column(String(64))
    service: Mapped[str] = mapped_column(String(20))
    month: Mapped[str] = mapped_column(String(7))
    card_number: Mapped[str] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(320))
    # address_key(email): the codes-per-address cap counts codes by it.
    email_key: Mapped[str | None] = mapped_column(String(320))
    request_id: Mapped[int | None] = mapped_column(Integer)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    channel: Mapped[str] = mapped_column(String(16), default="email")


class JobRun(Base):
    """What the scheduler did and will do, for `status` from another process."""

    __tablename__ = "job_runs"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_result: Mapped[str | None] = mapped_column(Text)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ActivationReport(Base):
    """A month for which the platform's activation report was imported (penalties need it)."""

    __tablename__ = "activation_reports"
    __table_args__ = (UniqueConstraint("library_id", "month"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    library_id: Mapped[str] = mapped_column(ForeignKey("libraries.id"))
    month: Mapped[str] = mapped_column(String(7))
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime)


def _keep_key(source: str, key: str) -> tuple[Any, Any]:
    """Rows written through the ORM (desk, override, reminders, erasure) keep ``key`` in
    step with ``source``; the decide batch's bulk inserts set it themselves
    (mailbot.decide.writes.BatchWrites.write)."""

    def on_insert(_mapper: Any, _conn: Any, row: Any) -> None:
        setattr(row, key, address_key(getattr(row, source)))

    def on_update(_mapper: Any, _conn: Any, row: Any) -> None:
        if inspect(row).attrs[source].history.has_changes():
            setattr(row, key, address_key(getattr(row, source)))

    return on_insert, on_update


for _model, _source, _key in ((LedgerEntry, "email", "email_key"),
                              (Outbox, "to_address", "to_key")):
    _on_insert, _on_update = _keep_key(_source, _key)
    event.listen(_model, "before_insert", _on_insert)
    event.listen(_model, "before_update", _on_update)


@event.listens_for(Session, "before_flush")
def _ledger_is_append_only(session: Session, _ctx: Any, _instances: Any) -> None:
    # mailbot.privacy.erase_patron alone may pseudonymise entries (RODO erasure).
    erasing = session.info.get("erasure", False)
    for obj in list(session.deleted) + ([] if erasing else list(session.dirty)):
        if isinstance(obj, LedgerEntry):
            raise RuntimeError("the ledger is append-only")


# -- the staff dashboard (mailbot.web) --------------------------------------------------


class StaffUser(Base):
    """A dashboard login: scoped to some libraries, or an admin of the whole consortium."""

    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # argon2id, as produced by argon2-cffi; the password itself is never stored.
    password_hash: Mapped[str] = mapped_column(String(300))
    is_admin: Mapped[bool] = mapped_column(default=False)
    libraries: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Bumped by a password change: sessions signed for an older version stop working.
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The last successful login (login attempts are kept only a month); None: never.
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # An administrator set this password (accounts page): its owner must choose their own
    # before any other page opens (web/views/password.py).
    must_change_password: Mapped[bool] = mapped_column(default=False,
                                                       server_default=false())


class LoginAttempt(Base):
    """Every login try, for the lock-out after repeated failures."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_name_at", "name", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    ok: Mapped[bool] = mapped_column(default=False)
    remote: Mapped[str | None] = mapped_column(String(100))


class AuditLog(Base):
    """What staff did in the dashboard: who, when, what, on which request. Append-only."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_request", "request_id"),
                      Index("ix_audit_library_at", "library_id", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    user_name: Mapped[str] = mapped_column(String(100))
    library_id: Mapped[str | None] = mapped_column(String(64))
    # resend | override | handled | desk_issue | import_readers | import_codes | ...
    action: Mapped[str] = mapped_column(String(32))
    request_id: Mapped[int | None] = mapped_column(Integer)
    code_id: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(Text, default="")
    # The values the dashboard words the entry with, in the reader's language
    # ("audit_<action>" in its catalogue); None on entries written before 0.3.
    args: Mapped[dict[str, Any] | None] = mapped_column(JSON)


@event.listens_for(Session, "before_flush")
def _audit_is_append_only(session: Session, _ctx: Any, _instances: Any) -> None:
    erasing = session.info.get("erasure", False)
    for obj in list(session.deleted) + ([] if erasing else list(session.dirty)):
        if isinstance(obj, AuditLog):
            raise RuntimeError("the audit log is append-only")
