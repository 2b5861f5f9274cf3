"""The codes' ledger: which codes are free, and issuing one.

Issuing a code is always the same two writes, whoever issues it (a decided e-mail request,
the walk-in desk, a staff override): the code is marked issued (to its request, if there
is one) and an entry is appended to the ledger, the lasting record of who got which code
when. ``issue_code`` does both. Where the code comes from and where the writes go is the
caller's: one transaction's ORM session for the desk and the dashboard (``InSession``),
the decide batch's codes read ahead and its bulk writes for e-mail (mailbot.decide).
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.orm import Session, aliased

from mailbot.db.batches import in_chunks
from mailbot.db.models import Code, LedgerEntry
from mailbot.quotas import PoolUse
from mailbot.rules.base import FreeCode


class Channel(StrEnum):
    """How a code reached its patron (the ledger's ``channel``)."""

    EMAIL = "email"
    DESK = "desk"
    OVERRIDE = "override"


# A code that may be handed out: never issued, activated or expired.
FREE = (Code.issued_at.is_(None), Code.activated_at.is_(None), Code.expired_at.is_(None))


def _free_codes(*columns: Any, library_id: str, service: str, month: str) -> Any:
    """The pool's next free codes in issue order, locked (skipping codes another
    transaction holds): a code is never handed out twice, even by racing processes."""
    return (
        select(*columns)
        .where(Code.library_id == library_id, Code.service == service, Code.month == month,
               *FREE)
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
    """The pool's codes that can still be issued (not issued, not expired or withdrawn:
    the same test as taking one, ``FREE``)."""
    return session.scalar(
        select(func.count(Code.id)).where(Code.library_id == library_id, Code.service == service,
                                          Code.month == month, *FREE)
    ) or 0


def pool_use(session: Session, *, library_id: str, service: str, month: str) -> PoolUse:
    """What the ledger says of one pool, for its quotas (mailbot.quotas): codes free and
    issued, those issued by staff (desk, override), and those issued by e-mail to a card
    with no earlier code from this library (of any service or month: a first-timer's).
    Asked only of a library that keeps quotas."""
    earlier = aliased(LedgerEntry)
    first = ~exists().where(earlier.library_id == LedgerEntry.library_id,
                            earlier.card_number == LedgerEntry.card_number,
                            earlier.id < LedgerEntry.id)
    staff = LedgerEntry.channel.in_((Channel.DESK, Channel.OVERRIDE))
    first_email = and_(LedgerEntry.channel == Channel.EMAIL, first)
    issued, by_staff, to_first = session.execute(
        select(func.count(LedgerEntry.id),
               func.coalesce(func.sum(case((staff, 1), else_=0)), 0),
               func.coalesce(func.sum(case((first_email, 1), else_=0)), 0))
        .where(LedgerEntry.library_id == library_id, LedgerEntry.service == service,
               LedgerEntry.month == month)).one()
    return PoolUse(free=codes_left(session, library_id=library_id, service=service,
                                   month=month),
                   issued=int(issued), staff=int(by_staff), first_time=int(to_first))


def cards_ever_issued(session: Session, library_id: str, cards: Collection[str]) -> set[str]:
    """Those of ``cards`` this library ever issued a code to (the others are first-time
    patrons, for the first-time quota)."""
    found: set[str] = set()
    for chunk in in_chunks(cards):
        found.update(session.scalars(
            select(LedgerEntry.card_number).distinct()
            .where(LedgerEntry.library_id == library_id, LedgerEntry.card_number.in_(chunk))))
    return found


class Codes(Protocol):
    """Where the code is taken from: the pool's next free code, or None."""

    def take(self, service: str, month: str) -> FreeCode | None: ...


class Book(Protocol):
    """Where issuing is written: ``code`` marked issued, ``entry`` (a ledger row's values)
    appended."""

    def issued(self, code: FreeCode, entry: dict[str, Any]) -> None: ...


def issue_code(codes: Codes, book: Book, *, library_id: str, service: str, month: str,
               card: str, email: str | None, request_id: int | None, now: Any,
               channel: Channel) -> FreeCode | None:
    """Takes the pool's next free code for ``card`` and writes it issued (to the request
    ``request_id``, if any) with its ledger entry; None: the pool has none left.

    The ledger keeps the address in lower case (None without one)."""
    code = codes.take(service, month)
    if code is None:
        return None
    book.issued(code, {"code_id": code.id, "library_id": library_id, "service": code.service,
                       "month": month, "card_number": card,
                       "email": (email or "").lower() or None, "request_id": request_id,
                       "issued_at": now, "channel": channel})
    return code


class InSession:
    """A library's pool and the ledger in one transaction, through the ORM (the desk, a
    staff override: one code at a time)."""

    def __init__(self, session: Session, library_id: str) -> None:
        self.session = session
        self.library_id = library_id

    def take(self, service: str, month: str) -> Code | None:
        found = free_codes(self.session, library_id=self.library_id, service=service,
                           month=month, limit=1)
        return found[0] if found else None

    def issued(self, code: FreeCode, entry: dict[str, Any]) -> None:
        assert isinstance(code, Code)
        code.issued_at = entry["issued_at"]
        if entry["request_id"] is not None:
            code.request_id = entry["request_id"]
        self.session.add(LedgerEntry(**entry))

    def issue(self, *, service: str, month: str, card: str, email: str | None,
              request_id: int | None, now: Any, channel: Channel) -> Code | None:
        """issue_code from this library's pool into this session; None: none left."""
        code = issue_code(self, self, library_id=self.library_id, service=service,
                          month=month, card=card, email=email, request_id=request_id,
                          now=now, channel=channel)
        assert code is None or isinstance(code, Code)
        return code
