"""Card numbers written in groups, as printed on many cards ("karta 2000 000 123"), are read
as the card when a card label stands before them and the joined digits match the library's
card_pattern; phone numbers, postal codes, dates, account numbers and unlabelled groups
never are."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mailbot.intake.cards import find_cards
from mailbot.intake.parse import parse_mail
from mailbot.intake.reading import read_mail
from tests.botenv import make_bot, request_mail


def mail(body: str) -> bytes:
    return (
        "From: Jan Kowalski <jan@example.pl>\r\n"
        "To: legimi@biblioteka.pl\r\n"
        "Subject: LEGIMI\r\n"
        "Date: Tue, 1 Dec 2026 08:00:00 +0100\r\n"
        "Message-ID: <grouped.1@example.pl>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n" + body
    ).encode("utf-8")


@pytest.mark.parametrize(
    "body, card",
    [
        ("Dzień dobry, karta 2000 000 123, Jan Kowalski", "2000000123"),
        ("Moja karta: 2000-000-123", "2000000123"),
        ("nr karty: 2000 0001 23", "2000000123"),
        ("Numer karty czytelnika:\n2000 000 123\nJan Kowalski", "2000000123"),
        ("Numer karty 0012 345", "0012345"),  # leading zeros stay
        ("kod kreskowy karty: 5 901234 123457", "5901234123457"),  # EAN-13 as printed
        ("My library card is 2000 000 123", "2000000123"),
        # the grouped card beats a phone number and a postal code in the same mail
        ("Karta 2000 000 123\nJan Kowalski\ntel. 601 234 567\n00-950 Warszawa", "2000000123"),
        # written twice, once grouped: one card
        ("karta 2000 000 123 (2000000123)", "2000000123"),
    ],
)
def test_grouped_card_after_a_label_is_the_card(body, card):
    # the digits are joined and read as the labelled card, through parse_mail and read_mail
    reading = read_mail(parse_mail(mail(body)))
    assert reading.cards.card == card
    assert reading.cards.candidates == (card,)


@pytest.mark.parametrize(
    "body",
    [
        "tel. 601 234 567",
        "Proszę o kod, mój telefon 601-234-567",
        "+48 601-234-567",
        "Karta: +48 601 234 567",  # a phone number even right after a card label
        "nr karty 601 234 567",  # the shape of a Polish mobile number
        "karta, tel. stacjonarny 22 123 45 67",
        "2000 000 123",  # grouped, but no card label
        "Proszę o kod: 2000-000-123",
        "karta ważna do 31 12 2027",
        "karta wydana 2026-12-01",
        "karta, adres 00-950 Warszawa",
        "karta, konto PL61 1090 1014 0000 0712 1981 2874",
        "karta, konto 61 1090 1014 0000 0712 1981 2874",
        "karta 12 34",  # joined too short for the pattern
    ],
)
def test_grouped_numbers_that_are_not_cards(body):
    # phones, dates, postal codes, account numbers and unlabelled groups give no card
    reading = read_mail(parse_mail(mail(body)))
    assert reading.cards.candidates == ()
    assert reading.cards.card is None


def test_two_grouped_cards_are_ambiguous():
    # two different grouped numbers after a label: no guess
    result = find_cards("Karta 2000 000 123 albo 2000 000 124")
    assert result.candidates == ("2000000123", "2000000124")
    assert result.ambiguous


def test_groups_that_are_cards_on_their_own_stay_separate_numbers():
    # "karta 12345 67890": two numbers the pattern takes one by one, not one 10-digit card
    result = find_cards("karta 12345 67890")
    assert result.candidates == ("12345", "67890") and result.ambiguous


def test_the_library_pattern_decides():
    # the joined digits must match the library's card_pattern as a whole
    assert find_cards("karta 2000 000 123", pattern=r"[0-9]{10}").card == "2000000123"
    assert find_cards("karta 2000 000 123", pattern=r"[0-9]{7}").card is None
    assert find_cards("karta 2000 000 123", pattern=r"2[0-9]{9}").card == "2000000123"
    # a pattern that allows spaces takes the number as written, as before
    assert find_cards("Karta 0012 345", pattern=r"[0-9][0-9 -]{3,12}[0-9]").card == "0012 345"


def test_grouped_card_in_the_quote_only_when_the_new_text_has_none():
    # the new text's card wins over a grouped one in the quote, as for any card
    text = "Karta 0012345\n\nW dniu 1.12.2026 o 00:01, Biblioteka pisze:\n> karta 2000 000 123"
    assert find_cards(text).card == "0012345"
    text = "Proszę o kod.\n\nW dniu 1.12.2026 o 00:01, Biblioteka pisze:\n> karta 2000 000 123"
    result = find_cards(text)
    assert result.card == "2000000123" and result.from_quote


def test_many_digit_groups_stay_fast():
    # a huge mail of digit groups is read in linear time (10,000-mail bursts)
    import time

    body = "karta " + "1-2 " * 200_000 + "\n" + "karta 12 345-6 " * 20_000
    started = time.perf_counter()
    find_cards(body)
    assert time.perf_counter() - started < 5


def test_grouped_card_is_issued_a_code_end_to_end(tmp_path, imap_user, smtp_sink,
                                                  database_url):
    # Through real Dovecot, run --once and real SMTP: "karta 2000 000 123" gets the code,
    # "tel. 601 234 567" alone gets no_card.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], database_url=database_url)
    w = bot.window()
    ok = f"{w.year + 1}-12-31;0;0;{w.year}-01-15;{w.year}-02-01"
    assert bot.import_readers([f"2000000123;Jan;Kowalski;jan@patron.test;{ok}"]) == 0
    assert bot.import_codes(["LEG-GRUP-0001"]) == 0
    plan = [
        ("Jan Kowalski <jan@patron.test>", "Dzień dobry,\nJan Kowalski\nkarta 2000 000 123",
         "issued"),
        ("ola@patron.test", "Dzień dobry, proszę o kod.\nOla Nowak\ntel. 601 234 567",
         "no_card"),
    ]
    mids = {}
    for offset, (sender, body, expected) in enumerate(plan, start=1):
        raw, mid = request_mail(sender, "LEGIMI", body, date=w + timedelta(seconds=offset))
        imap_user.append(raw, internaldate=w + timedelta(seconds=offset))
        mids[mid] = expected

    assert bot.run_once() == 0

    requests = bot.requests()
    assert [(r.card_number, r.outcome) for r in requests] == [
        ("2000000123", "issued"), (None, "no_card")]
    replies = {m.message["In-Reply-To"]: m.message for m in smtp_sink.messages}
    assert set(replies) == set(mids)
    for mid, expected in mids.items():
        msg = replies[mid]
        assert msg["X-Mailbot-Outcome"] == expected
        text = msg.get_body(("plain",)).get_content()
        assert ("LEG-GRUP-0001" in text) == (expected == "issued")
