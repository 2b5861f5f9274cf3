"""What deciding needs from the database, read for a whole batch of requests at once.

Deciding a request asks the database about half a dozen things (the card's reader, the
card's code this month, unactivated codes in the penalty period, codes and replies already
sent to the address, the next free code). Asked one request at a time that is ten queries
a request; here each question is asked once for every request of a batch, and the answers
are kept current in memory while the batch is decided in arrival order (a code handed out,
a reply written), all in the one transaction that then writes the results. The answers are
exactly what the per-request queries would give at that point of the batch: the queries
below are the same, only grouped (tests/test_decide_batch.py compares the two).

The caps on one sender (codes per address a month, replies per address a day) count by
``address_key``: ``collector+15@…`` is the mailbox ``collector@…``, and more cards or
more mails from its tagged forms get no more than the address itself would.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Collection
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from mailbot.clock import add_months, month_key, parse_month
from mailbot.config import LibrarySettings
from mailbot.db.batches import in_chunks, insert_rows, many_writes
from mailbot.db.models import (
    ActivationReport,
    Code,
    LedgerEntry,
    Mailbox,
    Outbox,
    Request,
    address_key,
)
from mailbot.rules.base import IssuedThisMonth, ReaderFacts

if TYPE_CHECKING:
    from mailbot.offload import Composer

class ReaderSource(Protocol):
    name: str

    def lookup(self, session: Session, *, library_id: str, card: str) -> ReaderFacts | None: ...


def penalty_months(library: LibrarySettings, month: str) -> tuple[str, ...]:
    """The months before ``month`` whose unactivated code still blocks the card."""
    return _months_before(month, library.penalty_months)


@lru_cache(maxsize=256)
def _months_before(month: str, count: int) -> tuple[str, ...]:
    # Asked for every request of a batch, always about the same month or two.
    y, m = parse_month(month)
    return tuple(month_key(*add_months(y, m, -k)) for k in range(1, count + 1))


def issued_entries(session: Session, library_id: str, cards: Collection[str],
                   months: Collection[str]
                   ) -> dict[tuple[str, str, str | None], IssuedThisMonth]:
    """Each card's first code of each month: keyed (card, month, None) for any service and
    (card, month, service) for that service."""
    found: dict[tuple[str, str, str | None], IssuedThisMonth] = {}
    for chunk in in_chunks(cards):
        rows = session.execute(
            select(LedgerEntry.card_number, LedgerEntry.month, LedgerEntry.service,
                   LedgerEntry.email, LedgerEntry.issued_at, Code.code)
            .join(Code, Code.id == LedgerEntry.code_id)
            .where(LedgerEntry.library_id == library_id, LedgerEntry.card_number.in_(chunk),
                   LedgerEntry.month.in_(list(months)))
            .order_by(LedgerEntry.id))
        for card, month, service, email, issued_at, code in rows:
            _remember_first(found, card, month, IssuedThisMonth(
                service=service, code=code, email=email, issued_at=issued_at))
    return found


def _remember_first(found: dict[tuple[str, str, str | None], IssuedThisMonth], card: str,
                    month: str, entry: IssuedThisMonth) -> None:
    """Keeps the card's first code of the month, for any service and for its own."""
    found.setdefault((card, month, None), entry)
    found.setdefault((card, month, entry.service), entry)


def unactivated_entries(session: Session, library: LibrarySettings, cards: Collection[str],
                        months: Collection[str]) -> set[tuple[str, str]]:
    """(card, month) of codes not activated in a month whose activation report came in."""
    if library.penalty_months <= 0 or not cards or not months:
        return set()
    found: set[tuple[str, str]] = set()
    for chunk in in_chunks(cards):
        found.update((card, month) for card, month in session.execute(
            select(LedgerEntry.card_number, LedgerEntry.month)
            .join(Code, Code.id == LedgerEntry.code_id)
            .join(ActivationReport, (ActivationReport.library_id == LedgerEntry.library_id)
                  & (ActivationReport.month == LedgerEntry.month))
            .where(LedgerEntry.library_id == library.id, LedgerEntry.card_number.in_(chunk),
                   LedgerEntry.month.in_(list(months)), Code.activated_at.is_(None))))
    return found


def codes_to_addresses(session: Session, library_id: str, keys: Collection[str],
                       months: Collection[str]) -> Counter[tuple[str, str]]:
    """Codes sent to each address (by its ``address_key``) in each month."""
    counts: Counter[tuple[str, str]] = Counter()
    for chunk in in_chunks(keys):
        for key, month, n in session.execute(
                select(LedgerEntry.email_key, LedgerEntry.month, func.count(LedgerEntry.id))
                .where(LedgerEntry.library_id == library_id, LedgerEntry.email_key.in_(chunk),
                       LedgerEntry.month.in_(list(months)))
                .group_by(LedgerEntry.email_key, LedgerEntry.month)):
            counts[(key, month)] += n
    return counts


def replies_by_day(session: Session, library_id: str, keys: Collection[str], tz: Any,
                   start: datetime, end: datetime) -> Counter[tuple[str, str, Any]]:
    """Replies written to each address (by its ``address_key``), by the request's kind
    and local day of arrival, for requests that arrived in [start, end)."""
    counts: Counter[tuple[str, str, Any]] = Counter()
    for chunk in in_chunks(keys):
        for key, kind, received in session.execute(
                select(Outbox.to_key, Request.kind, Request.received_at)
                .join(Request, Request.id == Outbox.request_id)
                .where(Outbox.library_id == library_id, Outbox.to_key.in_(chunk),
                       Request.received_at >= start, Request.received_at < end)):
            counts[(key, kind, received.astimezone(tz).date())] += 1
    return counts


# A code that may be handed out: never issued, activated or expired.
_FREE = (Code.issued_at.is_(None), Code.activated_at.is_(None), Code.expired_at.is_(None))


def _free_codes(*columns: Any, library_id: str, service: str, month: str) -> Any:
    """The pool's next free codes in issue order, locked (skipping codes another
    transaction holds): a code is never handed out twice, even by racing processes."""
    return (
        select(*columns)
        .where(Code.library_id == library_id, Code.service == service, Code.month == month,
               *_FREE)
        .order_by(Code.id)
        .with_for_update(skip_locked=True)
    )


def free_codes(session: Session, *, library_id: str, service: str, month: str,
               limit: int) -> list[Code]:
    """The next ``limit`` free codes (ORM objects; see _free_codes)."""
    return list(session.scalars(_free_codes(Code, library_id=library_id, service=service,
                                            month=month).limit(limit)))


def free_code_rows(session: Session, *, library_id: str, service: str, month: str,
                   limit: int) -> list[Any]:
    """The next ``limit`` free codes as plain rows (id, code, pool_id, service)."""
    return list(session.execute(_free_codes(Code.id, Code.code, Code.pool_id, Code.service,
                                            library_id=library_id, service=service,
                                            month=month).limit(limit)))


def codes_left(session: Session, *, library_id: str, service: str, month: str) -> int:
    """The pool's codes not issued yet."""
    return session.scalar(
        select(func.count(Code.id)).where(Code.library_id == library_id, Code.service == service,
                                          Code.month == month, Code.issued_at.is_(None))
    ) or 0


def readers_of(session: Session, source: ReaderSource, library_id: str,
               cards: Collection[str]) -> dict[str, ReaderFacts | None]:
    """Every card's reader: in one query where the source can (``lookup_many``)."""
    many = getattr(source, "lookup_many", None)
    if many is not None:
        found: dict[str, ReaderFacts | None] = dict.fromkeys(cards)
        found.update(many(session, library_id=library_id, cards=cards))
        return found
    return {card: source.lookup(session, library_id=library_id, card=card) for card in cards}


class BatchLookups:
    """The answers for one batch, loaded once and kept current as the batch is decided.

    ``cards``, ``addresses``, ``months`` and ``received`` are those of the batch's
    requests; ``codes_needed`` bounds how many codes each (service, month) could take in
    this batch.
    """

    def __init__(self, session: Session, library: LibrarySettings, tz: Any,
                 source: ReaderSource, *, cards: set[str], addresses: set[str],
                 months: set[str], received: list[datetime],
                 codes_needed: Counter[tuple[str, str]]) -> None:
        self.session = session
        self.library = library
        self.tz = tz
        # Set for a burst: the batch's replies are composed by worker processes.
        self.composer: Composer | None = None
        self.readers = readers_of(session, source, library.id, cards)
        self.issued = issued_entries(session, library.id, cards, months) if cards else {}
        penalty = {p for m in months for p in penalty_months(library, m)}
        self.unactivated = unactivated_entries(session, library, cards, penalty)
        keys = {key for key in map(address_key, addresses) if key}
        self.to_address = codes_to_addresses(session, library.id, keys, months) \
            if keys else Counter()
        self.replies: Counter[tuple[str, str, Any]] = Counter()
        if library.replies_per_sender_per_day > 0 and keys and received:
            days = [r.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
                    for r in received]
            self.replies = replies_by_day(session, library.id, keys, tz, min(days),
                                          max(days) + timedelta(days=1))
        self.codes: dict[tuple[str, str], deque[Any]] = {
            (service, month): deque(free_code_rows(session, library_id=library.id,
                                                   service=service, month=month, limit=n))
            for (service, month), n in codes_needed.items()}
        self.taken: Counter[tuple[str, str]] = Counter()
        self.mailboxes: dict[int, Mailbox] = {}
        # What the batch writes, all at once at its end (bulk statements, not the ORM's
        # unit of work): the decided requests, the codes handed out, ledger and outbox.
        self.requests: list[dict[str, Any]] = []
        self.codes_issued: list[dict[str, Any]] = []
        self.ledger: list[dict[str, Any]] = []
        self.outbox: list[dict[str, Any]] = []

    # -- questions ------------------------------------------------------------------------

    def issued_this_month(self, card: str, month: str,
                          service: str | None) -> IssuedThisMonth | None:
        return self.issued.get((card, month, service))

    def unactivated_months(self, card: str, month: str) -> tuple[str, ...]:
        if not self.unactivated:  # as in most batches: nobody has a penalty
            return ()
        return tuple(sorted(m for m in penalty_months(self.library, month)
                            if (card, m) in self.unactivated))

    def codes_to_address(self, address: str | None, month: str) -> int:
        return self.to_address[(address_key(address), month)] if address else 0

    def replies_today(self, address: str, kind: str, received_at: datetime) -> int:
        return self.replies[(address_key(address), kind,
                             received_at.astimezone(self.tz).date())]

    def mailbox(self, mailbox_id: int) -> Mailbox:
        if mailbox_id not in self.mailboxes:
            row = self.session.get(Mailbox, mailbox_id)
            assert row is not None
            self.mailboxes[mailbox_id] = row
        return self.mailboxes[mailbox_id]

    # -- what the batch changed -----------------------------------------------------------

    def codes_left(self, service: str, month: str) -> int:
        """The pool's codes not issued yet, counting those this batch handed out."""
        return codes_left(self.session, library_id=self.library.id, service=service,
                          month=month) - self.taken[(service, month)]

    def take_code(self, service: str, month: str) -> Any | None:
        """The next free code (a row: id, code, pool_id, service), or None."""
        queue = self.codes.get((service, month))
        if not queue:
            return None
        self.taken[(service, month)] += 1
        return queue.popleft()

    def still_valid(self, session: Session) -> bool:
        """Whether, in ``session``, the requests this batch decided all still wait and the
        codes it took are all still free (for a batch decided on a snapshot)."""
        for chunk in in_chunks([row["id"] for row in self.requests]):
            if session.scalar(select(func.count(Request.id)).where(
                    Request.id.in_(chunk), Request.state == "new")) != len(chunk):
                return False
        taken = [row["id"] for row in self.codes_issued]
        for chunk in in_chunks(taken):
            if session.scalar(select(func.count(Code.id)).where(
                    Code.id.in_(chunk), *_FREE)) != len(chunk):
                return False
        return True

    def write(self, *, decisions: bool = True, outbox: bool = True,
              session: Session | None = None) -> None:
        """Writes what the batch decided, in four bulk statements (the decisions and the
        replies may be written separately, in the same transaction), in its own session
        or ``session``."""
        # Core statements on the tables: the batch's requests were read as rows (there
        # are no ORM objects to keep in step), and the ORM's bulk forms would only add
        # their own bookkeeping.
        session = session or self.session
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

    def code_issued(self, *, card: str, month: str, service: str, email: str | None,
                    code: str, issued_at: datetime) -> None:
        _remember_first(self.issued, card, month, IssuedThisMonth(
            service=service, code=code, email=email, issued_at=issued_at))
        if email:
            self.to_address[(address_key(email), month)] += 1

    def reply_written(self, address: str, kind: str, received_at: datetime) -> None:
        self.replies[(address_key(address), kind, received_at.astimezone(self.tz).date())] += 1



# UPDATE … WHERE id = :key for a list of rows given as {"id": …, column: value, …}; the SET
# clause comes from the first row's other keys (every row of a batch has the same ones).
_DECIDED = update(Request.__table__).where(Request.__table__.c.id == bindparam("key"))
_CODE_ISSUED = update(Code.__table__).where(Code.__table__.c.id == bindparam("key"))


def _by_key(row: dict[str, Any]) -> dict[str, Any]:
    values = dict(row)
    values["key"] = values.pop("id")
    return values
