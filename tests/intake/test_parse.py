"""Tests for parsing a mail (mailbot.intake.parse and what it puts together, and what
intake reads out of it): real-looking mails in, plain values out."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mailbot.intake.cards import CardSearch, find_cards
from mailbot.intake.loops import loop_reason
from mailbot.intake.mail.charset import decode_bytes
from mailbot.intake.mail.html import html_to_text
from mailbot.intake.mail.quotes import split_quotes
from mailbot.intake.parse import parse_mail
from mailbot.intake.reading import extract_name
from mailbot.intake.subjects import match_service, match_test_service
from mailbot.text import fold, surname_matches

# --------------------------------------------------------------------------- sample mails

GMAIL_QP = b"""\
Return-Path: <jan.kowalski@gmail.com>
Received: from mail-lf1-f41.google.com (mail-lf1-f41.google.com [209.85.167.41])
\tby mx.biblioteka.pl (Postfix) with ESMTPS id 4XYZ
\tfor <legimi@biblioteka.pl>; Sun,  1 Nov 2026 00:00:07 +0100 (CET)
MIME-Version: 1.0
From: =?UTF-8?Q?Jan_Kowalski?= <Jan.Kowalski@Gmail.com>
Date: Sun, 1 Nov 2026 00:00:05 +0100
Message-ID: <CAF1234567890abc@mail.gmail.com>
Subject: LEGIMI
To: legimi@biblioteka.pl
Content-Type: multipart/alternative; boundary="000000000000a1b2c3"

--000000000000a1b2c3
Content-Type: text/plain; charset="UTF-8"
Content-Transfer-Encoding: quoted-printable

Dzie=C5=84 dobry,

prosz=C4=99 o kod do Legimi na listopad.
Imi=C4=99 i nazwisko: Jan Kowalski
Numer karty: 0012345

Pozdrawiam
Jan Kowalski
tel. 600 123 456
+48 600123456

--000000000000a1b2c3
Content-Type: text/html; charset="UTF-8"
Content-Transfer-Encoding: quoted-printable

<div dir=3D"ltr"><div>Dzie=C5=84 dobry,</div><div><br></div><div>prosz=C4=99 o=
 kod do Legimi na listopad.</div><div>Numer karty: 0012345</div></div>

--000000000000a1b2c3--
"""

OUTLOOK_HTML_CP1250 = b"""\
From: Anna Wisniewska <anna.w@outlook.com>
To: "legimi@biblioteka.pl" <legimi@biblioteka.pl>
Subject: =?windows-1250?Q?EMPIK_GO?=
Date: Sun, 1 Nov 2026 09:12:44 +0000
Message-ID: <AM0PR01MB1234ABCD@AM0PR01MB1234.eurprd01.prod.exchangelabs.com>
Content-Language: pl-PL
Content-Type: text/html; charset="windows-1250"
Content-Transfer-Encoding: quoted-printable
MIME-Version: 1.0

<html xmlns:v=3D"urn:schemas-microsoft-com:vml" xmlns:o=3D"urn:schemas-micr=
osoft-com:office:office"><head><meta http-equiv=3D"Content-Type" content=3D=
"text/html; charset=3Dwindows-1250"><style><!--
p.MsoNormal, li.MsoNormal {margin:0cm; font-size:11.0pt; font-family:"Calibri",sans-serif;}
--></style><!--[if gte mso 9]><xml>
<o:shapedefaults v:ext=3D"edit" spidmax=3D"1026" />
</xml><![endif]--></head><body lang=3D"PL" link=3D"#0563C1"><div class=3D"W=
ordSection1"><p class=3DMsoNormal>Dzie=F1 dobry,<o:p></o:p></p><p class=3DM=
soNormal><o:p>&nbsp;</o:p></p><p class=3DMsoNormal>Prosz=EA o kod do Empik =
Go.<o:p></o:p></p><p class=3DMsoNormal>Anna Wi=9Cniewska<o:p></o:p></p><p c=
lass=3DMsoNormal>Nr karty: 0098765<o:p></o:p></p><p class=3DMsoNormal>=A3=
=F3d=9F, ul. D=B3uga 5<o:p></o:p></p></div></body></html>
"""

IPHONE_REPLY = """\
From: Jan Kowalski <jan.kowalski@icloud.com>
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit
Mime-Version: 1.0 (1.0)
Subject: Re: LEGIMI
Date: Mon, 2 Nov 2026 08:01:10 +0100
Message-Id: <A1B2C3D4-E5F6-4711-8899-AABBCCDDEEFF@icloud.com>
In-Reply-To: <mailbot.7f3a9c@biblioteka.pl>
References: <CAF1234567890abc@mail.gmail.com> <mailbot.7f3a9c@biblioteka.pl>
To: legimi@biblioteka.pl

Czy mogę jednak dostać kod?

Wysłano z iPhone’a

> Wiadomość napisana przez Biblioteka <legimi@biblioteka.pl> w dniu 01.11.2026, o godz. 10:00:
>
> Nie znaleźliśmy numeru karty w Państwa wiadomości.
>
>> W dniu 01.11.2026 o 00:05 Jan Kowalski <jan.kowalski@icloud.com> napisał(a):
>>
>> Dzień dobry, proszę o kod.
>> Karta 0012345
""".encode()

MIXED_BASE64_FORWARD = b"""\
From: maria@example.pl
To: legimi@biblioteka.pl
Subject: =?UTF-8?B?RndkOiBFTVBJSyBHTw==?=
Date: Tue, 3 Nov 2026 12:00:00 +0100
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/alternative; boundary="inner"

--inner
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

RHppZcWEIGRvYnJ5LA0KcHJvc3rEmSBvIGtvZCBFTVBJSyBHTy4NCk51bWVyIGthcnR5OiAwMDAx
MjM0DQpNYXJpYSBOb3dhay1Lb3dhbHNrYQ0K
--inner
Content-Type: text/html; charset=utf-8

<p>HTML version, never used: 7777777</p>
--inner--

--outer
Content-Type: application/pdf; name="regulamin.pdf"
Content-Disposition: attachment; filename="regulamin.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K
--outer
Content-Type: text/plain; charset=utf-8
Content-Disposition: attachment; filename="notatka.txt"

Attached text file with a number 5555555 that is not the body.
--outer--
"""


def mail(body: bytes, *, headers: bytes = b"", subject: bytes = b"LEGIMI") -> bytes:
    """A minimal single-part mail around a body; headers are added verbatim."""
    return (
        b"From: Jan Kowalski <jan@example.pl>\r\n"
        b"To: legimi@biblioteka.pl\r\n"
        b"Subject: " + subject + b"\r\n"
        b"Date: Sun, 1 Nov 2026 10:00:00 +0100\r\n"
        b"Message-ID: <abc.123@example.pl>\r\n" + headers + b"\r\n" + body
    )


# --------------------------------------------------------------------------- parse_mail


def test_gmail_quoted_printable_alternative():
    # Gmail's multipart/alternative: the text/plain part is used, decoded from QP UTF-8
    parsed = parse_mail(GMAIL_QP)
    assert parsed.subject == "LEGIMI"
    assert parsed.from_address == "jan.kowalski@gmail.com"
    assert parsed.from_name == "Jan Kowalski"
    assert parsed.message_id == "<CAF1234567890abc@mail.gmail.com>"
    assert parsed.return_path == "jan.kowalski@gmail.com"
    assert parsed.date == datetime(2026, 11, 1, 0, 0, 5, tzinfo=timezone(timedelta(hours=1)))
    assert parsed.content_type == "multipart/alternative"
    assert parsed.text.startswith("Dzień dobry,\n\nproszę o kod do Legimi na listopad.")
    assert "Imię i nazwisko: Jan Kowalski" in parsed.unquoted
    assert "<div" not in parsed.text
    assert parsed.quoted == ""
    assert not parsed.truncated
    assert find_cards(parsed) == CardSearch(("0012345",), "0012345", False)
    assert extract_name(parsed) == "Jan Kowalski"


def test_outlook_html_only_in_windows_1250():
    # Outlook's HTML-only windows-1250 mail becomes text line by line, <o:p> and <head> gone
    parsed = parse_mail(OUTLOOK_HTML_CP1250)
    assert parsed.subject == "EMPIK GO"
    assert match_service(parsed.subject) == "empik_go"
    lines = parsed.text.split("\n")
    assert lines[0] == "Dzień dobry,"
    assert "Proszę o kod do Empik Go." in lines
    assert "Anna Wiśniewska" in lines
    assert "Łódź, ul. Długa 5" in lines
    assert "MsoNormal" not in parsed.text and "shapedefaults" not in parsed.text
    assert find_cards(parsed).card == "0098765"
    assert extract_name(parsed) == "Anna Wiśniewska"
    assert surname_matches(parsed.text, "Wisniewska")


def test_iphone_reply_with_the_card_inside_the_quote():
    # a reply to our reply: nothing new above the quote, so the card is taken from the quote
    parsed = parse_mail(IPHONE_REPLY)
    assert parsed.subject == "Re: LEGIMI"
    assert match_service(parsed.subject) == "legimi"
    assert parsed.unquoted == "Czy mogę jednak dostać kod?\n\nWysłano z iPhone’a"
    assert "Karta 0012345" in parsed.quoted
    assert parsed.in_reply_to == "<mailbot.7f3a9c@biblioteka.pl>"
    assert parsed.references == (
        "<CAF1234567890abc@mail.gmail.com>",
        "<mailbot.7f3a9c@biblioteka.pl>",
    )
    assert find_cards(parsed) == CardSearch(("0012345",), "0012345", True)


def test_nested_multipart_base64_ignores_attachments_and_html_twin():
    # mixed > alternative: base64 text/plain is read; the PDF and the attached .txt are not
    parsed = parse_mail(MIXED_BASE64_FORWARD)
    assert parsed.subject == "Fwd: EMPIK GO"
    assert match_service(parsed.subject) == "empik_go"
    assert "Numer karty: 0001234" in parsed.text
    assert "7777777" not in parsed.text and "5555555" not in parsed.text
    assert find_cards(parsed).card == "0001234"
    assert extract_name(parsed) == "Maria Nowak-Kowalska"
    assert parsed.from_name is None and parsed.from_address == "maria@example.pl"


def test_forwarded_message_rfc822_is_read_as_quoted():
    # a forwarded message/rfc822 part counts as quoted text, searched when nothing new has a card
    raw = (
        b"From: jan@example.pl\r\nSubject: Fwd: LEGIMI\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nPrzesylam jeszcze raz.\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n"
        b"From: jan@example.pl\r\nSubject: LEGIMI\r\n\r\nMoja karta: 0044556\r\n"
        b"--b--\r\n"
    )
    parsed = parse_mail(raw)
    assert parsed.unquoted == "Przesylam jeszcze raz."
    assert "> Moja karta: 0044556" in parsed.quoted
    assert find_cards(parsed) == CardSearch(("0044556",), "0044556", True)


@pytest.mark.parametrize(
    "subject, expected",
    [
        (b"=?UTF-8?B?UmU6IExFR0lNSQ==?=", "Re: LEGIMI"),
        (b"=?iso-8859-2?Q?Odp:_EMPIK_GO_pro=B6ba?=", "Odp: EMPIK GO prośba"),
        (b"Fwd: =?UTF-8?Q?Empik_Go?=", "Fwd: Empik Go"),
        (b"RE: =?utf-8?q?LEGIMI?=\r\n =?utf-8?q?!?=", "RE: LEGIMI!"),
        (b"=?UTF-8?B?V2nF?= =?UTF-8?B?m25pZXdza2E=?=", "Wiśniewska"),  # a character split in two
        (b"=?utf-8*pl?Q?LEGIMI?=", "LEGIMI"),  # RFC 2231 language tag
        (b"=?x-unknown?Q?LEGIMI?=", "LEGIMI"),
        (b"=?UTF-8?B?broken", "=?UTF-8?B?broken"),  # not an encoded-word: left alone
        (b"Re:\r\n  LEGIMI", "Re: LEGIMI"),  # folded and whitespace collapsed
    ],
)
def test_rfc2047_subjects(subject, expected):
    # encoded-words decode, adjacent ones join, broken ones stay as they are
    assert parse_mail(mail(b"x", subject=subject)).subject == expected


def test_raw_8bit_utf8_headers():
    # headers written in raw UTF-8 (no RFC 2047) still decode
    raw = "From: Łukasz Żółć <Lukasz@Example.PL>\r\nSubject: Prośba — LEGIMI\r\n\r\nKarta 0012345\r\n"
    parsed = parse_mail(raw.encode())
    assert parsed.from_name == "Łukasz Żółć"
    assert parsed.from_address == "lukasz@example.pl"
    assert parsed.subject == "Prośba — LEGIMI"
    assert parsed.headers["subject"] == "Prośba — LEGIMI"


def test_raw_8bit_cp1250_header():
    # a raw 8-bit header that is not UTF-8 is read as Polish cp1250
    parsed = parse_mail(b"Subject: Pro\x9cba\r\n\r\nx")
    assert parsed.subject == "Prośba"


def test_wrong_declared_charset_us_ascii_but_utf8():
    # a body labelled us-ascii that is really UTF-8 decodes as UTF-8
    raw = mail(
        "Dzień dobry, proszę o kod.\nKarta 0012345\n".encode(),
        headers=b"Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 8bit\r\n",
    )
    assert parse_mail(raw).text == "Dzień dobry, proszę o kod.\nKarta 0012345"


def test_declared_latin1_but_utf8():
    # UTF-8 bytes win over a single-byte label
    raw = mail("Łódź 0012345".encode(), headers=b"Content-Type: text/plain; charset=iso-8859-1\r\n")
    assert parse_mail(raw).text == "Łódź 0012345"


@pytest.mark.parametrize(
    "body, expected",
    [
        ("Proszę ściśle źdźbło Ą „cytat”".encode("cp1250"), "Proszę ściśle źdźbło Ą „cytat”"),
        ("Proszę ściśle źdźbło Ą".encode("iso-8859-2"), "Proszę ściśle źdźbło Ą"),
        ("Zażółć gęślą jaźń".encode(), "Zażółć gęślą jaźń"),
    ],
)
def test_missing_charset_is_guessed(body, expected):
    # no charset: UTF-8 if it is valid, else cp1250 or iso-8859-2, whichever fits Polish
    assert parse_mail(mail(body)).text == expected


@pytest.mark.parametrize(
    "declared", [b"x-unknown", b'"utf-8"', b"UTF8", b"unicode-1-1-utf-8", b"rot13"]
)
def test_unknown_or_odd_charset_names(declared):
    # unknown, quoted, aliased or non-text charset names never break decoding
    raw = mail(
        "Łódź 0012345".encode(),
        headers=b"Content-Type: text/plain; charset=" + declared + b"\r\n",
    )
    assert parse_mail(raw).text == "Łódź 0012345"


def test_single_byte_text_that_is_also_valid_utf8():
    # "PÓŁ" in cp1250 happens to be valid UTF-8 ("Pӣ"); the implausible reading loses
    assert parse_mail(mail("PÓŁ ROKU, GĘŚ, PÓŹNO".encode("cp1250"))).text == "PÓŁ ROKU, GĘŚ, PÓŹNO"
    assert parse_mail(b"Subject: ST\xd3\xa3\r\n\r\nx").subject == "STÓŁ"


def test_unknown_charset_with_cp1250_bytes():
    # x-unknown over cp1250 bytes falls back to the Polish guess
    raw = mail("Łódź".encode("cp1250"), headers=b"Content-Type: text/plain; charset=x-unknown\r\n")
    assert parse_mail(raw).text == "Łódź"


def test_declared_utf8_with_cp1250_bytes():
    # a UTF-8 label over cp1250 text is not believed
    raw = mail("Wiśniewska".encode("cp1250"), headers=b"Content-Type: text/plain; charset=utf-8\r\n")
    assert parse_mail(raw).text == "Wiśniewska"


def test_declared_charset_is_respected_when_not_utf8():
    # a correct single-byte label is used as declared
    raw = mail("Żółw".encode("iso-8859-2"), headers=b"Content-Type: text/plain; charset=iso-8859-2\r\n")
    assert parse_mail(raw).text == "Żółw"


def test_utf16_body():
    # a UTF-16 body (rare, but legal with base64) decodes by its label
    import base64

    body = base64.b64encode("Karta 0012345".encode("utf-16"))
    raw = mail(
        body,
        headers=b"Content-Type: text/plain; charset=utf-16\r\nContent-Transfer-Encoding: base64\r\n",
    )
    assert parse_mail(raw).text == "Karta 0012345"


def test_format_flowed_is_unwrapped():
    # RFC 3676 soft line breaks are joined, so a wrapped attribution is still recognised
    body = (
        b"Prosze o kod. \r\nKarta 0012345\r\n\r\n"
        b"W dniu 01.11.2026 o 10:00, Biblioteka <legimi@biblioteka.pl> \r\nnapisa\xc5\x82(a):\r\n"
        b"> stara tresc 0099999\r\n"
    )
    raw = mail(body, headers=b"Content-Type: text/plain; charset=utf-8; format=flowed\r\n")
    parsed = parse_mail(raw)
    assert parsed.unquoted == "Prosze o kod. Karta 0012345"
    assert parsed.quoted.startswith("W dniu 01.11.2026 o 10:00, Biblioteka")
    assert find_cards(parsed).card == "0012345"


def test_date_minus_0000_is_utc():
    # "-0000" (time zone unknown) is taken as UTC, and the date is aware
    raw = mail(b"x").replace(b"+0100", b"-0000")
    assert parse_mail(raw).date == datetime(2026, 11, 1, 10, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "value, expected",
    [
        (b"1 Nov 2026 10:00 GMT", datetime(2026, 11, 1, 10, 0, tzinfo=timezone.utc)),
        (b"Sun, 01 Nov 2026 23:59:59 -0500 (EST)",
         datetime(2026, 11, 1, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5)))),
        (b"Sun, 1 Nov 2026 10:00:00", datetime(2026, 11, 1, 10, 0, tzinfo=timezone.utc)),
        (b"yesterday", None),
        (b"Sun, 31 Feb 2026 10:00:00 +0100", None),
        (b"Sun, 1 Nov 2026 10:00:00 +9999", None),
        (b"", None),
    ],
)  # fmt: skip
def test_date_forms(value, expected):
    # common, zone-less and nonsense Date headers: aware datetime or None, never an error
    raw = mail(b"x").replace(b"Sun, 1 Nov 2026 10:00:00 +0100", value)
    assert parse_mail(raw).date == expected


def test_date_missing():
    # no Date header: date is None
    raw = b"From: a@b.pl\r\nSubject: LEGIMI\r\n\r\nx"
    assert parse_mail(raw).date is None


def test_message_ids_are_canonical():
    # Message-ID keeps its angle brackets, loses whitespace; junk around In-Reply-To is dropped
    raw = mail(
        b"x",
        headers=b"In-Reply-To: <mailbot.1@b.pl> (Biblioteka's message of Sun)\r\n"
        b"References: <a@x>\r\n <b@y>\r\n",
    ).replace(b"Message-ID: <abc.123@example.pl>", b"Message-ID:\r\n  <abc.123@example.pl> ")
    parsed = parse_mail(raw)
    assert parsed.message_id == "<abc.123@example.pl>"
    assert parsed.in_reply_to == "<mailbot.1@b.pl>"
    assert parsed.references == ("<a@x>", "<b@y>")


def test_missing_headers_give_none():
    # a mail with no headers at all still parses into empty values
    parsed = parse_mail(b"\r\njust a body 0012345")
    assert (parsed.message_id, parsed.from_address, parsed.return_path, parsed.date) == (
        None, None, None, None,
    )  # fmt: skip
    assert parsed.subject == ""
    assert parsed.text == "just a body 0012345"


def test_return_path_forms():
    # Return-Path: None when absent, "" for <>, else the lowercased address
    assert parse_mail(mail(b"x")).return_path is None
    assert parse_mail(mail(b"x", headers=b"Return-Path: <>\r\n")).return_path == ""
    assert parse_mail(mail(b"x", headers=b"Return-Path: < >\r\n")).return_path == ""
    assert parse_mail(mail(b"x", headers=b"Return-Path: <Bounce@X.PL>\r\n")).return_path == "bounce@x.pl"


def test_from_forms():
    # quoted display names with commas, bare addresses, and garbage
    raw = mail(b"x").replace(b"Jan Kowalski <jan@example.pl>", b'"Kowalski, Jan" <JAN@example.pl>')
    parsed = parse_mail(raw)
    assert (parsed.from_name, parsed.from_address) == ("Kowalski, Jan", "jan@example.pl")
    raw = mail(b"x").replace(b"From: Jan Kowalski <jan@example.pl>", b"From: <<<>>>,,,")
    assert parse_mail(raw).from_address is None


def test_reply_to_is_parsed():
    # Reply-To yields its address
    parsed = parse_mail(mail(b"x", headers=b"Reply-To: Jan <Jan.Kowalski@Example.pl>\r\n"))
    assert parsed.reply_to == "jan.kowalski@example.pl"


def test_headers_are_case_insensitive_and_keep_every_occurrence():
    # header lookup ignores case; get_all returns every occurrence in order
    parsed = parse_mail(mail(b"x", headers=b"X-Test: one\r\nx-test: =?utf-8?q?dw=C3=B3?=\r\n"))
    assert parsed.headers["X-TEST"] == "one"
    assert parsed.headers.get_all("x-test") == ("one", "dwó")
    assert "x-test" in parsed.headers and "x-nope" not in parsed.headers


def test_truncated_mail_keeps_headers():
    # a mail over max_bytes: headers parsed, only the start of the body read, flagged truncated
    raw = mail(b"Karta 0012345\r\n" + b"lorem ipsum\r\n" * 10_000)
    parsed = parse_mail(raw, max_bytes=5_000)
    assert parsed.truncated
    assert parsed.subject == "LEGIMI" and parsed.message_id == "<abc.123@example.pl>"
    assert parsed.text.startswith("Karta 0012345")
    assert len(parsed.text) < 5_000


# --------------------------------------------------------------------------- html_to_text


def test_html_keeps_line_structure_and_marks_blockquotes():
    # <br>, <p>, <div>, <tr> end lines; <blockquote> lines get "> "; script/style/head vanish
    html = (
        "<html><head><title>t</title><style>p{x:1}</style></head><body>"
        "<div>Dzień&nbsp;dobry,</div><div><br></div><p>karta <b>0012345</b></p>"
        "<table><tr><td>Imię</td><td>Jan</td></tr><tr><td>Nazwisko</td><td>Kowalski</td></tr></table>"
        "<script>var card = 9999999;</script>"
        '<div class="gmail_quote">W dniu 1.11.2026 o 10:00 Biblioteka &lt;b@b.pl&gt; napisał(a):<br>'
        "<blockquote>Stara treść<br>druga linia<blockquote>głębiej</blockquote></blockquote></div>"
        "</body></html>"
    )
    assert html_to_text(html) == (
        "Dzień dobry,\n\nkarta 0012345\nImię Jan\nNazwisko Kowalski\n"
        "W dniu 1.11.2026 o 10:00 Biblioteka <b@b.pl> napisał(a):\n"
        "> Stara treść\n> druga linia\n>> głębiej"
    )


def test_html_pre_keeps_newlines_and_unclosed_markup_is_text():
    # <pre> keeps its line breaks; a stray "<" and an unclosed comment do not swallow text
    assert html_to_text("<pre>a\nb</pre>x < y 0012345") == "a\nb\nx < y 0012345"
    assert html_to_text("visible<!-- never closed 0012345") == "visible"
    assert html_to_text("<head><style>x</style>no body tag, no close") == ""
    assert html_to_text("<head><title>t</title><body>text") == "text"


# --------------------------------------------------------------------------- quotes


@pytest.mark.parametrize(
    "header",
    [
        "W dniu 1.11.2026 o 10:00, Jan <x@y.pl> napisał(a):",
        "W dniu pon., 1 lis 2026 o 10:00 Biblioteka Publiczna <legimi@biblioteka.pl>\nnapisał(a):",
        "Dnia 1 listopada 2026 10:00 Biblioteka <legimi@biblioteka.pl> napisał:",
        "On Sun, Nov 1, 2026 at 10:00 AM Biblioteka <legimi@biblioteka.pl> wrote:",
        "Użytkownik Biblioteka <legimi@biblioteka.pl> napisał:",
        "-----Original Message-----",
        "----- Wiadomość oryginalna -----",
        "---------- Forwarded message ---------",
        "Od: Biblioteka <legimi@biblioteka.pl>\nWysłano: niedziela, 1 listopada 2026 10:00\nDo: Jan",
        "Od: Biblioteka Wysłano: niedziela, 1 listopada 2026 10:00",
        "________________________________\nFrom: Biblioteka <legimi@biblioteka.pl>\n"
        "Sent: Sunday, November 1, 2026 10:00 AM",
        "*From:* Biblioteka <legimi@biblioteka.pl>\n*Sent:* Sunday, November 1, 2026 10:00 AM",
        "Wiadomość napisana przez Biblioteka <legimi@biblioteka.pl> w dniu 01.11.2026, o godz. 10:00:",
        "Begin forwarded message:",
    ],
)
def test_reply_headers_start_the_quote(header):
    # everything from a reply header on is quoted; what is above it is not
    text = f"Proszę o kod.\nKarta 0012345\n\n{header}\nStara wiadomość 0099999\n"
    unquoted, quoted = split_quotes(text)
    assert unquoted == "Proszę o kod.\nKarta 0012345"
    assert quoted.startswith(header.split("\n")[0])
    assert quoted.endswith("Stara wiadomość 0099999")


def test_interleaved_quote_lines_are_quoted():
    # lines starting with ">" are quoted even when the answer is written between them
    unquoted, quoted = split_quotes("> Proszę podać kartę\nKarta 0012345\n> Dziękujemy")
    assert unquoted == "Karta 0012345"
    assert quoted == "> Proszę podać kartę\n> Dziękujemy"


def test_ordinary_colons_are_not_reply_headers():
    # "Numer karty:", "Od: poniedziałku" and a lone "From:" line do not start a quote
    text = "Numer karty: 0012345\nOd: poniedziałku czekam\nFrom: Jan\nMam pytanie:"
    assert split_quotes(text) == (text, "")


# --------------------------------------------------------------------------- subjects

SUBJECTS = [
    ("LEGIMI", "legimi"),
    ("legimi", "legimi"),
    ("Legimi.", "legimi"),
    ("LEGIMI!", "legimi"),
    ("  LEGIMI  ", "legimi"),
    ("Re: LEGIMI", "legimi"),
    ("RE: RE: Fwd: LEGIMI", "legimi"),
    ("Odp: ODP: legimi", "legimi"),
    ("PD: Wg: AW: Fw: Legimi", "legimi"),
    ("[EXT] LEGIMI", "legimi"),
    ("[External] Re: [biblioteka] LEGIMI", "legimi"),
    ("Re[2]: LEGIMI", "legimi"),
    ("[LEGIMI]", "legimi"),
    ("„LEGIMI”", "legimi"),
    ("ＬＥＧＩＭＩ", "legimi"),  # fullwidth
    ("Lеgimi", "legimi"),  # Cyrillic е
    ("LEG\u200bIMI", "legimi"),  # zero-width space
    ("EMPIK GO", "empik_go"),
    ("EMPIKGO", "empik_go"),
    ("Empik-Go", "empik_go"),
    ("empik go", "empik_go"),
    ("EMPIK  GO", "empik_go"),
    ("Empik_Go", "empik_go"),
    ("Empik Gó", "empik_go"),
    ("Fwd: EMPIK GO.", "empik_go"),
    ("Pytanie o Legimi", None),
    ("LEGIMI kod", None),
    ("TEST LEGIMI", None),
    ("Legimi / Empik Go", None),
    ("EMPIK", None),
    ("Re:", None),
    ("", None),
    ("Kod do Legimi", None),
]


@pytest.mark.parametrize("subject, expected", SUBJECTS)
def test_match_service(subject, expected):
    # only a subject that names one service and nothing else is the bot's
    assert match_service(subject) == expected


@pytest.mark.parametrize(
    "subject, expected",
    [
        ("TEST LEGIMI", "legimi"),
        ("Re: test empik-go", "empik_go"),
        ("[EXT] TEST: Empik Go!", "empik_go"),
        ("LEGIMI", None),
        ("TEST", None),
        ("TEST LEGIMI kod", None),
    ],
)
def test_match_test_service(subject, expected):
    # "TEST <service>" subjects, with the same tolerance, are recognised separately
    assert match_test_service(subject) == expected


# --------------------------------------------------------------------------- cards


def test_card_with_leading_zeros_stays_a_string():
    # leading zeros are part of the card number
    assert find_cards("Moja karta: 0000123").card == "0000123"


def test_signature_phone_numbers_are_not_cards():
    # "tel. 600 123 456" and "+48 600123456" in a signature do not compete with the card
    text = "Proszę o kod, 0012345\n--\nJan Kowalski\ntel. 600 123 456\n+48 600123456\n+48600123457"
    assert find_cards(text) == CardSearch(("0012345",), "0012345", False)


@pytest.mark.parametrize(
    "text",
    [
        "tel. 600123456",
        "Telefon: 600123456",
        "kom. 600123456",
        "mobile 600123456",
        "+48 600 123 456",
        "(+48) 600123456",
        "0048 600123456",
        "PESEL 80010112345",
        "kod pocztowy 00950",
        "https://biblioteka.pl/konto/1234567",
        "jan12345@example.pl 12345@example.pl",
        "Data: 20261101",
    ],
)
def test_numbers_that_are_not_cards(text):
    # phones, PESEL, links, addresses and labelled dates are set aside
    assert find_cards(text) == CardSearch((), None, False)


def test_two_cards_are_ambiguous():
    # two different numbers: no guess, both listed
    result = find_cards("Karta 0012345, a może 0012346?")
    assert result == CardSearch(("0012345", "0012346"), None, False)
    assert result.ambiguous


def test_the_same_card_twice_is_that_card():
    # repeating the same number is not ambiguity
    assert find_cards("0012345\nNumer karty: 0012345").card == "0012345"


def test_one_labelled_number_beats_unlabelled_ones():
    # "nr karty" marks the card among other numbers
    result = find_cards("Zamówienie 98765432 z dnia 01.11.\nNumer karty czytelnika: 0012345\n123456")
    assert result.card == "0012345"
    assert "0012345" in result.candidates


def test_label_on_the_line_above():
    # a form-like "Numer karty:" line followed by the number on its own line labels it
    assert find_cards("Numer karty:\n\n0012345\nNumer zamówienia:\n7654321").card == "0012345"


def test_label_forms_and_glued_tokens():
    # "nr:0012345" and "karta-0012345" are fine; digits glued to letters are not a token
    assert find_cards("nr:0012345").card == "0012345"
    assert find_cards("karta-0012345").card == "0012345"
    assert find_cards("ABC0012345 0012345XYZ").candidates == ()


def test_unquoted_first_then_quote():
    # a card in the new text wins over a different one in the quote
    text = "Karta 0012345\n\nOn Sun, Nov 1, 2026 Jan <j@x.pl> wrote:\n> Karta 0099999"
    assert find_cards(text) == CardSearch(("0012345",), "0012345", False)


def test_per_library_pattern():
    # the library's pattern decides what a card is
    text = "Karta AB123456, tel. 600123456"
    assert find_cards(text, pattern=r"[A-Z]{2}[0-9]{6}").card == "AB123456"
    assert find_cards(text).card is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("tel. 600 123 456", ()),  # 3-3-3 groups are a phone
        ("00-950 Warszawa", ()),  # postal code
        ("od 01-11-2026", ()),  # date
        ("Karta 0012 345", ("0012 345",)),
    ],
)
def test_lenient_pattern_still_sets_aside_phones_dates_postcodes(text, expected):
    # a library pattern that allows spaces and hyphens still skips phones, dates and postcodes
    assert find_cards(text, pattern=r"[0-9][0-9 -]{3,12}[0-9]").candidates == expected


def test_more_card_labels():
    # "legitymacja", "nr czytelnika" and "library card" label the card like "karta"
    assert find_cards("Legitymacja: 0012345, zamówienie 0099999").card == "0012345"
    assert find_cards("nr czytelnika 0012345\nprzesyłka 0099999").card == "0012345"
    # two numbers after one label are both labelled: ambiguous, not a guess
    assert find_cards("nr czytelnika 0012345; 0099999").card is None
    assert find_cards("My library card number is 0012345, order 0099999").card == "0012345"


def test_fullwidth_digits():
    # fullwidth digits are read as digits
    assert find_cards("karta ００１２３４５").card == "0012345"


def test_no_number_at_all():
    # no candidate anywhere: no card, nothing listed
    assert find_cards("Dzień dobry, proszę o kod.") == CardSearch((), None, False)


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "text, surname, expected",
    [
        ("Jan Kowalski", "Kowalski", True),
        ("jan kowalski", "KOWALSKI", True),
        ("Łukasz Żółć", "Zolc", True),
        ("Lukasz Zolc", "Żółć", True),
        ("Paweł Łącki", "łącki", True),
        ("Anna Nowak-Kowalska", "Nowak-Kowalska", True),
        ("Anna Nowak Kowalska", "Nowak-Kowalska", True),
        ("Anna Kowalska", "Nowak-Kowalska", True),
        ("Anna Nowak", "Nowak-Kowalska", True),
        ("Anna Nowak-Kowalska", "Kowalska", True),
        ("Jan Kowalskiego", "Kowalski", False),
        ("Jan Nowakowski", "Nowak", False),
        ("Jan Kowal", "Kowalski", False),
        ("Anna Li", "Li-Ng", False),
        ("Anna Li-Ng", "Li-Ng", True),
        ("Anything", "", False),
    ],
)
def test_surname_matches(text, surname, expected):
    # whole-word, accent- and case-insensitive; hyphenated surnames match in full or by part
    assert surname_matches(text, surname) is expected


def test_fold():
    # folding drops accents, lowercases, and maps ł/ø/ß that NFKD leaves alone
    assert fold("Łukasz ŻÓŁĆ Øster Straße") == "lukasz zolc oster strasse"


def test_extract_name_from_separate_labels():
    # "Imię:" and "Nazwisko:" on separate lines are combined
    parsed = parse_mail(mail("Imię: Anna\nNazwisko: Nowak\nKarta: 0012345".encode()))
    assert extract_name(parsed) == "Anna Nowak"


def test_extract_name_next_to_the_card():
    # a line of capitalised words right by the card number; greetings are not names
    parsed = parse_mail(mail("Dzień Dobry\nPozdrawiam Serdecznie\nAnna Maria Nowak\n0012345".encode()))
    assert extract_name(parsed) == "Anna Maria Nowak"
    parsed = parse_mail(mail("Proszę o kod\nJan Nowak 0012345".encode()))
    assert extract_name(parsed) == "Jan Nowak"


def test_a_platform_name_by_the_card_is_not_the_patrons_name():
    # Poznań's third platform (issue 20): "Ebookpoint Biblio" above the card is the
    # service asked for, not a patron; the name two lines up is.
    parsed = parse_mail(mail("Anna Nowak\nEbookpoint Biblio\n0012345".encode()))
    assert extract_name(parsed) == "Anna Nowak"


def test_extract_name_prefers_the_new_text():
    # a name in what the patron wrote now beats a labelled name in the quote
    text = "Jan Nowak\n0012345\n\nOn Sun, Nov 1, 2026 B <b@b.pl> wrote:\n> Imię i nazwisko: Anna Zet"
    assert extract_name(parse_mail(mail(text.encode()))) == "Jan Nowak"


def test_extract_name_falls_back_to_from():
    # no name in the body: the From display name
    assert extract_name(parse_mail(mail(b"karta 0012345"))) == "Jan Kowalski"


# --------------------------------------------------------------------------- loops

LOOP_CASES = [
    (b"Auto-Submitted: auto-replied\r\n", "auto-submitted"),
    (b"Auto-Submitted: auto-generated; owner-email=x@y\r\n", "auto-submitted"),
    (b"Precedence: bulk\r\n", "precedence:bulk"),
    (b"Precedence: JUNK\r\n", "precedence:junk"),
    (b"Precedence: list\r\n", "precedence:list"),
    (b"Precedence: auto_reply\r\n", "precedence:auto_reply"),
    (b"X-Autoreply: yes\r\n", "x-autoreply"),
    (b"X-Autorespond: Out of office\r\n", "x-autorespond"),
    (b"X-Auto-Response-Suppress: All\r\n", "x-auto-response-suppress"),
    (b"List-Id: <czytelnicy.lists.example.pl>\r\n", "list-id"),
    (b"List-Unsubscribe: <mailto:leave@example.pl>\r\n", "list-unsubscribe"),
    (b"Return-Path: <>\r\n", "empty-return-path"),
    (b"Return-Path: <MAILER-DAEMON@mx.example.pl>\r\n", "mailer-daemon"),
    (b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n", "delivery-report"),
]


@pytest.mark.parametrize("header, reason", LOOP_CASES)
def test_loop_headers(header, reason):
    # each auto-generated sign alone is enough to withhold a reply
    assert loop_reason(parse_mail(mail(b"Karta 0012345", headers=header))) == reason


@pytest.mark.parametrize(
    "sender, reason",
    [
        (b"Mail Delivery System <MAILER-DAEMON@mx.example.pl>", "mailer-daemon"),
        (b"postmaster@example.pl", "mailer-daemon"),
        (b"Legimi <noreply@legimi.pl>", "no-reply-address"),
        (b"Biblioteka <LEGIMI@biblioteka.pl>", "own-address"),
    ],
)
def test_loop_senders(sender, reason):
    # daemons, no-reply senders and our own address get no reply
    raw = mail(b"x").replace(b"Jan Kowalski <jan@example.pl>", sender)
    assert loop_reason(parse_mail(raw), own_addresses={"legimi@biblioteka.pl"}) == reason


@pytest.mark.parametrize(
    "header, reason",
    [
        (b"Reply-To: legimi@biblioteka.pl\r\n", "own-address"),
        (b"Sender: Legimi@Biblioteka.pl\r\n", "own-address"),
        (b"Return-Path: <legimi@biblioteka.pl>\r\n", None),  # redirected between our mailboxes
    ],
)
def test_own_address_in_other_headers(header, reason):
    # Reply-To or Sender ours is a loop; an envelope sender of ours alone is not
    raw = mail(b"x", headers=header)
    assert loop_reason(parse_mail(raw), own_addresses={"legimi@biblioteka.pl"}) == reason


def test_own_message_id():
    # our own reply coming back (Message-ID <mailbot.…>) is never answered
    raw = mail(b"x").replace(b"<abc.123@example.pl>", b"<mailbot.20261101.42@biblioteka.pl>")
    assert loop_reason(parse_mail(raw)) == "own-message-id"


def test_a_patron_answering_our_reply_is_not_a_loop_by_default():
    # In-Reply-To one of ours is a patron answering us; it is a loop only when asked
    parsed = parse_mail(IPHONE_REPLY)
    assert loop_reason(parsed) is None
    assert loop_reason(parsed, replies_to_own_are_loops=True) == "reply-to-own-message"


@pytest.mark.parametrize(
    "header",
    [b"", b"Auto-Submitted: no\r\n", b"Auto-Submitted: No (human)\r\n", b"Precedence: normal\r\n"],
)
def test_ordinary_mail_is_not_a_loop(header):
    # a person's mail, including an explicit "Auto-Submitted: no", gets a reply
    assert loop_reason(parse_mail(mail(b"x", headers=header)), own_addresses=["legimi@b.pl"]) is None


def test_gmail_sample_is_not_a_loop():
    # the realistic Gmail request is not auto-generated
    assert loop_reason(parse_mail(GMAIL_QP), own_addresses=["legimi@biblioteka.pl"]) is None


# --------------------------------------------------------------------------- decode_bytes


def test_decode_bytes_pure_ascii_fast_path():
    # ASCII is ASCII whatever the label
    assert decode_bytes(b"abc", "iso-8859-2") == "abc"
    assert decode_bytes(b"abc", "no-such-charset") == "abc"
