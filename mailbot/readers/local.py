"""The `local` reader source: the table filled by ``mailbot import-readers``."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailbot.db.batches import in_chunks
from mailbot.db.models import Reader
from mailbot.rules.base import ReaderFacts


def reader_facts(row: Reader) -> ReaderFacts:
    return ReaderFacts(
        card_number=row.card_number,
        first_name=row.first_name,
        last_name=row.last_name,
        email=row.email,
        valid_until=row.valid_until,
        balance_due=row.balance_due,
        overdue_items=row.overdue_items,
        data_updated_on=row.data_updated_on,
        last_loan_on=row.last_loan_on,
        birth_date=row.birth_date,
        confirmed=row.confirmed,
    )


class LocalReaders:
    name = "local"

    def lookup(self, session: Session, *, library_id: str, card: str) -> ReaderFacts | None:
        row = session.scalar(
            select(Reader).where(Reader.library_id == library_id, Reader.card_number == card)
        )
        return None if row is None else reader_facts(row)

    def lookup_many(self, session: Session, *, library_id: str,
                    cards: Collection[str]) -> dict[str, ReaderFacts]:
        """The readers of many cards, a few hundred per query (a batch of decisions)."""
        found: dict[str, ReaderFacts] = {}
        for chunk in in_chunks(cards):
            for row in session.scalars(select(Reader).where(
                    Reader.library_id == library_id, Reader.card_number.in_(chunk))):
                found[row.card_number] = reader_facts(row)
        return found
