"""What needs attention (mailbot.health), judged from plain facts: the rules' edges that
the end-to-end tests (test_status_exit, web/test_monitoring) do not each walk through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailbot.health import (
    JobFacts,
    LibraryFacts,
    MailboxFacts,
    PoolFacts,
    RelayFacts,
    Snapshot,
    problems,
)

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _judge(*, pools=(), mailboxes=(), relays=(), jobs=(), **library) -> list[tuple[str, str]]:
    lib = LibraryFacts("lib", "Biblioteka", "2026-03", "Europe/Warsaw", "local",
                       pools=tuple(pools), mailboxes=tuple(mailboxes), **library)
    snapshot = Snapshot(NOW, "Europe/Warsaw", (lib,), tuple(relays), tuple(jobs))
    return [(p.what, p.key) for p in problems(snapshot)]


def test_a_pool_needs_attention_only_while_patrons_wait_for_a_service_it_deals_in():
    # Empty and nobody waits: the policy ("no reservations"), not a problem. Empty while a
    # request waits: a problem. Never imported this month although it was before, and
    # patrons already refused for it: a problem. A service the library never had: none.
    month = "2026-03"
    assert _judge(pools=[PoolFacts("legimi", month, 10, 0, refused=40, dealt_in=True)]) == []
    assert _judge(pools=[PoolFacts("legimi", month, 10, 0, waiting=1, dealt_in=True)]) == [
        ("pool", "lib/legimi/2026-03")]
    assert _judge(pools=[PoolFacts("legimi", month, 10, 1, waiting=5, dealt_in=True)]) == []
    assert _judge(pools=[PoolFacts("empik_go", month, 0, 0, refused=2, dealt_in=True)]) == [
        ("pool", "lib/empik_go/2026-03")]
    assert _judge(pools=[PoolFacts("empik_go", month, 0, 0, refused=2, waiting=3)]) == []


def test_a_relay_needs_attention_while_paused_or_failing_not_while_merely_busy():
    busy = RelayFacts("smtp://@relay:25", waiting=500, later=20, per_minute=30)
    paused = RelayFacts("smtp://a@relay:587", paused_until=NOW + timedelta(minutes=2),
                        pause_reason="throttled", error="421 4.7.0 slow down")
    failing = RelayFacts("smtp://b@relay:587", waiting=3, retrying=3,
                         error="connection refused", down_since=NOW - timedelta(minutes=5))
    assert _judge(relays=[busy, paused, failing]) == [("relay", paused.key),
                                                      ("relay", failing.key)]
    message = problems(Snapshot(NOW, "Europe/Warsaw", (), (failing,)))[0].message
    assert "failing since 2026-03-10 12:55:00 CET" in message and "3 being retried" in message


def test_a_mailbox_needs_attention_while_in_error_not_while_reading_again():
    down = MailboxFacts("imap://u@h:143/INBOX", "lib", "a@lib.test", error="login refused",
                        down_since=NOW - timedelta(minutes=1),
                        waits_until=NOW + timedelta(minutes=4))
    again = MailboxFacts("imap://v@h:143/INBOX", "lib", "b@lib.test",
                         down_since=NOW - timedelta(minutes=9))
    assert _judge(mailboxes=[down, again]) == [("mailbox", down.key)]


def test_each_kind_of_trouble_of_a_library_is_listed_in_one_order():
    # reader source, mailboxes, pools, set aside, failed replies; then relays and jobs.
    found = _judge(source_error="timeout", set_aside=2, failed=1, waiting=4,
                   mailboxes=[MailboxFacts("m", "lib", "a@lib.test", error="x")],
                   pools=[PoolFacts("legimi", "2026-03", 1, 0, waiting=4, dealt_in=True)],
                   relays=[RelayFacts("r", error="refused")],
                   jobs=[JobFacts("month_close", NOW, None, "failed: OperationalError: x"),
                         JobFacts("retention_purge", NOW, None, "0 purged")])
    assert found == [("reader_source", "lib"), ("mailbox", "m"), ("pool", "lib/legimi/2026-03"),
                     ("set_aside", "lib"), ("replies", "lib"), ("relay", "r"),
                     ("job", "month_close")]


def test_failed_reminders_never_need_attention_failed_replies_do():
    # A reminder no staff action can mark handled must not hold status at 1 for ever.
    assert _judge(reminders_failed=3) == []
    assert _judge(failed=1, reminders_failed=3) == [("replies", "lib")]
