"""Several mailbot processes on one SQLite file (issue 15): cron firing ``run --once``
while another is still at work, staff running one by hand beside the daemon, and a
``run --once`` killed in a burst whose sending process lives on. Real processes, real
Dovecot in, real aiosmtpd out.

Whatever races, every patron gets exactly one reply and no code is given twice: the outbox
of a SQLite database is sent by one process at a time (mailbot/respond/sender_lock.py).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from tests.botenv import make_bot, request_mail, valid_reader
from tests.chaos import KILLABLE_DAEMON, db_counts, multiappend, wait_until

POLICY = "reminder_days = 0\n"
CODE_RE = re.compile(r"RACE-\d{6}")



def _burst(tmp_path: Path, imap_user, smtp_sink, *, patrons: int, codes: int,
           first: int | None = None):
    """A bot with ``patrons`` readers and ``codes`` codes; the mailbox holds the requests
    of the first ``first`` of them (all by default). Returns it and a function that
    appends the requests of the next n patrons."""
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], tables=KILLABLE_DAEMON,
                   policy=POLICY)
    w = bot.window()
    assert bot.import_readers([f"07{i:05d};Ola;Race{i};r{i}@patron.test;"
                               f"{valid_reader(w.year)}"
                               for i in range(1, patrons + 1)]) == 0
    assert bot.import_codes([f"RACE-{i:06d}" for i in range(1, codes + 1)]) == 0
    start = w + timedelta(seconds=30)
    appended = 0

    def more(n: int) -> None:
        nonlocal appended
        multiappend(imap_user, [
            (request_mail(f"r{i}@patron.test", "LEGIMI", f"Ola Race{i}\n07{i:05d}")[0],
             start + timedelta(seconds=i // 3)) for i in range(appended + 1, appended + n + 1)])
        appended += n

    more(first or patrons)
    return bot, more


def _mailbot(config: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "mailbot", "--config", str(config),
                                 *args], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _codes_in(mail) -> set[str]:
    return set(CODE_RE.findall(mail.raw.decode("utf-8", "replace")))


def _one_reply_each(smtp_sink, patrons: int, codes: int) -> None:
    per_request = Counter(m.message["In-Reply-To"] for m in smtp_sink.messages)
    twice = {mid: n for mid, n in per_request.items() if n > 1}
    assert not twice, f"{len(twice)} patrons got more than one reply"
    assert len(per_request) == patrons
    issued = [c for m in smtp_sink.messages for c in _codes_in(m)]
    assert len(issued) == len(set(issued)) == min(codes, patrons)


@pytest.mark.parametrize("commands", [
    pytest.param([["run", "--once"]] * 2, id="two-run-once"),
    pytest.param([["run", "--once"]] * 3, id="three-run-once"),
    pytest.param([["run"], ["run", "--once"], ["run", "--once"]], id="daemon-and-two-run-once"),
])
def test_processes_started_together_on_one_sqlite_file_answer_each_patron_once(
        tmp_path, imap_user, smtp_sink, commands):
    # Two or three processes started at the same moment on one SQLite database — cron
    # without flock, staff by hand beside the daemon: each patron gets exactly one reply.
    patrons, codes = 120, 90
    bot, _ = _burst(tmp_path, imap_user, smtp_sink, patrons=patrons, codes=codes)
    procs = [_mailbot(bot.config, *cmd, log=tmp_path / f"p{n}.log")
             for n, cmd in enumerate(commands)]
    try:
        for proc, cmd in zip(procs, commands):
            if "--once" in cmd:
                assert proc.wait(120) == 0, (tmp_path / f"p{procs.index(proc)}.log").read_text()
        assert wait_until(lambda: db_counts(tmp_path / "mailbot.db").sent >= patrons, 60)
        time.sleep(1.0)  # a duplicate would need this long at most to reach the sink
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
    _one_reply_each(smtp_sink, patrons, codes)


def test_run_once_killed_in_a_burst_again_and_again_sends_at_most_one_duplicate_a_kill(
        tmp_path, imap_user, smtp_sink):
    # `run --once` SIGKILLed in a 600-mail burst (and a second of 300) — while it sends,
    # or 0.5-6 s after its start — and started again at once: its sending process lives
    # on to send what was decided, and the next run may not send the same rows
    # meanwhile. At most one duplicate reply per kill.
    rng = random.Random(int(os.environ.get("MAILBOT_CRASH_SEED", "1515")))
    patrons, codes, kills = 900, 700, 4
    bot, more = _burst(tmp_path, imap_user, smtp_sink, patrons=patrons, codes=codes,
                       first=600)
    # A relay taking 10 ms a message: an orphaned sender still has seconds of work when
    # the next run starts.
    smtp_sink.data_delay = 0.01
    for n in range(kills):
        if n == 2:
            more(300)  # a second burst arrives while the bot is down
        sent_before = len(smtp_sink.messages)
        run = _mailbot(bot.config, "run", "--once", log=tmp_path / f"run{n}.log")
        started = time.monotonic()
        if n % 2:
            time.sleep(rng.uniform(0.5, 6.0))
        else:  # while it sends: its sending process has the most left to do
            wait_until(lambda: len(smtp_sink.messages) > sent_before + 20, 30)
        run.kill()
        run.wait()
        print(f"kill {n} at {time.monotonic() - started:.2f} s: "
              f"{db_counts(tmp_path / 'mailbot.db')}, sink {len(smtp_sink.messages)}")
    last = _mailbot(bot.config, "run", "--once", log=tmp_path / "last.log")
    assert last.wait(180) == 0, (tmp_path / "last.log").read_text()
    # The orphaned senders may still be finishing: what they send counts too.
    assert wait_until(lambda: db_counts(tmp_path / "mailbot.db").sent >= patrons, 60)
    time.sleep(2.0)
    per_request = Counter(m.message["In-Reply-To"] for m in smtp_sink.messages)
    duplicates = sum(n - 1 for n in per_request.values())
    print(f"\n{kills} kills, {duplicates} duplicate replies")
    assert len(per_request) == patrons
    assert duplicates <= kills
    issued = [c for m in smtp_sink.messages for c in _codes_in(m)]
    assert len(set(issued)) == codes
