"""The decide stage: stored requests -> outcomes, strictly in arrival order per library.

For each library, the earliest undecided requests (INTERNALDATE, ties by UID) are decided
in batches, in arrival order, each batch in one transaction that runs the rules, allocates
codes, appends the ledger, records every outcome with its rule trail and writes the replies
into the outbox. What the rules ask of the database is read once per batch
(mailbot.lookups) and kept current in memory as the batch goes, so a burst costs a few
queries per batch, not ten per request. A crash anywhere leaves either all of a batch or
none of it, so deciding simply resumes.

A request that raises an unexpected error is set aside for staff (state ``error``): its
batch is rolled back and decided again without it, so the queue goes on in order. A reader
source that is down stops that library's queue (the requests wait, in order) rather than
refusing anybody.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from sqlalchemy import Row, func, select, text, type_coerce
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailbot.clock import month_end, month_key, month_of, parse_month, utcnow
from mailbot.config import LibrarySettings, Settings
from mailbot.db.models import (
    Code,
    Library,
    MID_POLL,
    Mailbox,
    Request,
    UTCDateTime,
)
from mailbot.db.session import reading
from mailbot.errors import SourceUnavailable
from mailbot.intake.parse import parse_mail_again, read_mail
from mailbot.readers.local import LocalReaders
from mailbot.lookups import (
    BatchLookups,
    ReaderSource,
    free_codes,
    issued_entries,
    penalty_months,
    unactivated_entries,
)
from mailbot import offload
from mailbot.outcomes import NO_REPLY_OUTCOMES
from mailbot.offload import ComposeFailed, Composer
from mailbot.respond.compose import compose_reply, reply_message_id_for
from mailbot.respond.i18n import service_name
from mailbot.rules import RULES, evaluate
from mailbot.rules.base import Facts, Hit, IssuedThisMonth
from mailbot.rules.window import next_send_time, next_window, window_opens

log = logging.getLogger(__name__)

NO_REPLY = frozenset(NO_REPLY_OUTCOMES)


# Requests decided in one transaction (see batch_size).
BATCH_SIZE = 200
REMOTE_BATCH_SIZE = 10
# A process's first batch is at most this big: right after a start nothing is cached (each
# mail is parsed again, the reply workers are still starting), and a daemon restarted in
# the middle of a burst must commit decisions within a second, however often it is killed.
FIRST_BATCH = 50
_first_batch_done = threading.Event()


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
    only: Collection[str] | None = None,
    burst: bool = False,
) -> list[Decision]:
    """Decides every waiting request of every library (or of the libraries ``only``
    names); returns what was decided.

    ``should_stop`` is asked between requests: a shutdown finishes the current one only.
    ``burst``: many requests wait across the libraries (a consortium's opening), so even
    a small batch has its replies composed by the worker processes."""
    decisions: list[Decision] = []
    # Which libraries' reader sources were down when last asked: one look for all of them
    # (a consortium's pass decides hundreds of libraries).
    down = _sources_down(sessions)
    for library in settings.libraries:
        if only is not None and library.id not in only:
            continue
        source = (sources or {}).get(library.id) or LocalReaders()
        decisions.extend(_decide_library(sessions, settings, library, source, now, should_stop,
                                         burst, source_was_down=library.id in down))
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
    return _horizon(marks, len(keys))


def _horizon(marks: Collection[datetime | None], mailboxes: int) -> datetime:
    """arrival_horizon of a library with ``mailboxes`` mailboxes, whose rows have these
    ``caught_up_to`` marks."""
    if any(m is not None and m <= MID_POLL for m in marks):
        return datetime.min.replace(tzinfo=UTC)  # a poll is half stored: wait for the rest
    if len(marks) < mailboxes or any(m is None for m in marks):
        return datetime.min.replace(tzinfo=UTC)
    return min(m for m in marks if m is not None).replace(microsecond=0)


@dataclass(frozen=True)
class Waiting:
    """Requests waiting to be decided, by library (libraries with none left out), and the
    libraries where some may be decided now (they arrived before the library's horizon),
    each with what it was ready with: (requests waiting, horizon)."""

    by_library: dict[str, int]
    ready: dict[str, tuple[int, datetime | None]]


def waiting(sessions: sessionmaker[Session], settings: Settings) -> Waiting:
    """Two queries for every library at once (a consortium has hundreds): which have
    requests waiting, and which of those a decide pass would find something to decide in."""
    keys = {m.key: m.library for m in settings.mailboxes}
    marks: dict[str, list[datetime | None]] = {}
    counts: dict[str, int] = {}
    ready: dict[str, tuple[int, datetime | None]] = {}
    with reading(sessions) as session:
        for key, mark in session.execute(select(Mailbox.key, Mailbox.caught_up_to)
                                         .where(Mailbox.key.in_(keys))):
            marks.setdefault(keys[key], []).append(mark)
        for library_id, n, earliest in session.execute(
                select(Request.library_id, func.count(),
                       type_coerce(func.min(Request.received_at), UTCDateTime))
                .where(Request.state == "new").group_by(Request.library_id)):
            counts[library_id] = n
            expected = len(settings.mailboxes_of(library_id))
            horizon = _horizon(marks.get(library_id, []), expected) if expected else None
            if horizon is None or earliest < horizon:
                ready[library_id] = (n, horizon)
    return Waiting(counts, ready)


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


# What deciding reads of a waiting request. Plain rows, not ORM objects: a burst loads
# thousands, and nothing is written back through them (the decisions are bulk UPDATEs).
_QUEUED = (Request.id, Request.mailbox_id, Request.uidvalidity, Request.uid,
           Request.message_id, Request.received_at, Request.date_header, Request.raw,
           Request.from_address, Request.subject, Request.service, Request.kind)
QueuedRequest = Row[Any]  # with the attributes named in _QUEUED


def _next_requests(session: Session, library_id: str, horizon: datetime | None,
                   limit: int) -> list[QueuedRequest]:
    stmt = (
        select(*_QUEUED)
        .where(Request.library_id == library_id, Request.state == "new")
        .order_by(Request.received_at, Request.uid, Request.mailbox_id, Request.id)
        .limit(limit)
    )
    if horizon is not None:
        stmt = stmt.where(Request.received_at < horizon)
    return list(session.execute(stmt))


class _RequestFailed(Exception):
    """Deciding one request raised: the batch is rolled back and that request set aside."""

    def __init__(self, request_id: int, trace: str) -> None:
        super().__init__(request_id)
        self.request_id = request_id
        self.trace = trace


def batch_size(source: ReaderSource) -> int:
    """Requests decided per transaction: many with the local reader table (one query for
    all), few with a remote catalogue, whose lookups would hold the transaction open."""
    return BATCH_SIZE if hasattr(source, "lookup_many") else REMOTE_BATCH_SIZE


def _decide_library(sessions: sessionmaker[Session], settings: Settings,
                    library: LibrarySettings, source: ReaderSource,
                    fixed_now: datetime | None,
                    should_stop: Callable[[], bool], burst: bool = False, *,
                    source_was_down: bool) -> list[Decision]:
    decisions: list[Decision] = []
    full = batch_size(source)
    # SQLite has one write lock for the whole file: a batch is read and decided on a
    # snapshot without it and written under it (see _write_checked), so the sender's
    # marks and intake's chunks are not held up for a whole batch. PostgreSQL locks rows
    # and the library (advisory lock): the batch is one transaction, as it reads.
    snapshot = sessions.kw["bind"].dialect.name == "sqlite"

    def decide_next(session: Session, now: datetime, *, write: bool
                    ) -> tuple[list[QueuedRequest], list[tuple[Decision, float]],
                               BatchLookups] | None:
        """The next batch before the horizon, decided (None: nothing waits before it)."""
        batch = _next_requests(session, library.id, arrival_horizon(session, settings, library),
                               size)
        if not batch:
            return None
        done, look = _decide_batch(session, batch, settings=settings, library=library,
                                   source=source, now=now, should_stop=should_stop,
                                   write=write, burst=burst)
        return batch, done, look

    while not should_stop():
        now = fixed_now or utcnow()
        size = full if _first_batch_done.is_set() else min(full, FIRST_BATCH)
        try:
            if snapshot:
                with reading(sessions) as session:
                    found = decide_next(session, now, write=False)
                if found is not None:
                    with sessions.begin() as session:
                        if not _write_checked(session, found[2]):
                            continue
            else:
                with sessions.begin() as session:
                    _lock_library(session, library.id)
                    found = decide_next(session, now, write=True)
            if found is None:
                return decisions
            batch, done, _look = found
        except SourceUnavailable as exc:
            log.warning("library %s: reader source %s unavailable (%s); requests wait",
                        library.id, source.name, exc)
            _record_source(sessions, library.id, f"{source.name}: {exc}"[:1000], now)
            return decisions
        except OperationalError as exc:
            # The database itself hiccupped (failover, lock timeout): nobody's fault, so
            # nobody is set aside; the requests are decided on the next pass.
            log.warning("library %s: database error, deciding later: %s", library.id,
                        exc.orig if exc.orig is not None else exc)
            return decisions
        except _RequestFailed as exc:
            # The batch was rolled back; the requests before this one are decided again
            # in the next batch (same order, same pool).
            log.error("request %s could not be decided; set aside for staff\n%s",
                      exc.request_id, exc.trace)
            _set_aside(sessions, exc.request_id, exc.trace)
            continue
        _first_batch_done.set()
        if source_was_down:
            _record_source(sessions, library.id, None, now)
            source_was_down = False
        for decision, took in done:  # logged once committed: a log line is a fact
            log.info("request=%s library=%s outcome=%s took=%.1fms", decision.request_id,
                     library.id, decision.outcome, took * 1000)
            decisions.append(decision)
        if len(batch) < size:
            # That was all that waited before the horizon: a consortium's pass need not
            # ask again (what arrived meanwhile is the next pass's).
            return decisions
    return decisions


@dataclass
class _Prepared:
    """A request with what its mail says, parsed once for the batch."""

    req: QueuedRequest
    year: int
    mon: int
    month: str
    cards: Any
    name_text: str
    references: tuple[str, ...]
    patron_name: str | None


def _prepare(req: QueuedRequest, settings: Settings, library: LibrarySettings, tz: Any,
             now: datetime) -> _Prepared:
    # The pool served is the month of the decision (see Facts.month); a clock running
    # behind the mail server must not move a request back a month.
    year, mon = month_of(max(now, req.received_at), tz)
    parsed = parse_mail_again(req.raw or b"", max_bytes=settings.max_message_bytes)
    found = read_mail(parsed, library.card_pattern)  # (in a burst: by the workers)
    cards = found.cards
    return _Prepared(req, year, mon, month_key(year, mon), cards,
                     parsed.quoted if cards.from_quote else parsed.unquoted,
                     parsed.references, (found.name or "")[:300] or None)


def _decide_batch(session: Session, batch: list[QueuedRequest], *, settings: Settings,
                  library: LibrarySettings, source: ReaderSource, now: datetime,
                  should_stop: Callable[[], bool], write: bool = True, burst: bool = False
                  ) -> tuple[list[tuple[Decision, float]], BatchLookups]:
    """Decides ``batch`` (in arrival order) in the caller's transaction, and writes what it
    decided there unless ``write`` is false (then the caller writes ``look``)."""
    tz = settings.library_tz(library.id)
    prepared: list[_Prepared] = []
    for req in batch:
        try:
            prepared.append(_prepare(req, settings, library, tz, now))
        except Exception:
            raise _RequestFailed(req.id, traceback.format_exc(limit=5)) from None
    needed: Counter[tuple[str, str]] = Counter(
        (p.req.service or "", p.month) for p in prepared if p.req.kind != "test")
    look = BatchLookups(
        session, library, tz, source,
        cards={p.cards.card for p in prepared if p.cards.card},
        addresses={p.req.from_address for p in prepared if p.req.from_address},
        months={p.month for p in prepared},
        received=[p.req.received_at for p in prepared], codes_needed=needed)
    if burst or len(batch) >= offload.OFFLOAD_MIN:
        # A burst: replies composed on other cores; a process's first batch does not wait
        # for them to start (it is composed in place meanwhile).
        if (executor := offload.started_pool(wait=_first_batch_done.is_set())) is not None:
            look.composer = Composer(executor)
    done: list[tuple[Decision, float]] = []
    for item in prepared:
        if done and should_stop():
            break  # a shutdown: what is decided so far is committed
        started = time.perf_counter()
        try:
            decision = decide_one(item, look, settings=settings, library=library, tz=tz,
                                  now=now)
        except Exception:
            raise _RequestFailed(item.req.id, traceback.format_exc(limit=5)) from None
        done.append((decision, time.perf_counter() - started))
    if look.composer is not None:
        if write:
            look.write(outbox=False)  # while the workers finish the replies
        try:
            look.composer.finish()
        except ComposeFailed as exc:
            raise _RequestFailed(exc.key, exc.trace) from None
        if write:
            look.write(outbox=True, decisions=False)
    elif write:
        look.write()
    return done, look


def _write_checked(session: Session, look: BatchLookups) -> bool:
    """Writes a batch decided on a snapshot (SQLite), in ``session``, which holds the write
    lock; False, writing nothing, if the snapshot is out of date.

    Between the snapshot and the lock another process may have decided the same requests
    (every decider takes the earliest waiting ones, so a race always overlaps) or staff may
    have set a request aside or withdrawn a code: then a request is no longer waiting or a
    code no longer free, and the batch is decided again from a new snapshot. Anything else
    written meanwhile — mail stored, replies sent, readers or codes imported — leaves the
    batch what it would have been a moment earlier."""
    if not look.still_valid(session):
        log.info("library %s: requests or codes changed while a batch was decided; "
                 "deciding it again", look.library.id)
        return False
    look.write(session=session)
    return True


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


def _sources_down(sessions: sessionmaker[Session]) -> set[str]:
    """The libraries whose reader source was unavailable when last asked."""
    with reading(sessions) as session:
        return set(session.scalars(select(Library.id).where(Library.source_error.is_not(None))))


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
    return issued_entries(session, library_id, [card], [month]).get((card, month, service))


def unactivated_months_of(session: Session, library: LibrarySettings, card: str,
                          month: str) -> tuple[str, ...]:
    months = penalty_months(library, month)
    found = unactivated_entries(session, library, [card], months)
    return tuple(sorted(m for m in months if (card, m) in found))


def allocate_code(session: Session, *, library_id: str, service: str,
                  month: str) -> Code | None:
    codes = free_codes(session, library_id=library_id, service=service, month=month, limit=1)
    return codes[0] if codes else None


def decide_one(item: _Prepared, look: BatchLookups, *, settings: Settings,
               library: LibrarySettings, tz: Any, now: datetime) -> Decision:
    req, month, cards = item.req, item.month, item.cards
    context: dict[str, Any] = {}
    code: Any | None = None
    hit: Hit | None
    trail: list[dict[str, Any]] = []
    if library.replies_per_sender_per_day > 0 and req.from_address and \
            look.replies_today(req.from_address, req.kind, req.received_at) >= \
            library.replies_per_sender_per_day:
        hit = Hit("rate_limited", f"{library.replies_per_sender_per_day} replies to this "
                  "address today already; no reply")
        trail.append({"rule": "rate_limit", "result": "refused", "note": hit.note})
    else:
        reader = look.readers.get(cards.card) if cards.card else None
        facts = Facts(
            library=library, tz=tz, month=(item.year, item.mon),
            service=req.service or "legimi", received_at=req.received_at,
            date_header=req.date_header, from_address=req.from_address,
            card_candidates=cards.candidates, card=cards.card, name_text=item.name_text,
            reader=reader,
            issued_this_month=look.issued_this_month(
                cards.card, month,
                req.service if library.one_code_per_month == "per_service" else None)
            if cards.card else None,
            unactivated_months=look.unactivated_months(cards.card, month)
            if cards.card else (),
            codes_to_address=look.codes_to_address(req.from_address, month),
        )
        if req.kind == "test":
            hit, trail = _eligibility_test(facts, look, month=month)
        else:
            hit, trail = evaluate(facts)
            if hit is None:
                hit, code = _issue(look, req, cards.card or "", library=library, tz=tz,
                                   month=month, now=now)
                trail.append({"rule": "pool", "result": "issued" if code else "refused",
                              "note": hit.note})
        if reader is not None:
            context["patron_first_name"] = reader.first_name
    context.update(hit.context)
    if hit.outcome not in NO_REPLY and req.from_address:
        # A template error here leaves the request as it was (the batch is rolled back
        # and this request set aside).
        look.outbox.append(_reply(look, item, outcome=hit.outcome, settings=settings,
                                  library=library, tz=tz, context=context, now=now))
        look.reply_written(req.from_address, req.kind, req.received_at)
    look.requests.append({"id": req.id, "month": month, "card_number": cards.card,
                          "patron_name": item.patron_name, "outcome": hit.outcome,
                          "state": "decided", "decided_at": now, "trail": trail})
    return Decision(req.id, hit.outcome, code.id if code else None)


TEST_RULES = tuple(rule for rule in RULES if rule.name != "too_early")


def _eligibility_test(facts: Facts, look: BatchLookups, *, month: str
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
        if not before and look.codes_left(facts.service, month) <= 0:
            verdict = "pool_exhausted"
    else:
        verdict, context = hit.outcome, dict(hit.context)
    context.pop("code", None)  # a test never shows a code, not even a repeated one
    context.update(verdict=verdict, before_window=before)
    trail.append({"rule": "eligibility_test", "result": verdict,
                  "note": "test only: nothing issued" + ("; window not open yet" if before
                                                          else "")})
    return Hit("eligibility_test", f"verdict {verdict}", context), trail


def _issue(look: BatchLookups, req: QueuedRequest, card: str, *, library: LibrarySettings, tz: Any,
           month: str, now: datetime) -> tuple[Hit, Any | None]:
    y, m = parse_month(month)
    if now >= month_end(y, m, tz):
        # Unissued codes expire with their month and are never issued later.
        return Hit("pool_exhausted", f"decided after {month} ended: its codes expired"), None
    code = look.take_code(req.service or "", month)
    if code is None:
        return Hit("pool_exhausted", f"no {req.service} code left for {month}"), None
    email = (req.from_address or "").lower() or None
    look.codes_issued.append({"id": code.id, "request_id": req.id, "issued_at": now})
    look.ledger.append({"code_id": code.id, "library_id": library.id, "service": code.service,
                        "month": month, "card_number": card, "email": email,
                        "request_id": req.id, "issued_at": now, "channel": "email"})
    look.code_issued(card=card, month=month, service=code.service, email=email,
                     code=code.code, issued_at=now)
    return Hit("issued", f"code #{code.id} from pool #{code.pool_id}",
               {"code": code.code}), code


def reply_context(library: LibrarySettings, tz: Any, year: int, month: int, *, service: str,
                  subject: str, received_at: datetime, card_number: str | None,
                  patron_name: str | None) -> dict[str, Any]:
    """What every reply template may use (render.CONTEXT_VARIABLES), for one month."""
    return {
        **_month_context(library, tz, year, month, service),
        "subject": subject,
        "received_at": received_at.astimezone(tz),
        "card_number": card_number,
        "patron_name": patron_name,
        "code": None,
    }


@lru_cache(maxsize=256)
def _month_context(library: LibrarySettings, tz: Any, year: int, month: int,
                   service: str) -> Mapping[str, Any]:
    """The part of reply_context that is the same for every reply of a library, month and
    service (worked out once, not for each of a burst's thousands of replies)."""
    return MappingProxyType({
        "library_name": library.name,
        "service": service,
        "service_name": service_name(service),
        "month": datetime(year, month, 1).date(),
        "library_contact": library.contact,
        "next_window": next_window(library, tz, year, month),
        "window_opens": window_opens(library, tz, year, month),
        "activation_url": getattr(library, f"activation_url_{service}", None),
        "deadline": (month_end(year, month, tz) - timedelta(days=1)).date(),
        "penalty_months": library.penalty_months,
    })


def _reply(look: BatchLookups, item: _Prepared, *, outcome: str, settings: Settings,
           library: LibrarySettings, tz: Any, context: dict[str, Any],
           now: datetime) -> dict[str, Any]:
    """The outbox row (as values) of the reply to ``item``."""
    req = item.req
    mailbox = look.mailbox(req.mailbox_id)
    service = req.service or "legimi"
    ctx = reply_context(library, tz, item.year, item.mon, service=service, subject=req.subject,
                        received_at=req.received_at, card_number=item.cards.card,
                        patron_name=item.patron_name)
    ctx.update(context)
    if "previous_service" in ctx:
        ctx["previous_service_name"] = service_name(ctx["previous_service"])
        ctx["previous_issued_at"] = ctx["previous_issued_at"].astimezone(tz)
        ctx["activation_url"] = getattr(library, f"activation_url_{ctx['previous_service']}",
                                        None)
    request_key = f"{mailbox.key}|{req.uidvalidity}|{req.uid}|{req.message_id}"
    job = dict(
        outcome=outcome, context=ctx, languages=library.languages,
        library_name=library.name, mailbox_address=mailbox.address, to=req.from_address or "",
        original_subject=req.subject, original_message_id=req.message_id,
        original_references=item.references, templates_dir=settings.templates_dir,
        request_key=request_key, now=now,
    )
    row = {"request_id": req.id, "library_id": library.id, "kind": "reply",
           "mail_from": mailbox.address, "to_address": req.from_address or "",
           "message_id": reply_message_id_for(mailbox.address, request_key),
           "outcome": outcome, "message": None, "state": "pending", "created_at": now,
           "due_at": next_send_time(library, tz, now), "attempts": 0}
    if look.composer is not None:
        look.composer.add(req.id, row, job)  # composed by a worker meanwhile
    else:
        row["message"] = compose_reply(**job).message
    return row
