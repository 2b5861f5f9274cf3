"""Every dashboard text exists in Polish and English, with proper Polish letters: the
gettext catalogues (mailbot/locale) hold the same keys, placeholders and plural forms."""

from __future__ import annotations

import gettext
import re
from pathlib import Path

from babel.messages.pofile import read_po

from mailbot import translations
from mailbot.outcomes import Outcome
from mailbot.web import i18n

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "web"
WEB = Path(__file__).resolve().parents[2] / "mailbot" / "web"


def _fields(text: str | tuple[str, ...]) -> set[str]:
    return set(re.findall(r"{(\w+)}", " ".join(text) if isinstance(text, tuple) else text))


def test_both_languages_have_the_same_keys_and_placeholders():
    pl, en = translations.entries("pl"), translations.entries("en")
    assert list(pl) == list(en)  # same keys, in the same order
    for key, text in pl.items():
        assert _fields(text) == _fields(en[key]), key
        assert isinstance(text, tuple) == isinstance(en[key], tuple), key
    # Every outcome has its label; every counted text one form per plural form.
    assert {f"outcome_{o}" for o in Outcome} <= set(pl)
    assert (translations.plural_forms("pl"), translations.plural_forms("en")) == (3, 2)
    for lang, entries in (("pl", pl), ("en", en)):
        for key, text in entries.items():
            forms = text if isinstance(text, tuple) else (text,)
            assert all(f.strip() for f in forms), (lang, key)
            if isinstance(text, tuple):
                assert len(text) == translations.plural_forms(lang), (lang, key)


def test_the_catalogues_are_well_formed_gettext():
    # What any PO tool reads: the header's language and plural rule, UTF-8, a text per key,
    # no fuzzy entry (gettext would drop it).
    for lang in translations.LANGUAGES:
        with translations.po_path(lang).open("rb") as po:
            catalog = read_po(po)
        assert str(catalog.locale) == lang and catalog.charset == "utf-8"
        # The header's rule, as gettext evaluates it: Polish 1 | 2–4, 22–24 | 5–21, 25.
        form = gettext.c2py(catalog.plural_expr)
        assert [form(n) for n in (1, 2, 4, 5, 12, 14, 21, 22, 25, 102, 112)] == {
            "pl": [0, 1, 1, 2, 2, 2, 2, 1, 2, 1, 2], "en": [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]}[lang]
        for message in catalog:
            if not message.id:
                continue
            assert not message.fuzzy, message.id
            if isinstance(message.id, tuple):
                assert message.id[1] == message.id[0] + "_plural", message.id


def test_every_key_the_templates_and_views_use_exists():
    used = set()
    for path in [*TEMPLATES.glob("*.j2"), *WEB.rglob("*.py")]:
        text = path.read_text(encoding="utf-8")
        used |= set(re.findall(r"\bt\(['\"]([a-z0-9_]+)['\"]", text))
        used |= set(re.findall(r"ActionRefused\(\"([a-z_]+)\"", text))
        used |= set(re.findall(r"flash\(\"([a-z_]+)\"", text))
    missing = sorted(k for k in used if not k.endswith("_") and not i18n.has("pl", k))
    assert not missing
    # Keys built from a prefix in the templates.
    for prefix, names in {"nav_": ["queue", "requests", "pools", "desk", "imports", "reports",
                                   "audit"],
                          "reply_": ["sent", "failed", "pending"],
                          "source_": ["local", "sql", "sip2"],
                          "steps_": ["legimi", "empik_go"],
                          "action_": ["resend", "override", "handled", "desk_issue",
                                      "import_readers", "import_codes",
                                      "import_activations"]}.items():
        for name in names:
            assert i18n.has("pl", prefix + name)


def test_polish_texts_use_polish_letters():
    pl = " ".join(t if isinstance(t, str) else " ".join(t)
                  for t in translations.entries("pl").values())
    for word in ("Kolejka", "Zgłoszenia", "Wydanie przy ladzie", "Dziennik działań",
                 "Zbyt wiele nieudanych prób", "Wyczerpywanie się puli", "żywo"):
        assert word in pl
    assert "Zgloszenia" not in pl and "dzialan" not in pl


def test_english_texts_put_no_article_before_a_service_name():
    # "a Empik Go code" is wrong and "an Legimi code" too: "a code for {service}" fits both.
    for key, text in translations.entries("en").items():
        for form in text if isinstance(text, tuple) else (text,):
            assert not re.search(r"\b(a|an)\s+\{service\}", form, re.I), (key, form)
