"""The requests list: the e-mail requests and the codes issued at the walk-in desk, in one
list newest first, narrowed by the same filters (a month, a service, a card, the search
box ...) and scoped to the libraries the logged-in user may see.

A desk code has no request, only its ledger entry: the two kinds are queried apart, under
one set of filters (``_filtered``) so the halves never disagree, and joined by a UNION.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, func, literal, or_, select, union_all
from sqlalchemy.orm import Session

from mailbot.clock import month_end, month_start, parse_month
from mailbot.config import Settings
from mailbot.db.models import AuditLog, LedgerEntry, Reader, Request
from mailbot.outcomes import RequestState
from mailbot.web.search import contains, prepare, starts_with


@dataclass
class RequestFilter:
    month: str = ""
    service: str = ""
    outcome: str = ""
    mailbox: str = ""  # mailbox id
    library: str = ""
    card: str = ""  # the start of a card number
    address: str = ""  # part of the sender's address
    q: str = ""  # the search box: the start of a card number, a name or part of an address
    channel: str = ""  # "email", "desk" (codes issued at the desk), "" both
    page: int = 1


CHANNELS = ("email", "desk")


@dataclass(frozen=True)
class DeskRow:
    """A code issued at the walk-in desk: no mail, no request, only its ledger entry (and
    the audit entry, if staff issued it over a refusal)."""

    code_id: int
    library_id: str
    service: str
    month: str
    card_number: str
    email: str | None
    issued_at: datetime
    patron: str | None  # the name on file
    anyway: str | None = None  # the refusal overruled ("issue anyway"), if it was


@dataclass(frozen=True)
class ListRow:
    """One row of the requests list: an e-mail request, or a code issued at the desk."""

    at: datetime
    request: Request | None = None
    desk: DeskRow | None = None


def _names_match(library_id: Any, card_number: Any, text: str) -> Any:
    """SQL: the reader of this card in this library has ``text`` in their name."""
    return exists().where(
        Reader.library_id == library_id, Reader.card_number == card_number,
        or_(contains(Reader.first_name + " " + Reader.last_name, text),
            contains(Reader.last_name + " " + Reader.first_name, text)))


@dataclass(frozen=True)
class _Columns:
    """Where one kind of row of the list keeps what the filters compare: an e-mail
    request's columns, or a desk code's ledger entry's. ``named``: more columns the search
    box looks into (the name a mail was signed with)."""

    library_id: Any
    service: Any
    card_number: Any
    address: Any
    named: tuple[Any, ...] = ()


_REQUEST_COLUMNS = _Columns(Request.library_id, Request.service, Request.card_number,
                            Request.from_address, named=(Request.patron_name,))
_DESK_COLUMNS = _Columns(LedgerEntry.library_id, LedgerEntry.service,
                         LedgerEntry.card_number, LedgerEntry.email)


def _filtered(stmt: Any, cols: _Columns, libraries: list[str], f: RequestFilter,
              in_month: Callable[[str], Any]) -> Any:
    """``stmt`` narrowed by the filters both kinds of row share, so the two halves of the
    list can never disagree on them: the user's libraries, the library, the month
    (``in_month``: each kind says what being in it means), the service, the card, the
    address and the search box."""
    stmt = stmt.where(cols.library_id.in_(libraries))
    if f.library:
        stmt = stmt.where(cols.library_id == f.library)
    if f.month:
        stmt = stmt.where(in_month(f.month))
    if f.service:
        stmt = stmt.where(cols.service == f.service)
    if f.card.strip():
        stmt = stmt.where(starts_with(cols.card_number, f.card.strip()))
    if f.address.strip():
        stmt = stmt.where(contains(cols.address, f.address.strip()))
    if f.q.strip():
        q = f.q.strip()
        stmt = stmt.where(or_(starts_with(cols.card_number, q),
                              contains(cols.address, q),
                              *(contains(column, q) for column in cols.named),
                              _names_match(cols.library_id, cols.card_number, q)))
    return stmt


def _email_rows(settings: Settings, libraries: list[str], f: RequestFilter) -> Any:
    def received_in(month: str) -> Any:
        tz = ZoneInfo(settings.timezone)
        y, m = parse_month(month)
        return and_(Request.received_at >= month_start(y, m, tz),
                    Request.received_at < month_end(y, m, tz))

    stmt = _filtered(select(literal("request").label("kind"), Request.id.label("id"),
                            Request.received_at.label("at")),
                     _REQUEST_COLUMNS, libraries, f, received_in)
    if f.outcome:
        if f.outcome == "waiting":
            stmt = stmt.where(Request.state == RequestState.NEW)
        elif f.outcome == "set_aside":
            stmt = stmt.where(Request.state == RequestState.ERROR)
        else:
            stmt = stmt.where(Request.outcome == f.outcome)
    if f.mailbox:
        stmt = stmt.where(Request.mailbox_id == int(f.mailbox))
    return stmt


def _desk_rows(libraries: list[str], f: RequestFilter) -> Any | None:
    """The desk's codes under the same filters; None: the filters leave none (a mailbox,
    an outcome other than a code issued, a request's state)."""
    if f.mailbox or (f.outcome and f.outcome != "issued"):
        return None
    return _filtered(select(literal("desk").label("kind"), LedgerEntry.code_id.label("id"),
                            LedgerEntry.issued_at.label("at"))
                     .where(LedgerEntry.channel == "desk"),
                     _DESK_COLUMNS, libraries, f, lambda month: LedgerEntry.month == month)


def request_list(session: Session, settings: Settings, libraries: list[str],
                 f: RequestFilter, *, per_page: int = 50) -> tuple[list[ListRow], int]:
    """The requests and the desk's codes matching ``f``, newest first, one page of them,
    and how many match in all."""
    parts = []
    if f.channel != "desk":
        parts.append(_email_rows(settings, libraries, f))
    desk = _desk_rows(libraries, f) if f.channel != "email" else None
    if desk is not None:
        parts.append(desk)
    if not parts:
        return [], 0
    prepare(session)
    both = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery()
    total = session.scalar(select(func.count()).select_from(both)) or 0
    found = session.execute(select(both.c.kind, both.c.id)
                            .order_by(both.c.at.desc(), both.c.kind, both.c.id.desc())
                            .limit(per_page).offset((max(1, f.page) - 1) * per_page)).all()
    request_ids = [i for kind, i in found if kind == "request"]
    requests = {r.id: r for r in session.scalars(
        select(Request).where(Request.id.in_(request_ids)))} if request_ids else {}
    desks = _desk_details(session, [i for kind, i in found if kind == "desk"])
    rows = []
    for kind, i in found:
        if kind == "request":
            rows.append(ListRow(requests[i].received_at, request=requests[i]))
        else:
            rows.append(ListRow(desks[i].issued_at, desk=desks[i]))
    return rows, total


def _desk_details(session: Session, code_ids: list[int]) -> dict[int, DeskRow]:
    if not code_ids:
        return {}
    anyway = {code_id: (args or {}).get("outcome") for code_id, args in session.execute(
        select(AuditLog.code_id, AuditLog.args).where(AuditLog.code_id.in_(code_ids),
                                                      AuditLog.action == "desk_override"))}
    out = {}
    for entry, first, last in session.execute(
            select(LedgerEntry, Reader.first_name, Reader.last_name)
            .outerjoin(Reader, and_(Reader.library_id == LedgerEntry.library_id,
                                    Reader.card_number == LedgerEntry.card_number))
            .where(LedgerEntry.code_id.in_(code_ids))):
        out[entry.code_id] = DeskRow(
            entry.code_id, entry.library_id, entry.service, entry.month, entry.card_number,
            entry.email, entry.issued_at,
            f"{first or ''} {last or ''}".strip() or None, anyway.get(entry.code_id))
    return out
