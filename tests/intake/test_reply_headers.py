"""A patron answering our reply: the new card above the client's reply header is read, the
card in our quoted text below it is not (and the two never make an ambiguous_card).

The headers are the ones mail clients really write (SPEC 4: "possibly inside a reply
quote"). Where they come from:
- Outlook web / 365 (desktop, "New Outlook", mobile): the 32-underscore rule and the
  From/Sent/To/Subject block of crisp-oss/email-forward-parser's outlook_live_* and
  new_outlook_2019_* fixtures and crisp-oss/email-reply-parser's email_ios_outlook_en /
  email_android_outlook_en ("Get Outlook for iOS<https://aka.ms/o0ukef>", "Download
  Outlook for Android<https://aka.ms/ghei36>"), bold "*From:*" (outlook_live_en variant 10),
  a From line whose address wraps (email_outlook_split_line_from), Outlook 2013's
  "From: X [mailto:…]" and Outlook 2019's 'On …, "X" <…> wrote:' / "Dnia …, … użytkownik
  „X” <…> napisał:"; the Polish labels (Od, Wysłane, Wysłano, Data, Do, DW, Temat) as the
  same fixtures' Polish versions and the issue give them.
- Gmail: "pon., 1 gru 2026 o 00:01 X <…> napisał(a):" and the older "W dniu … użytkownik X
  <…> napisał:" as real Polish threads show them; "On Mon, Dec 1, 2026 at 12:01 AM X <"
  wrapped before the address (email_gmail_split_line_from), with Gmail's U+202F before AM.
- Apple Mail: "Wiadomość napisana przez X <…> w dniu 21 lis 2025, o godz. 03:55:", which
  real mail wraps inside the date; "On 1 Dec 2026, at 00:01, X <…> wrote:".
- Thunderbird: "W dniu 2015-01-07 14:23, x@y pisze:", "On 12/1/26 00:01, X wrote:", and its
  forward "--- Treść przekazanej wiadomości ---" with Temat/Data/Nadawca/Adresat.
- Evolution: "W dniu czw, 05.03.2026 o godzinie 11∶04 +0100, użytkownik X" / "napisał:".
- WP (and o2, on WP's mail system): "Dnia 10 lutego 2026 17:59 X < x@y > napisał(a):".
- Onet, Interia: as the issue describes them ("Użytkownik X <…> napisał:", "-----Oryginalna
  wiadomość-----", "Temat: … Od: … Data: … Do: …", also flattened onto one line).
"""

from __future__ import annotations

import pytest

from mailbot.intake.mail.quotes import split_quotes
from mailbot.intake.parse import parse_mail
from mailbot.intake.reading import read_mail

LIB = "Biblioteka Miejska <legimi@biblioteka.pl>"

# client: (its reply header, whether it marks the quoted lines with "> ")
HEADERS = {
    "outlook_web_pl": (
        "________________________________\n"
        f"Od: {LIB}\n"
        "Wysłane: poniedziałek, 1 grudnia 2026 00:01\n"
        "Do: Jan Kowalski <jan@example.pl>\n"
        "Temat: Re: LEGIMI",
        False,
    ),
    "outlook_web_en": (
        "________________________________\n"
        f"From: {LIB}\n"
        "Sent: Monday, December 1, 2026 00:01\n"
        "To: jan@example.pl <jan@example.pl>\n"
        "Subject: Re: LEGIMI",
        False,
    ),
    "outlook_desktop_pl": (
        f"Od: {LIB}\n"
        "Wysłano: poniedziałek, 1 grudnia 2026 00:01\n"
        "Do: Jan Kowalski\n"
        "Temat: Re: LEGIMI",
        False,
    ),
    "outlook_desktop_en": (
        "From: Biblioteka Miejska [mailto:legimi@biblioteka.pl]\n"
        "Sent: 01 December 2026 00:01\n"
        "To: jan@example.pl\n"
        "Subject: RE: LEGIMI",
        False,
    ),
    "outlook_desktop_pl_bold": (
        f"*Od:* {LIB}\n"
        "*Wysłane:* poniedziałek, 1 grudnia 2026 00:01\n"
        "*Do:* Jan Kowalski <jan@example.pl>\n"
        "*Temat:* Re: LEGIMI",
        False,
    ),
    "outlook_new_pl": (
        f"Od: {LIB}\n"
        "Data: poniedziałek, 1 grudnia 2026 o 00:01\n"
        "Do: jan@example.pl <jan@example.pl>\n"
        "DW: Czytelnia <czytelnia@biblioteka.pl>\n"
        "Temat: Re: LEGIMI",
        False,
    ),
    "outlook_new_en": (
        f"From: {LIB}\n"
        "Date: Monday, 1 December 2026 at 00:01\n"
        "To: jan@example.pl <jan@example.pl>\n"
        "Subject: Re: LEGIMI",
        False,
    ),
    "outlook_wrapped_sender": (
        "From: Biblioteka Miejska im. Adama Mickiewicza \n"
        "<legimi@biblioteka.pl> \n"
        "Sent: Monday, December 1, 2026 12:01 AM\n"
        "To: Jan Kowalski <jan@example.pl>\n"
        "Subject: Re: LEGIMI",
        False,
    ),
    "outlook_2019_pl": (
        "Dnia 01/12/2026, 00:01 użytkownik „Biblioteka Miejska” <legimi@biblioteka.pl> napisał:",
        False,
    ),
    "outlook_2019_en": (
        'On 01/12/2026 00:01, "Biblioteka Miejska" <legimi@biblioteka.pl> wrote:',
        False,
    ),
    "outlook_ios_pl": (
        "Pobierz aplikację Outlook dla iOS<https://aka.ms/o0ukef>\n"
        "________________________________\n"
        f"Od: {LIB}\n"
        "Wysłane: poniedziałek, 1 grudnia 2026 00:01:23\n"
        "Do: Jan Kowalski <jan@example.pl>\n"
        "Temat: Re: LEGIMI",
        False,
    ),
    "outlook_ios_en": (
        "Get Outlook for iOS<https://aka.ms/o0ukef>\n"
        "________________________________\n"
        f"From: {LIB}\n"
        "Sent: Monday, December 1, 2026 12:01:23 AM\n"
        "To: Jan Kowalski <jan@example.pl>\n"
        "Subject: Re: LEGIMI",
        False,
    ),
    "outlook_android_pl": (
        "Pobierz aplikację Outlook dla systemu Android<https://aka.ms/ghei36>\n\n"
        "________________________________\n"
        f"Od: {LIB}\n"
        "Do: jan@example.pl <jan@example.pl>\n"
        "Wysłane: poniedziałek, 1 grudnia 2026 00:01:40\n"
        "Temat: Re: LEGIMI",
        False,
    ),
    "outlook_android_en": (
        "Download Outlook for Android<https://aka.ms/ghei36>\n\n"
        "________________________________\n"
        f"From: {LIB}\n"
        "Sent: Monday, December 1, 2026 12:01:40 AM\n"
        "To: jan@example.pl <jan@example.pl>\n"
        "Subject: Re: LEGIMI",
        False,
    ),
    "outlook_mobile_pl_data_first": (
        f"Od: {LIB}\n"
        "Data: poniedziałek, 1 grudnia 2026 00:01\n"
        "Do: Jan Kowalski <jan@example.pl>\n"
        "Temat: Re: LEGIMI",
        False,
    ),
    "outlook_flattened_pl": (
        f"Od: {LIB} Wysłane: poniedziałek, 1 grudnia 2026 00:01 Do: jan@example.pl "
        "Temat: Re: LEGIMI",
        False,
    ),
    "gmail_pl": (f"pon., 1 gru 2026 o 00:01 {LIB} napisał(a):", True),
    "gmail_pl_older": (f"W dniu 1 grudnia 2026 00:01 użytkownik {LIB} napisał:", True),
    "gmail_pl_wrapped": (
        "pon., 1 gru 2026 o 00:01 Biblioteka Miejska im. Adama Mickiewicza <\n"
        "legimi@biblioteka.pl> napisał(a):",
        True,
    ),
    "gmail_en": (f"On Mon, Dec 1, 2026 at 12:01\u202fAM {LIB} wrote:", True),
    "gmail_en_wrapped": (
        "On Mon, Dec 1, 2026 at 12:01 AM Biblioteka Miejska im. Adama Mickiewicza <\n"
        "legimi@biblioteka.pl> wrote:",
        True,
    ),
    "apple_mail_pl": (
        f"Wiadomość napisana przez {LIB} w dniu 1 gru 2026, o godz. 00:01:",
        True,
    ),
    "apple_mail_pl_wrapped": (
        f"Wiadomość napisana przez {LIB} w dniu 1 gru\n2026, o godz. 00:01:",
        True,
    ),
    "apple_mail_en": (f"On 1 Dec 2026, at 00:01, {LIB} wrote:", True),
    "thunderbird_pl": ("W dniu 1.12.2026 o 00:01, Biblioteka Miejska pisze:", True),
    "thunderbird_pl_address": ("W dniu 2026-12-01 00:01, legimi@biblioteka.pl pisze:", True),
    "thunderbird_en": ("On 12/1/26 00:01, Biblioteka Miejska wrote:", True),
    "thunderbird_pl_forward": (
        "--- Treść przekazanej wiadomości ---\n"
        "Temat: \tRe: LEGIMI\n"
        "Data: \tMon, 1 Dec 2026 00:01:30 +0100\n"
        f"Nadawca: \t{LIB}\n"
        "Adresat: \tjan@example.pl",
        False,
    ),
    "evolution_pl": (
        "W dniu pon, 01.12.2026 o godzinie 00∶01 +0100, użytkownik Biblioteka Miejska\n"
        "napisał:",
        True,
    ),
    "wp_pl": (f"Dnia 1 grudnia 2026 00:01 {LIB} napisał(a):", False),
    "o2_pl": ("Dnia 1 grudnia 2026 00:01 Biblioteka < legimi@biblioteka.pl > napisał(a):", False),
    "onet_pl": (f"Użytkownik {LIB} napisał:", False),
    "interia_pl_original": (
        "-----Oryginalna wiadomość-----\n"
        f"Od: {LIB}\n"
        "Do: jan@interia.pl\n"
        "Data: 1 grudnia 2026 00:01\n"
        "Temat: Re: LEGIMI",
        False,
    ),
    "interia_pl_block": (
        "Temat: Re: LEGIMI\n"
        f"Od: {LIB}\n"
        "Data: 1 grudnia 2026 00:01\n"
        "Do: jan@interia.pl",
        False,
    ),
    "interia_pl_flattened": (
        f"Temat: Re: LEGIMI Od: {LIB} Data: 1 grudnia 2026 00:01 Do: jan@interia.pl",
        False,
    ),
}

OUR_REPLY = [
    "Dzień dobry,",
    "nie znaleźliśmy w katalogu karty nr 0099999. Prosimy o sprawdzenie numeru.",
    "Biblioteka Miejska",
]


def reply_body(new_text: str, client: str) -> str:
    """The patron's answer to our reply, written with ``client``: the new text, the
    client's reply header, and our reply below it (with "> " where the client adds it)."""
    header, marks = HEADERS[client]
    quoted = "\n".join(("> " + line) if marks else line for line in OUR_REPLY)
    return f"{new_text}\n\n{header}\n{quoted}\n"


def mail(body: str, *, subtype: str = "plain") -> bytes:
    return (
        "From: Jan Kowalski <jan@example.pl>\r\n"
        "To: legimi@biblioteka.pl\r\n"
        "Subject: Re: LEGIMI\r\n"
        "Date: Tue, 1 Dec 2026 08:00:00 +0100\r\n"
        "Message-ID: <answer.1@example.pl>\r\n"
        "MIME-Version: 1.0\r\n"
        f"Content-Type: text/{subtype}; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n" + body
    ).encode("utf-8")


@pytest.mark.parametrize("client", sorted(HEADERS))
@pytest.mark.parametrize(
    "new_text",
    ["Dzień dobry,\nmoja karta: 0012345\nJan Kowalski", "Dzień dobry,\n0012345\nJan Kowalski"],
    ids=["labelled", "unlabelled"],
)
def test_the_new_card_is_read_and_the_quoted_one_is_not(client, new_text):
    # What the patron wrote above the header is the request; our quoted reply below it,
    # whose card carries a "karta nr" label, neither wins nor makes the mail ambiguous.
    parsed = parse_mail(mail(reply_body(new_text, client)))
    reading = read_mail(parsed)
    assert reading.cards.card == "0012345"
    assert reading.cards.candidates == ("0012345",)
    assert not reading.cards.ambiguous and not reading.cards.from_quote
    assert "0099999" not in parsed.unquoted and "0099999" in parsed.quoted


@pytest.mark.parametrize("client", sorted(HEADERS))
def test_the_quote_starts_at_the_header(client):
    # The quote starts at the header's first line (the rule line above an Outlook block
    # included); the patron's text, the Outlook mobile signature too, stays unquoted.
    header, _marks = HEADERS[client]
    signature = ("Get Outlook", "Download Outlook", "Pobierz aplikację Outlook")
    first = next(line for line in header.split("\n") if line and not line.startswith(signature))
    unquoted, quoted = split_quotes(reply_body("Karta 0012345", client))
    assert quoted.startswith(first.strip())
    assert unquoted.startswith("Karta 0012345")
    assert "0099999" not in unquoted


def test_outlook_web_html_reply_in_polish():
    # Outlook on the web in Polish, HTML only: the header block is bold field names in a
    # div under a rule, our reply below it in a plain div (no blockquote, so no "> ").
    html = (
        '<html><body><div dir="ltr">Dzień dobry,<br>0012345<br>Jan Kowalski</div>'
        '<hr style="display:inline-block;width:98%" tabindex="-1">'
        '<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif" color="#000000">'
        "<b>Od:</b> Biblioteka Miejska &lt;legimi@biblioteka.pl&gt;<br>"
        "<b>Wysłane:</b> poniedziałek, 1 grudnia 2026 00:01<br>"
        "<b>Do:</b> Jan Kowalski &lt;jan@example.pl&gt;<br>"
        "<b>Temat:</b> Re: LEGIMI</font><div>&nbsp;</div></div>"
        "<div><p>Dzień dobry,</p><p>nie znaleźliśmy w katalogu karty nr 0099999.</p></div>"
        "</body></html>"
    )
    parsed = parse_mail(mail(html, subtype="html"))
    cards = read_mail(parsed).cards
    assert (cards.card, cards.candidates, cards.from_quote) == ("0012345", ("0012345",), False)
    assert parsed.quoted.startswith("Od: Biblioteka Miejska")


def test_reply_headers_are_looked_for_only_in_the_first_64_kb(monkeypatch):
    # A hostile mail of 2 MB of header-like lines: each line looked at reads the lines
    # after it, so only the first 64 KB of text is searched (a patron writes far less
    # above a quote); the rest costs one pass over the lines.
    from mailbot.intake.mail import quotes

    looked_at: list[int] = []
    real = quotes.reply_header_at
    monkeypatch.setattr(quotes, "reply_header_at",
                        lambda lines, i: looked_at.append(i) or real(lines, i))
    line = "Od: x a: a: a: a: a: a: a: a:"
    unquoted, quoted = quotes.split_quotes("\n".join([line] * (2_000_000 // len(line))))
    assert 0 < len(looked_at) <= quotes.QUOTE_SEARCH_CHARS // len(line)
    assert unquoted.startswith(line) and quoted == ""
