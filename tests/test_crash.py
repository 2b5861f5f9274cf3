"""kill -9 at any moment (issue 5): a burst of several hundred requests, the daemon (a real
process, real Dovecot in, real aiosmtpd out) SIGKILLed at random moments tens of times and
restarted each time, mail arriving while it is down and while it starts. Afterwards:

* every request answered, none lost, the mailbox empty and everything in the processed
  folder exactly once;
* no code given to two patrons, no patron given two codes (ledger and replies agree);
* the earliest eligible arrivals (INTERNALDATE, ties by UID — not UID order) hold the codes,
  handed out in pool order, everyone after them ``pool_exhausted``, repeats
  ``already_received``;
* at most one duplicate reply per kill, each byte-identical to the first (same stable
  Message-ID), and how many there were is printed (run pytest with ``-rA`` or ``-s``).

Two bursts of more than one fetch chunk each (the opening one, and a second one arriving
while the bot is down, later), and small batches arriving while it is down or starting.
Four moments are chosen on purpose, the other kills fall at random (a random delay after
the start, or just after the next stored / decided / sent mail): for each burst, a kill
lands right after intake committed the burst's first fetch chunk, the rest still unread,
and the next run starts while the IMAP server is down as well (a power cut takes both):
nothing may be decided until the rest of that mail has been read.

The seed comes from ``MAILBOT_CRASH_SEED`` (default below); every random choice — mail
order, kill moments and kinds — follows from it, and the log names it.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from mailbot.db.models import Code, LedgerEntry, Outbox, Request
from mailbot.db.session import open_database
from tests.botenv import make_bot, request_mail, valid_reader
from tests.chaos import (KILLABLE_DAEMON, Counts, DaemonProcess, db_counts, multiappend,
                         wait_until)

SEED = int(os.environ.get("MAILBOT_CRASH_SEED", "20261121"))
PATRONS = 600          # distinct readers, one request each ...
REPEATS_SAME = 8       # ... plus repeats from the same card and address (code repeated)
REPEATS_OTHER = 4      # ... and from the same card but another address (no code shown)
CODES = 400            # the opening burst takes most, the second burst the rest
FIRST_BURST = 300      # in the mailbox before the first start (> one 200-mail fetch chunk)
SECOND_BURST = 240     # arrives while the bot is down, later on (> one fetch chunk too)
SMALL_BATCHES = 3      # the rest arrives in batches while the bot is down or starting
KILLS = 24
FINAL_TIMEOUT = 120.0

POLICY = "reminder_days = 0\n"  # no activation reminders mixed into the replies, any date
CODE_RE = re.compile(r"CRS-\d{6}")


@dataclass
class Mail:
    mid: str
    card: str
    sender: str
    raw: bytes
    internaldate: datetime | None = None
    uid: int | None = None


@dataclass
class Kill:
    number: int
    trigger: str     # what the kill waited for
    fired: bool      # False: the awaited event did not come, killed at the timeout
    uptime: float    # seconds since the process was started
    before: Counts   # the database when this run started
    at: Counts       # ... and right before the kill
    sink_before: int
    sink_at: int
    wal_left: int = 0  # bytes of write-ahead log the killed process left for the next run

    @property
    def stage(self) -> str:
        if self.at == self.before and self.sink_at == self.sink_before:
            return "start-up"
        if self.fired and self.trigger != "time":
            return self.trigger.split()[0]
        return "running"

    def __str__(self) -> str:
        d = (f"stored +{self.at.stored - self.before.stored} "
             f"decided +{self.at.decided - self.before.decided} "
             f"sent +{self.at.sent - self.before.sent} smtp +{self.sink_at - self.sink_before}")
        how = self.trigger + ("" if self.fired else " (timed out)")
        return f"kill {self.number:2d} at {self.uptime:5.2f}s on {how:<32} [{self.stage}]: {d}"



def _mails(rng: random.Random) -> list[Mail]:
    mails = []
    for i in range(1, PATRONS + 1):
        raw, mid = request_mail(f"c{i}@patron.test", "LEGIMI", f"Ala Crash{i}\n08{i:05d}")
        mails.append(Mail(mid, f"08{i:05d}", f"c{i}@patron.test", raw))
    for n, i in enumerate(rng.sample(range(1, PATRONS + 1), REPEATS_SAME + REPEATS_OTHER)):
        sender = f"c{i}@patron.test" if n < REPEATS_SAME else f"other{i}@patron.test"
        raw, mid = request_mail(sender, "Re: LEGIMI", f"Jeszcze raz: Ala Crash{i} 08{i:05d}")
        mails.append(Mail(mid, f"08{i:05d}", sender, raw))
    rng.shuffle(mails)
    return mails


def _expected(mails: list[Mail]) -> tuple[dict[str, str], dict[str, Mail]]:
    """Outcome per Message-ID and, per card holding a code, the mail that got it: decided
    by hand in arrival order (codes in pool order)."""
    outcome: dict[str, str] = {}
    holder: dict[str, Mail] = {}
    for m in sorted(mails, key=lambda m: (m.internaldate, m.uid)):
        if m.card in holder:
            outcome[m.mid] = "already_received"
        elif len(holder) < CODES:
            holder[m.card] = m
            outcome[m.mid] = "issued"
        else:
            outcome[m.mid] = "pool_exhausted"
    return outcome, holder


def _replies(smtp_sink) -> dict[str, list]:
    by_request: dict[str, list] = defaultdict(list)
    for m in smtp_sink.messages:
        by_request[m.message["In-Reply-To"]].append(m)
    return by_request


def test_kill_9_at_random_moments_loses_nothing_and_gives_nothing_twice(
        tmp_path, dovecot, imap_user, smtp_sink):
    started = time.monotonic()
    rng = random.Random(SEED)
    print(f"\nseed {SEED} (set MAILBOT_CRASH_SEED to repeat or vary)")
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], tables=KILLABLE_DAEMON,
                   policy=POLICY)
    w = bot.window()
    assert bot.import_readers([f"08{i:05d};Ala;Crash{i};c{i}@patron.test;"
                               f"{valid_reader(w.year)}"
                               for i in range(1, PATRONS + 1)]) == 0
    assert bot.import_codes([f"CRS-{i:06d}" for i in range(1, CODES + 1)]) == 0
    db = tmp_path / "mailbot.db"

    # The plan: the opening burst is in the mailbox before the first start; later batches
    # arrive while the bot is down ("down") or starting ("up"), the second burst while it
    # is down, at kill `burst_at`, which lands in the middle of the poll that reads it.
    mails = _mails(rng)
    first, second = mails[:FIRST_BURST], mails[FIRST_BURST:FIRST_BURST + SECOND_BURST]
    rest = mails[FIRST_BURST + SECOND_BURST:]
    burst_at = rng.randrange(6, 12)
    small_at = sorted(rng.sample([k for k in range(3, KILLS - 2)
                                  if k not in (burst_at, burst_at + 1)], SMALL_BATCHES))
    late_at: dict[int, tuple[str, list[Mail]]] = {burst_at: ("down", second)}
    for k, n in enumerate(small_at):
        late_at[n] = (rng.choice(("down", "up")), rest[k::SMALL_BATCHES])
    # Arrival times: each batch after everything before it, many in the same second; UID
    # order is shuffled against arrival order (the mail is appended in a random order).
    base = w + timedelta(seconds=10)
    for batch in [first] + [batch for _, (_, batch) in sorted(late_at.items())]:
        spread = 240 if len(batch) > 100 else 60
        for m, offset in zip(batch, sorted(rng.choices(range(spread), k=len(batch)))):
            m.internaldate = base + timedelta(seconds=offset)
        base += timedelta(seconds=spread + 60)

    appended = 0

    def append(batch: list[Mail]) -> None:
        nonlocal appended
        order = rng.sample(batch, len(batch))
        for m, uid in zip(order, multiappend(imap_user, [(m.raw, m.internaldate)
                                                         for m in order])):
            m.uid = uid
        appended += len(batch)

    append(first)

    daemon = DaemonProcess(bot.config, tmp_path)
    kills: list[Kill] = []
    died_by_itself: list[tuple[int, int]] = []
    try:
        before = db_counts(db)
        for n in range(1, KILLS + 1):
            sink_before = len(smtp_sink.messages)
            when, batch = late_at.pop(n, (None, []))
            if when == "down":
                append(batch)
            # Kills 1 and `burst_at` land inside the poll reading a burst, right after it
            # stored the first fetch chunk, the rest unread; the next run starts while the
            # IMAP server is down too (a power cut takes both): nothing may be decided
            # before the rest of that mail can be read.
            mid_poll = n in (1, burst_at)
            imap_down = n in (2, burst_at + 1)
            if imap_down:
                dovecot.stop()
            daemon.start()
            if when == "up":
                time.sleep(rng.uniform(0.0, 0.8))
                append(batch)
            # What can still happen decides which kill moments can be waited for.
            possible = ["time", "time"]
            if appended > before.stored:
                possible += ["intake", "decide"]
            elif before.new:
                possible.append("decide")
            if before.outbox > before.sent or "decide" in possible:
                possible.append("send")
            trigger = "intake" if mid_poll else "decide" if imap_down else \
                rng.choice(possible)
            fired = True
            if trigger == "time":
                time.sleep(max(0.0, rng.uniform(0.05, 1.5) - daemon.uptime()))
            else:
                ref = {"intake": before.stored, "decide": before.decided,
                       "send": sink_before}[trigger]

                def happened(trigger=trigger, ref=ref) -> bool:
                    if trigger == "send":
                        return len(smtp_sink.messages) > ref
                    c = db_counts(db)
                    return (c.stored if trigger == "intake" else c.decided) > ref

                if imap_down:
                    # However slow the start: give the decider time to go wrong, if it can.
                    daemon.wait_for_log("mailbot running", 20.0)
                fired = wait_until(happened, 2.5 if imap_down else 8.0, step=0.005)
                time.sleep(rng.uniform(0.0, 0.01 if mid_poll else 0.06))
            at = db_counts(db)
            sink_at = len(smtp_sink.messages)
            uptime = daemon.uptime()
            status = daemon.kill()
            wal = db.with_name(db.name + "-wal")
            wal_left = wal.stat().st_size if wal.exists() else 0
            if imap_down:
                dovecot.start()
            if status is not None:
                died_by_itself.append((n, status))
            kill = Kill(n, trigger + (" (IMAP down)" if imap_down else ""), fired, uptime,
                        before, at, sink_before, sink_at, wal_left)
            kills.append(kill)
            print(kill)
            # The database does not change while the process is dead: the next run
            # starts from here (and finds the WAL the killed process left behind).
            before = at
        assert not late_at and appended == len(mails)

        # The last run: it must finish the work by itself, then stop gracefully.
        daemon.start()
        mids = {m.mid for m in mails}

        def done() -> bool:
            if not mids <= set(_replies(smtp_sink)):
                return False
            c = db_counts(db)
            return c.stored == len(mails) and c.new == 0 and c.outbox == c.sent
        finished = wait_until(done, FINAL_TIMEOUT, step=0.2)
        final_took = daemon.uptime()
        time.sleep(1.0)  # anything still on its way (a stray duplicate) arrives now
        assert daemon.terminate() == 0, daemon.log_text()
        assert finished, (f"the last run did not finish in {FINAL_TIMEOUT} s: "
                          f"{db_counts(db)}, {len(_replies(smtp_sink))} of {len(mids)} "
                          f"requests answered\n{daemon.log_text()[-4000:]}")
    finally:
        daemon.stop_quietly()
        if not dovecot.running:
            dovecot.start()

    replies = _replies(smtp_sink)
    duplicates = sum(len(r) - 1 for r in replies.values())
    stages = Counter(k.stage for k in kills)
    print(f"{len(kills)} kills ({', '.join(f'{v} {k}' for k, v in sorted(stages.items()))}); "
          f"{len(mails)} requests, {len(smtp_sink.messages)} replies, "
          f"{duplicates} duplicate(s); {sum(k.wal_left > 0 for k in kills)} kills left a WAL "
          f"for the restart to recover; last run finished in {final_took:.1f} s; "
          f"{time.monotonic() - started:.1f} s in all")

    # No run died on its own: a stale WAL or a half-done step never broke a restart.
    assert died_by_itself == [], f"runs that exited before their kill: {died_by_itself}"
    for run in range(1, daemon.runs + 1):
        assert "Traceback" not in daemon.log_text(run), \
            f"run {run} logged a traceback:\n{daemon.log_text(run)[-4000:]}"

    # Every request answered; duplicates at most one per kill, each a byte-identical resend.
    assert set(replies) == {m.mid for m in mails}
    assert duplicates <= len(kills), f"{duplicates} duplicate replies for {len(kills)} kills"
    for mid, copies in replies.items():
        assert len({c.message["Message-ID"] for c in copies}) == 1
        assert all(c.raw == copies[0].raw for c in copies), f"resend of {mid} differs"
        assert copies[0].message["Message-ID"].startswith("<mailbot.")

    # The database: every request decided, each as arrival order says.
    by_mid = {m.mid: m for m in mails}
    sessions = open_database(bot.settings().database_url)
    with sessions() as s:
        requests = {r.message_id: r for r in s.scalars(
            select(Request).options(selectinload(Request.code)))}
        codes = {c.id: c for c in s.scalars(select(Code))}
        ledger = list(s.scalars(select(LedgerEntry)))
        outbox = list(s.scalars(select(Outbox)))
        requests_per_code = s.execute(select(Code.request_id, func.count()).where(
            Code.request_id.is_not(None)).group_by(Code.request_id)).all()
    assert set(requests) == set(by_mid), "a mail was lost or stored twice"
    for mid, r in requests.items():  # intake recorded what the server said
        assert (r.received_at, r.uid) == (by_mid[mid].internaldate, by_mid[mid].uid), mid
    assert Counter(r.state for r in requests.values()) == {"decided": len(mails)}
    expected, holders = _expected(mails)
    holder = {card: f"CRS-{n:06d}" for n, card in enumerate(holders, 1)}
    got = {mid: r.outcome for mid, r in requests.items()}
    wrong = {mid: (got[mid], expected[mid]) for mid in got if got[mid] != expected[mid]}
    assert not wrong, f"{len(wrong)} outcome(s) differ from arrival order (got, expected): " \
        f"{sorted(wrong.items(), key=lambda kv: by_mid[kv[0]].internaldate)[:10]}"
    assert Counter(expected.values())["issued"] == CODES

    # Codes: each to one request, one per card, ledger == issued codes, in pool order.
    issued = [c for c in codes.values() if c.issued_at is not None]
    assert len(issued) == CODES and all(n == 1 for _, n in requests_per_code)
    by_id = {r.id: r for r in requests.values()}
    db_holder = {by_id[c.request_id].card_number: c.code for c in issued}
    assert len(db_holder) == CODES, "a card holds two codes"
    arrival = sorted(requests.values(), key=lambda r: (r.received_at, r.uid))
    late = [(n, r.card_number, r.uid, r.code.code, holder[r.card_number],
             f"{r.decided_at:%T.%f}")
            for n, r in enumerate(arrival) if r.code and r.code.code != holder[r.card_number]]
    assert not late, ("codes not handed out in arrival order — (arrival rank, card, uid, "
                      f"code got, code due, decided at): {late[:8]} … {len(late)} in all")
    assert sorted((e.code_id, e.request_id, e.card_number) for e in ledger) == \
        sorted((c.id, c.request_id, by_id[c.request_id].card_number) for c in issued)
    assert len({(e.card_number, e.month) for e in ledger}) == len(ledger)
    assert len(outbox) == len(mails) and {o.state for o in outbox} == {"sent"}

    # The replies say what the database says.
    for mid, copies in replies.items():
        msg, r = copies[0].message, requests[mid]
        assert msg["X-Mailbot-Outcome"] == r.outcome, mid
        assert copies[0].rcpt_tos == (by_mid[mid].sender,)
        shown = set(CODE_RE.findall(msg.get_body(("plain",)).get_content()))
        if r.outcome == "issued":
            assert shown == {r.code.code}, mid
        elif r.outcome == "already_received" and \
                by_mid[mid].sender == holders[r.card_number].sender:
            assert shown == {holder[r.card_number]}, mid  # repeated to where it went
        else:
            assert shown == set(), f"{r.outcome} reply shows a code"

    # The mailbox: empty, every mail in the processed folder exactly once.
    assert imap_user.list("INBOX") == []
    processed = Counter(re.search(rb"Message-ID: (<[^>]+>)", m.raw).group(1).decode()
                        for m in imap_user.list("mailbot/processed"))
    assert processed == Counter({m.mid: 1 for m in mails})
