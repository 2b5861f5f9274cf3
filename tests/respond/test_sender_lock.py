"""The SQLite outbox's sender lock (mailbot/respond/sender_lock.py), process by process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from mailbot.db.session import make_engine
from mailbot.respond.sender_lock import SenderLock, lock_path

HOLD = """
import sys, time
from pathlib import Path
from mailbot.respond.sender_lock import SenderLock
lock = SenderLock(Path(sys.argv[1]))
assert lock.try_acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_the_lock_file_sits_beside_a_sqlite_file_only(tmp_path):
    # One lock per database file; PostgreSQL claims rows itself, memory has one process.
    db = tmp_path / "mailbot.db"
    assert lock_path(make_engine(f"sqlite:///{db}")) == db.with_name("mailbot.db.sending")
    assert lock_path(make_engine("sqlite://")) is None
    # Another spelling of the same file (a symlink to it) finds the same lock.
    (tmp_path / "current.db").symlink_to(db)
    assert lock_path(make_engine(f"sqlite:///{tmp_path}/current.db")) == \
        db.with_name("mailbot.db.sending")
    assert lock_path(make_engine("postgresql+psycopg://u@127.0.0.1/test")) is None


def test_one_holder_at_a_time_and_the_others_are_told_who(tmp_path):
    # A second sender is refused while the first holds the lock, and takes it after.
    path = tmp_path / "mailbot.db.sending"
    first, second = SenderLock(path), SenderLock(path)
    assert first.try_acquire()
    assert not second.try_acquire()
    assert f"process {os.getpid()} (since " in second.holder()
    first.release()
    assert second.try_acquire()
    second.release()
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_holder_killed_with_sigkill_leaves_the_lock_free(tmp_path):
    # The kernel drops the lock with its holder, however it dies: no stale lock to clear.
    path = tmp_path / "mailbot.db.sending"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        lock = SenderLock(path)
        assert not lock.try_acquire()
        assert f"process {holder.pid} " in lock.holder()
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        deadline = time.monotonic() + 5
        while not lock.try_acquire():
            assert time.monotonic() < deadline, "the dead holder's lock was not released"
            time.sleep(0.01)
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
