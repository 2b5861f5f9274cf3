"""``mailbot status``: the installation's state read from the database, shown as lines for
a person or as JSON for scripts, and its exit code: 0 when nothing needs attention, 1 when
something does (mailbot.health judges; ``GET /healthz`` and ``GET /metrics`` judge from the
same facts, gathered here).

Per library: its reader source, the month's pools, the queue, the outbox and each mailbox's
last poll and health (a mailbox in error: why, since when, whether its library is already
decided without it, when its next login is tried); then each relay in use, with its queue
and health even when nothing waits; the scheduled jobs; what needs attention.

A failed reminder is shown (``reminders_failed``) but needs no attention (mailbot.health,
**replies**, says why); a failed staff alert (``staff_alerts_failed``) only while its
month's pool is still not imported (**staff_alert**). A database that cannot be read (a damaged file, PostgreSQL down)
is exit 1 too, with one line saying so; no database where the config points, or another
user's file, is exit 2 (BadInput, before anything is read).

Read without SQLite's write lock (db.session.reading): ``status`` answers at once while
the bot works a burst. A few grouped queries whatever the number of libraries (a
consortium has hundreds), none of them reading every sent reply's row (SQLite would walk
past each message body): the outbox is counted from its indexes.

Still one concept over 400 lines: what `mailbot status` gathers and prints; the staff-alert counts should move beside the health rules next.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import exists, func, make_url, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mailbot import __version__
from mailbot.clock import as_aware, month_key, month_of, utcnow
from mailbot.config import Settings
from mailbot.db.models import AuditLog, Code, CodePool, JobRun, Library, Mailbox, Outbox, Request
from mailbot.db.session import reading
from mailbot.decide.horizon import mailbox_health
from mailbot.health import (
    PAUSE_REASONS,
    JobFacts,
    LibraryFacts,
    MailboxFacts,
    PoolFacts,
    Problem,
    RelayFacts,
    Snapshot,
    problems,
)
from mailbot.outcomes import Outcome, OutboxState, RequestState
from mailbot.respond.relays import queue_by_relay
from mailbot.respond.staff_alert import KIND, alert_message_id

_WHEN = "%Y-%m-%d %H:%M:%S %Z"
REMINDER = "reminder"  # Outbox.kind of a reminder (mailbot.housekeeping)
STAFF_ALERT = KIND  # Outbox.kind of a staff alert (mailbot.respond.staff_alert)
FORMAT = 1  # of the JSON (README, "Monitoring"): bumped when a field changes meaning


def run_status(open_sessions: Callable[[], sessionmaker[Session]], settings: Settings, *,
               as_json: bool) -> int:
    """Opens the database (``open_sessions``: the command's, which checks the file and the
    schema), prints the status (lines, or JSON) and returns the exit code: 1 when something
    needs attention, or when the database cannot be read (a damaged file, PostgreSQL down):
    then one line saying so (with --json the object of ``unreadable_json``), no traceback.
    What the user must fix in the config (no database there yet, another user's file) is
    BadInput from ``open_sessions``: exit 2, as for every command."""
    now = utcnow()
    try:
        snapshot = gather(open_sessions(), settings, now)
    except SQLAlchemyError as exc:
        reason = unreadable(settings.database_url, exc)
        if as_json:
            print(json.dumps(unreadable_json(now, reason), ensure_ascii=False, indent=2))
        else:
            print(f"NEEDS ATTENTION: {reason}")
        return 1
    found = problems(snapshot)
    if as_json:
        print(json.dumps(status_json(snapshot, found), ensure_ascii=False, indent=2))
    else:
        print("\n".join(status_lines(snapshot, found)))
    return 1 if found else 0


def unreadable(url: str, exc: SQLAlchemyError) -> str:
    """Why the database cannot be read, for the operator: the URL without its password and
    the driver's first line (no SQL, no parameters)."""
    where = make_url(url).render_as_string(hide_password=True)
    cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (f"the database {where} cannot be read: "
            f"{type(exc).__name__}: {cause[0] if cause else '?'}")


def unreadable_json(now: datetime, reason: str) -> dict[str, Any]:
    """``status --json`` when the database cannot be read: the verdict and why, no facts."""
    return {"format": FORMAT, "ok": False, "database": False, "generated_at": iso(now),
            "version": __version__,
            "attention": [{"what": "database", "key": "database", "library": None,
                           "message": reason}]}


# -- the facts ---------------------------------------------------------------------------


def _handled(request_id: Any) -> Any:
    """SQL: staff marked the request handled on the dashboard (as web.queries.handled_clause
    says for the queue page's counts, which these follow)."""
    return exists().where(AuditLog.request_id == request_id, AuditLog.action == "handled")


def _answers() -> Any:
    """SQL: the request an outbox row answers: its own (a reply), or the one whose code
    it carries (an override, "issue a code anyway": the row has no request_id)."""
    return func.coalesce(Outbox.request_id, select(Code.request_id)
                         .where(Code.id == Outbox.code_id).scalar_subquery())


def gather(sessions: sessionmaker[Session], settings: Settings, now: datetime) -> Snapshot:
    """Everything ``status``, ``/healthz`` and ``/metrics`` report, as of ``now``."""
    queues = queue_by_relay(sessions, settings, now)
    months = {lib.id: month_key(*month_of(now, settings.library_tz(lib.id)))
              for lib in settings.libraries}
    keys = [mb.key for mb in settings.mailboxes]
    with reading(sessions) as session:
        sources = {lib_id: (error, as_aware(down) if down else None)
                   for lib_id, error, down in session.execute(
                       select(Library.id, Library.source_error, Library.source_down_since))}
        requests = _grouped(session, select(Request.library_id, Request.state, func.count())
                            .group_by(Request.library_id, Request.state))
        set_aside = dict(session.execute(
            select(Request.library_id, func.count())
            .where(Request.state == RequestState.ERROR, ~_handled(Request.id))
            .group_by(Request.library_id)).all())
        waiting = _grouped(session, select(Request.library_id, Request.service, func.count())
                           .where(Request.state == RequestState.NEW,
                                  Request.kind == "request")
                           .group_by(Request.library_id, Request.service))
        refused = _grouped(session, select(Request.library_id, Request.service, Request.month,
                                           func.count())
                           .where(Request.outcome == Outcome.POOL_EXHAUSTED,
                                  Request.month.in_(set(months.values())))
                           .group_by(Request.library_id, Request.service, Request.month))
        not_ready = _grouped(session, select(Request.library_id, Request.service,
                                             Request.month, func.count())
                             .where(Request.outcome == Outcome.POOL_NOT_READY,
                                    Request.month.in_(set(months.values())))
                             .group_by(Request.library_id, Request.service, Request.month))
        # Pending and failed rows are few (ix_outbox_state); the sent ones are every reply
        # ever: counted as all rows of the library less those, from an index that holds
        # library_id (ix_outbox_to_key), never walking the table and its message bodies.
        outbox = _grouped(session, select(Outbox.library_id, Outbox.state, func.count())
                          .where(Outbox.state.in_((OutboxState.PENDING, OutboxState.FAILED)))
                          .group_by(Outbox.library_id, Outbox.state))
        rows_of = dict(session.execute(select(Outbox.library_id, func.count())
                                       .group_by(Outbox.library_id)).all())
        failed: dict[tuple[str, bool], int] = {}  # (library, a reminder?): count
        for lib_id, kind, count in session.execute(
                select(Outbox.library_id, Outbox.kind, func.count())
                .where(Outbox.state == OutboxState.FAILED, Outbox.kind != STAFF_ALERT,
                       or_(Outbox.kind == REMINDER, ~_handled(_answers())))
                .group_by(Outbox.library_id, Outbox.kind)):
            key = (lib_id, kind == REMINDER)
            failed[key] = failed.get(key, 0) + count
        # Staff alerts apart (mailbot.health, **staff_alert**): few rows, by Message-ID.
        alerts_failed: dict[str, set[str]] = {}
        for lib_id, message_id in session.execute(
                select(Outbox.library_id, Outbox.message_id)
                .where(Outbox.state == OutboxState.FAILED, Outbox.kind == STAFF_ALERT)):
            alerts_failed.setdefault(lib_id, set()).add(message_id)
        codes = {(lib_id, service, month): (total, left) for lib_id, service, month, total, left
                 in session.execute(
                     select(Code.library_id, Code.service, Code.month, func.count(Code.id),
                            func.count(Code.id).filter(Code.issued_at.is_(None),
                                                       Code.expired_at.is_(None)))
                     .where(Code.month.in_(set(months.values())))
                     .group_by(Code.library_id, Code.service, Code.month))}
        dealt_in = {(lib_id, service) for lib_id, service in session.execute(
            select(CodePool.library_id, CodePool.service).distinct())}
        rows = {mb.key: mb for mb in session.scalars(select(Mailbox).where(Mailbox.key.in_(keys)))}
        retrying: dict[str, int] = {}
        for lib_id, mail_from, count in session.execute(
                select(Outbox.library_id, Outbox.mail_from, func.count())
                .where(Outbox.state == OutboxState.PENDING, Outbox.failing_since.is_not(None))
                .group_by(Outbox.library_id, Outbox.mail_from)):
            key = settings.relay_for(lib_id, mail_from).key
            retrying[key] = retrying.get(key, 0) + count
        jobs = tuple(JobFacts(job.name, _aware(job.last_run_at), _aware(job.next_run_at),
                              job.last_result)
                     for job in session.scalars(select(JobRun).order_by(JobRun.name)))

    grace = settings.daemon.mailbox_grace
    libraries = []
    for lib in settings.libraries:
        month = months[lib.id]
        pools = tuple(PoolFacts(
            service, month, *codes.get((lib.id, service, month), (0, 0)),
            waiting=waiting.get((lib.id, service), 0),
            refused=refused.get((lib.id, service, month), 0),
            dealt_in=(lib.id, service) in dealt_in,
            not_ready=not_ready.get((lib.id, service, month), 0),
            alert_failed=alert_message_id(lib.id, service, month)
            in alerts_failed.get(lib.id, ())) for service in settings.listed_services(lib))
        mailboxes = []
        for mb in settings.mailboxes_of(lib.id):
            row = rows.get(mb.key)
            if row is None:  # not yet in the database: never polled
                mailboxes.append(MailboxFacts(mb.key, lib.id, mb.address))
                continue
            h = mailbox_health(row, grace, now)
            mailboxes.append(MailboxFacts(
                mb.key, lib.id, mb.address, _aware(h.last_poll_at), h.error, h.down_since,
                h.waits_until, h.without_since, h.next_login, h.refused))
        error, down = sources.get(lib.id, (None, None))
        libraries.append(LibraryFacts(
            lib.id, lib.name, month, settings.library_tz(lib.id).key, lib.reader_source,
            source_error=error, source_down_since=down,
            waiting=requests.get((lib.id, RequestState.NEW), 0),
            set_aside=set_aside.get(lib.id, 0),
            manual=requests.get((lib.id, RequestState.MANUAL), 0),
            pending=outbox.get((lib.id, OutboxState.PENDING), 0),
            failed=failed.get((lib.id, False), 0),
            reminders_failed=failed.get((lib.id, True), 0),
            alerts_failed=len(alerts_failed.get(lib.id, ())),
            sent=max(0, rows_of.get(lib.id, 0) - outbox.get((lib.id, OutboxState.PENDING), 0)
                     - outbox.get((lib.id, OutboxState.FAILED), 0)),
            pools=pools, mailboxes=tuple(mailboxes)))
    relays = tuple(RelayFacts(
        q.key, q.waiting, q.later, retrying.get(q.key, 0), q.sent_last_day,
        q.limits.per_minute, q.limits.per_hour, q.limits.per_day,
        last_at=q.last_at if q.waiting else None, paused_until=q.paused_until,
        pause_reason=q.pause_reason, error=q.last_error, down_since=q.down_since,
        last_ok_at=q.last_ok_at) for q in queues)
    return Snapshot(now, settings.timezone, tuple(libraries), relays, jobs)


def _grouped(session: Session, stmt: Any) -> dict[Any, int]:
    """{(first columns…): count} of a grouped query whose last column is the count."""
    return {tuple(row[:-1]): row[-1] for row in session.execute(stmt)}


def _aware(when: datetime | None) -> datetime | None:
    return as_aware(when) if when is not None else None


# -- lines for a person ----------------------------------------------------------------------


def _at(when: datetime | None, tz: ZoneInfo, fmt: str = _WHEN) -> str:
    return as_aware(when).astimezone(tz).strftime(fmt) if when is not None else "?"


def status_lines(snapshot: Snapshot, found: list[Problem]) -> list[str]:
    lines = []
    for lib in snapshot.libraries:
        tz = ZoneInfo(lib.timezone)
        lines.append(f"library {lib.id} ({lib.name}), month {lib.month}")
        if lib.source_error is not None:
            lines.append(f"  reader source {lib.reader_source}: DOWN since "
                         f"{_at(lib.source_down_since, tz, '%Y-%m-%d %H:%M %Z')} "
                         f"({lib.source_error}); requests wait")
        else:
            lines.append(f"  reader source {lib.reader_source}: ok")
        for pool in lib.pools:
            wait = f"; {pool.waiting} waiting" if pool.waiting else ""
            lines.append(f"  pool {pool.service:9} {pool.left:6} left of {pool.total}{wait}")
        lines.append(f"  queue: {lib.waiting} waiting, {lib.set_aside} set aside for staff, "
                     f"{lib.manual} in manual folder")
        n = lib.reminders_failed
        reminders = f", {n} reminder{'' if n == 1 else 's'} failed" if n else ""
        if lib.alerts_failed:
            n = lib.alerts_failed
            reminders += f", {n} staff alert{'' if n == 1 else 's'} failed"
        lines.append(f"  outbox: {lib.pending} pending, {lib.failed} failed, {lib.sent} sent"
                     f"{reminders}")
        for mb in lib.mailboxes:
            when = _at(mb.last_poll_at, tz) if mb.last_poll_at else "never"
            health = f"  ERROR: {mb.error}" if mb.error else ""
            lines.append(f"  mailbox {mb.address} last poll {when}{health}")
            lines += [f"    {line}" for line in mailbox_trouble(mb, tz)]
    tz = ZoneInfo(snapshot.timezone)
    if snapshot.relays:
        lines.append("relays")
    lines += [f"  {relay_line(r, tz)}" for r in snapshot.relays]
    if snapshot.jobs:
        lines.append("jobs")
    fmt = "%Y-%m-%d %H:%M %Z"
    for job in snapshot.jobs:
        last = _at(job.last_run_at, tz, fmt) if job.last_run_at else "never"
        nxt = _at(job.next_run_at, tz, fmt) if job.next_run_at else "-"
        lines.append(f"  {job.name}: next {nxt}, last {last}"
                     + (f" ({job.last_result})" if job.last_result else ""))
    if found:
        lines.append(f"NEEDS ATTENTION ({len(found)})")
        # Which one, by key (the lines above name it), and what is wrong.
        lines += [f"  [{p.what}] {p.key}: {p.reason}" for p in found]
    else:
        lines.append("ok: nothing needs attention")
    return lines


def mailbox_trouble(mb: MailboxFacts, tz: ZoneInfo) -> list[str]:
    """What a mailbox in error means for its library: since when it is down, whether its
    library's requests still wait for it, and when its next login is tried (worked out as
    for the dashboard: decide.horizon.mailbox_health)."""
    lines = []
    if mb.down_since is not None and mb.error is None:
        lines.append(f"reading again after being down since {_at(mb.down_since, tz)}; "
                     "the library's requests wait until it is read")
    elif mb.down_since is not None:
        since = f"down since {_at(mb.down_since, tz)}"
        if mb.without_since is not None:
            lines.append(f"{since}; the library is decided without it since "
                         f"{_at(mb.without_since, tz)}"
                         " (its mail, once read, is decided among what is still undecided)")
        elif mb.waits_until is not None:
            lines.append(f"{since}; the library's requests wait for it until "
                         f"{_at(mb.waits_until, tz)}, then are decided without it")
        else:
            lines.append(f"{since}; the library's requests wait for it (mailbox_grace = 0)")
    if mb.next_login is not None:
        refused = mb.refused
        lines.append(f"next login {_at(mb.next_login, tz)} "
                     f"(refused {refused} time{'' if refused == 1 else 's'} in a row)")
    return lines


def relay_line(r: RelayFacts, tz: ZoneInfo) -> str:
    """One relay: replies waiting, when the last will go out, its limits, those being
    retried, then its health: ok, PAUSED until … (why), or ERROR since …"""
    parts = [f"relay {r.key}: {r.waiting} waiting"]
    if r.later:
        parts[0] += f" (+{r.later} due later)"
    if r.last_at is not None:
        parts.append(f"last goes out {_at(r.last_at, tz)}")
    limits = [f"{n}/{span}" for n, span in ((r.per_minute, "min"), (r.per_hour, "h"),
                                            (r.per_day, "day")) if n is not None]
    if limits:
        parts.append(f"limits {' '.join(limits)}, {r.sent_last_day} sent in 24 h")
    if r.retrying:
        parts.append(f"{r.retrying} being retried")
    if r.paused_until is not None:
        why = PAUSE_REASONS.get(r.pause_reason or "", r.pause_reason or "?")
        parts.append(f"PAUSED until {_at(r.paused_until, tz)} ({why})")
    if r.error:
        since = f" since {_at(r.down_since, tz)}" if r.down_since else ""
        parts.append(f"ERROR{since}: {r.error}")
    elif r.paused_until is None:
        parts.append("ok")
    return "; ".join(parts)


# -- JSON for scripts --------------------------------------------------------------------------


def iso(when: datetime | None) -> str | None:
    """ISO 8601 with the offset (UTC)."""
    return as_aware(when).astimezone(UTC).isoformat(timespec="seconds") if when else None


def status_json(snapshot: Snapshot, found: list[Problem]) -> dict[str, Any]:
    """The documented shape (README, "Monitoring"): the verdict, what needs attention,
    then the facts. Never a password, code or token."""
    return {
        "format": FORMAT,
        "ok": not found,
        "database": True,
        "generated_at": iso(snapshot.generated_at),
        "version": __version__,
        "attention": [p.as_dict() for p in found],
        "libraries": [{
            "id": lib.id, "name": lib.name, "month": lib.month, "timezone": lib.timezone,
            "reader_source": {"kind": lib.reader_source, "ok": lib.source_error is None,
                              "error": lib.source_error,
                              "down_since": iso(lib.source_down_since)},
            "queue": {"waiting": lib.waiting, "set_aside": lib.set_aside,
                      "manual": lib.manual},
            "outbox": {"pending": lib.pending, "failed": lib.failed, "sent": lib.sent,
                       "reminders_failed": lib.reminders_failed,
                       "staff_alerts_failed": lib.alerts_failed},
            "pools": [{"service": p.service, "month": p.month, "imported": p.total,
                       "left": p.left, "waiting": p.waiting,
                       "refused_this_month": p.refused} for p in lib.pools],
        } for lib in snapshot.libraries],
        "mailboxes": [{
            "key": mb.key, "library": mb.library, "address": mb.address, "ok": mb.ok,
            "last_poll_at": iso(mb.last_poll_at), "error": mb.error,
            "down_since": iso(mb.down_since), "waits_until": iso(mb.waits_until),
            "decided_without_since": iso(mb.without_since),
            "next_login_at": iso(mb.next_login), "refused_logins": mb.refused,
        } for mb in snapshot.mailboxes],
        "relays": [{
            "key": r.key, "ok": r.ok, "waiting": r.waiting, "due_later": r.later,
            "retrying": r.retrying, "sent_last_day": r.sent_last_day,
            "limits": {"per_minute": r.per_minute, "per_hour": r.per_hour,
                       "per_day": r.per_day},
            "last_goes_out_at": iso(r.last_at), "paused_until": iso(r.paused_until),
            "pause_reason": r.pause_reason, "error": r.error,
            "down_since": iso(r.down_since), "last_ok_at": iso(r.last_ok_at),
        } for r in snapshot.relays],
        "jobs": [{
            "name": job.name, "ok": not job.failed, "last_run_at": iso(job.last_run_at),
            "next_run_at": iso(job.next_run_at), "last_result": job.last_result,
        } for job in snapshot.jobs],
    }
