"""Where the bot's CPU goes in a burst, by stage: a py-spy profile of ``mailbot run --once``
(``MAILBOT_BENCH_PYSPY=FILE MAILBOT_BENCH_PYSPY_ARGS="--subprocesses --threads"
python benchmarks/burst.py -n 10000``, raw format) summed by stage.

    python benchmarks/stages.py FILE

py-spy samples only threads that are running (not idle ones, unless ``--idle``), so the
counts are CPU, of every process of the bot (the main one, its sending process and the
worker processes) together. Each sample counts for one stage: that of the innermost
frame that names one (so a query a rule makes counts as the database's, a template
rendered by a worker as composing); what names none is "other" (the interpreter's
start, imports, the loops between stages).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

# (stage, what a frame's file or function says); within one frame, the first that matches.
STAGES: list[tuple[str, re.Pattern[str]]] = [
    ("database", re.compile(r"sqlalchemy/|sqlite3|psycopg|mailbot/db/|mailbot/ledger\.py")),
    ("compose", re.compile(r"jinja2/|mailbot/respond/(render|shapes|compose|wrap|variables|"
                           r"i18n)\.py|mailbot/decide/context\.py|email/(generator|policy|"
                           r"_header_value_parser|headerregistry|message|contentmanager|"
                           r"charset|base64mime|quoprimime|encoders)")),
    ("send", re.compile(r"aiosmtplib/|mailbot/respond/(smtp|pipelining|deliver|rows|outbox|"
                        r"relays|pacing|answers|sender_lock)\.py|uvloop|asyncio/")),
    ("parse", re.compile(r"mailbot/intake/(parse|parse_cache|reading|cards|names|subjects|"
                         r"loops|bounce)\.py|mailbot/intake/mail/|email/(parser|feedparser|"
                         r"_parseaddr|utils|header)")),
    ("read (IMAP)", re.compile(r"imapclient/|mailbot/intake/(imap|burst|poll|store)\.py|"
                               r"ssl\.py|socket\.py")),
    ("rules", re.compile(r"mailbot/rules/|mailbot/decide/(decision|batch|card_history|"
                         r"quota_reads)\.py|mailbot/(penalty|quotas|text|values|clock)\.py")),
    ("hand-over to workers", re.compile(r"mailbot/offload\.py|multiprocessing/|pickle|"
                                        r"concurrent/futures")),
]


# py-spy counts a thread as running unless it sits in a call it knows to be idle; these
# are waits it counts (for a lock, a queue, the selector, a sleep between tries), shown
# as their own line rather than charged to a stage.
def _sleep_line() -> int:
    """The line of mailbot/db/session.py's sleep between two tries for SQLite's lock."""
    lines = (ROOT / "mailbot" / "db" / "session.py").read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, 1) if "time.sleep(" in line)


ROOT = Path(__file__).resolve().parents[1]
WAITING = re.compile(r"^(Condition\.wait|_PollLikeSelector\.select|SemLock\.__enter__|"
                     r"Event\.wait|Queue\.get|Future\.result) "
                     rf"|^sqlite_write \(.*session\.py:{_sleep_line()}\)")


def stage_of(frames: list[str]) -> str:
    if frames and WAITING.search(frames[-1]):
        return "waiting (counted as running)"
    for frame in reversed(frames):  # innermost first
        for stage, pattern in STAGES:
            if pattern.search(frame):
                return stage
    return "other"


def main(path: str) -> int:
    counts: Counter[str] = Counter()
    total = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            if not stack or not n.isdigit():
                continue
            frames = stack.split(";")
            counts[stage_of(frames)] += int(n)
            total += int(n)
    if not total:
        print("no samples")
        return 1
    print(f"{total} samples (CPU of every process of the bot)")
    for stage, n in counts.most_common():
        print(f"  {stage:30} {n:8d}  {100 * n / total:5.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
