"""What a SIP2 Patron Information response (64) says about a reader, as ``ReaderFacts``.

=====================  ======================================================================
SIP2                   ReaderFacts
=====================  ======================================================================
``BL`` valid patron    ``N`` -> ``None`` (no such card). Absent: the card exists if ``AE`` is
                       not empty.
``AE`` personal name   "Surname, First" -> split at the comma; "First Middle Surname" -> the
                       last word is the surname. One word: the surname.
``BV`` fee amount      ``balance_due``; "12.50", "12,50", "1 234,50 zł", read by
                       :func:`mailbot.values.parse_amount`; a credit counts as 0.
                       Unreadable or ambiguous ("1.234") -> the response is garbled.
overdue items count    ``overdue_items`` (fixed field; blank -> the number of ``AT`` items).
``BE`` e-mail          ``email`` (the first address if several).
``PX`` / ``PA`` /     ``valid_until``: the patron's expiry date, first of these that is a date
``PE``                 (``PA``: SIPServer's extension, used by Evergreen and Koha; ``PX``:
                       Polaris's, whose ``PA`` means something else). YYYYMMDD, YYYYMMDD
                       HHMMSS, YYYY-MM-DD, DD.MM.YYYY or MM/DD/YYYY (slashes month first, as
                       Polaris writes them), read by :func:`mailbot.values.parse_date`;
                       anything else is ignored.
``PB`` / ``BC``        ``birth_date`` (Envisionware/SIPServer ``PB``, Polaris ``BC``).
patron status          see below.
=====================  ======================================================================

``data_updated_on`` and ``last_loan_on`` are not in SIP2: they are always ``None``; so is
``confirmed`` (SIP2 has no "account confirmed at the desk" flag: a library requiring
confirmed accounts cannot use a sip2 source, mailbot.config.load).
``CQ`` (valid patron password) and the limits ``BZ``/``CA``/``CB`` are ignored.

Blocked accounts. SIP2 tells "charge privileges denied" (status position 0) and "card
reported lost" (position 4), not why. A lost card, a Polaris ``PY`` (expired) = ``Y``, or
charge privileges denied while neither a fee nor an overdue item explains it mean the account
is not valid for service: ``valid_until`` is then set in the past, so the patron is refused as
``inactive_account``. It is the expiry date the server sent if that is already past, else the
last day of the month before yesterday's month: every request decided now for this month's
pool arrived after that day, however long it waited for the source (yesterday, not today,
leaves room for a server clock a day ahead of the library's time zone). When a fee or an
overdue item explains the block, the ``debt``/``overdue`` rules give the patron the better
reason.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal

from mailbot.readers.sip2.wire import Message, Sip2ProtocolError
from mailbot.rules.base import ReaderFacts
from mailbot.values import parse_amount, parse_date

__all__ = ["CARD_REPORTED_LOST", "CHARGE_PRIVILEGES_DENIED", "extension_date", "fee_amount",
           "facts_from_patron_information", "split_name"]

# Patron status positions (SIP2 2.00, Patron Status Response).
CHARGE_PRIVILEGES_DENIED = 0
CARD_REPORTED_LOST = 4


def split_name(personal_name: str) -> tuple[str, str]:
    """``(first_name, last_name)`` from SIP2's one personal-name field."""
    name = " ".join(personal_name.split())
    if "," in name:
        last, _, first = name.partition(",")
        return first.strip(), last.strip()
    first, _, last = name.rpartition(" ")
    return first, last


def fee_amount(text: str | None) -> Decimal:
    """A fee amount as the ILS wrote it (``BV``), signed; one not surely read is garbled."""
    text = (text or "").strip()
    try:
        return parse_amount(text)
    except ValueError:
        raise Sip2ProtocolError(f"fee amount {text!r} is not a number") from None


def extension_date(text: str | None) -> date | None:
    """A date from an extension field; ``None`` when absent or not a date we know."""
    try:
        return parse_date(text, month_first=True)
    except ValueError:
        return None


def _count(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit():
        raise Sip2ProtocolError(f"summary count {text!r} is not a number")
    return int(text)


def facts_from_patron_information(
    message: Message, *, card: str, today: date
) -> ReaderFacts | None:
    """Map a 64 response to the facts the rules see; ``None`` when the card does not exist."""
    if message.command != "64":
        raise Sip2ProtocolError(f"expected a 64 response, got {message.command}")
    status = message.fixed[0:14]
    overdue = _count(message.fixed[39:43])
    personal_name = message.get("AE") or ""
    valid = (message.get("BL") or "").strip().upper()
    if valid == "N" or (not valid and not personal_name.strip()):
        return None
    if overdue is None:
        overdue = len(message.fields.get("AT", []))
    balance = max(fee_amount(message.get("BV")), Decimal("0"))
    first_name, last_name = split_name(personal_name)
    email = re.split(r"[,;\s]+", (message.get("BE") or "").strip())[0] or None

    valid_until = None
    for field_id in ("PX", "PA", "PE"):
        valid_until = extension_date(message.get(field_id))
        if valid_until is not None:
            break
    birth_date = extension_date(message.get("PB")) or extension_date(message.get("BC"))

    blocked = (
        status[CARD_REPORTED_LOST] == "Y"
        or (message.get("PY") or "").strip().upper() == "Y"
        or (status[CHARGE_PRIVILEGES_DENIED] == "Y" and balance == 0 and overdue == 0)
    )
    if blocked:
        # The last day of the month before yesterday's month (see the module docstring).
        past = (today - timedelta(days=1)).replace(day=1) - timedelta(days=1)
        if valid_until is None or valid_until > past:
            valid_until = past

    return ReaderFacts(
        card_number=card,
        first_name=first_name,
        last_name=last_name,
        email=email,
        valid_until=valid_until,
        balance_due=balance,
        overdue_items=overdue,
        data_updated_on=None,
        last_loan_on=None,
        birth_date=birth_date,
        confirmed=None,
    )
