"""The decide stage: stored requests -> outcomes, strictly in arrival order per library.

For each library, the earliest undecided request (INTERNALDATE, ties by UID) is decided in
one transaction that runs the rules, allocates a code if it is due one, appends the ledger,
records the outcome with its rule trail and writes the reply into the outbox. A crash
anywhere leaves either all of that or none of it, so deciding simply resumes.

A request that raises an unexpected error is set aside for staff (state ``error``) and the
queue goes on; a reader source that is down stops that library's queue (the requests wait,
in order) rather than refusing anybody.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailbot.clock import add_months, month_end, month_key, month_of, parse_month, utcnow
from mailbot.config import LibrarySettings, Settings
from mailbot.db.models import (
    ActivationReport,
    Code,
    LedgerEntry,
    Library,
    MID_POLL,
    Mailbox,
    Outbox,
    Request,
)
from mailbot.errors import SourceUnavailable
from mailbot.intake.parse import extract_name, find_cards, parse_mail
from mailbot.readers.local import LocalReaders
from mailbot.respond.compose import compose_reply
from mailbot.respond.i18n import service_name
from mailbot.rules import RULES, evaluate
from mailbot.rules.base import Facts, Hit, IssuedThisMonth, ReaderFacts
from mailbot.rules.window import next_send_time, next_window, window_opens

log = logging.getLogger(__name__)

NO_REPLY = frozenset({"ignored_loop", "not_a_request", "rate_limited", "ignored_sender"})


class ReaderSource(Protocol):
    name: str

    def lookup(self, session: Session, *, library_id: str, card: str) -> ReaderFacts | None: ...


@dataclass(frozen=True)
class Decision:
    request_id: int
    outcome: str
    code_id: int | None


def decide_pending(
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    now: datetime | None = None,
    sources: dict[str, ReaderSource] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[Decision]:
    """Decides every waiting request of every library; returns what was decided.

    ``should_stop`` is asked between requests: a shutdown finishes the current one only."""
    decisions: list[Decision] = []
    for library in settings.libraries:
        source = (sources or {}).get(library.id) or LocalReaders()
        decisions.extend(_decide_library(sessions, settings, library, source, now, should_stop))
    return decisions


def arrival_horizon(session: Session, settings: Settings,
                    library: LibrarySettings) -> datetime | None:
    """Requests arriving before this instant may be decided; None: no limit.

    A request must wait until every mailbox of its library has been read completely past
    its arrival, or an earlier mail still unread — in a slower (or broken) branch mailbox,
    or further along the very poll that is storing it — would lose its code to it.
    INTERNALDATE has whole seconds, so the horizon is the oldest completed poll's start,
    rounded down to the second.
    """
    keys = [m.key for m in settings.mailboxes_of(library.id)]
    if not keys:
        return None
    marks = session.scalars(select(Mailbox.caught_up_to).where(Mailbox.key.in_(keys))).all()
    if any(m is not None and m <= MID_POLL for m in marks):
        return datetime.min.replace(tzinfo=UTC)  # a poll is half stored: wait for the rest
    if len(marks) < len(keys) or any(m is None for m in marks):
        return datetime.min.replace(tzinfo=UTC)
    return min(m for m in marks if m is not None).replace(microsecond=0)


def waiting_on(session: Session, settings: Settings) -> list[str]:
    """Keys of mailboxes whose reading lags behind a request waiting to be decided."""
    lagging = []
    for library in settings.libraries:
        keys = [m.key for m in settings.mailboxes_of(library.id)]
        if not keys:
            continue
        newest = session.scalar(select(func.max(Request.received_at)).where(
            Request.library_id == library.id, Request.state == "new"))
        if newest is None:
            continue
        for key, mark in session.execute(select(Mailbox.key, Mailbox.caught_up_to)
                                         .where(Mailbox.key.in_(keys))):
            if mark is None or mark.replace(microsecond=0) <= newest:
                lagging.append(key)
    return lagging


def _next_request(session: Session, library_id: str,
                  horizon: datetime | None = None) -> Request | None:
    stmt = (
        select(Request)
        .where(Request.library_id == library_id, Request.state == "new")
        .order_by(Request.received_at, Request.uid, Request.mailbox_id, Request.id)
        .limit(1)
    )
    if horizon is not None:
        stmt = stmt.where(Request.received_at < horizon)
    return session.scalar(stmt)


def _decide_library(sessions: sessionmaker[Session], settings: Settings,
                    library: LibrarySettings, source: ReaderSource,
                    fixed_now: datetime | None,
                    should_stop: Callable[[], bool]) -> list[Decision]:
    decisions: list[Decision] = []
    source_was_down = _source_state(sessions, library.id) is not None
    while not should_stop():
        started = time.perf_counter()
        now = fixed_now or utcnow()
        request_id = None
        try:
            with sessions.begin() as session:
                _lock_library(session, library.id)
                req = _next_request(session, library.id,
                                    arrival_horizon(session, settings, library))
                if req is None:
                    return decisions
                request_id = req.id
                decision = decide_one(session, req, settings=settings, library=library,
                                      source=source, now=now)
        except SourceUnavailable as exc:
            log.warning("library %s: reader source %s unavailable (%s); requests wait",
                        library.id, source.name, exc)
            _record_source(sessions, library.id, f"{source.name}: {exc}"[:1000], now)
            return decisions
        except OperationalError as exc:
            # The database itself hiccupped (failover, lock timeout): nobody's fault, so
            # nobody is set aside; the request is decided on the next pass.
            log.warning("library %s: database error, deciding later: %s", library.id,
                        exc.orig if exc.orig is not None else exc)
            return decisions
        except Exception:
            if request_id is None:
                raise  # not about one mail: let the caller's error policy see it
            log.exception("request %s could not be decided; set aside for staff", request_id)
            _set_aside(sessions, request_id, traceback.format_exc(limit=5))
            continue
        if source_was_down:
            _record_source(sessions, library.id, None, now)
            source_was_down = False
        log.info("request=%s library=%s outcome=%s took=%.1fms", decision.request_id,
                 library.id, decision.outcome, (time.perf_counter() - started) * 1000)
        decisions.append(decision)
    return decisions


def _lock_library(session: Session, library_id: str) -> None:
    """One decision at a time per library, across every process on the database.

    PostgreSQL: a transaction-scoped advisory lock (released at commit, or when a killed
    process's connection goes); the next request is chosen only after it is held, so
    arrival order is strict however many bot processes run. SQLite: every transaction
    begins IMMEDIATE, which already serialises writers.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                        {"key": f"mailbot.decide:{library_id}"})


def _source_state(sessions: sessionmaker[Session], library_id: str) -> str | None:
    with sessions() as session:
        lib = session.get(Library, library_id)
        return lib.source_error if lib else None


def _record_source(sessions: sessionmaker[Session], library_id: str, error: str | None,
                   now: datetime) -> None:
    """Remembers the reader source's health for `status` and the dashboard."""
    with sessions.begin() as session:
        lib = session.get(Library, library_id)
        if lib is None:
            return
        if error is None:
            lib.source_error, lib.source_down_since = None, None
        else:
            lib.source_down_since = lib.source_down_since or now
            lib.source_error = error


def _set_aside(sessions: sessionmaker[Session], request_id: int, error: str) -> None:
    with sessions.begin() as session:
        req = session.get(Request, request_id)
        if req is not None and req.state == "new":
            req.state, req.error = "error", error[-2000:]


def issued_this_month_of(session: Session, library_id: str, card: str, month: str, *,
                       service: str | None = None) -> IssuedThisMonth | None:
    """The card's code of this month: any service, or one service if the policy says so."""
    stmt = (
        select(LedgerEntry, Code.code)
        .join(Code, Code.id == LedgerEntry.code_id)
        .where(LedgerEntry.library_id == library_id, LedgerEntry.card_number == card,
               LedgerEntry.month == month)
        .order_by(LedgerEntry.id)
        .limit(1)
    )
    if service is not None:
        stmt = stmt.where(LedgerEntry.service == service)
    row = session.execute(stmt).first()
    if row is None:
        return None
    entry, code = row
    return IssuedThisMonth(service=entry.service, code=code, email=entry.email,
                           issued_at=entry.issued_at)


def _codes_to_address(session: Session, library_id: str, address: str | None,
                      month: str) -> int:
    if not address:
        return 0
    return session.scalar(select(func.count(LedgerEntry.id)).where(
        LedgerEntry.library_id == library_id, LedgerEntry.month == month,
        LedgerEntry.email == address.lower())) or 0


def unactivated_months_of(session: Session, library: LibrarySettings, card: str,
                        month: str) -> tuple[str, ...]:
    if library.penalty_months <= 0:
        return ()
    y, m = parse_month(month)
    months = [month_key(*add_months(y, m, -k)) for k in range(1, library.penalty_months + 1)]
    rows = session.scalars(
        select(LedgerEntry.month)
        .join(Code, Code.id == LedgerEntry.code_id)
        .join(ActivationReport, (ActivationReport.library_id == LedgerEntry.library_id)
              & (ActivationReport.month == LedgerEntry.month))
        .where(LedgerEntry.library_id == library.id, LedgerEntry.card_number == card,
               LedgerEntry.month.in_(months), Code.activated_at.is_(None))
    ).all()
    return tuple(sorted(set(rows)))


def _replies_today(session: Session, req: Request, tz: Any) -> int:
    local = req.received_at.astimezone(tz)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    end = start + timedelta(days=1)
    return session.scalar(
        select(func.count(Outbox.id))
        .join(Request, Request.id == Outbox.request_id)
        .where(Outbox.library_id == req.library_id, Outbox.to_address == req.from_address,
               Request.received_at >= start, Request.received_at < end,
               # Test mails have their own cap: they count toward nothing real.
               Request.kind == req.kind)
    ) or 0


def allocate_code(session: Session, *, library_id: str, service: str,
                  month: str) -> Code | None:
    stmt = (
        select(Code)
        .where(Code.library_id == library_id, Code.service == service, Code.month == month,
               Code.issued_at.is_(None), Code.activated_at.is_(None),
               Code.expired_at.is_(None))
        .order_by(Code.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    return session.scalar(stmt)


def decide_one(session: Session, req: Request, *, settings: Settings, library: LibrarySettings,
               source: ReaderSource, now: datetime) -> Decision:
    tz = settings.library_tz(library.id)
    # The pool served is the month of the decision (see Facts.month); a clock running
    # behind the mail server must not move a request back a month.
    year, mon = month_of(max(now, req.received_at), tz)
    month = month_key(year, mon)
    parsed = parse_mail(req.raw or b"", max_bytes=settings.max_message_bytes)
    cards = find_cards(parsed, pattern=library.card_pattern)
    name_text = parsed.quoted if cards.from_quote else parsed.unquoted
    req.month = month
    req.card_number = cards.card
    req.patron_name = (extract_name(parsed) or "")[:300] or None

    context: dict[str, Any] = {}
    code: Code | None = None
    hit: Hit | None
    trail: list[dict[str, Any]] = []
    if library.replies_per_sender_per_day > 0 and req.from_address and \
            _replies_today(session, req, tz) >= library.replies_per_sender_per_day:
        hit = Hit("rate_limited", f"{library.replies_per_sender_per_day} replies to this "
                  "address today already; no reply")
        trail.append({"rule": "rate_limit", "result": "refused", "note": hit.note})
    else:
        reader = (source.lookup(session, library_id=library.id, card=cards.card)
                  if cards.card else None)
        facts = Facts(
            library=library, tz=tz, month=(year, mon), service=req.service or "legimi",
            received_at=req.received_at, date_header=req.date_header,
            from_address=req.from_address, card_candidates=cards.candidates, card=cards.card,
            name_text=name_text, reader=reader,
            issued_this_month=issued_this_month_of(
                session, library.id, cards.card, month,
                service=req.service if library.one_code_per_month == "per_service" else None)
            if cards.card else None,
            unactivated_months=unactivated_months_of(session, library, cards.card, month)
            if cards.card else (),
            codes_to_address=_codes_to_address(session, library.id, req.from_address, month),
        )
        if req.kind == "test":
            hit, trail = _eligibility_test(session, facts, month=month)
        else:
            hit, trail = evaluate(facts)
            if hit is None:
                hit, code = _issue(session, req, library=library, tz=tz, month=month, now=now)
                trail.append({"rule": "pool", "result": "issued" if code else "refused",
                              "note": hit.note})
        if reader is not None:
            context["patron_first_name"] = reader.first_name
    req.outcome = hit.outcome
    req.state = "decided"
    req.decided_at = now
    req.trail = trail
    context.update(hit.context)
    if hit.outcome not in NO_REPLY and req.from_address:
        _write_reply(session, req, settings=settings, library=library, tz=tz, year=year,
                     month=mon, context=context, references=parsed.references, now=now)
    return Decision(req.id, hit.outcome, code.id if code else None)


TEST_RULES = tuple(rule for rule in RULES if rule.name != "too_early")


def codes_left(session: Session, *, library_id: str, service: str, month: str) -> int:
    return session.scalar(
        select(func.count(Code.id)).where(Code.library_id == library_id, Code.service == service,
                                          Code.month == month, Code.issued_at.is_(None))
    ) or 0


def _eligibility_test(session: Session, facts: Facts, *, month: str
                      ) -> tuple[Hit, list[dict[str, Any]]]:
    """A TEST mail: the verdict a request would get today; nothing issued or counted.

    Every rule but the window is asked, so a patron testing before the window opens learns
    both whether they qualify and when requests start to count.
    """
    opens = window_opens(facts.library, facts.tz, *facts.month)
    before = facts.received_at < opens
    hit, trail = evaluate(facts, TEST_RULES)
    if hit is None:
        verdict, context = "eligible", {}
        if not before and not codes_left(session, library_id=facts.library.id,
                                          service=facts.service, month=month):
            verdict = "pool_exhausted"
    else:
        verdict, context = hit.outcome, dict(hit.context)
    context.pop("code", None)  # a test never shows a code, not even a repeated one
    context.update(verdict=verdict, before_window=before)
    trail.append({"rule": "eligibility_test", "result": verdict,
                  "note": "test only: nothing issued" + ("; window not open yet" if before
                                                          else "")})
    return Hit("eligibility_test", f"verdict {verdict}", context), trail


def _issue(session: Session, req: Request, *, library: LibrarySettings, tz: Any, month: str,
           now: datetime) -> tuple[Hit, Code | None]:
    y, m = parse_month(month)
    if now >= month_end(y, m, tz):
        # Unissued codes expire with their month and are never issued later.
        return Hit("pool_exhausted", f"decided after {month} ended: its codes expired"), None
    code = allocate_code(session, library_id=library.id, service=req.service or "",
                         month=month)
    if code is None:
        return Hit("pool_exhausted", f"no {req.service} code left for {month}"), None
    code.request_id = req.id
    code.issued_at = now
    session.add(LedgerEntry(code_id=code.id, library_id=library.id, service=code.service,
                            month=month, card_number=req.card_number or "",
                            email=(req.from_address or "").lower() or None,
                            request_id=req.id, issued_at=now, channel="email"))
    return Hit("issued", f"code #{code.id} from pool #{code.pool_id}",
               {"code": code.code}), code


def reply_context(library: LibrarySettings, tz: Any, year: int, month: int, *, service: str,
                  subject: str, received_at: datetime, card_number: str | None,
                  patron_name: str | None) -> dict[str, Any]:
    """What every reply template may use (render.CONTEXT_VARIABLES), for one month."""
    return {
        "library_name": library.name,
        "service": service,
        "service_name": service_name(service),
        "subject": subject,
        "received_at": received_at.astimezone(tz),
        "month": datetime(year, month, 1).date(),
        "card_number": card_number,
        "patron_name": patron_name,
        "library_contact": library.contact,
        "next_window": next_window(library, tz, year, month),
        "window_opens": window_opens(library, tz, year, month),
        "activation_url": getattr(library, f"activation_url_{service}", None),
        "deadline": (month_end(year, month, tz) - timedelta(days=1)).date(),
        "penalty_months": library.penalty_months,
        "code": None,
    }


def _write_reply(session: Session, req: Request, *, settings: Settings,
                 library: LibrarySettings, tz: Any, year: int, month: int,
                 context: dict[str, Any], references: tuple[str, ...], now: datetime) -> None:
    mailbox = session.get(Mailbox, req.mailbox_id)
    assert mailbox is not None
    service = req.service or "legimi"
    ctx = reply_context(library, tz, year, month, service=service, subject=req.subject,
                        received_at=req.received_at, card_number=req.card_number,
                        patron_name=req.patron_name)
    ctx.update(context)
    if "previous_service" in ctx:
        ctx["previous_service_name"] = service_name(ctx["previous_service"])
        ctx["previous_issued_at"] = ctx["previous_issued_at"].astimezone(tz)
        ctx["activation_url"] = getattr(library, f"activation_url_{ctx['previous_service']}",
                                        None)
    reply = compose_reply(
        outcome=req.outcome or "", context=ctx, languages=library.languages,
        library_name=library.name, mailbox_address=mailbox.address, to=req.from_address or "",
        original_subject=req.subject, original_message_id=req.message_id,
        original_references=references, templates_dir=settings.templates_dir, request_key=f"{mailbox.key}|{req.uidvalidity}|"
        f"{req.uid}|{req.message_id}", now=now,
    )
    session.add(Outbox(request_id=req.id, library_id=library.id, mail_from=reply.mail_from,
                       to_address=reply.to, message_id=reply.message_id, outcome=req.outcome,
                       message=reply.message, state="pending", created_at=now,
                       due_at=next_send_time(library, tz, now),
                       attempts=0))

