"""The monthly report (``mailbot report`` and the dashboard's download): per library,
branch mailbox and service — requests, codes issued, refusals by reason, codes activated,
codes expired and the median time from arrival to the reply being sent — as XLSX.

Branches are the library's mailboxes; codes handed out at the walk-in desk form their own
row. Pool figures (bought, expired, left) belong to the library and service, so they are
on the library's total row only.

Headers and refusal reasons are in the report's language (Polish by default, English
too: the message catalogue's ``xlsx_*`` and ``outcome_*`` entries); the first sheet is named
by the month and the refusals sheet keeps each reason's outcome id in its last column, for
tools that filter or pivot. The time it was generated is the library's wall clock, with its
zone named (staff never read UTC).
"""

from __future__ import annotations

import io
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from mailbot import translations
from mailbot.clock import as_aware, month_end, month_start, parse_month
from mailbot.config import Settings
from mailbot.db.models import Code, LedgerEntry, Mailbox, Outbox, Request
from mailbot.db.session import reading
from mailbot.errors import BadInput
from mailbot.outcomes import REFUSALS, OutboxState, Outcome
from mailbot.private_files import write_private
from mailbot.services import SHIPPED_CATALOGUE, Catalogue


DESK = "desk"
TOTAL = "total"



@dataclass
class ReportRow:
    library_id: str
    library_name: str
    branch: str  # a mailbox address, DESK, or TOTAL
    service: str
    requests: int = 0
    issued: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    activated: int = 0
    expired: int | None = None  # TOTAL rows only
    bought: int | None = None
    left: int | None = None
    reply_seconds: list[float] = field(default_factory=list, repr=False)

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())

    @property
    def median_reply(self) -> float | None:
        return round(statistics.median(self.reply_seconds), 1) if self.reply_seconds else None


def build_rows(session: Session, settings: Settings, *, month: str,
               libraries: list[str] | None, now: datetime) -> list[ReportRow]:
    try:
        y, m = parse_month(month)
    except ValueError:
        raise BadInput(f"month must be YYYY-MM, not {month!r}", column="--month") from None
    ids = [lib.id for lib in settings.libraries if libraries is None or lib.id in libraries]
    rows: list[ReportRow] = []
    for lib_id in ids:
        lib = settings.library(lib_id)
        tz = settings.library_tz(lib_id)
        start, end = month_start(y, m, tz), month_end(y, m, tz)
        addresses = {mb.id: mb.address for mb in session.scalars(
            select(Mailbox).where(Mailbox.library_id == lib_id).order_by(Mailbox.id))}
        table: dict[tuple[str, str], ReportRow] = {}
        shown = settings.listed_services(lib)

        def row(branch: str, service: str) -> ReportRow:
            key = (branch, service)
            if key not in table:
                table[key] = ReportRow(lib_id, lib.name, branch, service)
            return table[key]

        for service in shown:
            for address in addresses.values():
                row(address, service)
        reqs = session.scalars(select(Request).where(
            Request.library_id == lib_id, Request.kind == "request",
            Request.service.in_(shown),
            or_(Request.month == month,
                (Request.month.is_(None)) & (Request.received_at >= start)
                & (Request.received_at < end)))).all()
        branch_of_request = {}
        for req in reqs:
            branch = addresses.get(req.mailbox_id, "?")
            branch_of_request[req.id] = branch
            r = row(branch, req.service or "")
            r.requests += 1
            if req.outcome in REFUSALS:
                r.refused[req.outcome] = r.refused.get(req.outcome, 0) + 1
        sent = session.execute(
            select(Outbox.request_id, Outbox.sent_at, Request.received_at, Request.service,
                   Request.mailbox_id)
            .join(Request, Request.id == Outbox.request_id)
            .where(Outbox.library_id == lib_id, Outbox.kind == "reply",
                   Outbox.state == OutboxState.SENT, Request.id.in_([q.id for q in reqs]))).all()
        for _rid, sent_at, received_at, service, mailbox_id in sent:
            if sent_at is not None:
                row(addresses.get(mailbox_id, "?"), service).reply_seconds.append(
                    max(0.0, (sent_at - received_at).total_seconds()))
        ledger = session.execute(
            select(LedgerEntry, Code.activated_at, Request.mailbox_id)
            .join(Code, Code.id == LedgerEntry.code_id)
            .outerjoin(Request, Request.id == LedgerEntry.request_id)
            .where(LedgerEntry.library_id == lib_id, LedgerEntry.month == month)).all()
        for entry, activated_at, mailbox_id in ledger:
            branch = addresses.get(mailbox_id, "?") if mailbox_id is not None else DESK
            r = row(branch, entry.service)
            r.issued += 1
            if activated_at is not None:
                r.activated += 1
        ended = end <= now
        for service in shown:
            codes = session.execute(select(Code.issued_at, Code.expired_at).where(
                Code.library_id == lib_id, Code.service == service, Code.month == month)).all()
            total = ReportRow(lib_id, lib.name, TOTAL, service)
            for r in table.values():
                if r.service != service:
                    continue
                total.requests += r.requests
                total.issued += r.issued
                total.activated += r.activated
                total.reply_seconds.extend(r.reply_seconds)
                for k, v in r.refused.items():
                    total.refused[k] = total.refused.get(k, 0) + v
            total.bought = len(codes)
            unissued = sum(1 for issued, _ in codes if issued is None)
            total.expired = unissued if ended else sum(1 for _, e in codes if e is not None)
            total.left = 0 if ended else unissued - total.expired
            branch_rows = sorted((r for r in table.values() if r.service == service),
                                 key=lambda r: (r.branch == DESK, r.branch))
            rows.extend(r for r in branch_rows if r.branch != DESK or r.issued)
            rows.append(total)
    return rows


def report_zone(settings: Settings, libraries: list[str] | None) -> ZoneInfo:
    """The zone a report's times are given in: its libraries' (the installation's when
    they differ)."""
    ids = [lib.id for lib in settings.libraries if libraries is None or lib.id in libraries]
    zones = {settings.library_tz(i).key for i in ids}
    return ZoneInfo(zones.pop()) if len(zones) == 1 else ZoneInfo(settings.timezone)


def generated_at(now: datetime, zone: ZoneInfo) -> str:
    """"2026-12-02 10:15 CET (Europe/Warsaw)": the wall clock, its zone abbreviated and
    named."""
    return f"{as_aware(now).astimezone(zone):%Y-%m-%d %H:%M %Z} ({zone.key})"


class _Labels:
    """The report's words: the catalogue's ``xlsx_<name>`` (mailbot/locale)."""

    def __init__(self, lang: str) -> None:
        self.lang = lang

    def __getitem__(self, name: str) -> str:
        return translations.text(self.lang, f"xlsx_{name}")

    def branch(self, branch: str) -> str:
        return self[branch] if branch in (DESK, TOTAL) else branch


def build_workbook(rows: list[ReportRow], *, month: str, lang: str = "pl",
                   now: datetime | None = None, zone: ZoneInfo | None = None,
                   catalogue: Catalogue = SHIPPED_CATALOGUE) -> Workbook:
    """The report's workbook; a service named as ``catalogue`` (the config's) names it."""
    t = _Labels(lang)
    refusals = [o for o in REFUSALS if any(r.refused.get(o) for r in rows)]
    wb = Workbook()
    ws = wb.active
    ws.title = month
    ws.append([t["title"].format(month=month)])
    ws["A1"].font = Font(bold=True, size=14)
    if now is not None:
        ws.append([t["generated"].format(at=generated_at(now, zone or ZoneInfo("UTC")))])
    else:
        ws.append([])
    header = [t["library"], t["branch"], t["service"], t["requests"], t["issued"],
              t["refused"], *(Outcome(o).label(lang) for o in refusals), t["activated"],
              t["expired"], t["bought"], t["left"],
              t["median"]]
    ws.append(header)
    head_row = ws.max_row
    for cell in ws[head_row]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
        cell.fill = PatternFill("solid", fgColor="DDE7F0")
    for r in rows:
        branch = t.branch(r.branch)
        ws.append([r.library_id, branch, catalogue.name(r.service) or r.service, r.requests,
                   r.issued, r.refused_total, *(r.refused.get(o, 0) for o in refusals),
                   r.activated, r.expired, r.bought, r.left, r.median_reply])
        if r.branch == TOTAL:
            for cell in ws[ws.max_row]:
                cell.font = Font(bold=True)
    for i, title in enumerate(header, start=1):
        ws.column_dimensions[get_column_letter(i)].width = max(10, min(28, len(title) + 2))
    ws.freeze_panes = ws.cell(row=head_row + 1, column=4)
    # The refusals again, one line each: easy to filter or pivot.
    ws2 = wb.create_sheet(t["refusals_sheet"])
    ws2.append([t["library"], t["branch"], t["service"], t["outcome"], t["count"],
                t["outcome_id"]])
    for cell in ws2[1]:
        cell.font = Font(bold=True)
    for r in rows:
        if r.branch == TOTAL:
            continue
        for outcome in REFUSALS:
            if r.refused.get(outcome):
                branch = t.branch(r.branch)
                ws2.append([r.library_id, branch, catalogue.name(r.service) or r.service,
                            Outcome(outcome).label(lang), r.refused[outcome], outcome])
    for col, width in zip("ABCDEF", (16, 34, 12, 30, 10, 20), strict=True):
        ws2.column_dimensions[col].width = width
    return wb


def report_bytes(sessions: sessionmaker[Session], settings: Settings, *, month: str,
                 libraries: list[str] | None, now: datetime, lang: str = "pl"
                 ) -> tuple[bytes, int]:
    """The XLSX file's bytes and its number of data rows."""
    with reading(sessions) as session:
        rows = build_rows(session, settings, month=month, libraries=libraries, now=now)
    buf = io.BytesIO()
    build_workbook(rows, month=month, lang=lang, now=now,
                   zone=report_zone(settings, libraries), catalogue=settings.catalogue).save(buf)
    return buf.getvalue(), len(rows)


def write_report(sessions: sessionmaker[Session], settings: Settings, *, month: str,
                 path: str | Path, libraries: list[str] | None, now: datetime,
                 lang: str = "pl") -> int:
    """Writes the XLSX (atomically); returns the number of data rows."""
    data, count = report_bytes(sessions, settings, month=month, libraries=libraries,
                               now=now, lang=lang)
    write_private(path, data)
    return count
