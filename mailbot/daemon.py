"""``mailbot run``: the unattended process around the three stages.

Threads, each restartable from the database alone:

* one **watcher** per IMAP mailbox: IMAP IDLE (re-issued every ``idle_refresh`` seconds,
  before servers drop it), or polling where the server has no IDLE; any network or server
  error → reconnect after 1, 2, 4 … seconds (at most ``reconnect_max``); a refused login
  → the next one only at the mailbox's ``login_retry_at`` (``auth_retry``, doubling up to
  ``auth_retry_max``, shared by every process through the database);
* one **Maildir poller** for local Maildirs;
* the **decider**: woken by intake (or every 30 s, for requests waiting on a reader source),
  decides in arrival order;
* the **sender**: woken by the decider, sends due replies through each one's relay (its own
  connections, paced to its limits), waits out failures and throttling, sleeps till due;
* the **scheduler** (APScheduler): reminders, month close, retention purge.

SIGTERM/SIGINT sets one flag: every thread finishes the mail it is handling (a stored
chunk, one decision, one sent reply) and stops; nothing is left half done because each of
those steps is one transaction.
"""

from __future__ import annotations

import asyncio
import logging
import select
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from imapclient import IMAPClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailbot import aio, offload
from mailbot.clock import utcnow
from mailbot.config import MailboxSettings, Settings
from mailbot.db import notify
from mailbot.db.mailboxes import read_health, record_login_ok, record_mailbox_error
from mailbot.db.running import holding_running
from mailbot.db.session import reading
from mailbot.intake.failures import failure_text
from mailbot.intake.imap import connect
from mailbot.intake.maildir import poll_all_maildirs
from mailbot.intake.poll import poll_mailbox
from mailbot.login.failures import AuthFailure
from mailbot.readers import close_sources, make_sources
from mailbot.web.server import dashboard, take_port

if TYPE_CHECKING:
    from mailbot.jobs import Jobs
    from mailbot.respond.outbox import SendReport

# The deciding, sending and scheduling code (templates, SMTP, APScheduler: ~0.4 s of
# imports) is imported by the threads that use it, after the mailbox watchers have
# started: a daemon restarted in the middle of a burst stores its first mail within a
# second of starting, however often it is killed.

log = logging.getLogger(__name__)

DECIDE_EVERY = 30.0  # seconds: retry requests waiting on a reader source that was down
SEND_CHECK_EVERY = 30.0
# Replies another process is sending (PostgreSQL: its row locks; SQLite: the outbox's
# sender lock) are looked at again this often, so that if it dies its replies are taken
# over within about a second, without spinning meanwhile.
HELD_RECHECK = 1.0
# PostgreSQL: processes sharing a database wake each other with NOTIFY on this channel
# ("decide": mail was stored; "send": replies were queued), so work one process leaves
# behind (it was killed, or another process's intake took the mail) is picked up at once.
CHANNEL = "mailbot"


def send_pause(report: SendReport, due: datetime | None, now: datetime) -> float:
    """Seconds the sender sleeps (unless woken) after a pass that made ``report``;
    ``due`` is when the earliest pending reply becomes sendable.

    Replies a relay's limits or pause held back are due already: for them the sender
    sleeps until the relay's next slot opens (``report.wake_at``), not 0 s."""
    if report.held:
        return HELD_RECHECK
    if report.wake_at is not None:
        due = report.wake_at if due is None or due <= now else min(due, report.wake_at)
    if due is None:
        return SEND_CHECK_EVERY
    return max(0.0, min(SEND_CHECK_EVERY, (due - now).total_seconds()))


class Daemon:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.engine: Engine = sessions.kw["bind"]
        self.stopping = threading.Event()
        self._decide = threading.Event()
        self._send = threading.Event()
        self.threads: list[threading.Thread] = []
        # Set by the decider when a request waits for this mailbox to be read past it.
        self._maildirs_now = threading.Event()  # one poller serves every Maildir
        self._poll_now = {mb.key: self._maildirs_now if mb.type == "maildir"
                          else threading.Event() for mb in settings.mailboxes}
        self.sources: dict[str, Any] = {}
        self.jobs: Jobs | None = None  # started after the watchers (see the imports)
        self.web: Any = None  # mailbot.web.server.WebServer, when the dashboard runs

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        port = take_port(self.settings)  # first: if it is taken, nothing starts (exit 2)
        self.sources = make_sources(self.settings)
        for mb in self.settings.mailboxes:
            if mb.type == "imap":
                self._spawn(f"imap {mb.address}", self._watch, mb)
        if any(mb.type == "maildir" for mb in self.settings.mailboxes):
            self._spawn("maildir", self._poll_maildirs)
        self._spawn("decider", self._decider)
        self._spawn("sender", self._sender)
        if notify.shared(self.engine):
            self._spawn("listener", self._listen)
        from mailbot.jobs import Jobs

        self.jobs = Jobs(self.sessions, self.settings, wake=self._send.set)
        self.jobs.start()
        self._start_web(port)
        self._decide.set()
        self._send.set()
        if not self.stopping.is_set():
            log.info("mailbot running: %d mailbox(es), %d library(ies)",
                     len(self.settings.mailboxes), len(self.settings.libraries))

    def _start_web(self, port: Any) -> None:
        """The staff dashboard (and /healthz, /metrics) on ``port``, in its own thread."""
        if port is None:  # web.enabled = false
            return
        self.web = dashboard(self.settings, self.sessions, port, wake_sender=self._send.set)
        if self.web is None:  # it could not be made: the bot runs on (logged)
            return
        if self.stopping.is_set():
            # SIGTERM came while we were starting (a burst can be answered before the
            # dashboard is up): stop() found no web server to stop, so none is started.
            self.web.close()
            self.web = None
            return
        self.web.start()
        if self.stopping.is_set():  # ... or it came just now
            self.web.stop()

    def stop(self, *_args: object) -> None:
        if not self.stopping.is_set():
            log.info("stopping: finishing the current mail")
        if self.web is not None:
            self.web.stop()
        self.stopping.set()
        self._decide.set()
        self._send.set()
        for event in self._poll_now.values():
            event.set()

    def join(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        if self.jobs is not None:
            self.jobs.shutdown()
        if self.web is not None:
            self.web.join(max(0.1, deadline - time.monotonic()))
        close_sources(self.sources)
        offload.shutdown()  # the burst workers, if a burst started them
        alive = [t.name for t in self.threads if t.is_alive()]
        if alive:
            log.warning("threads still running at exit: %s", ", ".join(alive))

    def run_forever(self) -> int:
        """The CLI's entry: runs until SIGTERM or SIGINT (restore refuses meanwhile)."""
        with holding_running(self.engine):
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
            self.start()
            while not self.stopping.wait(1.0):
                pass
            self.join()
            log.info("mailbot stopped")
            return 0

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        def guarded() -> None:
            # A bug in one loop must not silently stop that part of the service.
            while not self.stopping.is_set():
                try:
                    target(*args)
                    return
                except Exception:
                    log.exception("%s crashed; restarting it in 5 s", name)
                    self.stopping.wait(5.0)

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()

    # -- other processes on the same database (PostgreSQL) ------------------------------

    def _tell_others(self, what: str) -> None:
        """A hint to the other processes (and this one) that there is work: ``decide`` or
        ``send``. Their timers would find it anyway; a failure here only costs time."""
        if not notify.shared(self.engine):
            return
        try:
            notify.notify(self.engine, CHANNEL, what)
        except Exception as exc:
            log.warning("could not notify the other processes: %s", type(exc).__name__)

    def _listen(self) -> None:
        wake = {"decide": self._decide, "send": self._send}
        backoff = 1.0
        while not self.stopping.is_set():
            try:
                with notify.listening(self.engine, CHANNEL) as wait:
                    backoff = 1.0
                    # What was notified while we were not listening is looked at now.
                    self._decide.set()
                    self._send.set()
                    while not self.stopping.is_set():
                        for what in wait(1.0):
                            if what in wake:
                                wake[what].set()
            except Exception as exc:
                log.warning("listening for the other processes: %s: %s; again in %.0f s",
                            type(exc).__name__, exc, backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, self.settings.daemon.reconnect_max)

    # -- intake ------------------------------------------------------------------------

    def _poll(self, mb: MailboxSettings, client: IMAPClient, *, asked: bool = False) -> None:
        report = poll_mailbox(self.sessions, self.settings, mb, client=client)
        if report.stored or report.duplicates or asked:
            self._decide.set()
        if report.stored:
            self._tell_others("decide")

    def _watch(self, mb: MailboxSettings) -> None:
        d = self.settings.daemon
        backoff = 1.0
        while not self.stopping.is_set():
            health = read_health(self.sessions, mb)
            if health.login_retry_at is not None and health.login_retry_at > utcnow():
                # Its login was refused (by this process or another, or before a restart):
                # not tried again before then, however often we are restarted.
                log.info("%s: login refused before; next try at %s", mb.key,
                         health.login_retry_at.isoformat(timespec="seconds"))
                self._wait_while_down(health.down_since, health.login_retry_at)
                continue
            client: IMAPClient | None = None
            until = None
            try:
                client = connect(mb)
                record_login_ok(self.sessions, mb)
                self._poll(mb, client)
                backoff = 1.0
                idle = client.has_capability("IDLE")
                if not idle:
                    log.info("%s: server has no IDLE; polling every %.0f s", mb.key,
                             d.poll_interval)
                poll_now = self._poll_now[mb.key]
                while not self.stopping.is_set():
                    if idle:
                        self._idle_until_news(client, d.idle_refresh, poll_now)
                    else:
                        poll_now.wait(d.poll_interval)
                    if self.stopping.is_set():
                        break
                    asked = poll_now.is_set()
                    poll_now.clear()
                    self._poll(mb, client, asked=asked)
            except AuthFailure as exc:
                text = failure_text(exc, mb)
                health = record_mailbox_error(self.sessions, mb, text, login_refused=True,
                                              daemon=d)
                until = health.login_retry_at or utcnow() + timedelta(seconds=d.auth_retry)
                log.error("%s; next login at %s", text, until.isoformat(timespec="seconds"))
            except Exception as exc:
                text = failure_text(exc, mb)
                log.warning("%s: %s; reconnecting in %.0f s", mb.key, text, backoff)
                health = record_mailbox_error(self.sessions, mb, text)
                until = utcnow() + timedelta(seconds=backoff)
                backoff = min(backoff * 2, d.reconnect_max)
            finally:
                if client is not None:
                    try:
                        client.logout()
                    except Exception:
                        pass
            if until is not None:
                self._wait_while_down(health.down_since, until)

    def _wait_while_down(self, down_since: datetime | None, until: datetime) -> None:
        """Sleeps until ``until`` (a reconnect, or the next login after a refused one),
        waking on stop. Should the mailbox's grace (daemon.mailbox_grace) run out meanwhile,
        the deciders are woken then: its library is now decided without it."""
        grace = self.settings.daemon.mailbox_grace
        if grace > 0 and down_since is not None:
            ends = down_since + timedelta(seconds=grace)
            if utcnow() < ends < until:
                if self.stopping.wait((ends - utcnow()).total_seconds() + 0.01):
                    return
                self._decide.set()
                self._tell_others("decide")
        self.stopping.wait(max(0.0, (until - utcnow()).total_seconds()))

    def _idle_until_news(self, client: IMAPClient, refresh: float,
                         poll_now: threading.Event) -> None:
        """IDLE until the server reports new mail, the refresh time is up, a poll is
        asked for, or we stop."""
        client.idle()
        try:
            started = time.monotonic()
            while not poll_now.is_set() and time.monotonic() - started < refresh:
                readable, _, _ = select.select([client.socket()], [], [], 0.2)
                if not readable:
                    continue
                responses = client.idle_check(timeout=0)
                if not responses:
                    # Readable yet nothing to read: imapclient swallows EOF here, so leave
                    # IDLE; ending it (or the poll after) fails on a dead connection.
                    return
                if any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                    return
        finally:
            client.idle_done()

    def _poll_maildirs(self) -> None:
        while not self.stopping.is_set():
            asked = self._maildirs_now.is_set()
            self._maildirs_now.clear()
            reports = poll_all_maildirs(self.sessions, self.settings)
            stored = any(r.stored for r in reports)
            if asked or stored:
                self._decide.set()
            if stored:
                self._tell_others("decide")
            self._maildirs_now.wait(self.settings.daemon.poll_interval)

    # -- decide and respond ------------------------------------------------------------

    def _decider(self) -> None:
        from mailbot.decide import decide_pending, waiting_on

        while not self.stopping.is_set():
            self._decide.wait(DECIDE_EVERY)
            self._decide.clear()
            if self.stopping.is_set():
                break
            decisions = decide_pending(self.sessions, self.settings, sources=self.sources,
                                       should_stop=self.stopping.is_set)
            if decisions:
                self._send.set()
                self._tell_others("send")
            with reading(self.sessions) as session:
                lagging = waiting_on(session, self.settings)
            if lagging:
                # A request waits for its mailboxes to be read completely past its arrival
                # (INTERNALDATE has whole seconds): wait for the next second to begin, then
                # ask those watchers to poll, and decide again.
                now = utcnow()
                self.stopping.wait(1.0 - now.microsecond / 1e6 + 0.01)
                for key in lagging:
                    self._poll_now[key].set()  # the watcher wakes us when it has read

    def _sender(self) -> None:
        aio.run(self._send_loop())

    async def _send_loop(self) -> None:
        from mailbot.respond.outbox import next_due, send_due
        from mailbot.respond.relays import Transports, Unreachable

        d = self.settings.daemon
        unreachable = Unreachable(d.reconnect_max)  # each relay its own back-off
        # One transport (its connections) per relay, for the sender's life.
        async with Transports() as transports:
            while not self.stopping.is_set():
                resting = unreachable.resting(utcnow())
                report = await send_due(self.sessions, self.settings, transports=transports,
                                        honour_retry=True, retry_for=d.send_retry_for,
                                        backoff_max=d.send_backoff_max,
                                        should_stop=self.stopping.is_set,
                                        # another process sending (SQLite): look again
                                        # in a second instead of waiting for it here
                                        wait=False, skip_relays=resting)
                now = utcnow()
                report.wake(unreachable.after_round(resting, report.down, now))
                wait = send_pause(report, next_due(self.sessions), now)
                if wait > 0:
                    await asyncio.to_thread(self._send.wait, wait)
                self._send.clear()
