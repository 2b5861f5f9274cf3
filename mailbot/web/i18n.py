"""The dashboard's words, read from the message catalogues (``mailbot.translations``).

Polish is the default, English the other language of the switch. ``t(lang, key, **params)``
is a text, ``tn(lang, key, n, **params)`` a counted one in the form ``n`` takes; the texts
themselves live in ``mailbot/locale/<lang>/LC_MESSAGES/mailbot.po``: an outcome's label is
``outcome_<id>``, a trail rule's name ``rule_<name>``, a trail note ``note_<key>``.
"""

from __future__ import annotations

from typing import Any

from mailbot import translations
from mailbot.services import SHIPPED_CATALOGUE, Catalogue

LANGUAGES = translations.LANGUAGES


def t(lang: str, key: str, **params: Any) -> str:
    return translations.text(lang, key, **params)


def tn(lang: str, key: str, n: int, **params: Any) -> str:
    """The counted text ``key`` for ``n`` (``{n}`` in it is the number)."""
    return translations.counted(lang, key, n, **params)


def has(lang: str, key: str) -> bool:
    return translations.has(lang, key)


def is_counted(lang: str, key: str) -> bool:
    return translations.is_counted(lang, key)


def keys(lang: str) -> tuple[str, ...]:
    return translations.keys(lang)


def outcome_label(lang: str, outcome: str | None) -> str:
    """An outcome's (or a request state's) label; an unknown one shown as stored."""
    if not outcome:
        return "—"
    key = f"outcome_{outcome}"
    return t(lang, key) if has(lang, key) else outcome


def rule_label(lang: str, rule: str) -> str:
    key = f"rule_{rule}"
    return t(lang, key) if has(lang, key) else rule


def service_label(service: str | None, catalogue: Catalogue = SHIPPED_CATALOGUE) -> str:
    """A service's name as ``catalogue`` (the config's: Settings.catalogue) has it; an id
    it does not know (a service since removed from the config) as stored."""
    return catalogue.name(service or "") or service or "—"


def why_keys(lang: str) -> frozenset[str]:
    return frozenset(k for k in keys(lang) if k.startswith("why_"))
