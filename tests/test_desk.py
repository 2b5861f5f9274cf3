"""The walk-in desk's domain (issue 6 builds its page on it): the bot's verdict, and a code
from the same pool that never takes one owed to an earlier e-mail."""

from __future__ import annotations

from datetime import timedelta

from mailbot.clock import utcnow
from mailbot.db.session import open_database
from mailbot.desk import desk_check, desk_issue
from tests.botenv import make_bot, request_mail


def _ok(year: int) -> str:
    return f"{year + 1}-12-31;0;0;{year}-01-15;{year}-02-01"


def test_the_desk_gives_the_bots_verdict_and_respects_earlier_email(
        tmp_path, imap_user, smtp_sink):
    # Two codes, one e-mail request waiting undecided: the walk-in may take one code, not
    # the second (owed to the e-mail); a debtor is refused as by e-mail; a repeat is seen.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = bot.window()
    bot.import_readers([f"0990001;Ala;Lada;ala@patron.test;{_ok(w.year)}",
                        f"0990002;Ola;Mail;ola@patron.test;{_ok(w.year)}",
                        f"0990003;Jan;Dlug;jan@patron.test;{w.year + 1}-12-31;9,99;0;"
                        f"{w.year}-01-15;{w.year}-02-01",
                        f"0990004;Ewa;Druga;ewa@patron.test;{_ok(w.year)}"])
    bot.import_codes(["DESK-0001", "DESK-0002"])
    raw, _ = request_mail("ola@patron.test", "LEGIMI", "Ola Mail 0990002")
    imap_user.append(raw, internaldate=w + timedelta(seconds=1))
    # Intake only: the e-mail request is stored, not yet decided.
    from mailbot.db.session import sync_config
    from mailbot.intake.poll import poll_all

    settings = bot.settings()
    sessions = open_database(settings.database_url)
    sync_config(sessions, settings)
    poll_all(sessions, settings)
    now = utcnow()
    with sessions.begin() as s:
        v = desk_check(s, settings, library_id="lib", card="0990003", name="Jan Dlug",
                       service="legimi", now=now)
        assert v.outcome == "debt" and v.context["balance_due"]
        # The desk's chain: no card search, no sender address, no per-address cap.
        assert v.trail == [*({"rule": rule, "result": "passed"} for rule in (
            "too_early", "unknown_card", "name_mismatch", "already_received",
            "inactive_account", "age_restricted")),
            {"rule": "debt", "result": "refused", "note": "balance due 9.99"}]
        v = desk_check(s, settings, library_id="lib", card="0990001", name="Ala Wrongname",
                       service="legimi", now=now)
        assert v.outcome == "name_mismatch"
        v, code = desk_issue(s, settings, library_id="lib", card="0990001", name="Ala Lada",
                             service="legimi", now=now)
        assert v.outcome == "eligible" and code is not None and code.code == "DESK-0001"
        assert v.note == "all rules passed" and [step["rule"] for step in v.trail] == [
            "too_early", "unknown_card", "name_mismatch", "already_received",
            "inactive_account", "age_restricted", "debt", "overdue", "data_not_updated",
            "no_loans_this_year", "blocked"]
    with sessions.begin() as s:
        v, code = desk_issue(s, settings, library_id="lib", card="0990004", name="",
                             service="legimi", now=now)
        assert code is None and v.outcome == "pool_exhausted" and v.owed_to_email == 1
        assert v.note == "1 code(s) left, 1 owed to earlier e-mail requests"
        assert len(v.trail) == 11 and v.trail[-1] == {"rule": "blocked", "result": "passed"}
        v = desk_check(s, settings, library_id="lib", card="0990001", name="",
                       service="empik_go", now=now)
        assert v.outcome == "already_received"
    assert bot.run_once() == 0
    [req] = bot.requests()
    assert req.outcome == "issued" and req.code.code == "DESK-0002"
