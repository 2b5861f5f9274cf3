"""What deciding reads out of a parsed mail for one library: the card search for its card
pattern and the patron's name beside the card chosen (``read_mail``), or what a parsing
worker already worked out for the same pattern (``ParsedMail.reading``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailbot.intake.cards import CardSearch, find_cards
from mailbot.intake.names import labelled_name, name_by_card
from mailbot.intake.parse import DEFAULT_CARD_PATTERN, ParsedMail


@dataclass(frozen=True, slots=True)
class MailReading:
    """What deciding reads in a mail for one library's card pattern (``read_mail``)."""

    pattern: str
    cards: CardSearch
    name: str | None  # extract_name with the card chosen (None: no card)


def read_mail(parsed: ParsedMail, pattern: str = DEFAULT_CARD_PATTERN) -> MailReading:
    """The card search for ``pattern`` and the patron's name beside the card it chose (or,
    with no card, only a labelled name or the From display name); what a parsing worker
    worked out for the same pattern is taken as it is."""
    kept = parsed.reading
    if kept is not None and kept.pattern == pattern:
        return kept
    cards = find_cards(parsed, pattern=pattern)
    return MailReading(pattern, cards, extract_name(parsed, card=cards.card))


_FIND: Any = object()  # extract_name's card: "what find_cards picks"


def extract_name(parsed: ParsedMail, *, card: str | None = _FIND) -> str | None:
    """Best-effort patron name for display: a labelled line ("Imię i nazwisko: ..."), else a
    line of 2-4 capitalised words near the card, else the From display name. The new text
    is read before the quote. ``card`` defaults to what ``find_cards`` picks (with the
    default pattern); None: no card."""
    if card is _FIND:
        card = find_cards(parsed).card
    for text in (parsed.unquoted, parsed.quoted):
        name = labelled_name(text) or (name_by_card(text, card) if card else None)
        if name:
            return name
    display = parsed.from_name
    if display and "@" not in display and any(c.isalpha() for c in display):
        return display
    return None
