"""What the ledger says of cards, as the once-a-month and penalty rules ask it: each card's
first code of a month, and its codes not activated in the months the penalty looks at
(mailbot.penalty). Asked for a whole decide batch of cards at once (mailbot.decide.batch,
which keeps the answers current as it issues codes) and for one card (the desk).
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailbot.config import LibrarySettings
from mailbot.db.batches import in_chunks
from mailbot.db.models import ActivationReport, Code, LedgerEntry
from mailbot.rules.base import IssuedThisMonth
from mailbot.services import SHIPPED_CATALOGUE, Catalogue


def penalty_months(library: LibrarySettings, month: str) -> tuple[str, ...]:
    """The months before ``month`` whose unactivated codes the penalty looks at (all of
    them, under a rule of several misses: mailbot.penalty)."""
    return library.penalty_rule.months_looked_at(month)


def issued_entries(session: Session, library_id: str, cards: Collection[str],
                   months: Collection[str], catalogue: Catalogue = SHIPPED_CATALOGUE
                   ) -> dict[tuple[str, str, str | None], IssuedThisMonth]:
    """Each card's first code of each month: keyed (card, month, None) for any service
    counted across platforms (``one_a_month`` in ``catalogue``) and (card, month, service)
    for that service."""
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
            remember_first(found, card, month, IssuedThisMonth(
                service=service, code=code, email=email, issued_at=issued_at), catalogue)
    return found


def remember_first(found: dict[tuple[str, str, str | None], IssuedThisMonth], card: str,
                    month: str, entry: IssuedThisMonth, catalogue: Catalogue) -> None:
    """Keeps the card's first code of the month, for its own service and, unless that one
    is counted only against itself (one_a_month = false), for all counted across."""
    if catalogue.counted_across(entry.service):
        found.setdefault((card, month, None), entry)
    found.setdefault((card, month, entry.service), entry)


def unactivated_entries(session: Session, library: LibrarySettings, cards: Collection[str],
                        months: Collection[str]) -> dict[tuple[str, str], tuple[str, ...]]:
    """(card, month) of codes not activated in a month whose activation report came in,
    with those codes' services (sorted)."""
    if not library.penalty_rule.on or not cards or not months:
        return {}
    found: dict[tuple[str, str], set[str]] = {}
    for chunk in in_chunks(cards):
        for card, month, service in session.execute(
                select(LedgerEntry.card_number, LedgerEntry.month, LedgerEntry.service)
                .join(Code, Code.id == LedgerEntry.code_id)
                .join(ActivationReport, (ActivationReport.library_id == LedgerEntry.library_id)
                      & (ActivationReport.month == LedgerEntry.month))
                .where(LedgerEntry.library_id == library.id,
                       LedgerEntry.card_number.in_(chunk), LedgerEntry.month.in_(list(months)),
                       Code.activated_at.is_(None))):
            found.setdefault((card, month), set()).add(service)
    return {key: tuple(sorted(services)) for key, services in found.items()}


def unactivated_of(unactivated: dict[tuple[str, str], tuple[str, ...]],
                   library: LibrarySettings, card: str, month: str
                   ) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """One card's months looked at with an unactivated code, and those codes' (month,
    service), oldest first: Facts.unactivated_months and Facts.unactivated_codes."""
    months = tuple(sorted(m for m in penalty_months(library, month)
                          if (card, m) in unactivated))
    return months, tuple((m, service) for m in months for service in unactivated[(card, m)])


def issued_this_month_of(session: Session, library_id: str, card: str, month: str, *,
                         service: str | None = None,
                         catalogue: Catalogue = SHIPPED_CATALOGUE) -> IssuedThisMonth | None:
    """One card's code of this month (the desk): of any service counted across, or of one
    service (Catalogue.counted_against says which)."""
    return issued_entries(session, library_id, [card], [month], catalogue).get(
        (card, month, service))


def unactivated_months_of(session: Session, library: LibrarySettings, card: str,
                          month: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """One card's penalty months with an unactivated code, and those codes' (month,
    service) (the desk): as unactivated_of."""
    found = unactivated_entries(session, library, [card], penalty_months(library, month))
    return unactivated_of(found, library, card, month)
