"""The decide stage's runner: stored requests -> outcomes, strictly in arrival order per
library, in batches, and what happens when something goes wrong.

For each library, the earliest undecided requests (INTERNALDATE, ties by UID) before its
arrival horizon are decided in batches, in arrival order, each batch in one transaction
(of the engine's kind: mailbot.decide.policies) that decides every request
(mailbot.decide.decision), issues the codes (mailbot.ledger), records every outcome with
its rule trail and writes the replies into the outbox. What the rules ask of the database
is read once per batch (mailbot.decide.batch) and kept current in memory as the batch
goes, so a burst costs a few queries per batch, not ten per request. A crash anywhere
leaves either all of a batch or none of it, so deciding simply resumes.

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
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailbot import offload
from mailbot.clock import utcnow
from mailbot.config import LibrarySettings, Settings
from mailbot.db.models import Library, Request
from mailbot.db.session import reading
from mailbot.decide import sizes
from mailbot.decide.batch import (
    BatchReads,
    Prepared,
    QueuedRequest,
    ReaderSource,
    next_requests,
    prepare,
)
from mailbot.decide.context import decided_context
from mailbot.decide.decision import decide
from mailbot.decide.horizon import arrival_horizon
from mailbot.decide.policies import Stale, policy_for
from mailbot.decide.writes import BatchWrites
from mailbot.errors import SourceUnavailable
from mailbot.ledger import Channel, issue_code
from mailbot.offload import ComposeFailed
from mailbot.outcomes import Outcome, RequestState
from mailbot.readers.local import LocalReaders
from mailbot.respond.staff_alert import pool_not_ready_alert, staff_can_be_told

log = logging.getLogger(__name__)

# A process's first batch is at most this big: right after a start nothing is cached (each
# mail is parsed again, the reply workers are still starting), and a daemon restarted in
# the middle of a burst must commit decisions within a second, however often it is killed.
FIRST_BATCH = 50
_first_batch_done = threading.Event()


@dataclass(frozen=True)
class Decided:
    """A request decided (and committed)."""

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
) -> list[Decided]:
    """Decides every waiting request of every library (or of the libraries ``only``
    names); returns what was decided.

    ``should_stop`` is asked between requests: a shutdown finishes the current one only.
    ``burst``: many requests wait across the libraries (a consortium's opening), so even
    a small batch has its replies composed by the worker processes."""
    decisions: list[Decided] = []
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


def batch_size(source: ReaderSource) -> int:
    """Requests decided per transaction: many with the local reader table (one query for
    all), few with a remote catalogue, whose lookups would hold the transaction open."""
    return sizes.BATCH_SIZE if hasattr(source, "lookup_many") else sizes.REMOTE_BATCH_SIZE


class _RequestFailed(Exception):
    """Deciding one request raised: the batch is rolled back and that request set aside."""

    def __init__(self, request_id: int, trace: str) -> None:
        super().__init__(request_id)
        self.request_id = request_id
        self.trace = trace


@dataclass
class _Batch:
    requests: list[QueuedRequest]
    done: list[tuple[Decided, float]]  # with how long each took
    writes: BatchWrites


def _decide_library(sessions: sessionmaker[Session], settings: Settings,
                    library: LibrarySettings, source: ReaderSource,
                    fixed_now: datetime | None,
                    should_stop: Callable[[], bool], burst: bool = False, *,
                    source_was_down: bool) -> list[Decided]:
    decisions: list[Decided] = []
    full = batch_size(source)
    policy = policy_for(sessions)

    def decide_next(session: Session) -> _Batch | None:
        """The next batch before the horizon, decided (None: nothing waits before it)."""
        batch = next_requests(session, library.id, arrival_horizon(session, settings, library),
                              size)
        if not batch:
            return None
        return _decide_batch(session, batch, settings=settings, library=library,
                             source=source, now=now, should_stop=should_stop,
                             write=policy.writes_in_place, burst=burst)

    while not should_stop():
        now = fixed_now or utcnow()
        size = full if _first_batch_done.is_set() else min(full, FIRST_BATCH)
        try:
            found = policy.run(sessions, library.id, decide_next)
            if found is None:
                return decisions
        except Stale:
            continue
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
        for decided, took in found.done:  # logged once committed: a log line is a fact
            log.info("request=%s library=%s outcome=%s took=%.1fms", decided.request_id,
                     library.id, decided.outcome, took * 1000)
            decisions.append(decided)
        if len(found.requests) < size:
            # That was all that waited before the horizon: a consortium's pass need not
            # ask again (what arrived meanwhile is the next pass's).
            return decisions
    return decisions


def _decide_batch(session: Session, batch: list[QueuedRequest], *, settings: Settings,
                  library: LibrarySettings, source: ReaderSource, now: datetime,
                  should_stop: Callable[[], bool], write: bool = True, burst: bool = False
                  ) -> _Batch:
    """Decides ``batch`` (in arrival order) in the caller's transaction, and writes what it
    decided there unless ``write`` is false (then the policy writes it)."""
    tz = settings.library_tz(library.id)
    prepared: list[Prepared] = []
    for req in batch:
        try:
            prepared.append(prepare(req, settings, library, tz, now))
        except Exception:
            raise _RequestFailed(req.id, traceback.format_exc(limit=5)) from None
    reads = BatchReads(session, library, tz, source, prepared, catalogue=settings.catalogue)
    # A burst: replies composed on other cores; a process's first batch does not wait for
    # them to start (it is composed in place meanwhile).
    writes = BatchWrites(offload.composer(replies=len(batch), burst=burst,
                                          wait=_first_batch_done.is_set()))
    done: list[tuple[Decided, float]] = []
    for item in prepared:
        if done and should_stop():
            break  # a shutdown: what is decided so far is committed
        started = time.perf_counter()
        try:
            decided = _decide_one(item, reads, writes, settings=settings, library=library,
                                  tz=tz, now=now)
        except Exception:
            raise _RequestFailed(item.req.id, traceback.format_exc(limit=5)) from None
        done.append((decided, time.perf_counter() - started))
    composer = writes.composer
    if composer is not None:
        if write:
            writes.write(session, outbox=False)  # while the workers finish the replies
        try:
            composer.finish()
        except ComposeFailed as exc:
            raise _RequestFailed(exc.key, exc.trace) from None
        if write:
            writes.write(session, outbox=True, decisions=False)
    elif write:
        writes.write(session)
    return _Batch(batch, done, writes)


def _decide_one(item: Prepared, reads: BatchReads, writes: BatchWrites, *,
                settings: Settings, library: LibrarySettings, tz: Any,
                now: datetime) -> Decided:
    """Decides one request of the batch and records what follows from it: the code issued,
    the reply, the batch's counters."""
    req, card = item.req, item.cards.card
    decision = decide(reads.facts(item, now), test=req.kind == "test")
    code = None
    if decision.code is not None:
        code = issue_code(reads, writes, library_id=library.id, service=req.service or "",
                          month=item.month, card=card or "", email=req.from_address,
                          request_id=req.id, now=now, channel=Channel.EMAIL)
        assert code is decision.code
        reads.code_issued(card=card or "", month=item.month, service=code.service,
                          email=(req.from_address or "").lower() or None, code=code.code,
                          issued_at=now)
    outcome_context = decision.context
    if decision.outcome == Outcome.POOL_NOT_READY:
        # The reply says staff were told only when there is someone to tell.
        outcome_context = {**decision.context,
                           "staff_told": _tell_staff(item, reads, writes, settings=settings,
                                                     library=library, tz=tz, now=now)}
    if decision.replies and req.from_address:
        context = decided_context(
            library, tz, item.year, item.mon, service=req.service or "legimi",
            subject=req.subject, received_at=req.received_at, card_number=card,
            patron_name=item.patron_name, outcome_context=outcome_context,
            catalogue=settings.catalogue)
        writes.reply(request=req, mailbox=reads.mailbox(req.mailbox_id),
                     outcome=decision.outcome, context=context, references=item.references,
                     library=library, tz=tz, settings=settings, now=now)
        reads.reply_written(req.from_address, req.kind, req.received_at)
    writes.decided({"id": req.id, "month": item.month, "card_number": card,
                    "patron_name": item.patron_name, "outcome": decision.outcome,
                    "state": RequestState.DECIDED, "decided_at": now,
                    "trail": decision.trail})
    return Decided(req.id, decision.outcome, code.id if code else None)


def _tell_staff(item: Prepared, reads: BatchReads, writes: BatchWrites, *,
                settings: Settings, library: LibrarySettings, tz: Any, now: datetime) -> bool:
    """The month's first pool_not_ready of a service tells staff, once
    (mailbot.respond.staff_alert): its outbox row joins the batch's writes. Whether staff
    are (or were) told: a staff address and a mailbox to send from. An alert that cannot
    be written is logged, never a reason to leave the patron's request undecided."""
    if not staff_can_be_told(settings, library.id):
        return False
    pool = (item.req.service or "", item.month)
    if pool in writes.alerted:
        return True
    writes.alerted.add(pool)
    try:
        alert = pool_not_ready_alert(reads.session, settings, library, service=pool[0],
                                     month=pool[1], received_at=item.req.received_at,
                                     now=now, tz=tz)
    except Exception:
        log.exception("library %s: the staff alert for %s %s could not be made",
                      library.id, *pool)
        return True
    if alert is not None:
        writes.alert(alert)
    return True


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
        if req is not None and req.state == RequestState.NEW:
            req.state, req.error = RequestState.ERROR, error[-2000:]
