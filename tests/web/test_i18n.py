"""Every dashboard text exists in Polish and English, with proper Polish letters."""

from __future__ import annotations

import re
from pathlib import Path

from mailbot.web import i18n

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "web"
WEB = Path(__file__).resolve().parents[2] / "mailbot" / "web"


def test_both_languages_have_the_same_keys_and_placeholders():
    for table in (i18n.MESSAGES, i18n.OUTCOMES, i18n.RULES):
        assert set(table["pl"]) == set(table["en"])
    for key, pl in i18n.MESSAGES["pl"].items():
        fields = set(re.findall(r"{(\w+)}", pl))
        assert fields == set(re.findall(r"{(\w+)}", i18n.MESSAGES["en"][key])), key


def test_every_key_the_templates_and_views_use_exists():
    used = set()
    for path in [*TEMPLATES.glob("*.j2"), *WEB.rglob("*.py")]:
        text = path.read_text(encoding="utf-8")
        used |= set(re.findall(r"\bt\(['\"]([a-z0-9_]+)['\"]", text))
        used |= set(re.findall(r"ActionRefused\(\"([a-z_]+)\"", text))
        used |= set(re.findall(r"flash\(\"([a-z_]+)\"", text))
    missing = sorted(k for k in used if not k.endswith("_") and k not in i18n.MESSAGES["pl"])
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
            assert prefix + name in i18n.MESSAGES["pl"]


def test_polish_texts_use_polish_letters():
    pl = " ".join(i18n.MESSAGES["pl"].values())
    for word in ("Kolejka", "Zgłoszenia", "Wydanie przy ladzie", "Dziennik działań",
                 "Zbyt wiele nieudanych prób", "Wyczerpywanie się puli", "żywo"):
        assert word in pl
    assert "Zgloszenia" not in pl and "dzialan" not in pl
