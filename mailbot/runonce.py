"""``mailbot run --once``: one pass of intake -> decide -> respond, then exit (for cron
and tests).

``run_once`` reads every mailbox, decides what was stored and sends the replies, the three
overlapping (see its docstring); the replies are sent by a ``SenderThread`` or, in a burst,
a ``SenderProcess``. The unattended process around the same stages is mailbot.daemon.

The stages' modules are imported when a pass starts, not with this module: the sending
process imports it only to find its entry point.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from mailbot import aio
from mailbot.config import Settings
from mailbot.db.running import holding_running
from mailbot.errors import MailbotError


def run_once(sessions: sessionmaker[Session], settings: Settings, *,
             now: datetime | None = None) -> dict[str, Any]:
    """One full pass: every mailbox read, requests decided in arrival order, replies sent.

    The three overlap: the mailboxes are read in a thread while this one decides what may
    already be decided (each stored chunk of a burst says up to which arrival its library
    is complete), and replies are sent as they are decided. A burst (a full decide batch
    waiting) is sent by a second process, which works on another CPU and keeps the
    deciding process's database round trips from queueing behind the sender for the
    interpreter lock; a few requests by a thread.

    The pass holds the database's running lock (db/running.py: `mailbot restore` refuses
    meanwhile); so does the sending process, which may outlive it."""
    with holding_running(sessions.kw["bind"]):
        return _run_once(sessions, settings, now=now)


def _run_once(sessions: sessionmaker[Session], settings: Settings, *,
              now: datetime | None) -> dict[str, Any]:
    from mailbot.decide import decide_pending, sizes, waiting
    from mailbot.intake.poll import poll_all
    from mailbot.intake.maildir import poll_all_maildirs
    from mailbot.readers import close_sources, make_sources

    sources = make_sources(settings)  # a misconfigured source stops us before any work
    started = time.perf_counter()
    read: dict[str, Any] = {}

    def reader() -> None:
        try:
            read["polls"] = poll_all(sessions, settings) + poll_all_maildirs(sessions, settings)
        except BaseException as exc:  # re-raised below, once deciding and sending are done
            read["error"] = exc
        finally:
            read["end"] = time.perf_counter()

    read_thread = threading.Thread(target=reader, name="reader", daemon=True)
    read_thread.start()
    decisions: list[Any] = []
    sender: SenderThread | SenderProcess | None = None
    sent = None
    burst = False
    tried: dict[str, Any] = {}  # by library: what it was ready with when last decided
    try:
        while True:
            still_reading = read_thread.is_alive()
            now_waiting = waiting(sessions, settings)
            # While reading, only the libraries where something may be decided already
            # (every mailbox of theirs read past a waiting request: a consortium has
            # hundreds, most still waiting for a mailbox), and not again as they were
            # when last tried (a reader source down leaves them so); once reading is
            # done, all of them.
            todo = {lib for lib, state in now_waiting.ready.items() if tried.get(lib) != state}
            if still_reading and not todo:
                read_thread.join(0.05)
                continue
            if sender is None:
                if sum(now_waiting.by_library.values()) >= sizes.BATCH_SIZE:
                    sender = SenderProcess(settings, now)
                    burst = True
                elif not still_reading:
                    sender = SenderThread(sessions, settings, now)
            decisions += decide_pending(sessions, settings, now=now, sources=sources,
                                        only=todo if still_reading else None, burst=burst)
            if not still_reading:
                break  # this pass began after the last mail was stored
            tried.update((lib, now_waiting.ready[lib]) for lib in todo)
    finally:
        close_sources(sources)
        read_thread.join()
        decided = time.perf_counter()
        if sender is not None:
            sent = sender.finish()
    if "error" in read:
        raise read["error"]
    end = time.perf_counter()
    return {"polls": read["polls"], "decisions": decisions, "sent": sent, "seconds": {
        "read (deciding and sending meanwhile)": read["end"] - started,
        "decide (rest)": decided - read["end"], "send (rest)": end - decided}}


class SenderThread:
    """send_while in a thread of this process; ``finish`` ends it once the outbox is
    empty and returns its report (or raises what it raised)."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings,
                 now: datetime | None) -> None:
        from mailbot.respond.outbox import send_while

        self.deciding = threading.Event()
        self.deciding.set()
        self.outcome: dict[str, Any] = {}

        def sender() -> None:
            try:
                self.outcome["sent"] = aio.run(send_while(sessions, settings,
                                                          self.deciding, now=now))
            except BaseException as exc:  # re-raised in the main thread by finish()
                self.outcome["error"] = exc

        self.thread = threading.Thread(target=sender, name="sender", daemon=True)
        self.thread.start()

    def finish(self) -> Any:
        self.deciding.clear()
        self.thread.join()
        if "error" in self.outcome:
            raise self.outcome["error"]
        return self.outcome["sent"]


class SenderProcess:
    """send_while in a child process with its own database connection (on PostgreSQL
    several processes may send from one outbox: each row is claimed with an advisory
    lock; on SQLite it is the run's only sender). ``finish`` as SenderThread's; a child
    that ended without a report is a MailbotError."""

    def __init__(self, settings: Settings, now: datetime | None) -> None:
        import multiprocessing

        context = multiprocessing.get_context("forkserver")
        self.deciding = context.Event()
        self.deciding.set()
        self.result, child_end = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_send_in_child, name="mailbot-sender", daemon=True,
            args=(settings, self.deciding, child_end, now, logging.getLogger().level,
                  os.getpid()))
        self.process.start()
        child_end.close()

    def finish(self) -> Any:
        self.deciding.clear()
        try:
            kind, value = self.result.recv()
        except EOFError:
            kind, value = "error", MailbotError(
                f"the sending process ended without a report (exit code "
                f"{self.process.exitcode}); unsent replies stay pending for the next run")
        self.process.join()
        if kind == "error":
            raise value
        return value


def _send_in_child(settings: Settings, deciding: Any, report: Any, now: datetime | None,
                   level: int, parent: int) -> None:
    from mailbot import offload
    from mailbot.logs import configure_logging

    configure_logging(level)
    # Should the run be killed, what it decided is still sent (one last round, as at the
    # end of a run), then this process ends instead of waiting for ever.
    offload.end_with(parent, then=deciding.clear)
    try:
        from mailbot.db.session import open_database
        from mailbot.respond.outbox import send_while

        with holding_running(settings.database_url):  # the run may end before this does
            sessions = open_database(settings.database_url)
            report.send(("sent", aio.run(send_while(sessions, settings, deciding, now=now))))
    except BaseException as exc:
        try:
            report.send(("error", exc))
        except Exception:  # not picklable: its text is enough
            report.send(("error", MailbotError(f"sending failed: {type(exc).__name__}: {exc}")))
