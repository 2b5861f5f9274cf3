"""The worker processes of a burst (mailbot/offload.py) and the sending process: a run
killed in a burst leaves none of them behind. (Mail parsed by the workers:
tests/intake/test_imap.py, tests/intake/test_parse_again.py; replies are composed by the
sender, not by them: tests/respond/test_recipes.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

from tests.botenv import make_bot, request_mail


def _bot(tmp_path, imap_user, smtp_sink, *, requests: int, codes: int):
    """``requests`` valid requests in arrival order (w0, w1, …), ``codes`` codes."""
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = bot.window()
    ok = f"{w.year + 1}-12-31;0;0;{w.year}-01-15;{w.year}-02-01"
    bot.import_readers([f"01500{i:02d};Ala;Praca{i};w{i}@patron.test;{ok}"
                        for i in range(requests)])
    bot.import_codes([f"WORK-{i:04d}" for i in range(codes)])
    for i in range(requests):
        raw, _ = request_mail(f"w{i}@patron.test", "LEGIMI", f"Ala Praca{i} 01500{i:02d}")
        imap_user.append(raw, internaldate=w + timedelta(seconds=i))
    return bot


def _processes_marked(mark: str) -> list[int]:
    """Processes whose environment carries ``mark`` (a run's children inherit it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if mark.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue  # ended meanwhile, or not ours to read
    return found


def test_a_run_killed_in_a_burst_leaves_no_worker_or_sending_process_behind(
        tmp_path, imap_user, smtp_sink):
    # SIGKILL of `run --once` in the middle of a burst: its worker processes and its
    # sending process are children of the fork server, not of the run, and nothing else
    # would end them. They notice the run is gone and end (the sender after one last
    # round of what was decided), and the fork server with them.
    bot = _bot(tmp_path, imap_user, smtp_sink, requests=800, codes=800)
    mark = f"MAILBOT_TEST_RUN={uuid.uuid4().hex}"
    env = {**os.environ, mark.split("=")[0]: mark.split("=")[1]}
    run = subprocess.Popen([sys.executable, "-m", "mailbot", "--config", str(bot.config),
                            "run", "--once"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not smtp_sink.messages and time.monotonic() < deadline:
        time.sleep(0.01)
    children = [pid for pid in _processes_marked(mark) if pid != run.pid]
    run.kill()
    run.wait()
    assert children, "the burst started no worker or sending process"
    deadline = time.monotonic() + 30
    while _processes_marked(mark) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_marked(mark) == []
