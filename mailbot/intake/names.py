"""The patron's name in a mail, for display and the name check (SPEC §2.5): a labelled
line ("Imię i nazwisko: …", "Nazwisko: …"), or a line of two to four capitalised words
beside the card number (``reading.extract_name`` puts them together).
"""

from __future__ import annotations

import re

from mailbot.text import fold

_NAME_LABEL = re.compile(
    r"^[ \t>*-]*(?:imi[eę][ \t]*(?:i|oraz|,|/)?[ \t]*nazwisko|nazwisko[ \t]*(?:i|,|/)?[ \t]*imi[eę]"
    r"|dane(?:[ \t]+czytelnika)?|czytelnik|full[ \t]+name|your[ \t]+name|name|patron)"
    r"[ \t]*[:=\-–][ \t]*(?P<value>.+)$",
    re.IGNORECASE | re.MULTILINE,
)
_FIRST_LABEL = re.compile(
    r"^[ \t>*-]*(?:imi[eę]|first[ \t]+name)[ \t]*[:=\-–][ \t]*(?P<value>.+)$",
    re.IGNORECASE | re.MULTILINE,
)
_LAST_LABEL = re.compile(
    r"^[ \t>*-]*(?:nazwisko|surname|last[ \t]+name)[ \t]*[:=\-–][ \t]*(?P<value>.+)$",
    re.IGNORECASE | re.MULTILINE,
)
_NAME_STOPWORDS = frozenset(
    """
    dzien dobry dobrego witam witaj witajcie pozdrawiam pozdrowienia serdecznie serdeczne
    powazaniem uprzejmie prosze prosba dziekuje dziekujemy bardzo szanowni szanowna szanowny
    panstwo pani pan best regards kind thanks thank you dear hello hi sent from my iphone
    ipad android wyslano legimi empik go biblioteka biblioteki karta karty numer nr kod kodu
    imie nazwisko czytelnik czytelnika wiadomosc od do temat data subject to cc re fwd tel
    telefon email mail ul al z w na i o dla the and with mam chcialbym chcialabym
    ebookpoint biblio ibuk libra storytel audioteka bookbeat publio nasbi
    """.split()
)
# (The names of the other platforms Polish libraries buy ("[[services]]", issue 20) are
# here too, so "Ebookpoint Biblio" above a card is not taken for a patron. A platform
# named otherwise in a config is not: the name found is for display and the reply's
# greeting, the name check reads the whole mail.)


def _clean_name(value: str) -> str | None:
    value = re.split(r"[\d,;(<\[|]|\s[-–]\s|\b(?:nr|numer|karta|tel)\b", value, maxsplit=1)[0]
    words = [w.strip(".:'\"") for w in value.split()]
    words = [w for w in words if w and all(c.isalpha() or c in "-'." for c in w)]
    if not 1 <= len(words) <= 5:
        return None
    return " ".join(words)


def _looks_like_name(line: str) -> str | None:
    words = [w.strip(".,;:!") for w in line.split()]
    if not 2 <= len(words) <= 4:
        return None
    for word in words:
        letters = word.replace("-", "").replace("'", "")
        if len(letters) < 2 or not letters.isalpha() or not word[0].isupper():
            return None
        if any(fold(p) in _NAME_STOPWORDS for p in word.split("-")):
            return None
    return " ".join(words)


_CARD_WORDS = re.compile(r"\b(?:nr|numer|karty|karta|kartę|czytelnika)\b|[:.,#-]", re.IGNORECASE)


def labelled_name(text: str) -> str | None:
    for match in _NAME_LABEL.finditer(text):
        name = _clean_name(match.group("value"))
        if name:
            return name
    first = next((_clean_name(m.group("value")) for m in _FIRST_LABEL.finditer(text)), None)
    last = next((_clean_name(m.group("value")) for m in _LAST_LABEL.finditer(text)), None)
    if last:
        return f"{first} {last}" if first else last
    return None


def name_by_card(text: str, card: str) -> str | None:
    """A name written before the card on its line, or a name line up to 5 lines away."""
    lines = [line.lstrip("> ").strip() for line in text.split("\n")]
    at = next((i for i, line in enumerate(lines) if card in line), None)
    if at is None:
        return None
    name = _looks_like_name(_CARD_WORDS.sub(" ", lines[at].split(card, 1)[0]))
    for distance in range(1, 6):
        for j in (at - distance, at + distance):
            if name is None and 0 <= j < len(lines):
                name = _looks_like_name(lines[j])
    return name
