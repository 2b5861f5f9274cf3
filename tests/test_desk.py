"""The walk-in desk's domain (issue 6 builds its page on it): the bot's verdict, a code from
the same pool that never takes one owed to an earlier e-mail, "issue anyway" over the
refusals staff may overrule (issue 19), and the code a card already has, to reprint."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from mailbot.clock import utcnow
from mailbot.db.models import LedgerEntry
from mailbot.db.session import open_database, sync_config
from mailbot.desk import OVERRULABLE, desk_check, desk_issue, desk_override
from mailbot.intake.poll import poll_all
from tests.botenv import make_bot, request_mail


def _ok(year: int) -> str:
    return f"{year + 1}-12-31;0;0;{year}-01-15;{year}-02-01"


def _desk_bot(tmp_path, imap_user, smtp_sink, codes, policy=""):  # noqa: ANN202
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], policy=policy)
    w = bot.window()
    y = w.year
    assert bot.import_readers([
        f"0990001;Ala;Lada;ala@patron.test;{_ok(y)}",
        f"0990002;Ola;Mail;ola@patron.test;{_ok(y)}",
        f"0990003;Jan;Dlug;jan@patron.test;{y + 1}-12-31;9,99;0;{y}-01-15;{y}-02-01",
        f"0990004;Ewa;Druga;ewa@patron.test;{_ok(y)}",
        # Owes money, keeps three books and her card expired: three refusals in one.
        f"0990005;Iza;Wiele;iza@patron.test;{y - 1}-12-31;20,00;3;{y}-01-15;{y}-02-01",
    ]) == 0
    assert bot.import_codes(codes) == 0
    settings = bot.settings()
    sessions = open_database(settings.database_url)
    sync_config(sessions, settings)
    return bot, settings, sessions


def test_the_desk_gives_the_bots_verdict_and_respects_earlier_email(
        tmp_path, imap_user, smtp_sink):
    # Two codes, one e-mail request waiting undecided: the walk-in may take one code, not
    # the second (owed to the e-mail); a debtor is refused as by e-mail; a repeat is seen.
    bot, settings, sessions = _desk_bot(tmp_path, imap_user, smtp_sink,
                                        ["DESK-0001", "DESK-0002"])
    raw, _ = request_mail("ola@patron.test", "LEGIMI", "Ola Mail 0990002")
    imap_user.append(raw, internaldate=bot.window() + timedelta(seconds=1))
    poll_all(sessions, settings)  # intake only: the e-mail request is stored, not decided
    now = utcnow()
    with sessions.begin() as s:
        v = desk_check(s, settings, library_id="lib", card="0990003", name="Jan Dlug",
                       service="legimi", now=now)
        assert v.outcome == "debt" and v.context["balance_due"]
        # The desk's chain: no card search, no sender address, no per-address cap; every
        # rule before the debt passed, and the trail keeps the amount.
        rules = [step["rule"] for step in v.trail]
        assert not {"no_card", "ambiguous_card", "sender_mismatch",
                    "address_limit"} & set(rules)
        assert rules[-1] == "debt" and v.trail[-1]["result"] == "refused"
        assert "9.99" in str(v.trail[-1]) and "9.99" in str(v.args)
        assert all(step["result"] == "passed" for step in v.trail[:-1])
        v = desk_check(s, settings, library_id="lib", card="0990001", name="Ala Wrongname",
                       service="legimi", now=now)
        assert v.outcome == "name_mismatch"
        v, code = desk_issue(s, settings, library_id="lib", card="0990001", name="Ala Lada",
                             service="legimi", now=now)
        assert v.outcome == "eligible" and code is not None and code.code == "DESK-0001"
        assert v.override is None and v.received is None
        assert {"too_early", "unknown_card", "name_mismatch", "already_received", "debt",
                "overdue", "blocked"} <= {step["rule"] for step in v.trail}
    with sessions.begin() as s:
        v, code = desk_issue(s, settings, library_id="lib", card="0990004", name="",
                             service="legimi", now=now)
        assert code is None and v.outcome == "pool_exhausted" and v.owed_to_email == 1
        assert v.trail[-1] == {"rule": "blocked", "result": "passed"}
        v = desk_check(s, settings, library_id="lib", card="0990001", name="",
                       service="empik_go", now=now)
        assert v.outcome == "already_received"
    assert bot.run_once() == 0
    [req] = bot.requests()
    assert req.outcome == "issued" and req.code.code == "DESK-0002"


def test_staff_may_issue_anyway_over_the_reader_data_with_a_reason(
        tmp_path, imap_user, smtp_sink):
    # A debtor who just paid: refused, but overrulable; with a reason the desk issues a
    # code from the same pool, written to the ledger as a desk issue. A patron with three
    # refusals sees all three overruled; a card not on file may be issued too.
    bot, settings, sessions = _desk_bot(tmp_path, imap_user, smtp_sink,
                                        ["OVR-0001", "OVR-0002", "OVR-0003"])
    now = utcnow()
    with sessions.begin() as s:
        v = desk_check(s, settings, library_id="lib", card="0990003", name="",
                       service="legimi", now=now)
        assert v.outcome == "debt" and v.overridable
        assert v.override.overruled == ("debt",)
        with pytest.raises(ValueError):
            desk_override(s, settings, library_id="lib", card="0990003", name="",
                          service="legimi", reason="  ", shown=("debt",), now=now)
        v, code = desk_override(s, settings, library_id="lib", card="0990003", name="",
                                service="legimi", reason="kara zapłacona przy ladzie",
                                shown=("debt",), now=now)
        assert code is not None and code.code == "OVR-0001" and code.issued_at == now
        assert v.override.overruled == ("debt",)
    with sessions.begin() as s:
        v = desk_check(s, settings, library_id="lib", card="0990005", name="",
                       service="legimi", now=now)
        assert v.outcome == "inactive_account"
        assert v.override.overruled == ("inactive_account", "debt", "overdue")
        v = desk_check(s, settings, library_id="lib", card="5550001", name="Nowy Czytelnik",
                       service="legimi", now=now)
        assert v.outcome == "unknown_card" and v.override.overruled == ("unknown_card",)
        v, code = desk_override(s, settings, library_id="lib", card="5550001", name="",
                                service="legimi", reason="karta wydana dziś",
                                shown=("unknown_card",), now=now)
        assert code is not None and code.code == "OVR-0002"
    with sessions() as s:
        entries = {e.card_number: e for e in s.scalars(select(LedgerEntry))}
    assert {card: (e.channel, e.service, e.request_id) for card, e in entries.items()} == {
        "0990003": ("desk", "legimi", None), "5550001": ("desk", "legimi", None)}
    assert entries["0990003"].email == "jan@patron.test" and entries["5550001"].email is None
    # Once issued, the card has this month's code: no second one, anyway or not.
    with sessions.begin() as s:
        v, code = desk_override(s, settings, library_id="lib", card="0990003", name="",
                                service="empik_go", reason="again", shown=("debt",),
                                now=now)
        assert code is None and v.outcome == "already_received" and not v.overridable
        # The card the local data still does not know got its code anyway: the desk
        # shows that code to reprint (the card check comes before "already received"),
        # and "issue anyway" would now stop at the code already received.
        v = desk_check(s, settings, library_id="lib", card="5550001", name="",
                       service="legimi", now=now)
        assert v.outcome == "unknown_card" and v.received is not None
        assert (v.received.code_id, v.received.channel) == (entries["5550001"].code_id, "desk")
        assert not v.overridable and v.override.outcome == "already_received"


def test_issue_anyway_overrules_only_the_refusals_staff_were_shown(
        tmp_path, imap_user, smtp_sink):
    # Staff see a card not on file (unknown_card only) and confirm that; meanwhile a
    # reader import adds the card, owing money, keeping books, expired. The submit must
    # not overrule those three unseen: no code, and the verdict as it is now.
    bot, settings, sessions = _desk_bot(tmp_path, imap_user, smtp_sink, ["SEEN-0001"])
    now = utcnow()
    with sessions() as s:
        v = desk_check(s, settings, library_id="lib", card="0990077", name="",
                       service="legimi", now=now)
        assert v.outcome == "unknown_card" and v.override.overruled == ("unknown_card",)
    y = bot.window().year
    assert bot.import_readers([
        f"0990077;Nowa;Dłużna;nowa@patron.test;{y - 1}-12-31;20,00;3;{y}-01-15;{y}-02-01",
    ]) == 0
    with sessions.begin() as s:
        v, code = desk_override(s, settings, library_id="lib", card="0990077", name="",
                                service="legimi", reason="nowa karta",
                                shown=("unknown_card",), now=now)
        assert code is None
        assert v.outcome == "inactive_account"
        assert v.override.overruled == ("inactive_account", "debt", "overdue")
        # Shown all three (the page after the refusal), staff may overrule them.
        v, code = desk_override(s, settings, library_id="lib", card="0990077", name="",
                                service="legimi", reason="zapłaciła, przedłużyła kartę",
                                shown=v.override.overruled, now=now)
        assert code is not None and code.code == "SEEN-0001"


def test_issue_anyway_never_takes_a_code_owed_to_an_earlier_email(
        tmp_path, imap_user, smtp_sink):
    # One code, one e-mail request waiting: the debtor's override is refused (the code is
    # the e-mail's); the rules staff may overrule are the reader-data and card checks only.
    bot, settings, sessions = _desk_bot(tmp_path, imap_user, smtp_sink, ["OWED-0001"])
    raw, _ = request_mail("ola@patron.test", "LEGIMI", "Ola Mail 0990002")
    imap_user.append(raw, internaldate=bot.window() + timedelta(seconds=1))
    poll_all(sessions, settings)
    now = utcnow()
    with sessions.begin() as s:
        v = desk_check(s, settings, library_id="lib", card="0990003", name="",
                       service="legimi", now=now)
        assert v.outcome == "debt" and not v.overridable
        assert v.override.outcome == "pool_exhausted" and v.override.overruled == ("debt",)
        v, code = desk_override(s, settings, library_id="lib", card="0990003", name="",
                                service="legimi", reason="paid", shown=("debt",),
                                now=now)
        assert code is None
    assert not {"too_early", "already_received", "age_restricted", "pool_exhausted",
                "pool_not_ready", "service_not_offered"} & OVERRULABLE
    assert bot.run_once() == 0
    [req] = bot.requests()
    assert req.code.code == "OWED-0001"


def test_nothing_is_issued_anyway_before_the_window_opens(tmp_path, imap_user, smtp_sink):
    # The window opens on the 15th: on the 14th at 23:55 the debtor is refused as too
    # early, and staff cannot overrule that (nor the debt behind it).
    bot, settings, sessions = _desk_bot(tmp_path, imap_user, smtp_sink, ["EARLY-0001"],
                                        policy="window_day = 15")
    early = bot.window() - timedelta(minutes=5)
    with sessions.begin() as s:
        v = desk_check(s, settings, library_id="lib", card="0990003", name="",
                       service="legimi", now=early)
        assert v.outcome == "too_early" and not v.overridable
        assert v.override.outcome == "too_early"
        v, code = desk_override(s, settings, library_id="lib", card="0990003", name="",
                                service="legimi", reason="paid", shown=("debt",),
                                now=early)
        assert code is None and v.outcome == "too_early"


def test_already_received_shows_the_code_to_reprint(tmp_path, imap_user, smtp_sink):
    # A card that got this month's code (by e-mail) is shown that code's service, month,
    # time and channel, for a reprint — never a new code.
    bot, settings, sessions = _desk_bot(tmp_path, imap_user, smtp_sink, ["MAIL-0001",
                                                                        "MAIL-0002"])
    raw, _ = request_mail("ala@patron.test", "LEGIMI", "Ala Lada 0990001")
    imap_user.append(raw, internaldate=bot.window() + timedelta(seconds=1))
    assert bot.run_once() == 0
    [req] = bot.requests()
    assert req.outcome == "issued"
    with sessions.begin() as s:
        v = desk_check(s, settings, library_id="lib", card="0990001", name="",
                       service="empik_go", now=utcnow())
        assert v.outcome == "already_received" and not v.overridable
        got = v.received
        assert (got.code_id, got.service, got.month, got.channel) == (
            req.code.id, "legimi", bot.month, "email")
        assert got.issued_at is not None
        v = desk_check(s, settings, library_id="lib", card="0990002", name="",
                       service="legimi", now=utcnow())
        assert v.outcome == "eligible" and v.received is None
