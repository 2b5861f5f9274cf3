"""`run --once` reads several mailboxes at once: a consortium has hundreds, and reading is
mostly waiting for the mail server. Each mailbox still stores only its own mail, a broken
one is reported without stopping the others, and reports keep the configured order."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from mailbot.db.session import open_database
from mailbot.intake import poll
from tests.botenv import make_bot, request_mail


def test_mailboxes_are_read_at_once_and_a_broken_one_stops_nobody(
        tmp_path, imap_user_factory, smtp_sink, monkeypatch):
    users = [imap_user_factory() for _ in range(4)]
    w = make_bot(tmp_path, smtp=smtp_sink, mailboxes=users).window()
    for n, user in enumerate(users):
        raw, _ = request_mail(f"p{n}@patron.test", "LEGIMI", f"Ala Kot 01500{n}")
        user.append(raw, internaldate=w + timedelta(seconds=n))
    users[2].password = "wrong"  # this mailbox cannot be read
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=users)

    real = poll.poll_mailbox
    at_once: list[int] = []
    busy = 0
    lock = threading.Lock()

    def watched(sessions, settings, mb, **kw):
        nonlocal busy
        with lock:
            busy += 1
            at_once.append(busy)
        try:
            time.sleep(0.3)  # a slow server: the others must not wait for this one
            return real(sessions, settings, mb, **kw)
        finally:
            with lock:
                busy -= 1

    monkeypatch.setattr(poll, "poll_mailbox", watched)
    settings = bot.settings()
    sessions = open_database(settings.database_url)
    from mailbot.db.session import sync_config

    sync_config(sessions, settings)
    started = time.perf_counter()
    reports = poll.poll_all(sessions, settings)
    took = time.perf_counter() - started
    assert max(at_once) == 4 and took < 1.2 * 0.3 + 1.0
    assert [r.mailbox for r in reports] == [mb.key for mb in settings.mailboxes]
    assert [r.stored for r in reports] == [1, 1, 0, 1]
    assert reports[2].errors and not any(r.errors for i, r in enumerate(reports) if i != 2)
