"""The message ``mailbot check --send-test ADDRESS`` sends through each relay: short, in
Polish and English, saying which relay and which sender it tested, marked as
auto-generated so that no mailbot (and no autoresponder) answers it."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

SUBJECT = "mailbot: wiadomość testowa / test message"

BODY = """\
To jest wiadomość testowa programu mailbot (polecenie `mailbot check --send-test`).
Wysłano ją z adresu {sender} przez serwer {relay} o {when}.
Skoro dotarła, ta skrzynka może wysyłać odpowiedzi. Nie trzeba na nią odpowiadać.

This is a test message from mailbot (the command `mailbot check --send-test`).
It was sent from {sender} through {relay} at {when}.
It arrived, so this mailbox can send replies. There is no need to answer it.
"""


def check_message(*, sender: str, to: str, relay: str, now: datetime) -> bytes:
    """``relay`` is the relay's key (``smtp://user@host:port``): no secret is in it."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = SUBJECT
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid("mailbot-check", domain=sender.rpartition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: nobody answers it
    msg["X-Mailbot-Check"] = "send-test"
    when = format_datetime(now)
    # Quoted-printable: the Polish letters pass relays that take 7-bit mail only.
    msg.set_content(BODY.format(sender=sender, relay=relay, when=when), cte="quoted-printable")
    return bytes(msg)
