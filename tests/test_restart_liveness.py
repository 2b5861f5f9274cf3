"""A daemon in a crash loop still gets through a burst (issue 15, restart liveness).

``mailbot run`` (a real process, real Dovecot in, real aiosmtpd out) is SIGKILLed 0.3-2.5 s
after every start and started again at once, as a crash loop or cron with a short timeout
would: each start must make durable progress (mail stored, requests decided, replies
marked sent) before it is killed, so a 600-mail burst is finished within 40 starts, with
every guarantee of the kill test: nothing lost, no code twice, the earliest eligible
arrivals holding the codes, at most one duplicate reply per kill.

How soon each start made its first durable progress is printed (``-s``); the benchmark
``benchmarks/restart.py`` measures it on a quiet machine.
"""

from __future__ import annotations

import os
import random
import re
import statistics
import time
from collections import Counter
from datetime import timedelta

from tests.botenv import make_bot, request_mail, valid_reader
from tests.chaos import KILLABLE_DAEMON, DaemonProcess, db_counts, multiappend, wait_until

SEED = int(os.environ.get("MAILBOT_CRASH_SEED", "20261201"))
PATRONS = 600
CODES = 400
STARTS = 40
CODE_RE = re.compile(r"LIVE-\d{6}")



def test_a_daemon_killed_every_few_hundred_milliseconds_still_finishes_the_burst(
        tmp_path, imap_user, smtp_sink):
    rng = random.Random(SEED)
    print(f"\nseed {SEED} (set MAILBOT_CRASH_SEED to repeat or vary)")
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], tables=KILLABLE_DAEMON,
                   policy="reminder_days = 0\n")
    w = bot.window()
    assert bot.import_readers([f"06{i:05d};Ewa;Live{i};l{i}@patron.test;"
                               f"{valid_reader(w.year)}"
                               for i in range(1, PATRONS + 1)]) == 0
    assert bot.import_codes([f"LIVE-{i:06d}" for i in range(1, CODES + 1)]) == 0
    # Arrival order is not UID order: the mail is appended in a random order, many in
    # the same second.
    mails = []
    for i in range(1, PATRONS + 1):
        raw, mid = request_mail(f"l{i}@patron.test", "LEGIMI", f"Ewa Live{i}\n06{i:05d}")
        mails.append((mid, f"l{i}@patron.test", raw,
                      w + timedelta(seconds=10 + rng.randrange(300))))
    rng.shuffle(mails)
    uids = multiappend(imap_user, [(raw, when) for _mid, _s, raw, when in mails])
    arrival = sorted(zip(mails, uids), key=lambda m: (m[0][3], m[1]))
    earliest = {sender for (_mid, sender, _raw, _when), _uid in arrival[:CODES]}

    db = tmp_path / "mailbot.db"
    daemon = DaemonProcess(bot.config, tmp_path)
    kills = 0
    first_progress: list[float] = []
    stalled: list[float] = []  # starts that lived a second or more with nothing done
    try:
        for _start in range(STARTS):
            before = db_counts(db)
            if before.sent >= PATRONS:
                break
            lifetime = rng.uniform(0.3, 2.5)
            daemon.start()
            progressed = None
            while daemon.uptime() < lifetime:
                if progressed is None and db_counts(db) != before:
                    progressed = daemon.uptime()
                time.sleep(0.01)
            uptime = daemon.uptime()
            daemon.kill()
            kills += 1
            if progressed is None and db_counts(db) != before:
                progressed = uptime
            if progressed is not None:
                first_progress.append(progressed)
            elif uptime >= 1.0:
                stalled.append(uptime)
        done = db_counts(db)
        print(f"{kills} starts, each killed 0.3-2.5 s after it began; first durable progress "
              f"after {statistics.median(first_progress):.2f} s (median of "
              f"{len(first_progress)}; min {min(first_progress):.2f}, max "
              f"{max(first_progress):.2f}); {len(stalled)} starts lived 1 s or more with "
              f"nothing done ({', '.join(f'{s:.2f}' for s in stalled)}); at the end: {done}")
        assert done.sent >= PATRONS, f"the burst was not finished in {STARTS} starts: {done}"
    finally:
        daemon.stop_quietly()

    # A last, undisturbed run finds nothing left to do.
    daemon.start()
    assert daemon.wait_for_log("mailbot running", 30)
    time.sleep(2.0)
    assert daemon.terminate() == 0
    assert db_counts(db).sent == db_counts(db).outbox == PATRONS

    replies: dict[str, list] = {}
    for m in smtp_sink.messages:
        replies.setdefault(m.message["In-Reply-To"], []).append(m)
    assert len(replies) == PATRONS  # nothing lost
    duplicates = sum(len(r) - 1 for r in replies.values())
    assert duplicates <= kills
    for copies in replies.values():  # a duplicate is the same message
        assert len({c.raw for c in copies}) == 1
    holders = Counter()
    for copies in replies.values():
        for code in set(CODE_RE.findall(copies[0].raw.decode("utf-8", "replace"))):
            holders[code] += 1
    assert len(holders) == CODES and set(holders.values()) == {1}  # no code twice
    issued_to = {copies[0].rcpt_tos[0] for copies in replies.values()
                 if CODE_RE.search(copies[0].raw.decode("utf-8", "replace"))}
    assert issued_to == earliest  # the earliest arrivals hold the codes
    assert wait_until(lambda: True, 0)
