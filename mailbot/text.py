"""Comparing text as people mean it: ``fold`` (lowercase without accents, "Łukasz Żółć"
is "lukasz zolc"), the Cyrillic and Greek letters that pass for Latin ones
(``LOOKALIKES``), and whether a reader record's surname occurs in a mail
(``surname_matches``). Shared by intake (subjects, cards), the rules and the imports.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_FOLD_MAP = str.maketrans(
    {
        "ł": "l", "Ł": "l", "ø": "o", "Ø": "o", "đ": "d", "Đ": "d", "ð": "d", "Ð": "d",
        "ß": "ss", "ẞ": "ss", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "ı": "i",
        "ħ": "h", "Ħ": "h", "þ": "th", "Þ": "th", "ŀ": "l", "Ŀ": "l",
        "’": "'", "‘": "'", "ʼ": "'", "`": "'",
    }
)  # fmt: skip
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def fold(text: str) -> str:
    """Lowercase without accents, for comparisons: "Łukasz Żółć" -> "lukasz zolc"."""
    if text.isascii():
        return text.lower()
    text = unicodedata.normalize("NFKD", text.translate(_FOLD_MAP))
    return _COMBINING.sub("", text).casefold()


# Cyrillic and Greek letters that look like the Latin ones in our keywords.
LOOKALIKES = str.maketrans(
    {
        "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "х": "x", "і": "i", "ј": "j",
        "к": "k", "м": "m", "т": "t", "у": "y", "ѕ": "s", "ӏ": "l", "ԁ": "d", "ɡ": "g",
        "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
        "С": "C", "Т": "T", "Х": "X", "І": "I", "Ј": "J", "Ѕ": "S", "Ӏ": "l",
        "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
        "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "ο": "o", "ι": "i",
        "κ": "k", "ρ": "p", "ν": "v",
    }
)  # fmt: skip


_NAME_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015]+")


@lru_cache(maxsize=1024)
def _surname_forms(surname: str) -> tuple[str, ...]:
    """The whole surname (parts joined by one space) and, for a double-barrelled one, each
    part of three letters or more."""
    parts = [p for p in _NAME_SEPARATORS.split(fold(surname).strip(" .,;'\"")) if p]
    if not parts:
        return ()
    forms = [" ".join(parts)]
    if len(parts) > 1:
        forms.extend(p for p in parts if len(p) >= 3)
    return tuple(forms)


def _has_word(text: str, word: str) -> bool:
    """``word`` occurs in ``text`` with no letter or digit right before or after it."""
    start = text.find(word)
    while start >= 0:
        end = start + len(word)
        if (start == 0 or not text[start - 1].isalnum()) and \
                (end == len(text) or not text[end].isalnum()):
            return True
        start = text.find(word, start + 1)
    return False


def surname_matches(text: str, surname: str) -> bool:
    """Whether the record's surname occurs in the text as a word, ignoring case and accents.

    "Nowak-Kowalska" matches "nowak kowalska", "Nowak-Kowalska", "Kowalska" or "Nowak".
    Plain string search (no regular expression per surname: in a burst every patron has
    another surname, and compiling one costs more than the rest of the check).
    """
    forms = _surname_forms(surname or "")
    if not forms:
        return False
    folded = _NAME_SEPARATORS.sub(" ", fold(text or ""))
    return any(_has_word(folded, form) for form in forms)
