"""The libraries' penalty rulebooks end to end (issue 20): a config that states the library's
rule, codes issued in the months before and the activation reports that say which were
not activated, a burst of requests, and outcomes and replies that follow the rule.

The months are the real ones (the bot's clock is not faked): "M-1" is the month before the
one the tests run in, and earlier months' codes are written into the ledger as if they had
been issued then (as tests/test_policies.py does for one month).
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from mailbot.clock import add_months, month_key, parse_month, utcnow
from mailbot.db.models import Code, CodePool, LedgerEntry
from mailbot.db.session import open_database, sync_config
from mailbot.desk import desk_check
from mailbot.respond.i18n import format_date, format_month
from mailbot.web.notes import note_text
from tests.botenv import WAW, make_bot, request_mail, valid_reader


def _month(bot, back: int) -> str:
    """The month ``back`` months before the one the test runs in (YYYY-MM)."""
    return month_key(*add_months(*parse_month(bot.month), -back))


def _first_of(bot, ahead: int) -> date:
    """The first day of the month ``ahead`` months after the test's month."""
    return date(*add_months(*parse_month(bot.month), ahead), 1)


def _issued_before(bot, back: int, cards_codes: list[tuple[str, str]],
                   service: str = "legimi") -> None:
    """Codes issued ``back`` months ago to these cards (as if by earlier runs)."""
    month = _month(bot, back)
    sessions = open_database(bot.settings().database_url)
    issued_at = utcnow() - timedelta(days=31 * back)
    with sessions.begin() as s:
        pool = CodePool(library_id="lib", service=service, month=month, source_file="seed",
                        imported_at=issued_at, size=len(cards_codes))
        s.add(pool)
        s.flush()
        for card, code in cards_codes:
            c = Code(code=code, pool_id=pool.id, library_id="lib", service=service,
                     month=month, issued_at=issued_at)
            s.add(c)
            s.flush()
            s.add(LedgerEntry(code_id=c.id, library_id="lib", service=service, month=month,
                              card_number=card, email=None, issued_at=issued_at,
                              channel="desk"))


def _activation_report(bot, tmp_path, rows: list[tuple[str, bool]]) -> None:
    """The platform's activation report: each code, activated or not. Every month with a
    code in it counts as reported; a month with none is not."""
    path = tmp_path / f"aktywacje-{len(rows)}-{rows[0][0]}.csv"
    path.write_text("Kod;Data aktywacji\n" + "".join(
        f"{code};{'2026-01-02' if activated else ''}\n" for code, activated in rows),
        encoding="utf-8")
    assert bot.cli("import-activations", str(path), "--library", "lib") == 0


def _readers(bot, people: list[tuple[str, str, str]]) -> None:
    year = bot.window().year
    assert bot.import_readers([f"{card};{first};{last};{first.lower()}@patron.test;"
                               f"{valid_reader(year)}" for card, first, last in people]) == 0


def _burst(bot, imap_user, people: list[tuple[str, str, str]]) -> None:
    w = bot.window()
    for i, (card, first, last) in enumerate(people):
        raw, _ = request_mail(f"{first.lower()}@patron.test", "LEGIMI", f"{first} {last} {card}")
        imap_user.append(raw, internaldate=w + timedelta(seconds=1 + i))
    assert bot.run_once() == 0


def _outcomes(bot) -> dict[str, str]:
    return {r.card_number: r.outcome for r in bot.requests()}


def _reply_to(smtp_sink, address: str) -> str:
    msg = next(m.message for m in smtp_sink.messages if m.message["To"] == address)
    return " ".join(msg.get_body(("plain",)).get_content().split())


def _trail_note(bot, card: str, lang: str = "pl") -> str:
    req = next(r for r in bot.requests() if r.card_number == card)
    return note_text(lang, req.trail[-1], zone=WAW)


@pytest.mark.parametrize("policy", [
    "penalty = { misses = 1, within_months = 1, block_months = 3 }",  # Mokotów
    "penalty_months = 3",  # Izabelin, in the older key
    "",  # Jasło: the default is this rule
], ids=["mokotow", "izabelin", "jaslo"])
def test_mokotow_izabelin_jaslo_one_unactivated_code_blocks_the_three_months_after_it(
        tmp_path, imap_user, smtp_sink, policy):
    # Mokotów, Izabelin, Jasło: one code not activated blocks the three months after
    # its month. Ala missed last month, Bartek three months ago (his last month of the
    # block), Cezary four months ago (over); Dorota activated hers; Edward's code of two
    # months ago is in no report (unreported: no penalty). Only the three get codes.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], policy=policy)
    people = [("0300001", "Ala", "Abacka"), ("0300002", "Bartek", "Bobrowski"),
              ("0300003", "Cezary", "Cegielski"), ("0300004", "Dorota", "Dudek"),
              ("0300005", "Edward", "Ekiert")]
    _readers(bot, people)
    assert bot.import_codes(["MOK-NOW-0001", "MOK-NOW-0002", "MOK-NOW-0003"]) == 0
    _issued_before(bot, 1, [("0300001", "MOK-M1-ALA"), ("0300004", "MOK-M1-DOROTA")])
    _issued_before(bot, 2, [("0300005", "MOK-M2-EDWARD")])
    _issued_before(bot, 3, [("0300002", "MOK-M3-BARTEK")])
    _issued_before(bot, 4, [("0300003", "MOK-M4-CEZARY")])
    _activation_report(bot, tmp_path, [("MOK-M1-ALA", False), ("MOK-M1-DOROTA", True),
                                       ("MOK-M3-BARTEK", False), ("MOK-M4-CEZARY", False)])
    _burst(bot, imap_user, people)

    assert _outcomes(bot) == {"0300001": "blocked", "0300002": "blocked",
                              "0300003": "issued", "0300004": "issued", "0300005": "issued"}
    # Ala: blocked until the first day of the fourth month after her miss, and told which
    # code (month and service, never the code) and why.
    ala = _reply_to(smtp_sink, "ala@patron.test")
    missed = format_month(*parse_month(_month(bot, 1)), "pl")
    assert (f"kod do serwisu Legimi wydany na {missed} nie został aktywowany w terminie"
            in ala), ala
    assert "blokada trwa 3 miesiące" in ala
    assert f"od {format_date(_first_of(bot, 3), 'pl')}" in ala
    assert "MOK-" not in ala
    assert f"issued to you for {format_month(*parse_month(_month(bot, 1)), 'en')}" in ala
    # Bartek's block ends with this month.
    bartek = _reply_to(smtp_sink, "bartek@patron.test")
    assert f"od {format_date(_first_of(bot, 1), 'pl')}" in bartek
    # Staff read the same in the trail.
    assert _trail_note(bot, "0300001") == (
        f"Kod za {missed} nie został aktywowany; blokada do {_first_of(bot, 3).isoformat()}.")


def test_targowek_two_missed_activations_within_three_months_refuse_the_next_month(
        tmp_path, imap_user, smtp_sink):
    # Targówek: refused after two missed activations within three months — read as the
    # month after the second miss (block_months = 1). Ala missed M-3 and M-1: refused now.
    # Bartek missed only M-1; Cezary M-4 and M-1 (four months apart); Dorota M-3 and M-2
    # (her block was M-1, it is over): all three get codes.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user],
                   policy="penalty = { misses = 2, within_months = 3, block_months = 1 }")
    people = [("0310001", "Ala", "Abacka"), ("0310002", "Bartek", "Bobrowski"),
              ("0310003", "Cezary", "Cegielski"), ("0310004", "Dorota", "Dudek")]
    _readers(bot, people)
    assert bot.import_codes(["TAR-NOW-0001", "TAR-NOW-0002", "TAR-NOW-0003"]) == 0
    _issued_before(bot, 1, [("0310001", "TAR-M1-ALA"), ("0310002", "TAR-M1-BARTEK"),
                            ("0310003", "TAR-M1-CEZARY")])
    _issued_before(bot, 2, [("0310004", "TAR-M2-DOROTA")])
    _issued_before(bot, 3, [("0310001", "TAR-M3-ALA"), ("0310004", "TAR-M3-DOROTA")])
    _issued_before(bot, 4, [("0310003", "TAR-M4-CEZARY")])
    _activation_report(bot, tmp_path, [(c, False) for c in (
        "TAR-M1-ALA", "TAR-M1-BARTEK", "TAR-M1-CEZARY", "TAR-M2-DOROTA", "TAR-M3-ALA",
        "TAR-M3-DOROTA", "TAR-M4-CEZARY")])
    _burst(bot, imap_user, people)

    assert _outcomes(bot) == {"0310001": "blocked", "0310002": "issued",
                              "0310003": "issued", "0310004": "issued"}
    ala = _reply_to(smtp_sink, "ala@patron.test")
    m3, m1 = (format_month(*parse_month(_month(bot, k)), "pl") for k in (3, 1))
    assert (f"kody wydane na {m3} (Legimi) i {m1} (Legimi) nie zostały aktywowane w "
            "terminie" in ala), ala
    assert ("po 2 kodach nieaktywowanych w terminie w ciągu 3 miesięcy blokada trwa "
            "1 miesiąc" in ala), ala
    assert f"od {format_date(_first_of(bot, 1), 'pl')}" in ala
    assert "TAR-" not in ala
    assert "2 codes not activated in time within 3 months lead to a block of 1 month" in ala
    # The issued reply warns of this library's rule, not of a single miss.
    bartek = _reply_to(smtp_sink, "bartek@patron.test")
    assert "po 2 kodach nieaktywowanych w terminie w ciągu 3 miesięcy przez 1 miesiąc" in bartek
    # Staff read it in the trail, and the desk gives the same verdict and words.
    until = _first_of(bot, 1).isoformat()
    wanted = f"Nieaktywowane kody w 2 z 3 miesięcy (ostatni za {m1}); blokada do {until}."
    assert _trail_note(bot, "0310001") == wanted
    settings = bot.settings()
    sessions = open_database(settings.database_url)
    sync_config(sessions, settings)
    with sessions.begin() as s:
        v = desk_check(s, settings, library_id="lib", card="0310001", name="",
                       service="legimi", now=utcnow())
        assert v.outcome == "blocked" and v.context["blocked_until"] == _first_of(bot, 1)
        assert note_text("pl", v.note, v.args, zone=WAW) == wanted
        assert [(m.month, m.service) for m in v.context["unactivated"]] == [
            (_first_of(bot, -3), "legimi"), (_first_of(bot, -1), "legimi")]


@pytest.mark.parametrize("policy", [
    "penalty = { misses = 1, within_months = 1, block_months = 1 }",  # Nadarzyn
    "penalty_months = 1",  # Nowy Sącz, in the older key
], ids=["nadarzyn", "nowy-sacz"])
def test_nadarzyn_nowy_sacz_an_unactivated_code_refuses_the_next_month_only(
        tmp_path, imap_user, smtp_sink, policy):
    # Nadarzyn, Nowy Sącz: a code not activated is refused the next month only. Ala
    # missed last month: refused, free again on the 1st of next month. Bartek missed two
    # months ago: that block is over. Cezary activated his: a code.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], policy=policy)
    people = [("0320001", "Ala", "Abacka"), ("0320002", "Bartek", "Bobrowski"),
              ("0320003", "Cezary", "Cegielski")]
    _readers(bot, people)
    assert bot.import_codes(["NAD-NOW-0001", "NAD-NOW-0002"]) == 0
    _issued_before(bot, 1, [("0320001", "NAD-M1-ALA"), ("0320003", "NAD-M1-CEZARY")])
    _issued_before(bot, 2, [("0320002", "NAD-M2-BARTEK")])
    _activation_report(bot, tmp_path, [("NAD-M1-ALA", False), ("NAD-M1-CEZARY", True),
                                       ("NAD-M2-BARTEK", False)])
    _burst(bot, imap_user, people)

    assert _outcomes(bot) == {"0320001": "blocked", "0320002": "issued", "0320003": "issued"}
    ala = _reply_to(smtp_sink, "ala@patron.test")
    assert "blokada trwa 1 miesiąc" in ala
    assert f"od {format_date(_first_of(bot, 1), 'pl')}" in ala
    assert "the block lasts 1 month" in ala
    # The code received this month (Cezary's) comes from this month's pool.
    assert {r.code.code for r in bot.requests() if r.code} == {"NAD-NOW-0001", "NAD-NOW-0002"}


def test_penalty_off_issues_to_every_card_whatever_the_reports_say(
        tmp_path, imap_user, smtp_sink):
    # penalty = false: the reports are imported, nobody is blocked.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], policy="penalty = false")
    people = [("0330001", "Ala", "Abacka")]
    _readers(bot, people)
    assert bot.import_codes(["OFF-NOW-0001"]) == 0
    _issued_before(bot, 1, [("0330001", "OFF-M1-ALA")])
    _activation_report(bot, tmp_path, [("OFF-M1-ALA", False)])
    _burst(bot, imap_user, people)
    assert _outcomes(bot) == {"0330001": "issued"}
