"""Arrival-to-reply latency under IMAP IDLE (issue 4).

Starts a private Dovecot and an aiosmtpd sink on loopback, runs `mailbot run` (the daemon,
a real process) against them, then delivers N requests one by one: each is APPENDed to the
mailbox and the next goes only after its reply reached the SMTP sink. Prints the median,
the 95th percentile and the maximum of APPEND-to-reply time. The poll interval is set to
10 minutes, so only IDLE can make replies fast.

    .venv/bin/python benchmarks/latency.py [-n 200]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mailbot.clock import month_key, month_of, utcnow  # noqa: E402
from mailbot.config import load_settings  # noqa: E402
from mailbot.rules.window import window_opens  # noqa: E402
from tests.botenv import WAW, make_bot, request_mail  # noqa: E402
from tests.servers import Dovecot, ImapUser, SmtpSink  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200, help="requests, sent one by one")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="mailbot-latency-") as tmp, \
            Dovecot() as dovecot, SmtpSink() as sink:
        dovecot.add_user("bench", "bench-pw")
        user = ImapUser(name="bench", password="bench-pw", server=dovecot)
        bot = make_bot(Path(tmp), smtp=sink, mailboxes=[user],
                       tables="[daemon]\npoll_interval = 600.0\n\n[web]\nenabled = false\n")
        settings = load_settings(bot.config)
        now = utcnow()
        year, month = month_of(now, WAW)
        window = window_opens(settings.library("lib"), WAW, year, month)
        ok = f"{year + 1}-12-31;0;0;{year}-01-15;{year}-02-01"
        bot.import_readers([f"9{i:06d};Ala;Pomiar{i};b{i}@patron.test;{ok}"
                            for i in range(args.n)])
        bot.import_codes([f"LAT-{i:07d}" for i in range(args.n)])
        assert month_key(year, month) == bot.month

        proc = subprocess.Popen(
            [sys.executable, "-m", "mailbot", "--config", str(bot.config), "run"],
            stdout=subprocess.DEVNULL, stderr=open(Path(tmp) / "daemon.log", "wb"),
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=ROOT)
        try:
            time.sleep(2.0)  # connected and in IDLE
            latencies = []
            for i in range(args.n):
                raw, _ = request_mail(f"b{i}@patron.test", "LEGIMI", f"Ala Pomiar{i} 9{i:06d}")
                before = len(sink.messages)
                started = time.monotonic()
                user.append(raw, internaldate=utcnow())  # as a real delivery: now
                sink.wait_for(before + 1, timeout=30)
                latencies.append(time.monotonic() - started)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)

    median = statistics.median(latencies)
    p95 = percentile(latencies, 95)
    print(f"requests: {args.n}, one by one, under IMAP IDLE (poll interval 600 s)")
    print(f"arrival-to-reply latency: median {median * 1000:.0f} ms, "
          f"p95 {p95 * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")
    print(f"goal p95 < 2000 ms: {'met' if p95 < 2.0 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
