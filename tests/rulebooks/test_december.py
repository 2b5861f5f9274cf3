"""Sędziszów's December (issue 20): codes issued in December run until the library's contract
with the platform ends, not 30 days from activation, and every reply that explains the code
says so; the other months keep the shipped sentence.

End to end the month is the real one (the bot's clock is not faked): the config names the
month the test runs in as the month with its own sentence, and another month for the
default. Which months the sentence belongs to, December included, is checked without a
clock below (month_context).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from mailbot.clock import add_months, month_of, utcnow
from mailbot.config import settings_from_dict
from mailbot.decide.context import month_context
from mailbot.errors import ConfigError
from tests.botenv import WAW, make_bot, request_mail, valid_reader

PL = "Kody wydane w grudniu działają do końca umowy biblioteki z serwisem, czyli do 31 grudnia."
EN = "Codes issued in December work until the library's contract with the platform ends, on 31 December."
DEFAULT_PL = "Dostęp do serwisu trwa 30 dni od chwili aktywacji kodu."
DEFAULT_EN = "Access lasts 30 days from activation."


def _validity(month: int) -> str:
    """The library's keys: its own sentence for codes of ``month``; reminders due now."""
    return f'reminder_days = 31\n[libraries.validity.{month}]\npl = "{PL}"\nen = "{EN}"\n'


def _plain(msg) -> str:
    return " ".join(msg.get_body(("plain",)).get_content().split())


def _html(msg) -> str:
    return " ".join(msg.get_body(("html",)).get_content().split())


def _ask(bot, imap_user, seconds: int) -> None:
    raw, _ = request_mail("ala@patron.test", "LEGIMI", "Ala Grudniowa 0400001")
    imap_user.append(raw, internaldate=bot.window() + timedelta(seconds=seconds))
    assert bot.run_once() == 0


def test_sedziszow_codes_of_its_december_say_how_long_they_run_in_every_reply(
        tmp_path, imap_user, smtp_sink):
    # The month with its own sentence (this month, standing for December): the issued
    # reply, the code repeated to the same address and the activation reminder all say
    # it, in both languages, and none says "30 days".
    this_month = month_of(utcnow(), WAW)[1]
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user],
                   policy=_validity(this_month))
    assert bot.import_readers([f"0400001;Ala;Grudniowa;ala@patron.test;"
                               f"{valid_reader(bot.window().year)}"]) == 0
    assert bot.import_codes(["GRU-CODE-0001"]) == 0
    _ask(bot, imap_user, 1)
    _ask(bot, imap_user, 60)
    assert bot.cli("remind") == 0

    by_outcome = {m.message["X-Mailbot-Outcome"]: m.message for m in smtp_sink.messages}
    assert set(by_outcome) == {"issued", "already_received", "reminder"}, by_outcome
    for outcome, msg in by_outcome.items():
        text, html = _plain(msg), _html(msg)
        assert PL in text and EN in text, (outcome, text)
        assert "GRU-CODE-0001" in text  # each of them shows the code
        assert "30 dni" not in text and "30 days" not in text, (outcome, text)
        assert "31 grudnia" in html and "30 dni" not in html, outcome


def test_sedziszow_other_months_keep_the_shipped_sentence(tmp_path, imap_user, smtp_sink):
    # A month without its own sentence (here: the override is for next month only).
    other = add_months(*month_of(utcnow(), WAW), 1)[1]
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], policy=_validity(other))
    assert bot.import_readers([f"0400001;Ala;Grudniowa;ala@patron.test;"
                               f"{valid_reader(bot.window().year)}"]) == 0
    assert bot.import_codes(["GRU-CODE-0002"]) == 0
    _ask(bot, imap_user, 1)
    [msg] = [m.message for m in smtp_sink.messages]
    text = _plain(msg)
    assert msg["X-Mailbot-Outcome"] == "issued"
    assert DEFAULT_PL in text and DEFAULT_EN in text and PL not in text


def _library(**keys):
    data = {"libraries": [{"id": "sedziszow", "name": "Biblioteka w Sędziszowie", **keys}]}
    return settings_from_dict(data).libraries[0]


def test_december_has_the_librarys_sentence_and_november_the_default():
    # Sędziszów's table: "12" only. Every year's December has it; November none.
    lib = _library(validity={"12": {"pl": PL, "en": EN}})
    for year in (2026, 2027):
        december = month_context(lib, WAW, year, 12, "legimi")["validity"]
        assert (december.pl, december.en) == (PL, EN)
        assert month_context(lib, WAW, year, 11, "legimi")["validity"] is None
    assert month_context(_library(), WAW, 2026, 12, "empik_go")["validity"] is None


@pytest.mark.parametrize(("validity", "message"), [
    ({"12": {"pl": PL}}, r'"12"\.en is required'),
    ({"12": {"pl": PL, "en": " "}}, r'"12"\.en is required'),
    ({"13": {"pl": PL, "en": EN}}, r'unknown month "13"'),
    ({"grudzień": {"pl": PL, "en": EN}}, r'unknown month "grudzień"'),
    ({"12": {"pl": PL, "en": EN, "de": "x"}}, r"unknown language 'de'"),
    ({"12": PL}, r'"12" must be a table'),
    ({"12": {"pl": PL, "en": EN}, "012": {"pl": PL, "en": EN}}, "names a month twice"),
    ("grudzień", "must be a table of months"),
])
def test_a_wrong_validity_table_is_a_config_error_naming_the_key(validity, message):
    with pytest.raises(ConfigError, match=message) as err:
        _library(validity=validity)
    assert err.value.column == "libraries[0].validity"
