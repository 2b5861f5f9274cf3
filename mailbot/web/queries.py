"""What the dashboard's pages read: plain values out of the database, scoped to the
libraries the logged-in user may see. No page ever queries without a scope.

The requests list (e-mail requests and the desk's codes, under one set of filters) is
requests_list.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session

from mailbot.clock import month_end, month_key, month_of, parse_month
from mailbot.config import Settings
from mailbot.db.models import (
    AuditLog,
    Code,
    CodePool,
    Library,
    Mailbox,
    Outbox,
    Request,
)
from mailbot import quotas
from mailbot.decide.horizon import MailboxHealth, mailbox_health
from mailbot.intake.parse import parse_mail
from mailbot.ledger import pool_use
from mailbot.outcomes import SETTLED, Outcome, OutboxState, RequestState
from mailbot.respond.relays import RelayQueue
from mailbot.respond.staff_alert import alert_message_id
from mailbot.rules.window import window_opens


def handled_clause() -> Any:
    """SQL: the request was marked handled by staff (its latest word in the audit log)."""
    return exists().where(AuditLog.request_id == Request.id, AuditLog.action == "handled")


# -- queue ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolQuota:
    """One pool's quotas on the queue page: what is left of each part (once released,
    every free code is general) and when the kept parts are released (None: never)."""

    service: str
    left: quotas.Parts
    released: bool


@dataclass
class LibraryQueue:
    id: str
    name: str
    month: str
    tz: str = "UTC"  # the library's time zone: its times are shown in it
    waiting: int = 0
    decided_24h: int = 0
    held: int = 0  # replies waiting for the send window
    sending: int = 0  # due now, not yet accepted (retrying after a temporary failure)
    failed: int = 0
    set_aside: int = 0
    codes_left: dict[str, int] = field(default_factory=dict)
    # Where the library keeps quotas (mailbot.quotas): each pool's parts, and when they go
    # to everybody.
    quotas: list[PoolQuota] = field(default_factory=list)
    # Services offered with no code imported for the month although its window is open
    # (pool_not_ready), each with the requests already answered so: the queue's banner.
    not_ready: list[tuple[str, int]] = field(default_factory=list)
    # Of those, the services whose e-mail to staff failed (mailbot.respond.staff_alert).
    alert_failed: list[str] = field(default_factory=list)
    source_name: str = "local"
    source_error: str | None = None
    source_down_since: datetime | None = None
    mailboxes: list[MailboxHealth] = field(default_factory=list)
    relays: list[RelayQueue] = field(default_factory=list)  # its mailboxes' relays
    waiting_rows: list[Request] = field(default_factory=list)
    decided_rows: list[Request] = field(default_factory=list)
    held_rows: list[Outbox] = field(default_factory=list)
    sending_rows: list[Outbox] = field(default_factory=list)
    failed_rows: list[Outbox] = field(default_factory=list)
    set_aside_rows: list[Request] = field(default_factory=list)


def queue_snapshot(session: Session, settings: Settings, libraries: list[str],
                   now: datetime, *, rows: int = 8,
                   relays: Sequence[RelayQueue] = ()) -> list[LibraryQueue]:
    """Each library's queue; ``relays`` (respond.relays.queue_by_relay) are shown with
    the libraries whose mailboxes send through them."""
    out = []
    by_key = {r.key: r for r in relays}
    for lib_id in libraries:
        lib = settings.library(lib_id)
        tz = settings.library_tz(lib_id)
        month = month_key(*month_of(now, tz))
        q = LibraryQueue(id=lib_id, name=lib.name, month=month, tz=tz.key,
                         source_name=lib.reader_source)
        used = list(dict.fromkeys(settings.relay_of(m).key
                                  for m in settings.mailboxes_of(lib_id))) \
            or [settings.smtp.key]
        q.relays = [by_key[k] for k in used if k in by_key]
        row = session.get(Library, lib_id)
        if row is not None:
            q.source_error, q.source_down_since = row.source_error, row.source_down_since
        waiting = select(Request).where(Request.library_id == lib_id,
                                        Request.state == RequestState.NEW)
        q.waiting = _count(session, waiting)
        q.waiting_rows = list(session.scalars(
            waiting.order_by(Request.received_at, Request.uid).limit(rows)))
        decided = select(Request).where(Request.library_id == lib_id,
                                        Request.decided_at >= now - timedelta(hours=24),
                                        Request.state.in_(SETTLED))
        q.decided_24h = _count(session, decided)
        q.decided_rows = list(session.scalars(
            decided.order_by(Request.decided_at.desc(), Request.id.desc()).limit(rows)))
        pending = select(Outbox).where(Outbox.library_id == lib_id,
                                       Outbox.state == OutboxState.PENDING)
        held = pending.where(Outbox.due_at > now)
        q.held = _count(session, held)
        q.held_rows = list(session.scalars(held.order_by(Outbox.due_at).limit(rows)))
        sending = pending.where(Outbox.due_at <= now)
        q.sending = _count(session, sending)
        q.sending_rows = list(session.scalars(sending.order_by(Outbox.due_at).limit(rows)))
        failed = (select(Outbox).outerjoin(Request, Request.id == Outbox.request_id)
                  .where(Outbox.library_id == lib_id, Outbox.state == OutboxState.FAILED,
                         # A staff alert is no patron's send: the pool_not_ready banner
                         # shows it while its pool is missing (alert_failed), not for ever.
                         Outbox.kind != "staff_alert",
                         or_(Outbox.request_id.is_(None), ~handled_clause())))
        q.failed = _count(session, failed)
        q.failed_rows = list(session.scalars(failed.order_by(Outbox.id.desc()).limit(rows)))
        aside = select(Request).where(Request.library_id == lib_id,
                                      Request.state.in_((RequestState.ERROR, RequestState.MANUAL)),
                                      ~handled_clause())
        q.set_aside = _count(session, aside)
        q.set_aside_rows = list(session.scalars(
            aside.order_by(Request.received_at.desc()).limit(rows)))
        for service in lib.services:  # (a service the library does not offer: no tile)
            q.codes_left[service] = session.scalar(select(func.count(Code.id)).where(
                Code.library_id == lib_id, Code.service == service, Code.month == month,
                Code.issued_at.is_(None), Code.expired_at.is_(None))) or 0
        if lib.quotas.active:  # (a pool with no code imported has no parts to show)
            q.quotas = [p for p in (_pool_quota(session, lib, tz, service, now)
                                    for service in lib.services) if p is not None]
        q.not_ready = _not_ready(session, lib, tz, month, now)
        if q.not_ready:
            failed_alerts = set(session.scalars(select(Outbox.message_id).where(
                Outbox.library_id == lib_id, Outbox.kind == "staff_alert",
                Outbox.state == OutboxState.FAILED)))
            q.alert_failed = [s for s, _ in q.not_ready
                              if alert_message_id(lib_id, s, month) in failed_alerts]
        keys = [m.key for m in settings.mailboxes_of(lib_id)]
        for mb in session.scalars(select(Mailbox).where(Mailbox.key.in_(keys))
                                  .order_by(Mailbox.id)):
            q.mailboxes.append(mailbox_health(mb, settings.daemon.mailbox_grace, now))
        out.append(q)
    return out


def _pool_quota(session: Session, lib: Any, tz: Any, service: str,
                now: datetime) -> PoolQuota | None:
    """The pool's parts as the rules count them (mailbot.quotas); None: no pool."""
    year, mon = month_of(now, tz)
    use = pool_use(session, library_id=lib.id, service=service, month=month_key(year, mon))
    if use.size <= 0:
        return None
    release = quotas.release_at(lib.quotas, tz, year, mon)
    if quotas.held(lib.quotas, tz, year, mon, now):
        return PoolQuota(service, quotas.parts(lib.quotas, use, release_at=release), False)
    return PoolQuota(service, quotas.Parts(general=max(use.free, 0), desk=0, first_time=0,
                                           release_at=release), True)


def _not_ready(session: Session, lib: Any, tz: Any, month: str,
               now: datetime) -> list[tuple[str, int]]:
    """The library's services with no code at all imported for ``month`` once its window
    opened, each with its requests answered pool_not_ready this month. A service never
    imported for any month is shown only once patrons ask for it (then the library should
    import it, or leave it out of ``services``): not every month for ever."""
    if now < window_opens(lib, tz, *parse_month(month)):
        return []
    found = []
    for service in lib.services:
        if session.scalar(select(exists().where(Code.library_id == lib.id,
                                                Code.service == service,
                                                Code.month == month))):
            continue
        answered = session.scalar(select(func.count(Request.id)).where(
            Request.library_id == lib.id, Request.month == month,
            Request.service == service, Request.outcome == Outcome.POOL_NOT_READY)) or 0
        if answered or session.scalar(select(exists().where(
                CodePool.library_id == lib.id, CodePool.service == service))):
            found.append((service, answered))
    return found


def _count(session: Session, stmt: Any) -> int:
    return session.scalar(select(func.count()).select_from(stmt.subquery())) or 0


# -- requests (the list itself: requests_list) ---------------------------------------------


def months_seen(session: Session, settings: Settings, libraries: list[str],
                now: datetime) -> list[str]:
    """Months with pools or requests, newest first (always including this month)."""
    months = set(session.scalars(select(Code.month).where(Code.library_id.in_(libraries))
                                 .distinct()))
    months |= {m for m in session.scalars(select(Request.month).where(
        Request.library_id.in_(libraries)).distinct()) if m}
    months.add(month_key(*month_of(now, ZoneInfo(settings.timezone))))
    return sorted(months, reverse=True)


def mailboxes_in(session: Session, libraries: list[str]) -> list[Mailbox]:
    return list(session.scalars(select(Mailbox).where(Mailbox.library_id.in_(libraries))
                                .order_by(Mailbox.library_id, Mailbox.address)))


def replies_of(session: Session, req: Request) -> list[Outbox]:
    """The replies to a request: the bot's, and one written by a staff override."""
    clauses = [Outbox.request_id == req.id]
    code = req.code
    if code is not None:
        clauses.append(and_(Outbox.code_id == code.id, Outbox.kind == "override"))
    return list(session.scalars(select(Outbox).where(or_(*clauses)).order_by(Outbox.id)))


def audit_of(session: Session, request_id: int) -> list[AuditLog]:
    return list(session.scalars(select(AuditLog).where(AuditLog.request_id == request_id)
                                .order_by(AuditLog.at, AuditLog.id)))


def is_handled(session: Session, request_id: int) -> bool:
    return session.scalar(select(func.count(AuditLog.id)).where(
        AuditLog.request_id == request_id, AuditLog.action == "handled")) > 0


# -- showing mail safely -----------------------------------------------------------------------


@dataclass(frozen=True)
class ShownMail:
    headers: list[tuple[str, str]]
    text: str
    has_html: bool
    truncated: bool


def show_mail(raw: bytes, max_bytes: int) -> ShownMail:
    """The mail as text: the parser's plain text (an HTML-only mail converted to text)."""
    parsed = parse_mail(raw, max_bytes=max_bytes)
    headers = [(k, parsed.headers.get(k, "")) for k in ("From", "To", "Date", "Subject")]
    return ShownMail([(k, v) for k, v in headers if v], parsed.text,
                     html_part(raw, max_bytes) is not None, parsed.truncated)


def html_part(raw: bytes, max_bytes: int) -> str | None:
    """The mail's HTML body, if any — only ever served inside a sandboxed frame."""
    try:
        msg = email.message_from_bytes(raw[:max_bytes], policy=email.policy.default)
        part = msg.get_body(("html",))
        if part is None:
            return None
        return part.get_content()
    except Exception:  # hostile mail must not break the page
        return None


def reply_text(message: bytes) -> str:
    """The plain-text part of one of our replies."""
    if not message:
        return ""
    msg = email.message_from_bytes(message, policy=email.policy.default)
    part = msg.get_body(("plain",))
    return part.get_content() if part is not None else ""


# -- pools and charts ---------------------------------------------------------------------------


@dataclass
class PoolRow:
    library_id: str
    service: str
    month: str
    bought: int
    issued: int
    left: int
    expired: int
    activated: int


def pool_rows(session: Session, settings: Settings, libraries: list[str],
              now: datetime) -> list[PoolRow]:
    rows = session.execute(
        select(Code.library_id, Code.service, Code.month, func.count(Code.id),
               func.count(Code.issued_at), func.count(Code.expired_at),
               func.count(Code.activated_at))
        .where(Code.library_id.in_(libraries))
        .group_by(Code.library_id, Code.service, Code.month)
        .order_by(Code.month.desc(), Code.library_id, Code.service)).all()
    out = []
    for lib, service, month, bought, issued, expired, activated in rows:
        ended = month_end(*parse_month(month), settings.library_tz(lib)) <= now
        unissued = bought - issued
        # Before the month-close job has run, an ended month's unissued codes are expired too.
        expired = unissued if ended else expired
        out.append(PoolRow(lib, service, month, bought, issued, unissued - expired if not ended
                           else 0, expired, activated))
    return out


@dataclass
class PoolSeries:
    opens: datetime
    bought: int
    # (instant, codes left) after each issue, in order
    depletion: list[tuple[datetime, int]]
    per_minute: list[int]
    first_empty: datetime | None


def pool_series(session: Session, settings: Settings, *, library_id: str, service: str,
                month: str, minutes: int = 60) -> PoolSeries:
    lib = settings.library(library_id)
    tz = settings.library_tz(library_id)
    y, m = parse_month(month)
    opens = window_opens(lib, tz, y, m)
    bought = session.scalar(select(func.count(Code.id)).where(
        Code.library_id == library_id, Code.service == service, Code.month == month)) or 0
    issued = sorted(session.scalars(select(Code.issued_at).where(
        Code.library_id == library_id, Code.service == service, Code.month == month,
        Code.issued_at.is_not(None))))
    left = bought
    depletion = []
    for at in issued:
        left -= 1
        depletion.append((at, left))
    first_empty = depletion[-1][0] if depletion and left == 0 else None
    per_minute = [0] * minutes
    for at in session.scalars(select(Request.received_at).where(
            Request.library_id == library_id, Request.service == service,
            Request.kind == "request", Request.received_at >= opens,
            Request.received_at < opens + timedelta(minutes=minutes))):
        per_minute[int((at - opens).total_seconds() // 60)] += 1
    return PoolSeries(opens, bought, depletion, per_minute, first_empty)

