"""Imports into the database, all or nothing.

Parsing (``tables``, ``readers``, ``codes``) is pure and raises ``BadInput`` naming file, row
and column; here the parsed rows are checked against what the database already holds and
written in one transaction, so a bad or conflicting file changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailbot.clock import month_end, parse_month
from mailbot.config import SERVICES, Settings
from mailbot.db.models import Code, CodePool, Reader
from mailbot.errors import BadInput
from mailbot.imports.codes import parse_codes
from mailbot.imports.readers import parse_readers
from mailbot.imports.tables import read_table


@dataclass(frozen=True)
class ReaderImport:
    created: int
    updated: int
    unchanged: int


@dataclass(frozen=True)
class CodeImport:
    pool_id: int
    added: int


_READER_FIELDS = ("first_name", "last_name", "email", "valid_until", "balance_due",
                  "overdue_items", "data_updated_on", "last_loan_on")


def import_readers(sessions: sessionmaker[Session], settings: Settings, *, path: str,
                   library_id: str, now: datetime) -> ReaderImport:
    settings.library(library_id)
    rows = parse_readers(read_table(path))
    created = updated = unchanged = 0
    with sessions.begin() as session:
        existing = {r.card_number: r for r in session.scalars(
            select(Reader).where(Reader.library_id == library_id))}
        for row in rows:
            values = {f: getattr(row, f) for f in _READER_FIELDS}
            values["first_name"] = values["first_name"] or ""
            reader = existing.get(row.card_number)
            if reader is None:
                session.add(Reader(library_id=library_id, card_number=row.card_number,
                                   updated_at=now, **values))
                created += 1
            elif any(getattr(reader, f) != v for f, v in values.items()):
                for f, v in values.items():
                    setattr(reader, f, v)
                reader.updated_at = now
                updated += 1
            else:
                unchanged += 1
    return ReaderImport(created, updated, unchanged)


def import_codes(sessions: sessionmaker[Session], settings: Settings, *, path: str,
                 library_id: str, service: str, month: str, column: str | None,
                 now: datetime) -> CodeImport:
    settings.library(library_id)
    if service not in SERVICES:
        raise BadInput(f"unknown service {service!r} (use {' or '.join(SERVICES)})",
                       column="--service")
    try:
        y, m = parse_month(month)
    except ValueError:
        raise BadInput(f"month must be YYYY-MM, not {month!r}", column="--month") from None
    if month_end(y, m, settings.library_tz(library_id)) <= now:
        raise BadInput(f"{month} is over: its codes could never be issued", column="--month")
    table = read_table(path)
    rows = parse_codes(table, column=column)  # never empty: an empty file is BadInput
    with sessions.begin() as session:
        values = [r.code for r in rows]
        clashes: dict[str, tuple[str, str, str]] = {}
        for start in range(0, len(values), 500):
            for code, lib, svc, mon in session.execute(
                select(Code.code, Code.library_id, Code.service, Code.month)
                .where(Code.code.in_(values[start:start + 500]))
            ):
                clashes[code] = (lib, svc, mon)
        if clashes:
            first = next(r for r in rows if r.code in clashes)
            lib, svc, mon = clashes[first.code]
            more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
            raise BadInput(f"code already imported in the pool of library {lib}, {svc}, "
                           f"{mon}{more}; nothing imported", file=table.file, row=first.row,
                           column=column or "code")
        pool = CodePool(library_id=library_id, service=service, month=month,
                        source_file=Path(path).name, imported_at=now, size=len(rows))
        session.add(pool)
        session.flush()
        session.add_all(Code(code=r.code, pool_id=pool.id, library_id=library_id,
                             service=service, month=month) for r in rows)
        return CodeImport(pool.id, len(rows))
