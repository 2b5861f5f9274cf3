"""The e-mail that tells staff a month's pool was not imported (outcome ``pool_not_ready``).

The first request of a library, service and month that finds no pool imported puts one
message to the library's ``staff_email`` (or the global one) into the outbox, in the same
transaction as its decision, so it is sent, retried and paced like the replies (through
the relay of the library's first mailbox, which it is also sent from). Its Message-ID
stands for the library, service and month (not for the mailbox sending it): the outbox's unique Message-ID and the check
before writing it make it one message, however many patrons write and however often the
bot restarts. It is due at once, not held to the library's send window: that window is
the patrons' (branch hours), and staff should import the codes before they open. No staff address configured: no message (the dashboard's queue still shows
the warning).

Staff are not patrons: the text is plain, Polish then English, and names what to do.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailbot.config import LibrarySettings, Settings
from mailbot.db.models import Outbox
from mailbot.outcomes import OutboxState
from mailbot.respond.i18n import service_name

KIND = "staff_alert"  # Outbox.kind and Outbox.outcome of the message


# The Message-ID's domain: fixed, not the sending mailbox's, so renaming or reordering
# the library's mailboxes mid-month cannot make a second alert of the same month.
ALERT_DOMAIN = "staff-alert.mailbot.invalid"


def alert_message_id(library_id: str, service: str, month: str) -> str:
    """The one Message-ID of the alert for a library, service and month (whatever mailbox
    sends it)."""
    # The shape of respond.compose.reply_message_id (our IDs start with "<mailbot.", so
    # loop detection knows them), made here: `mailbot status` asks for it (a failed
    # alert needs attention only while its month's pool is missing) and must not load the
    # reply composer (Jinja) to do so.
    key = f"pool_not_ready|{library_id}|{service}|{month}"
    return f"<mailbot.{hashlib.sha256(key.encode()).hexdigest()[:20]}@{ALERT_DOMAIN}>"


def staff_can_be_told(settings: Settings, library_id: str) -> bool:
    """A staff address and a mailbox to send the alert from are configured."""
    return bool(settings.staff_email_of(library_id) and settings.mailboxes_of(library_id))


def pool_not_ready_alert(session: Session, settings: Settings, library: LibrarySettings, *,
                         service: str, month: str, received_at: datetime, now: datetime,
                         tz: Any) -> dict[str, Any] | None:
    """The outbox row of the alert (the columns of a reply's row), or None: no staff
    address, no mailbox to send it from, or the alert already written."""
    to = settings.staff_email_of(library.id)
    mailboxes = settings.mailboxes_of(library.id)
    if not to or not mailboxes:
        return None
    mail_from = mailboxes[0].address
    message_id = alert_message_id(library.id, service, month)
    if session.scalar(select(Outbox.id).where(Outbox.message_id == message_id)) is not None:
        return None
    message = _message(library, service=service, name=service_name(service, settings.catalogue),
                       month=month, mail_from=mail_from, to=to,
                       message_id=message_id, received_at=received_at.astimezone(tz), now=now)
    return {"request_id": None, "library_id": library.id, "kind": KIND,
            "mail_from": mail_from, "to_address": to, "message_id": message_id,
            "outcome": KIND, "message": message, "state": OutboxState.PENDING,
            "created_at": now, "due_at": now, "attempts": 0}


def _message(library: LibrarySettings, *, service: str, name: str, month: str,
             mail_from: str, to: str, message_id: str, received_at: datetime,
             now: datetime) -> bytes:
    when = f"{received_at:%Y-%m-%d %H:%M} ({received_at.tzname()})"
    command = (f"mailbot import-codes PLIK.xlsx --library {library.id} --service {service} "
               f"--month {month}")
    msg = EmailMessage()
    msg["From"] = formataddr((library.name, mail_from))
    msg["To"] = to
    msg["Subject"] = (f"Brak puli kodów {name} na {month} ({library.name}) / "
                      f"no {name} codes imported for {month}")
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    # RFC 3834: a notice of our own; no out-of-office answers to it.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Mailbot-Notice"] = "pool_not_ready"
    msg.set_content(
        f"Dzień dobry,\n\n"
        f"okno zgłoszeń na {month} jest otwarte, a w bibliotece {library.name} "
        f"({library.id}) nie zaimportowano żadnych kodów {name} na ten miesiąc. "
        f"Pierwsze zgłoszenie przyszło {when}. Czytelnicy dostają odpowiedź, że kody nie są "
        f"jeszcze dostępne i że mają napisać ponownie (wynik „pula jeszcze "
        f"niezaimportowana”).\n\n"
        f"Co zrobić: zaimportować kody {name} na {month} w panelu (Importy) albo poleceniem\n"
        f"  {command}\n"
        f"Ta wiadomość jest wysyłana raz na bibliotekę, serwis i miesiąc.\n\n"
        f"---\n\n"
        f"Hello,\n\n"
        f"The request window for {month} is open and no {name} codes were imported for "
        f"that month in library {library.name} ({library.id}). The first request came in "
        f"at {when}. Patrons are told the codes are not available yet and to write again "
        f"(outcome \"pool not imported yet\").\n\n"
        f"What to do: import the {name} codes for {month} on the dashboard (Imports) or "
        f"with\n  {command}\n"
        f"This message is sent once per library, service and month.\n\n"
        f"-- \nmailbot\n",
        cte="quoted-printable")
    return msg.as_bytes()
