"""Helpers for the kill -9 tests (tests/test_crash.py): the daemon as a real process that
can be SIGKILLed, database snapshots taken from outside it, and atomic batches of mail.

Nothing here imports pytest or mailbot: the database is only read with plain sqlite3, one
short connection per look, so after a SIGKILL nobody but the next daemon opens the file
(its WAL and shared-memory index are stale and must be recovered by it).
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any


# Config tables for a daemon that is killed and restarted again and again: it reconnects
# and retries within a second, and no dashboard is started (not under test there, and its
# fixed port would clash between runs).
KILLABLE_DAEMON = """
[daemon]
poll_interval = 600.0
reconnect_max = 1.0
send_backoff_max = 1.0

[web]
enabled = false
"""


@dataclass(frozen=True)
class Counts:
    """How far the three stages have got, as the database says."""

    stored: int = 0    # requests rows (intake committed)
    new: int = 0       # still waiting to be decided
    decided: int = 0   # state decided (outcome recorded)
    error: int = 0     # set aside for staff
    outbox: int = 0    # replies written
    sent: int = 0      # replies marked sent

    def __str__(self) -> str:
        return (f"stored={self.stored} new={self.new} decided={self.decided} "
                f"error={self.error} outbox={self.outbox} sent={self.sent}")


def db_counts(db_path: Path) -> Counts:
    """A snapshot of the database, read without writing (zeros before it exists)."""
    if not db_path.exists():
        return Counts()
    # Read-write mode (a read-only connection cannot join a WAL database whose index it may
    # not rebuild) but only SELECTs; never called between a kill and the next start, so
    # the restarted daemon is the one that finds the stale WAL.
    conn = sqlite3.connect(db_path, timeout=10)
    try:
        try:
            states = dict(conn.execute(
                "SELECT state, count(*) FROM requests GROUP BY state").fetchall())
            outbox = dict(conn.execute(
                "SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return Counts()
            raise
    finally:
        conn.close()
    return Counts(stored=sum(states.values()), new=states.get("new", 0),
                  decided=states.get("decided", 0), error=states.get("error", 0),
                  outbox=sum(outbox.values()), sent=outbox.get("sent", 0))


class DaemonProcess:
    """``python -m mailbot --config CONFIG run`` as a child process, one log file per run."""

    def __init__(self, config: Path, log_dir: Path) -> None:
        self.config = config
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.started_at = 0.0
        self.log_path: Path | None = None

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.runs += 1
        self.log_path = self.log_dir / f"run{self.runs:02d}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mailbot", "--config", str(self.config), "run"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        self.started_at = time.monotonic()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def uptime(self) -> float:
        return time.monotonic() - self.started_at

    def kill(self) -> int | None:
        """SIGKILL (kill -9), then reap; returns the exit status (None if it had exited)."""
        assert self.proc is not None
        already = self.proc.poll()
        if already is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        return already

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, the graceful stop; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            raise AssertionError(f"mailbot did not stop within {timeout} s of SIGTERM")

    def stop_quietly(self) -> None:
        """For finally-blocks: make sure no daemon outlives the test."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def wait_for_log(self, text: str, timeout: float) -> bool:
        """Waits until this run's log shows ``text`` (e.g. the daemon's start-up line)."""
        return wait_until(lambda: text in self.log_text(), timeout, step=0.05)

    def log_text(self, run: int | None = None) -> str:
        path = self.log_dir / f"run{(run or self.runs):02d}.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    """Polls ``predicate`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


_APPENDUID = re.compile(rb"\[APPENDUID \d+ ([0-9:,]+)\]")


def _uid_set(text: bytes) -> list[int]:
    uids: list[int] = []
    for part in text.split(b","):
        lo, _, hi = part.partition(b":")
        uids.extend(range(int(lo), int(hi or lo) + 1))
    return uids


def multiappend(user: Any, mails: Sequence[tuple[bytes, datetime]],
                folder: str = "INBOX") -> list[int]:
    """APPENDs the mails in one MULTIAPPEND (RFC 3502: all become visible at once), each
    with its INTERNALDATE; returns their UIDs in the order given."""
    with user.connect() as client:
        response = client.multiappend(folder, [{"msg": raw, "date": when}
                                               for raw, when in mails])
    match = _APPENDUID.search(response if isinstance(response, bytes) else
                              str(response).encode())
    assert match, f"no APPENDUID in the server's answer: {response!r}"
    uids = _uid_set(match.group(1))
    assert len(uids) == len(mails), (uids, len(mails))
    return uids
