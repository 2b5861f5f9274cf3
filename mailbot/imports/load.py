"""Imports into the database, all or nothing.

Parsing (``tables``, ``readers``, ``codes``) is pure and raises ``BadInput`` naming file, row
and column; here the parsed rows are checked against what the database already holds and
written in one transaction, so a bad or conflicting file changes nothing.

Staff of one library must learn nothing of another's pools from an error: a code another
library holds is only said to be in the system already.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mailbot.clock import month_end, parse_month
from mailbot.config import ImportSettings, Settings
from mailbot.db.models import ActivationReport, Code, CodePool, Reader
from mailbot.db.session import reading
from mailbot.imports.activations import parse_activations
from mailbot.imports.codes import CodeRow, code_column_label, parse_codes, read_codes
from mailbot.imports.mixups import Mixup, card_like_values, reader_headers
from mailbot.imports.problems import MAX_LISTED_PROBLEMS, ImportRefused, Problem
from mailbot.imports.readers import parse_readers
from mailbot.imports.tables import Table, read_table
from mailbot.respond.i18n import service_name
from mailbot.services import SHIPPED_CATALOGUE, Catalogue


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


def _transaction(sessions: sessionmaker[Session], session: Session | None,
                 dry_run: bool = False) -> AbstractContextManager[Session]:
    """Where an import works: a read-only session for a dry run, the caller's transaction
    if it passes one (the dashboard writes its audit entry in it, and imports readers and
    removes the missing ones at once), else a transaction of its own."""
    if dry_run:
        return reading(sessions)
    return nullcontext(session) if session is not None else sessions.begin()


_READER_FIELDS = ("first_name", "last_name", "email", "valid_until", "balance_due",
                  "overdue_items", "data_updated_on", "last_loan_on", "birth_date",
                  "confirmed")


def import_readers(sessions: sessionmaker[Session], settings: Settings, *, path: str,
                   library_id: str, now: datetime, dry_run: bool = False,
                   session: Session | None = None) -> ReaderImport:
    """Adds and updates the library's readers from the file; ``dry_run`` (the dashboard's
    preview) counts what it would do and writes nothing. ``session``: the caller's
    transaction to write in (else one of its own)."""
    library = settings.library(library_id)
    required = ("confirmed",) if library.require_confirmed_account else ()
    rows = parse_readers(_read(path, settings.imports), required=required)
    created = updated = unchanged = 0
    with _transaction(sessions, session, dry_run) as session:
        existing = {r.card_number: r for r in session.scalars(
            select(Reader).where(Reader.library_id == library_id))}
        for row in rows:
            values = {f: getattr(row, f) for f in _READER_FIELDS}
            values["first_name"] = values["first_name"] or ""
            reader = existing.get(row.card_number)
            if reader is None:
                if not dry_run:
                    session.add(Reader(library_id=library_id, card_number=row.card_number,
                                       updated_at=now, **values))
                created += 1
            elif any(getattr(reader, f) != v for f, v in values.items()):
                if not dry_run:
                    for f, v in values.items():
                        setattr(reader, f, v)
                    reader.updated_at = now
                updated += 1
            else:
                unchanged += 1
    return ReaderImport(created, updated, unchanged)


@dataclass(frozen=True)
class CodePlan:
    """What a codes file would add (``rows``) and which of its rows would be refused, and
    why (``refused``, the first ``MAX_LISTED_PROBLEMS`` by row; ``refused_count``, all):
    the dashboard's preview, and its confirmation re-made against the database."""

    file: str
    library_id: str
    service: str
    month: str
    rows: tuple[CodeRow, ...]
    refused: tuple[Problem, ...]
    refused_count: int


def _check_pool_options(settings: Settings, *, library_id: str, service: str, month: str,
                        now: datetime) -> None:
    settings.library(library_id)
    known = settings.catalogue.ids
    if service not in known:
        raise ImportRefused.one("unknown_service",
                                f"unknown service {service!r} (use {' or '.join(known)})",
                                column="--service", value=service)
    try:
        y, m = parse_month(month)
    except ValueError:
        raise ImportRefused.one("bad_month", f"month must be YYYY-MM, not {month!r}",
                                column="--month", value=month) from None
    if month_end(y, m, settings.library_tz(library_id)) <= now:
        raise ImportRefused.one("month_over",
                                f"{month} is over: its codes could never be issued",
                                column="--month", month=month)


def _refuse_mixup(sign: Mixup, table: Table) -> ImportRefused:
    return ImportRefused.one(sign.key, f"{sign}; nothing imported", file=table.file,
                             row=table.header_row, **sign.args)


def _clashes(session: Session, rows: list[CodeRow]) -> dict[str, tuple[str, str, str]]:
    """The codes of ``rows`` already in the database (any library), casefolded, with the
    library, service and month holding each."""
    # Case-insensitively, as within one file: "abc" and "ABC" are one code twice.
    values = [r.code.casefold() for r in rows]
    clashes: dict[str, tuple[str, str, str]] = {}
    for start in range(0, len(values), 500):
        for code, lib, svc, mon in session.execute(
            select(Code.code, Code.library_id, Code.service, Code.month)
            .where(func.lower(Code.code).in_(values[start:start + 500]))
        ):
            clashes[code.casefold()] = (lib, svc, mon)
    return clashes


def _clash_problem(clash: tuple[str, str, str], *, library_id: str, row: int,
                   column: str, more: str = "",
                   catalogue: Catalogue = SHIPPED_CATALOGUE) -> Problem:
    lib, svc, mon = clash
    # Which library, pool or month holds another library's code is theirs to know.
    if lib == library_id:
        return Problem(f"code already imported in this library's pool {svc}, {mon}{more}; "
                       "nothing imported", row, column, "code_imported_here",
                       {"service": service_name(svc, catalogue), "month": mon})
    return Problem(f"code already imported in the system, in another library's pool{more}; "
                   "nothing imported", row, column, "code_imported_elsewhere", {})


def _add_pool(session: Session, *, library_id: str, service: str, month: str, name: str,
              rows: list[CodeRow] | tuple[CodeRow, ...], now: datetime) -> CodeImport:
    pool = CodePool(library_id=library_id, service=service, month=month,
                    source_file=name, imported_at=now, size=len(rows))
    session.add(pool)
    session.flush()
    session.add_all(Code(code=r.code, pool_id=pool.id, library_id=library_id,
                         service=service, month=month) for r in rows)
    return CodeImport(pool.id, len(rows))


def import_codes(sessions: sessionmaker[Session], settings: Settings, *, path: str,
                 library_id: str, service: str, month: str, column: str | None,
                 now: datetime) -> CodeImport:
    """The command line's import: all or nothing, any doubtful row refuses the file."""
    _check_pool_options(settings, library_id=library_id, service=service, month=month,
                        now=now)
    table = _read(path, settings.imports)
    sign = reader_headers(table)
    if sign is None:
        rows = parse_codes(table, column=column)  # never empty: an empty file is BadInput
        sign = card_like_values(table, rows, column=column,
                                card_pattern=settings.library(library_id).card_pattern)
    if sign is not None:
        raise _refuse_mixup(sign, table)
    with sessions.begin() as session:
        clashes = _clashes(session, rows)
        if clashes:
            first = next(r for r in rows if r.code.casefold() in clashes)
            more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
            problem = _clash_problem(clashes[first.code.casefold()], library_id=library_id,
                                     row=first.row, column=column or "code", more=more,
                                     catalogue=settings.catalogue)
            raise ImportRefused(problem.message, problems=[problem], count=len(clashes),
                                file=table.file, row=first.row, column=column or "code")
        return _add_pool(session, library_id=library_id, service=service, month=month,
                         name=Path(path).name, rows=rows, now=now)


def _plan_codes(session: Session, settings: Settings, *, path: str, library_id: str,
                service: str, month: str, column: str | None, now: datetime) -> CodePlan:
    _check_pool_options(settings, library_id=library_id, service=service, month=month,
                        now=now)
    table = _read(path, settings.imports)
    sign = reader_headers(table)
    if sign is not None:
        raise _refuse_mixup(sign, table)
    rows, problems = read_codes(table, column=column)
    sign = card_like_values(table, rows, column=column,
                            card_pattern=settings.library(library_id).card_pattern)
    if sign is not None:
        raise _refuse_mixup(sign, table)
    clashes = _clashes(session, rows)
    label = code_column_label(table, column)
    refused = list(problems.found) + [
        _clash_problem(clashes[r.code.casefold()], library_id=library_id, row=r.row,
                       column=label, catalogue=settings.catalogue)
        for r in rows if r.code.casefold() in clashes]
    refused.sort(key=lambda p: p.row or 0)
    kept = tuple(r for r in rows if r.code.casefold() not in clashes)
    return CodePlan(table.file, library_id, service, month, kept,
                    tuple(refused[:MAX_LISTED_PROBLEMS]), problems.count + len(rows) - len(kept))


def preview_codes(sessions: sessionmaker[Session], settings: Settings, *, path: str,
                  library_id: str, service: str, month: str, column: str | None,
                  now: datetime) -> CodePlan:
    """What ``confirm_codes`` would do now, writing nothing: the rows to add and the rows
    refused (empty, not a code, twice in the file, already imported). A file that cannot
    be a pool at all (no code column, a reader file, a month over) is BadInput."""
    with reading(sessions) as session:
        return _plan_codes(session, settings, path=path, library_id=library_id,
                           service=service, month=month, column=column, now=now)


def confirm_codes(sessions: sessionmaker[Session], settings: Settings, *, path: str,
                  library_id: str, service: str, month: str, column: str | None,
                  now: datetime, session: Session | None = None) -> tuple[CodeImport, CodePlan]:
    """The previewed import, done: the file read and checked again in the transaction
    that writes (``session``, the caller's, or one of its own), so a code imported since
    the preview is refused, not added twice; the refused rows are left out. BadInput when
    no row is left to add."""
    with _transaction(sessions, session) as session:
        plan = _plan_codes(session, settings, path=path, library_id=library_id,
                           service=service, month=month, column=column, now=now)
        if not plan.rows:
            raise ImportRefused.one("nothing_to_add", "no code in this file can be added; "
                                    "nothing imported", file=plan.file)
        done = _add_pool(session, library_id=library_id, service=service, month=month,
                         name=plan.file, rows=plan.rows, now=now)
    return done, plan


def import_activations(sessions: sessionmaker[Session], settings: Settings, *, path: str,
                       library_id: str, column: str | None, now: datetime,
                       dry_run: bool = False,
                       session: Session | None = None) -> ActivationImport:
    """Marks codes activated; each month the report covers counts for penalties from now on.

    Codes mailbot never imported (e.g. handed out before it was installed) are counted and
    skipped; a code of another library, or a file with no known code at all, is refused.
    ``dry_run`` (the dashboard's preview) counts and writes nothing; ``session``: the
    caller's transaction to write in (else one of its own).
    """
    settings.library(library_id)
    tz = settings.library_tz(library_id)
    table = _read(path, settings.imports)
    rows = parse_activations(table, column=column)
    activated = not_activated = unknown = 0
    with _transaction(sessions, session, dry_run) as session:
        values = [r.code.casefold() for r in rows]
        known: dict[str, Code] = {}
        for start in range(0, len(values), 500):
            for code in session.scalars(select(Code).where(
                    func.lower(Code.code).in_(values[start:start + 500]))):
                known[code.code.casefold()] = code
        for r in rows:
            code = known.get(r.code.casefold())
            if code is not None and code.library_id != library_id:
                raise ImportRefused.one(
                    "code_of_other_library", f"this code is not one of library {library_id}'s "
                    "codes (another library's); nothing imported", file=table.file, row=r.row,
                    column=column or "code")
        if not known:
            raise ImportRefused.one(
                "no_known_codes", f"none of the {len(rows)} codes is a code of library "
                f"{library_id}; is this the right file?", file=table.file, n=len(rows))
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
                if code.activated_at is None and not dry_run:
                    day = r.activated_on or now.astimezone(tz).date()
                    code.activated_at = datetime.combine(day, time(12, 0), tzinfo=tz)
            else:
                not_activated += 1
        if dry_run:
            return ActivationImport(activated, not_activated, unknown, tuple(sorted(months)))
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
                           library_id: str, limits: ImportSettings | None = None,
                           dry_run: bool = False, session: Session | None = None) -> int:
    """Deletes the library's readers that are not in the file (a full export); with
    ``dry_run`` only counts them. ``session``: the caller's transaction (else its own)."""
    cards = {r.card_number for r in parse_readers(_read(path, limits))}
    with _transaction(sessions, session, dry_run) as session:
        gone = [r for r in session.scalars(select(Reader).where(Reader.library_id == library_id))
                if r.card_number not in cards]
        for reader in gone if not dry_run else ():
            session.delete(reader)
    return len(gone)
