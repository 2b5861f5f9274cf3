"""What a decide batch reads: its requests, their mail, and what the rules ask of the
database, each question asked once for the whole batch.

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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Row, exists, func, select
from sqlalchemy.orm import Session

from mailbot import quotas
from mailbot.clock import month_key, month_of
from mailbot.config import LibrarySettings, Settings
from mailbot.db.batches import in_chunks
from mailbot.db.models import Code, LedgerEntry, Mailbox, Outbox, Request, address_key
from mailbot.decide.card_history import (
    issued_entries,
    penalty_months,
    remember_first,
    unactivated_entries,
    unactivated_of,
)
from mailbot.decide.quota_reads import BatchQuotas
from mailbot.intake.parse_cache import parse_mail_again
from mailbot.intake.reading import read_mail
from mailbot.ledger import codes_left, free_code_rows
from mailbot.outcomes import RequestState
from mailbot.rules.base import Facts, FreeCode, IssuedThisMonth, ReaderFacts
from mailbot.rules.once_a_month import AlreadyReceived
from mailbot.rules.reader import AgeRestricted
from mailbot.services import SHIPPED_CATALOGUE, Catalogue


class ReaderSource(Protocol):
    name: str

    def lookup(self, session: Session, *, library_id: str, card: str) -> ReaderFacts | None: ...


# What deciding reads of a waiting request. Plain rows, not ORM objects: a burst loads
# thousands, and nothing is written back through them (the decisions are bulk UPDATEs).
_QUEUED = (Request.id, Request.mailbox_id, Request.uidvalidity, Request.uid,
           Request.message_id, Request.received_at, Request.date_header, Request.raw,
           Request.from_address, Request.subject, Request.service, Request.kind)
QueuedRequest = Row[Any]  # with the attributes named in _QUEUED

# The rules of the other service an exhausted pool's reply may name (other_services_left).
_ALREADY, _AGE = AlreadyReceived(), AgeRestricted()


def next_requests(session: Session, library_id: str, horizon: datetime | None,
                  limit: int) -> list[QueuedRequest]:
    """The library's earliest waiting requests (arrival order) before ``horizon``."""
    stmt = (
        select(*_QUEUED)
        .where(Request.library_id == library_id, Request.state == RequestState.NEW)
        .order_by(Request.received_at, Request.uid, Request.mailbox_id, Request.id)
        .limit(limit)
    )
    if horizon is not None:
        stmt = stmt.where(Request.received_at < horizon)
    return list(session.execute(stmt))


@dataclass
class Prepared:
    """A request with what its mail says, parsed once for the batch."""

    req: QueuedRequest
    year: int
    mon: int
    month: str
    cards: Any
    name_text: str
    references: tuple[str, ...]
    patron_name: str | None


def prepare(req: QueuedRequest, settings: Settings, library: LibrarySettings, tz: Any,
            now: datetime) -> Prepared:
    # The pool served is the month of the decision (see Facts.month); a clock running
    # behind the mail server must not move a request back a month.
    year, mon = month_of(max(now, req.received_at), tz)
    parsed = parse_mail_again(req.raw or b"", max_bytes=settings.max_message_bytes)
    found = read_mail(parsed, library.card_pattern)  # (in a burst: by the workers)
    cards = found.cards
    return Prepared(req, year, mon, month_key(year, mon), cards,
                    parsed.quoted if cards.from_quote else parsed.unquoted,
                    parsed.references, (found.name or "")[:300] or None)


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


def pools_imported(session: Session, library_id: str,
                   pools: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of ``pools`` ((service, month)) had any code imported (issued, expired or
    free; a pool withdrawn whole has none): one statement for all of them, each an index
    seek (ix_codes_free)."""
    pairs = sorted(pools)
    if not pairs:
        return set()
    row = session.execute(select(*(
        exists().where(Code.library_id == library_id, Code.service == service,
                       Code.month == month)
        for service, month in pairs))).one()
    return {pair for pair, there in zip(pairs, row, strict=True) if there}


def readers_of(session: Session, source: ReaderSource, library_id: str,
               cards: Collection[str]) -> dict[str, ReaderFacts | None]:
    """Every card's reader: in one query where the source can (``lookup_many``)."""
    many = getattr(source, "lookup_many", None)
    if many is not None:
        found: dict[str, ReaderFacts | None] = dict.fromkeys(cards)
        found.update(many(session, library_id=library_id, cards=cards))
        return found
    return {card: source.lookup(session, library_id=library_id, card=card) for card in cards}


class BatchReads:
    """The answers for one batch of ``prepared`` requests, loaded once and kept current as
    the batch is decided (``code_issued``, ``reply_written``)."""

    def __init__(self, session: Session, library: LibrarySettings, tz: Any,
                 source: ReaderSource, prepared: list[Prepared], *,
                 catalogue: Catalogue = SHIPPED_CATALOGUE) -> None:
        self.session = session
        self.library = library
        self.tz = tz
        self.catalogue = catalogue  # the config's services (Settings.catalogue)
        cards = {p.cards.card for p in prepared if p.cards.card}
        addresses = {p.req.from_address for p in prepared if p.req.from_address}
        months = {p.month for p in prepared}
        received = [p.req.received_at for p in prepared]
        # How many codes each (service, month) could take in this batch at most.
        # (Not for a service the library does not offer: such a request is refused first.)
        needed: Counter[tuple[str, str]] = Counter(
            (p.req.service or "", p.month) for p in prepared
            if p.req.kind != "test" and (p.req.service or "") in library.services)
        self.readers = readers_of(session, source, library.id, cards)
        self.issued = issued_entries(session, library.id, cards, months, catalogue) \
            if cards else {}
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
            for (service, month), n in needed.items()}
        # Pools with no free code at all: were they ever imported (pool_not_ready)? Asked
        # only of those, so a batch whose pools have codes asks nothing more.
        empty = [pool for pool, queue in self.codes.items() if not queue]
        self.imported = {pool for pool, queue in self.codes.items() if queue}
        self.imported |= pools_imported(session, library.id, empty)
        self.asked = set(self.codes)  # pools whose import is known (in self.imported or not)
        self.taken: Counter[tuple[str, str]] = Counter()
        self.left: dict[tuple[str, str], int] = {}  # codes_left, as first asked
        # The pools' quotas, where the library keeps any (mailbot.decide.quota_reads).
        self.quotas = BatchQuotas(session, library, tz, cards, needed) \
            if library.quotas.active else None
        self.mailboxes: dict[int, Mailbox] = {}

    def facts(self, item: Prepared, now: datetime) -> Facts:
        """What the rules need to decide ``item`` now, as the batch stands."""
        req, cards, month, library = item.req, item.cards, item.month, self.library
        card, test = cards.card, req.kind == "test"
        facts = Facts(
            library=library, tz=self.tz, month=(item.year, item.mon),
            service=req.service or "legimi", received_at=req.received_at,
            date_header=req.date_header, from_address=req.from_address,
            card_candidates=cards.candidates, card=card, name_text=item.name_text,
            reader=self.readers.get(card) if card else None,
            issued_this_month=self.issued.get((card, month, self.counted_against(req.service)))
            if card else None,
            **self.unactivated_of(card, month),
            codes_to_address=self.codes_to_address(req.from_address, month),
            decided_at=now,
            replies_today=self.replies_today(req.from_address, req.kind, req.received_at)
            if library.replies_per_sender_per_day > 0 and req.from_address else 0,
            next_code=None if test else self.next_code(req.service or "", month),
            codes_left=self.email_left(req.service or "legimi", item, now, card) if test
            else 0,
            quota=self.quota(req.service or "", item, now),
            first_time=self.first_time(card),
            pool_imported=self.pool_imported(req.service or "legimi", month) if test
            else (req.service or "", month) in self.imported,
            catalogue=self.catalogue,
        )
        if test:
            return facts
        return replace(facts, other_services_left=self.other_services_left(item, facts))

    # -- questions ------------------------------------------------------------------------

    def counted_against(self, service: str | None) -> str | None:
        """The key of self.issued a request for ``service`` looks up: None, the codes of
        every service counted across; else that service's own."""
        per_service = self.library.one_code_per_month == "per_service"
        return self.catalogue.counted_against(service, per_service=per_service) \
            if service else None

    def unactivated_of(self, card: str | None, month: str) -> dict[str, Any]:
        """Facts.unactivated_months and unactivated_codes of ``card``."""
        if not card or not self.unactivated:  # as in most batches: nobody has a penalty
            return {}
        months, codes = unactivated_of(self.unactivated, self.library, card, month)
        return {"unactivated_months": months, "unactivated_codes": codes}

    def codes_to_address(self, address: str | None, month: str) -> int:
        return self.to_address[(address_key(address), month)] if address else 0

    def replies_today(self, address: str, kind: str, received_at: datetime) -> int:
        return self.replies[(address_key(address), kind,
                             received_at.astimezone(self.tz).date())]

    def next_code(self, service: str, month: str) -> FreeCode | None:
        """The pool's next free code (a row: id, code, pool_id, service), or None."""
        queue = self.codes.get((service, month))
        return queue[0] if queue else None

    def codes_left(self, service: str, month: str) -> int:
        """The pool's codes not issued yet, counting those this batch handed out."""
        if (service, month) not in self.left:
            self.left[(service, month)] = codes_left(
                self.session, library_id=self.library.id, service=service, month=month)
        return self.left[(service, month)] - self.taken[(service, month)]

    def quota(self, service: str, item: Prepared, now: datetime) -> quotas.Parts | None:
        """What is left of each part of the pool, while its quotas hold (Facts.quota)."""
        if self.quotas is None:
            return None
        return self.quotas.parts(service, item.year, item.mon, now,
                                 self.taken[(service, item.month)])

    def first_time(self, card: str | None) -> bool:
        return self.quotas is not None and self.quotas.first_time(card)

    def email_left(self, service: str, item: Prepared, now: datetime,
                   card: str | None) -> int:
        """The pool's codes an e-mail request of ``card`` may still take: every code not
        issued yet, or while quotas hold, those of the parts it may draw from."""
        left = self.quota(service, item, now)
        if left is None:
            return self.codes_left(service, item.month)
        return quotas.email_left(left, first_time=self.first_time(card))

    def pool_imported(self, service: str, month: str) -> bool:
        """Was any code of the pool imported (a TEST mail's verdict; requests' pools are
        known from the start)? Asked only of a pool with no code left, once a batch."""
        pool = (service, month)
        if pool not in self.asked:
            self.asked.add(pool)
            if self.codes_left(service, month) > 0 \
                    or pools_imported(self.session, self.library.id, [pool]):
                self.imported.add(pool)
        return pool in self.imported

    def other_services_left(self, item: Prepared, facts: Facts) -> tuple[str, ...]:
        """The library's other services with a free code this month that the card may
        still take: asked only when the request's own pool is empty, so at most once a
        batch per service. "May take" is the other service's own rules, as a request for
        it would meet them: its minimum age (min_age_legimi / min_age_empik_go) and, under
        one_code_per_month = "per_service", a code of it already issued to the card."""
        service, month, card = item.req.service or "", item.month, item.cards.card
        # (Own codes left for this request: with quotas, in the parts it may draw from.)
        own = self.next_code(service, month) is not None and (
            facts.quota is None or quotas.email_left(facts.quota,
                                                     first_time=facts.first_time) > 0)
        if service not in self.library.services or own:
            return ()
        assert facts.decided_at is not None
        found = []
        for other in self.library.services:
            if other == service or self.email_left(other, item, facts.decided_at,
                                                   card) <= 0:
                continue
            theirs = replace(facts, service=other, issued_this_month=self.issued.get(
                (card, month, self.counted_against(other))) if card else None)
            rules = (_ALREADY, _AGE) if theirs.reader is not None else (_ALREADY,)
            if any(rule.check(theirs) is not None for rule in rules):
                continue
            found.append(other)
        return tuple(found)

    def mailbox(self, mailbox_id: int) -> Mailbox:
        if mailbox_id not in self.mailboxes:
            row = self.session.get(Mailbox, mailbox_id)
            assert row is not None
            self.mailboxes[mailbox_id] = row
        return self.mailboxes[mailbox_id]

    # -- what the batch changed -----------------------------------------------------------

    def take(self, service: str, month: str) -> FreeCode | None:
        """Takes the next free code (mailbot.ledger.Codes), or None."""
        queue = self.codes.get((service, month))
        if not queue:
            return None
        self.taken[(service, month)] += 1
        return queue.popleft()

    def code_issued(self, *, card: str, month: str, service: str, email: str | None,
                    code: str, issued_at: datetime) -> None:
        remember_first(self.issued, card, month, IssuedThisMonth(
            service=service, code=code, email=email, issued_at=issued_at), self.catalogue)
        if email:
            self.to_address[(address_key(email), month)] += 1
        if self.quotas is not None:  # (self.taken counted the code itself)
            self.quotas.issued(card, service, month)

    def reply_written(self, address: str, kind: str, received_at: datetime) -> None:
        self.replies[(address_key(address), kind, received_at.astimezone(self.tz).date())] += 1
