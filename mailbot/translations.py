"""The message catalogues staff read: ``mailbot/locale/<lang>/LC_MESSAGES/mailbot.po``.

Every word of the dashboard, the rule trail, the audit log, import problems and the XLSX
report is a gettext entry, read with Babel. A msgid is a symbolic key, the same in every
language (``nav_queue``, ``outcome_debt``, ``note_debt``); a counted text is a plural entry
(``msgid "done_codes"``, ``msgid_plural "done_codes_plural"``) with one ``msgstr`` per
form of the language's ``Plural-Forms`` (Polish: 1 kod, 2–4 kody, 5–21 kodów, 22–24 kody).
Texts are ``str.format`` templates (``{n}``, ``{file}``); Babel does not flag them
``python-brace-format`` (it looks for placeholders in the msgid, here a key), so a test
checks that both languages name the same ones.

A catalogue is compiled from its ``.po`` on first use (read_po, write_mo, Translations:
about 70 ms for both, once per process), so there is no build step and no ``.mo`` file to
keep in step. A key missing from a catalogue is a bug — a test checks that both
catalogues hold the same keys and placeholders — so ``text`` raises rather than showing
a key to staff. Babel is imported only here, on first use: ``mailbot status`` and
``--help`` never pay for it.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from babel.messages.catalog import Catalog
    from babel.support import Translations

LANGUAGES = ("pl", "en")
DOMAIN = "mailbot"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"


class _Loaded(NamedTuple):
    catalog: Catalog  # the entries, in file order (for listing keys)
    translations: Translations  # the lookups, with the language's plural rule


def po_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def language(lang: str | None) -> str:
    """``lang`` if there is a catalogue for it, else Polish (the default)."""
    return lang if lang in LANGUAGES else "pl"


def text(lang: str, key: str, **params: Any) -> str:
    """The text ``key`` in ``lang``, formatted with ``params`` (KeyError: no such text)."""
    lang = language(lang)
    if key not in _keys(lang):  # gettext would answer the key itself ("month" is English)
        raise KeyError(f"{key!r} is not in the {lang} catalogue")
    said = _loaded(lang).translations.gettext(key)
    return said.format(**params) if params else said


def counted(lang: str, key: str, n: int, **params: Any) -> str:
    """The counted text ``key`` in the form ``n`` takes (``{n}`` in it is the number)."""
    lang = language(lang)
    if key not in _counted_keys(lang):
        raise KeyError(f"{key!r} is not a counted text of the {lang} catalogue")
    return _loaded(lang).translations.ngettext(key, f"{key}_plural", n).format(n=n, **params)


def has(lang: str, key: str) -> bool:
    """The catalogue holds ``key`` (plain or counted)."""
    return key in _keys(language(lang))


def is_counted(lang: str, key: str) -> bool:
    return key in _counted_keys(language(lang))


def keys(lang: str) -> tuple[str, ...]:
    """Every key of the catalogue, in file order."""
    return tuple(_keys(language(lang)))


def entries(lang: str) -> dict[str, str | tuple[str, ...]]:
    """Key -> text, or key -> the tuple of a counted text's forms (for tests and checks)."""
    catalog = _loaded(language(lang)).catalog
    return {(m.id[0] if isinstance(m.id, tuple) else m.id):
            (tuple(m.string) if isinstance(m.id, tuple) else m.string)
            for m in catalog if m.id}


def plural_forms(lang: str) -> int:
    return _loaded(language(lang)).catalog.num_plurals


@cache
def _keys(lang: str) -> dict[str, None]:
    return dict.fromkeys(entries(lang))


@cache
def _counted_keys(lang: str) -> frozenset[str]:
    return frozenset(m.id[0] for m in _loaded(lang).catalog if isinstance(m.id, tuple))


@cache
def _loaded(lang: str) -> _Loaded:
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    from babel.support import Translations

    with po_path(lang).open("rb") as po:
        catalog = read_po(po, locale=lang, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return _Loaded(catalog, Translations(compiled, domain=DOMAIN))
