"""How soon a restarted daemon makes durable progress in the middle of a burst (issue 15).

A daemon in a crash loop, or cron with a short timeout, gets somewhere only if each start
commits something before it is killed. This starts a private Dovecot and an SMTP sink,
puts N request mails (one library, N readers, N codes) in the mailbox and starts
`mailbot run` again and again (--starts times), SIGKILLing each start as soon as it has
committed anything, so every stage of the burst is met by a fresh process: the first
starts store a chunk of mail each, later ones commit decisions or mark replies sent.

It prints the seconds from exec to that first commit (min / median / max), by what was
committed first (stored mail, decisions, a reply marked sent), beside a bare
`python -c pass` and `python -c "import sqlalchemy.orm"` measured in the same run.

    .venv/bin/python benchmarks/restart.py [-n 600] [--starts 30]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.botenv import make_bot, request_mail  # noqa: E402
from tests.chaos import multiappend  # noqa: E402
from tests.servers import Dovecot, ImapUser, SmtpSink  # noqa: E402

FAST = "\n[daemon]\npoll_interval = 600.0\nreconnect_max = 1.0\n\n[web]\nenabled = false\n"


def _counts(db: Path) -> tuple[int, int, int]:
    """(stored, decided, sent)"""
    if not db.exists():
        return (0, 0, 0)
    conn = sqlite3.connect(db, timeout=10)
    try:
        stored, decided = conn.execute(
            "SELECT count(*), count(decided_at) FROM requests").fetchone()
        sent = conn.execute("SELECT count(*) FROM outbox WHERE state = 'sent'").fetchone()[0]
        return (stored, decided, sent)
    except sqlite3.OperationalError:
        return (0, 0, 0)
    finally:
        conn.close()


def _one_start(config: Path, db: Path, log: Path) -> tuple[float, tuple[int, int, int]]:
    """Starts the daemon, kills it at its first commit; (seconds to it, counts before)."""
    before = _counts(db)
    started = time.perf_counter()
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mailbot", "--config", str(config),
                                 "run"], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        while _counts(db) == before:
            if proc.poll() is not None or time.perf_counter() - started > 60:
                raise SystemExit(f"the daemon made no progress; see {log}")
            time.sleep(0.002)
        return time.perf_counter() - started, before
    finally:
        proc.kill()
        proc.wait()


def _command(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, check=True)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=600, help="mails in the burst")
    ap.add_argument("--starts", type=int, default=30, help="starts measured")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Dovecot() as dovecot, SmtpSink() as sink:
        root = Path(tmp)
        user = ImapUser(name="bench", password="bench-secret", server=dovecot)
        dovecot.add_user(user.name, user.password)
        bot = make_bot(root, smtp=sink, mailboxes=[user], tables=FAST,
                       policy="reminder_days = 0\n")
        w = bot.window()
        year = w.year
        bot.import_readers([f"06{i:05d};Ewa;Live{i};l{i}@patron.test;{year + 1}-12-31;0;0;"
                            f"{year}-01-15;{year}-02-01" for i in range(args.n)])
        bot.import_codes([f"BENCH-{i:06d}" for i in range(args.n)])
        multiappend(user, [(request_mail(f"l{i}@patron.test", "LEGIMI",
                                         f"Ewa Live{i}\n06{i:05d}")[0],
                            w + timedelta(seconds=10 + i // 3)) for i in range(args.n)])
        db = root / "mailbot.db"
        times: dict[str, list[float]] = {"stored": [], "decided": [], "sent": []}
        log = root / "daemon.log"
        for _ in range(args.starts):
            if _counts(db)[2] >= args.n:
                break  # the burst is done: use a larger -n for more starts
            seconds, before = _one_start(bot.config, db, log)
            after = _counts(db)
            # What the start committed first (the other stages may have committed too
            # before the kill reached it).
            first = next(name for name, b, a in zip(times, before, after) if a != b)
            times[first].append(seconds)
        python = [_command([sys.executable, "-c", "pass"]) for _ in range(5)]
        orm = [_command([sys.executable, "-c", "import sqlalchemy.orm"]) for _ in range(5)]
    print(f"{args.n}-mail burst, seconds from exec to a start's first commit, by what it "
          "committed (min / median / max):")
    for name, values in [*times.items(), ("python -c pass", python),
                         ("import sqlalchemy.orm", orm)]:
        if values:
            print(f"  {name:22s} {min(values):.3f} / {statistics.median(values):.3f} / "
                  f"{max(values):.3f}  ({len(values)} runs)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
