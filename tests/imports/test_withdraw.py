"""`mailbot pool withdraw`: a pool's codes not issued yet leave mailbot, audited; issued
codes, their ledger and their replies stay (mailbot.imports.withdraw)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mailbot.db.models import AuditLog, Code, LedgerEntry
from mailbot.db.session import open_database
from tests.botenv import make_bot, request_mail, valid_reader


def _codes(bot) -> dict[str, bool]:
    """code -> issued?"""
    with open_database(bot.settings().database_url)() as s:
        return {c.code: c.issued_at is not None for c in s.scalars(select(Code))}


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_withdrawing_a_pool_keeps_what_was_issued_and_nothing_else_is_handed_out(
        tmp_path, imap_user, smtp_sink, database_url, capsys):
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], database_url=database_url)
    w = bot.window()
    assert bot.import_readers([f"060000{i};Ala;Pula{i};p{i}@patron.test;{valid_reader(w.year)}"
                               for i in (1, 2, 3)]) == 0
    assert bot.import_codes(["WDR-000001", "WDR-000002", "WDR-000003"]) == 0
    for i in (1, 2):
        raw, _ = request_mail(f"p{i}@patron.test", "LEGIMI", f"Ala Pula{i} 060000{i}")
        imap_user.append(raw, internaldate=w + timedelta(seconds=i))
    assert bot.run_once() == 0
    assert sorted(c for c, issued in _codes(bot).items() if issued) == ["WDR-000001",
                                                                        "WDR-000002"]
    args = ("pool", "withdraw", "--library", "lib", "--service", "legimi", "--month", bot.month)
    capsys.readouterr()
    # A dry run says what would go and changes nothing.
    assert bot.cli(*args, "--dry-run") == 0
    assert "would withdraw 1 unissued legimi code(s)" in capsys.readouterr().out
    assert len(_codes(bot)) == 3
    assert bot.cli(*args) == 0
    out = capsys.readouterr().out
    assert f"withdrew 1 unissued legimi code(s) of {bot.month} from lib; 2 issued" in out
    assert _codes(bot) == {"WDR-000001": True, "WDR-000002": True}
    with open_database(bot.settings().database_url)() as s:
        assert s.scalar(select(func.count(LedgerEntry.id))) == 2
        (entry,) = s.scalars(select(AuditLog).where(AuditLog.action == "withdraw_pool"))
        assert entry.library_id == "lib" and entry.user_name.endswith("(command line)")
        assert "1 unissued code(s) withdrawn; 2 issued and 0 expired kept" in entry.detail
    # The third patron now finds the pool empty: the withdrawn code is never handed out.
    raw, _ = request_mail("p3@patron.test", "LEGIMI", "Ala Pula3 0600003")
    imap_user.append(raw, internaldate=w + timedelta(seconds=3))
    assert bot.run_once() == 0
    third = next(r for r in bot.requests() if r.card_number == "0600003")
    assert third.outcome == "pool_exhausted"
    assert "WDR-000003" not in smtp_sink.messages[-1].raw.decode("utf-8", "replace")
    # A corrected file can bring the code back (here: the same code, into the pool again).
    assert bot.import_codes(["WDR-000003"]) == 0


def test_a_pool_that_is_not_there_is_named_and_nothing_changes(tmp_path, smtp_sink, capsys):
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[])
    assert bot.import_codes(["WDR-000009"]) == 0
    capsys.readouterr()
    assert bot.cli("pool", "withdraw", "--library", "lib", "--service", "empik_go",
                   "--month", bot.month) == 2
    assert f"no empik_go pool for {bot.month} was imported in library lib" in \
        capsys.readouterr().err
    assert bot.cli("pool", "withdraw", "--library", "lib", "--service", "legimi",
                   "--month", "2026-13") == 2
    assert "month must be YYYY-MM" in capsys.readouterr().err
    assert bot.cli("pool", "withdraw", "--library", "nope", "--service", "legimi",
                   "--month", bot.month) == 2
    assert _codes(bot) == {"WDR-000009": False}
