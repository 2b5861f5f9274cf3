"""Reply templates and their renderer: every outcome, both languages, text and HTML."""

from __future__ import annotations

import re
import shutil
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from jinja2 import UndefinedError, meta

from mailbot.respond import i18n
from mailbot.respond.render import (
    DEFAULT_TEMPLATES_DIR,
    NO_REPLY_OUTCOMES,
    REPLY_OUTCOMES,
    RenderedReply,
    environment,
    render_reply,
    template_names,
)
from mailbot.respond.variables import CODE_OUTCOMES, CONTEXT_VARIABLES
from mailbot.rules.offered import offer

WARSAW = ZoneInfo("Europe/Warsaw")
SAMPLE_CODE = "ZQX7-CODE-4242"
REFUSALS = tuple(o for o in REPLY_OUTCOMES if o not in CODE_OUTCOMES)
SPEC_OUTCOMES = {
    "issued", "already_received", "too_early", "no_card", "ambiguous_card", "unknown_card",
    "name_mismatch", "sender_mismatch", "inactive_account", "debt", "overdue",
    "data_not_updated", "no_loans_this_year", "blocked", "pool_exhausted",
}  # fmt: skip
OPTIONAL_ALWAYS = ("card_number", "patron_name", "library_contact")
POLISH_LETTERS = set("ąćęłńóśźżĄĆĘŁŃÓŚŹŻ")
MOJIBAKE = re.compile("Ã|Å|Ä|Ĺ|â€|\ufffd")


def full_context(service: str = "legimi", **overrides: Any) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "library_name": "Biblioteka Publiczna im. Z. Łazarskiego",
        "service": service,
        "service_name": i18n.service_name(service),
        "subject": "LEGIMI",
        "received_at": datetime(2026, 11, 1, 0, 3, tzinfo=WARSAW),
        "month": date(2026, 11, 1),
        "card_number": "0012345",
        "patron_name": "Zofia Żółkiewska",
        "library_contact": "tel. 22 123 45 67\npn–pt 10:00–16:00",
        "next_window": datetime(2026, 12, 1, tzinfo=WARSAW),
        "window_opens": datetime(2026, 11, 1, tzinfo=WARSAW),
        "code": SAMPLE_CODE,
        "activation_url": "https://www.legimi.pl/mazowieckie/",
        "deadline": date(2026, 11, 30),
        "penalty_months": 3,
        "previous_service_name": "Empik Go",
        "previous_issued_at": datetime(2026, 11, 1, 10, 5, tzinfo=WARSAW),
        "balance_due": Decimal("12.50"),
        "overdue_items": 2,
        "valid_until": date(2026, 3, 31),
        "blocked_until": date(2027, 2, 1),
        "candidates": ["0012345", "0098765"],
        "min_age": 16,
        "year": 2026,
        "verdict": "debt",
        "max_codes": 3,
        "before_window": True,
        # service_not_offered: what the library offers; pool_exhausted: the other service.
        "offered": (offer("legimi"),),
        "other_services": (offer("empik_go" if service == "legimi" else "legimi"),),
    }
    ctx.update(overrides)
    return ctx


def sections(reply: RenderedReply) -> tuple[str, str]:
    """Split a two-language text reply into its Polish and English parts."""
    pl, _, en = reply.text.partition("— English version below —")
    assert en, "no English section after the divider"
    return pl, en


def flat_sections(reply: RenderedReply) -> tuple[str, str]:
    pl, en = sections(reply)
    return flat(pl), flat(en)


def template_source(name: str) -> str:
    return (DEFAULT_TEMPLATES_DIR / name).read_text(encoding="utf-8")


def undeclared(name: str) -> set[str]:
    env = environment("pl")
    return set(meta.find_undeclared_variables(env.parse(template_source(name))))


def flat(text: str) -> str:
    """Text with line wrapping undone, for phrase checks that must not depend on width."""
    return " ".join(text.split())


# ---------------------------------------------------------------- the template set


def test_reply_outcomes_are_the_spec_outcomes_plus_issue_3s() -> None:
    # Every outcome of SPEC §3 that gets a reply has a template key, plus the age limit and
    # the eligibility test verdict; no-reply outcomes have none.
    assert set(REPLY_OUTCOMES) == SPEC_OUTCOMES | {"age_restricted", "eligibility_test",
                                                   "address_limit", "service_not_offered",
                                                   "pool_not_ready", "unconfirmed_account"}
    assert not set(REPLY_OUTCOMES) & set(NO_REPLY_OUTCOMES)
    assert len(set(REPLY_OUTCOMES)) == len(REPLY_OUTCOMES)


@pytest.mark.parametrize("lang", ["pl", "en"])
@pytest.mark.parametrize("outcome", REPLY_OUTCOMES)
def test_every_outcome_has_text_and_html_templates(outcome: str, lang: str) -> None:
    # A reply outcome without a Polish or English text or HTML template is a failing build.
    names = template_names(outcome, lang)
    assert names.text == f"email/{lang}/{outcome}.txt.j2"
    assert names.html == f"email/{lang}/{outcome}.html.j2"
    for name in names:
        assert (DEFAULT_TEMPLATES_DIR / name).is_file(), name


def test_layouts_exist() -> None:
    # Both layouts that wrap the language sections are in templates/email/.
    assert (DEFAULT_TEMPLATES_DIR / "email/layout.txt.j2").is_file()
    assert (DEFAULT_TEMPLATES_DIR / "email/layout.html.j2").is_file()


@pytest.mark.parametrize("outcome", NO_REPLY_OUTCOMES + ("no_such_outcome",))
def test_outcomes_without_reply_are_refused(outcome: str) -> None:
    # Asking for a reply to ignored_loop, not_a_request, rate_limited or a typo is a bug.
    with pytest.raises(ValueError):
        render_reply(outcome, full_context())
    with pytest.raises(ValueError):
        template_names(outcome, "pl")


def test_unsupported_language_is_refused() -> None:
    # Only languages with templates and formatters can be asked for.
    with pytest.raises(ValueError):
        render_reply("issued", full_context(), languages=("de",))


@pytest.mark.parametrize("lang", ["pl", "en"])
@pytest.mark.parametrize("outcome", REPLY_OUTCOMES)
def test_templates_use_only_documented_variables(outcome: str, lang: str) -> None:
    # A template may read only the context variables variables.py lists for its outcome.
    allowed = CONTEXT_VARIABLES[outcome].required | CONTEXT_VARIABLES[outcome].optional
    for name in template_names(outcome, lang):
        assert undeclared(name) <= allowed, name


@pytest.mark.parametrize("lang", ["pl", "en"])
@pytest.mark.parametrize("outcome", REFUSALS)
def test_refusal_templates_do_not_reference_code(outcome: str, lang: str) -> None:
    # A refusal template never even mentions the variable that holds a code.
    for name in template_names(outcome, lang):
        assert "code" not in undeclared(name), name
        assert not re.search(r"\bcode\b(?!_box)", _expressions(template_source(name))), name


def _expressions(source: str) -> str:
    """The Jinja expressions and statements of a template, without its literal text."""
    return " ".join(re.findall(r"{[{%](.*?)[}%]}", source, flags=re.S))


def test_template_files_are_utf8_without_mojibake() -> None:
    # Templates are UTF-8 and carry real Polish letters, not double-encoded garbage.
    for path in sorted((DEFAULT_TEMPLATES_DIR / "email").rglob("*.j2")):
        text = path.read_bytes().decode("utf-8")
        assert not MOJIBAKE.search(text), path


# ---------------------------------------------------------------- rendering


@pytest.mark.parametrize("service", ["legimi", "empik_go"])
@pytest.mark.parametrize("outcome", REPLY_OUTCOMES)
def test_every_outcome_renders_with_a_full_context(outcome: str, service: str) -> None:
    # With every documented variable present, each reply renders in both languages.
    reply = render_reply(outcome, full_context(service))
    assert isinstance(reply, RenderedReply)
    pl, en = sections(reply)
    assert pl.startswith("Dzień dobry,")
    assert "Hello," in en
    assert pl.count("Biblioteka Publiczna im. Z. Łazarskiego") >= 1
    assert "Z poważaniem" in pl and "Kind regards," in en
    assert reply.html.startswith("<!DOCTYPE html>")
    assert "Dzień dobry," in reply.html and "Hello," in reply.html


@pytest.mark.parametrize("outcome", REPLY_OUTCOMES)
def test_every_outcome_renders_with_optional_variables_none(outcome: str) -> None:
    # Optional variables set to None are guarded: no "None" and no undefined error.
    none = {name: None for name in CONTEXT_VARIABLES[outcome].optional}
    reply = render_reply(outcome, full_context(**none))
    assert "None" not in reply.text
    assert "None" not in reply.html


@pytest.mark.parametrize("outcome", REPLY_OUTCOMES)
def test_every_outcome_renders_with_optional_variables_absent(outcome: str) -> None:
    # Optional variables may be left out of the context altogether.
    ctx = full_context()
    for name in CONTEXT_VARIABLES[outcome].optional:
        ctx.pop(name, None)
    reply = render_reply(outcome, ctx)
    assert "None" not in reply.text


@pytest.mark.parametrize("outcome", REPLY_OUTCOMES)
def test_a_missing_required_variable_is_an_error(outcome: str) -> None:
    # StrictUndefined spirit: a required variable that is missing raises, naming it.
    for name in CONTEXT_VARIABLES[outcome].required:
        ctx = full_context()
        del ctx[name]
        with pytest.raises(UndefinedError, match=name):
            render_reply(outcome, ctx)


@pytest.mark.parametrize("outcome", REPLY_OUTCOMES)
def test_polish_section_is_polite_and_has_polish_letters(outcome: str) -> None:
    # One polite register: the library speaks as "we" (informujemy, prosimy, przesyłamy)
    # and addresses the patron as Pan/Pani or impersonally ("należy", "można"), never with
    # the bare "Proszę wejść…" nor the familiar "ty"; diacritics intact.
    reply = render_reply(outcome, full_context(library_contact=None))
    pl, _ = sections(reply)
    assert re.search(r"\b\w{2,}(?:emy|amy|imy|ymy)\b", pl)  # informujemy, dziękujemy …
    assert not re.search(r"\bProszę\b", pl)
    assert not re.search(r"\b(twój|twoja|twoje|twojego|ciebie|tobie|wejdź|zainstaluj|"
                         r"kliknij|napisz|sprawdź|podaj|wyślij)\b", pl, re.IGNORECASE)
    # The dashboard calls an expired account "konto nieważne"; the reply says the same.
    assert "nieaktywn" not in pl
    assert POLISH_LETTERS & set(pl)
    assert not MOJIBAKE.search(reply.text)
    assert not MOJIBAKE.search(reply.html)
    # Gendered verb forms would guess the patron's sex; the polite forms avoid them.
    assert not re.search(r"\b(otrzymał|otrzymała|zmienił|zmieniła)(a|eś|aś)?\b", pl)


@pytest.mark.parametrize("lang", ["pl", "en"])
@pytest.mark.parametrize("outcome", REFUSALS)
def test_refusals_never_show_a_code_even_if_one_is_passed(outcome: str, lang: str) -> None:
    # A code accidentally left in the context of a refusal never reaches the patron.
    reply = render_reply(outcome, full_context(code=SAMPLE_CODE), languages=(lang,))
    assert SAMPLE_CODE not in reply.text
    assert SAMPLE_CODE not in reply.html


@pytest.mark.parametrize("outcome", REPLY_OUTCOMES)
def test_patron_supplied_text_is_escaped_in_html(outcome: str) -> None:
    # Subject and names come from the mail; in HTML they are text, never markup.
    evil = "<script>alert(1)</script>"
    reply = render_reply(outcome, full_context(patron_name=evil, subject=evil))
    assert "<script" not in reply.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in reply.html


def test_patron_name_is_escaped_in_issued_html() -> None:
    # The issued reply shows the patron's name, escaped, in both language sections.
    reply = render_reply("issued", full_context(patron_name="<script>alert(1)</script>"))
    assert reply.html.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 2
    assert "<script>" not in reply.html
    assert "<script>alert(1)</script>" in reply.text  # plain text is not HTML


def test_layout_puts_polish_before_english() -> None:
    # Polish comes first, then the divider, then English, in both bodies.
    reply = render_reply("issued", full_context())
    for body in (reply.text, reply.html):
        assert (
            body.index("Dzień dobry,")
            < body.index("— English version below —")
            < body.index("Hello,")
        )
    assert '<td lang="pl"' in reply.html and '<td lang="en"' in reply.html


def test_a_single_language_has_no_divider() -> None:
    # Asking for Polish only gives one section and no divider.
    reply = render_reply("debt", full_context(), languages=("pl",))
    assert "English version" not in reply.text
    assert "Hello," not in reply.text and "Hello," not in reply.html
    assert "12,50 zł" in reply.text


def test_html_is_a_complete_self_contained_email() -> None:
    # The HTML body is a whole document with inline CSS only: no scripts, no remote resources.
    html = render_reply("issued", full_context()).html
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert '<meta http-equiv="Content-Type" content="text/html; charset=utf-8">' in html
    for forbidden in ("<script", "<link", "<style", "<img", "src=", "@import", "url("):
        assert forbidden not in html
    # The code sits in a monospace box.
    assert re.search(rf"<td style=\"[^\"]*monospace[^\"]*\">{SAMPLE_CODE}</td>", html)


def test_html_sections_are_fragments() -> None:
    # Each language template renders a fragment; only the layout has <html> and <body>.
    for lang in ("pl", "en"):
        for outcome in REPLY_OUTCOMES:
            source = template_source(template_names(outcome, lang).html)
            assert "<html" not in source and "<body" not in source


@pytest.mark.parametrize("outcome", REPLY_OUTCOMES)
def test_text_lines_fit_in_78_columns(outcome: str) -> None:
    # Plain-text lines stay within 78 characters unless one word (a URL) is longer.
    reply = render_reply(outcome, full_context())
    for line in reply.text.splitlines():
        assert len(line) <= 78 or " " not in line.strip() or "://" in line, line


def test_long_lines_wrap_without_orphans_or_split_dates() -> None:
    # Wrapped Polish lines never end in a one-letter word nor split "30 listopada 2026".
    ctx = full_context(library_name="Miejska Biblioteka Publiczna " * 2)
    for outcome in REPLY_OUTCOMES:
        pl, en = sections(render_reply(outcome, ctx))
        for line in pl.splitlines():
            # A soft line break (format=flowed) ends the line in a space.
            assert not re.search(r"\s[aiouwz]$", line.rstrip(" ")), line
        for text in (pl, en):
            assert not re.search(r"\d\n\s*(listopada|grudnia|November|December)", text)


def test_rendering_is_cached_and_fast() -> None:
    # Templates compile once: a few hundred replies take well under a few seconds.
    ctx = full_context()
    render_reply("issued", ctx)
    start = time.perf_counter()
    for _ in range(20):
        for outcome in REPLY_OUTCOMES:
            render_reply(outcome, ctx)
    assert time.perf_counter() - start < 5.0


def test_templates_dir_can_be_overridden(tmp_path: Path) -> None:
    # A library can ship its own templates directory; the renderer reads from it.
    shutil.copytree(DEFAULT_TEMPLATES_DIR / "email", tmp_path / "email")
    target = tmp_path / "email/pl/debt.txt.j2"
    target.write_text(
        target.read_text(encoding="utf-8").replace("Dzień dobry,", "Szanowni Państwo,"),
        encoding="utf-8",
    )
    reply = render_reply("debt", full_context(), templates_dir=tmp_path)
    assert reply.text.startswith("Szanowni Państwo,")
    assert render_reply("debt", full_context()).text.startswith("Dzień dobry,")


# ---------------------------------------------------------------- what each reply says


def test_issued_gives_code_steps_deadline_and_penalty() -> None:
    # The issued reply shows the code, how and by when to activate it, and the penalty.
    reply = render_reply("issued", full_context())
    assert reply.text.count(f"\n\n    {SAMPLE_CODE}\n\n") == 2  # on its own line, twice
    pl, en = flat_sections(reply)
    for text in (pl, en):
        assert "https://www.legimi.pl/mazowieckie/" in text
    assert "najpóźniej 30 listopada 2026" in pl
    assert "30 dni od chwili aktywacji" in pl
    assert "dwóch urządzeniach" in pl
    assert "przez 3 miesiące nie będzie można otrzymać kolejnego kodu" in pl
    assert "listopad 2026" in pl
    assert "by 30 November 2026" in en and "30 days" in en and "two devices" in en
    assert "3 months" in en
    assert '<a href="https://www.legimi.pl/mazowieckie/"' in reply.html


def test_issued_without_penalty_has_no_warning() -> None:
    # With penalty_months 0 the reply does not threaten a block.
    pl, en = flat_sections(render_reply("issued", full_context(penalty_months=0)))
    assert "Uwaga" not in pl and "Please note" not in en


def test_issued_empik_go_without_url_tells_where_to_find_it() -> None:
    # Empik Go steps: Empik account, the code, the app; no invented URL when none is set.
    pl, en = flat_sections(render_reply("issued", full_context("empik_go", activation_url=None)))
    assert "konto Empik" in pl and "aplikację Empik Go" in pl
    assert "stronie internetowej biblioteki" in pl
    assert "http" not in pl and "http" not in en


def test_already_received_repeats_the_code_when_allowed() -> None:
    # Same address as before: the reply repeats this month's code with its activation steps.
    pl, en = flat_sections(render_reply("already_received", full_context()))
    assert SAMPLE_CODE in pl and SAMPLE_CODE in en
    assert "Empik Go" in pl and "1 listopada 2026, godz. 10:05" in pl
    assert "jeden kod" in pl and "Legimi albo do Empik Go" in pl
    assert "konto Empik" in pl  # the steps are those of the service the code is for
    assert "1 grudnia 2026, godz. 00:00" in pl


def test_already_received_without_code_points_to_the_earlier_mail() -> None:
    # Another address: no code, but where it was sent and that only one code a month is allowed.
    reply = render_reply("already_received", full_context(code=None))
    pl, en = flat_sections(reply)
    assert SAMPLE_CODE not in reply.text and SAMPLE_CODE not in reply.html
    assert "adres e-mail, z którego przyszło tamto zgłoszenie" in pl
    assert "e-mail address that request came from" in en


def test_too_early_says_from_when_requests_count() -> None:
    # too_early names the moment this month's window opens and asks to write again then.
    ctx = full_context(window_opens=datetime(2026, 11, 10, tzinfo=WARSAW))
    pl, en = flat_sections(render_reply("too_early", ctx))
    assert "od 10 listopada 2026, godz. 00:00" in pl
    assert "from 10 November 2026, 00:00" in en


@pytest.mark.parametrize("outcome", ["no_card", "ambiguous_card", "unknown_card", "name_mismatch"])
def test_card_problems_explain_how_to_write(outcome: str) -> None:
    # Card and name problems tell the patron the subject and what to put in the body.
    pl, en = flat_sections(render_reply(outcome, full_context()))
    assert "LEGIMI albo EMPIK GO" in pl and "imię, nazwisko i jeden numer karty" in pl
    assert "LEGIMI or EMPIK GO" in en and "ONE library card number" in en


def test_ambiguous_card_lists_the_candidates() -> None:
    # The candidates found are shown so the patron sees what confused us.
    pl, en = sections(render_reply("ambiguous_card", full_context()))
    assert "  - 0012345\n  - 0098765" in pl
    assert "0098765" in en


def test_name_mismatch_does_not_show_the_name() -> None:
    # A name mismatch never reveals a name: it could be the card owner's, not the sender's.
    reply = render_reply("name_mismatch", full_context())
    assert "Żółkiewska" not in reply.text and "Żółkiewska" not in reply.html


@pytest.mark.parametrize(
    ("outcome", "pl_phrase", "en_phrase"),
    [
        ("debt", "12,50 zł", "PLN 12.50"),
        ("debt", "uregulować należność w dowolnej placówce", "pay the amount at any library"),
        ("overdue", "są 2 pozycje po terminie zwrotu", "2 items past the"),
        ("overdue", "zwrócić przetrzymane pozycje lub przedłużyć", "return or renew"),
        ("data_not_updated", "zaktualizować dane w dowolnej placówce", "update your details"),
        ("data_not_updated", "w 2026 roku", "in 2026"),
        ("no_loans_this_year", "wypożyczyć dowolną pozycję", "borrow any item"),
        ("inactive_account", "upłynęła 31 marca 2026", "expired on 31 March 2026"),
        ("inactive_account", "przedłużyć ważność karty", "renew your library card"),
        ("sender_mismatch", "z adresu e-mail podanego w bibliotece", "registered at the"),
        ("sender_mismatch", "zaktualizować adres e-mail", "update your e-mail address"),
        ("blocked", "od 1 lutego 2027", "from 1 February 2027"),
        ("blocked", "nie został aktywowany w terminie", "not activated in time"),
        ("blocked", "blokada trwa 3 miesiące", "lasts 3 months"),
        ("pool_exhausted", "nie przyjmuje rezerwacji", "does not take"),
        ("pool_exhausted", "od 1 grudnia 2026, godz. 00:00", "on 1 December 2026, 00:00"),
        ("age_restricted", "ukończyli 16 lat", "aged 16 or over"),
    ],
)
def test_refusals_say_why_and_what_to_do(outcome: str, pl_phrase: str, en_phrase: str) -> None:
    # Each refusal gives its reason and the patron's next step, in both languages.
    pl, en = flat_sections(render_reply(outcome, full_context()))
    assert pl_phrase in pl
    assert en_phrase in en


@pytest.mark.parametrize("outcome", REPLY_OUTCOMES)
def test_english_needs_no_article_chosen_for_the_service_name(outcome: str) -> None:
    # "a Empik Go code" is wrong and "an Legimi code" would be: the English texts put no
    # article straight before a service's name ("a code for Empik Go").
    reply = render_reply(outcome, full_context("empik_go"))
    _, en = flat_sections(reply)
    html = flat(re.sub(r"<[^>]+>", " ", reply.html.partition('lang="en"')[2]))
    assert html, "no English section in the HTML"
    for text in (en, html):
        assert not re.search(r"\ban? (Empik Go|Legimi)\b", text), text


@pytest.mark.parametrize(
    ("items", "pl_phrase", "en_phrase"),
    [
        (1, "jest 1 pozycja po terminie", "1 item past"),
        (3, "są 3 pozycje po terminie", "3 items past"),
        (5, "jest 5 pozycji po terminie", "5 items past"),
        (12, "jest 12 pozycji po terminie", "12 items past"),
        (22, "są 22 pozycje po terminie", "22 items past"),
    ],
)
def test_overdue_count_agrees_in_number(items: int, pl_phrase: str, en_phrase: str) -> None:
    # Polish number agreement: 1 pozycja, 2-4 pozycje, 5+ pozycji (and 22 pozycje).
    pl, en = flat_sections(render_reply("overdue", full_context(overdue_items=items)))
    assert pl_phrase in pl
    assert en_phrase in en


@pytest.mark.parametrize(
    ("months", "phrase"), [(1, "1 miesiąc"), (2, "2 miesiące"), (5, "5 miesięcy")]
)
def test_blocked_months_agree_in_number(months: int, phrase: str) -> None:
    # The block length is spelled with the right Polish plural.
    pl, _ = flat_sections(render_reply("blocked", full_context(penalty_months=months)))
    assert f"blokada trwa {phrase}." in pl
    raw, _ = sections(render_reply("blocked", full_context(penalty_months=months)))
    assert f"{phrase}.\n\nKolejny kod" in raw  # the guard keeps the paragraph break


def test_library_contact_spans_lines_in_html() -> None:
    # A multi-line contact keeps its lines in HTML, escaped.
    ctx = full_context(library_contact="tel. 22 123 45 67\n<b>pn–pt</b> 10–16")
    html = render_reply("debt", ctx).html
    assert "tel. 22 123 45 67<br>\n&lt;b&gt;pn–pt&lt;/b&gt; 10–16" in html


# ---------------------------------------------------------------- i18n formatters


def test_format_date_uses_polish_genitive_months() -> None:
    # Polish dates use the genitive month: "1 grudnia 2026".
    genitive = [
        "stycznia", "lutego", "marca", "kwietnia", "maja", "czerwca",
        "lipca", "sierpnia", "września", "października", "listopada", "grudnia",
    ]  # fmt: skip
    for month, name in enumerate(genitive, start=1):
        assert i18n.format_date(date(2026, month, 1), "pl") == f"1 {name} 2026"
    assert i18n.format_date(date(2026, 12, 1), "en") == "1 December 2026"


def test_format_month_uses_polish_nominative() -> None:
    # A month on its own is nominative in Polish: "listopad 2026".
    assert i18n.format_month(2026, 11, "pl") == "listopad 2026"
    assert i18n.format_month(date(2026, 11, 1), "pl") == "listopad 2026"
    assert i18n.format_month(date(2026, 9, 15), lang="pl") == "wrzesień 2026"
    assert i18n.format_month(2026, 2, "pl") == "luty 2026"
    assert i18n.format_month(2026, 11, "en") == "November 2026"


def test_format_datetime_keeps_its_own_time_zone() -> None:
    # A datetime is shown in the zone it carries, never converted.
    assert i18n.format_datetime(datetime(2026, 12, 1, tzinfo=WARSAW), "pl") == (
        "1 grudnia 2026, godz. 00:00"
    )
    assert i18n.format_datetime(datetime(2026, 12, 1, tzinfo=WARSAW), "en") == (
        "1 December 2026, 00:00"
    )
    utc = datetime(2026, 11, 30, 23, 0, tzinfo=timezone.utc)
    assert i18n.format_datetime(utc, "pl") == "30 listopada 2026, godz. 23:00"
    plus2 = datetime(2026, 7, 1, 9, 5, tzinfo=timezone(timedelta(hours=2)))
    assert i18n.format_datetime(plus2, "en") == "1 July 2026, 09:05"


def test_format_datetime_refuses_naive_datetimes() -> None:
    # A naive datetime's wall time is a guess: refuse it rather than print it.
    with pytest.raises(ValueError):
        i18n.format_datetime(datetime(2026, 12, 1), "pl")


@pytest.mark.parametrize(
    ("amount", "pl", "en"),
    [
        (Decimal("12.5"), "12,50 zł", "PLN 12.50"),
        (Decimal("0.005"), "0,01 zł", "PLN 0.01"),
        (Decimal("1234.5"), "1234,50 zł", "PLN 1,234.50"),
        (Decimal("12345"), "12 345,00 zł", "PLN 12,345.00"),
        (Decimal("-3"), "-3,00 zł", "-PLN 3.00"),
        (7, "7,00 zł", "PLN 7.00"),
    ],
)
def test_format_money(amount: Decimal, pl: str, en: str) -> None:
    # Money: Polish "12,50 zł", English "PLN 12.50", rounded half-up to grosze.
    assert i18n.format_money(amount, "pl") == pl
    assert i18n.format_money(amount, "en") == en


@pytest.mark.parametrize(
    ("n", "form"),
    [(1, "miesiąc"), (2, "miesiące"), (4, "miesiące"), (5, "miesięcy"), (11, "miesięcy"),
     (12, "miesięcy"), (14, "miesięcy"), (21, "miesięcy"), (22, "miesiące"), (0, "miesięcy")],
)  # fmt: skip
def test_polish_plural_forms(n: int, form: str) -> None:
    # Polish plurals: one, few (2-4 but not 12-14), many.
    assert i18n.plural(n, "miesiąc", "miesiące", "miesięcy", lang="pl") == form


def test_english_plural_forms() -> None:
    # English plurals: one or other.
    assert i18n.plural(1, "month", "months", lang="en") == "month"
    assert i18n.plural(3, "month", "months", lang="en") == "months"


def test_service_names() -> None:
    # Service keys map to display names; display names map back to keys.
    assert i18n.service_name("legimi") == "Legimi"
    assert i18n.service_name("empik_go") == "Empik Go"
    assert i18n.service_key("Empik Go") == "empik_go"
    assert i18n.service_key("EMPIK-GO") == "empik_go"
    assert i18n.service_key("Legimi") == "legimi"


def test_formatters_refuse_unknown_languages() -> None:
    # A language without month names is an error, not English by accident.
    with pytest.raises(ValueError):
        i18n.format_date(date(2026, 1, 1), "de")


@pytest.mark.parametrize("kept, pl_whom, en_whom", [
    (("desk",), "do wydania na miejscu, w bibliotece", "to be given out in person, at the library"),
    (("first_time",), "dla czytelników, którzy jeszcze nigdy nie otrzymali od niej kodu",
     "for patrons it has never issued a code to"),
    (("desk", "first_time"), "do wydania na miejscu, w bibliotece oraz dla czytelników",
     "at the library and for patrons"),
])
def test_pool_exhausted_while_codes_are_kept_says_for_whom_and_until_when(kept, pl_whom, en_whom):
    # Quotas (mailbot.quotas): codes are left, but kept for others until the release: the
    # reply does not say the pool ran out, it says the e-mail part did, for whom the rest
    # is kept and from when everybody may write again.
    release = datetime(2026, 11, 15, 12, 0, tzinfo=WARSAW)
    reply = render_reply("pool_exhausted", full_context(quota_kept=kept,
                                                        quota_release_at=release))
    pl, en = (" ".join(part.split()) for part in sections(reply))
    assert "wydawane przez e-mail zostały już wyczerpane" in pl and pl_whom in pl, pl
    assert "została już wyczerpana" not in pl
    assert "do 15 listopada 2026" in pl and "Od tego momentu są dostępne dla wszystkich" in pl
    assert "given out by e-mail have run out" in en and en_whom in en, en
    assert "15 November 2026" in en and "From then on they are open to everybody" in en
    assert "do <strong>15 listopada 2026" in " ".join(reply.html.split())
    # Without quotas, the words of an empty pool.
    plain = " ".join(sections(render_reply("pool_exhausted", full_context()))[0].split())
    assert "została już wyczerpana" in plain and "zachowuje" not in plain
