"""Imports into the database, all or nothing.

Parsing (``tables``, ``readers``, ``codes``) is pure and raises ``BadInput`` naming file, row
and column; here the parsed rows are checked against what the database already holds and
written in one transaction, so a bad or conflicting file changes nothing.

Staff of one library must learn nothing of another's pools from an error: a code another
library holds is only said to be in the system already.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mailbot.clock import month_end, parse_month
from mailbot.config import SERVICES, ImportSettings, Settings
from mailbot.db.models import ActivationReport, Code, CodePool, Reader
from mailbot.errors import BadInput
from mailbot.imports.activations import parse_activations
from mailbot.imports.codes import parse_codes
from mailbot.imports.mixups import card_like_values, reader_headers
from mailbot.imports.readers import parse_readers
from mailbot.imports.tables import Table, read_table


@dataclass(frozen=True)
class ReaderImport:
    created: int
    updated: int
    unchanged: int


@dataclass(frozen=True)
class ActivationImport:
    activated: int
    not_activated: int
    unknown: int
    months: tuple[str, ...]


@dataclass(frozen=True)
class CodeImport:
    pool_id: int
    added: int


def _read(path: str, limits: ImportSettings | None) -> Table:
    limits = limits or ImportSettings()
    return read_table(path, max_rows=limits.max_rows, max_bytes=limits.max_bytes)


_READER_FIELDS = ("first_name", "last_name", "email", "valid_until", "balance_due",
                  "overdue_items", "data_updated_on", "last_loan_on", "birth_date")


def import_readers(sessions: sessionmaker[Session], settings: Settings, *, path: str,
                   library_id: str, now: datetime) -> ReaderImport:
    settings.library(library_id)
    rows = parse_readers(_read(path, settings.imports))
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
    table = _read(path, settings.imports)
    sign = reader_headers(table)
    if sign is None:
        rows = parse_codes(table, column=column)  # never empty: an empty file is BadInput
        sign = card_like_values(table, rows, column=column,
                                card_pattern=settings.library(library_id).card_pattern)
    if sign is not None:
        raise BadInput(f"{sign}; nothing imported", file=table.file, row=table.header_row)
    with sessions.begin() as session:
        # Case-insensitively, as within one file: "abc" and "ABC" are one code twice.
        values = [r.code.casefold() for r in rows]
        clashes: dict[str, tuple[str, str, str]] = {}
        for start in range(0, len(values), 500):
            for code, lib, svc, mon in session.execute(
                select(Code.code, Code.library_id, Code.service, Code.month)
                .where(func.lower(Code.code).in_(values[start:start + 500]))
            ):
                clashes[code.casefold()] = (lib, svc, mon)
        if clashes:
            first = next(r for r in rows if r.code.casefold() in clashes)
            lib, svc, mon = clashes[first.code.casefold()]
            more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
            # Which library, pool or month holds another library's code is theirs to know.
            where = f"in this library's pool {svc}, {mon}" if lib == library_id else \
                "in the system, in another library's pool"
            raise BadInput(f"code already imported {where}{more}; nothing imported",
                           file=table.file, row=first.row, column=column or "code")
        pool = CodePool(library_id=library_id, service=service, month=month,
                        source_file=Path(path).name, imported_at=now, size=len(rows))
        session.add(pool)
        session.flush()
        session.add_all(Code(code=r.code, pool_id=pool.id, library_id=library_id,
                             service=service, month=month) for r in rows)
        return CodeImport(pool.id, len(rows))


def import_activations(sessions: sessionmaker[Session], settings: Settings, *, path: str,
                       library_id: str, column: str | None, now: datetime) -> ActivationImport:
    """Marks codes activated; each month the report covers counts for penalties from now on.

    Codes mailbot never imported (e.g. handed out before it was installed) are counted and
    skipped; a code of another library, or a file with no known code at all, is refused.
    """
    settings.library(library_id)
    tz = settings.library_tz(library_id)
    table = _read(path, settings.imports)
    rows = parse_activations(table, column=column)
    activated = not_activated = unknown = 0
    with sessions.begin() as session:
        values = [r.code.casefold() for r in rows]
        known: dict[str, Code] = {}
        for start in range(0, len(values), 500):
            for code in session.scalars(select(Code).where(
                    func.lower(Code.code).in_(values[start:start + 500]))):
                known[code.code.casefold()] = code
        for r in rows:
            code = known.get(r.code.casefold())
            if code is not None and code.library_id != library_id:
                raise BadInput(f"this code is not one of library {library_id}'s codes (another "
                               "library's); nothing imported", file=table.file, row=r.row,
                               column=column or "code")
        if not known:
            raise BadInput(f"none of the {len(rows)} codes is a code of library {library_id}; "
                           "is this the right file?", file=table.file)
        months: set[str] = set()
        for r in rows:
            code = known.get(r.code.casefold())
            if code is None:
                unknown += 1
                continue
            y, m = parse_month(code.month)
            # Only an ended month's report is final: a code may still be activated until
            # the month is over, so a mid-month report must not lead to a penalty.
            if month_end(y, m, tz) <= now:
                months.add(code.month)
            if r.activated:
                activated += 1
                if code.activated_at is None:
                    day = r.activated_on or now.astimezone(tz).date()
                    code.activated_at = datetime.combine(day, time(12, 0), tzinfo=tz)
            else:
                not_activated += 1
        existing = {a.month: a for a in session.scalars(select(ActivationReport).where(
            ActivationReport.library_id == library_id, ActivationReport.month.in_(months)))}
        for month in months:
            if month in existing:
                existing[month].imported_at = now
            else:
                session.add(ActivationReport(library_id=library_id, month=month,
                                             imported_at=now))
    return ActivationImport(activated, not_activated, unknown, tuple(sorted(months)))


def remove_missing_readers(sessions: sessionmaker[Session], *, path: str,
                           library_id: str, limits: ImportSettings | None = None) -> int:
    """Deletes the library's readers that are not in the file (a full export)."""
    cards = {r.card_number for r in parse_readers(_read(path, limits))}
    with sessions.begin() as session:
        gone = [r for r in session.scalars(select(Reader).where(Reader.library_id == library_id))
                if r.card_number not in cards]
        for reader in gone:
            session.delete(reader)
    return len(gone)
