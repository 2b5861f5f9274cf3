"""The relays: connect and log in exactly as the sender does (``respond.smtp.SmtpLane``:
TLS or STARTTLS with the certificate verified, EHLO, ``login.smtp_login``, OAuth2 too),
then ask whether the relay takes mail from the address it sends for (MAIL FROM, RSET).
A file outbox: its folder is (or can be made) writable. ``--send-test``: a real message.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiosmtplib

from mailbot import aio
from mailbot.check.items import Failed
from mailbot.check.testmail import check_message
from mailbot.clock import utcnow
from mailbot.config import SmtpSettings
from mailbot.login.failures import IdentityUnreachable
from mailbot.respond.smtp import SmtpLane

_NETWORK = (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError)


def check_relay(relay: SmtpSettings, senders: list[str]) -> str:
    if relay.file_outbox:
        return _file_outbox(Path(relay.file_outbox))
    return aio.run(_smtp(relay, senders))


def _file_outbox(folder: Path) -> str:
    if folder.exists():
        if not folder.is_dir():
            raise Failed(f"{folder} is not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise Failed(f"{folder} is not writable for this user")
        return f"replies are written to {folder}"
    parent = next(p for p in folder.parents if p.exists())
    if not os.access(parent, os.W_OK | os.X_OK):
        raise Failed(f"{folder} does not exist and {parent} is not writable for this user")
    return f"replies will be written to {folder} (created with the first one)"


async def _login(relay: SmtpSettings) -> aiosmtplib.SMTP:
    # The sender's own connect, so that the check logs in the way replies will.
    try:
        return await SmtpLane(relay)._connect()
    except IdentityUnreachable as exc:
        raise Failed(f"cannot get an OAuth2 token: {exc}") from None
    except _NETWORK as exc:
        raise Failed(f"cannot connect to {relay.host}:{relay.port}: {type(exc).__name__}: {exc}"
                     ) from None


async def _smtp(relay: SmtpSettings, senders: list[str]) -> str:
    """Logged in, MAIL FROM each address the relay sends for (then RSET). Whether it then
    relays to the outside world only a real message shows: ``--send-test``."""
    client = await _login(relay)
    try:
        how = "implicit TLS" if relay.ssl else "STARTTLS" if relay.starttls else "no TLS"
        note = (f"logged in as {relay.username} ({relay.auth}, {how})" if relay.username
                else f"connected, no login configured ({how})")
        if not senders:
            return note + "; no mailbox sends through it"
        refused = []
        for sender in senders:
            try:
                await client.mail(sender)
            except aiosmtplib.SMTPResponseException as exc:
                refused.append(f"MAIL FROM:<{sender}> is refused: {exc.code} {exc.message}")
                continue
            await client.rset()
        if refused:
            raise Failed(f"{note}, but " + "; ".join(refused))
        return f"{note}; takes mail from {', '.join(senders)}"
    finally:
        await _quit(client)


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        await client.quit()
    except _NETWORK:
        client.close()


def send_test(relay: SmtpSettings, *, sender: str, to: str) -> str:
    message = check_message(sender=sender, to=to, relay=relay.key, now=utcnow())
    if relay.file_outbox:
        folder = Path(relay.file_outbox)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"check-{utcnow():%Y%m%dT%H%M%S%f}.eml"
        target.write_bytes(message)
        return f"test message from {sender} to {to} written to {target}"
    return aio.run(_send(relay, sender, to, message))


async def _send(relay: SmtpSettings, sender: str, to: str, message: bytes) -> str:
    client = await _login(relay)
    try:
        try:
            await client.sendmail(sender, [to], message)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refusals = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            raise Failed(f"the relay refused {to}: {refusals}") from None
        except aiosmtplib.SMTPResponseException as exc:
            raise Failed(f"the relay refused the test message from {sender}: {exc.code} "
                         f"{exc.message}") from None
        return f"test message sent from {sender} to {to}"
    finally:
        await _quit(client)
