"""SMTP login: AUTH with the relay's username and password (``auth = "password"``)."""

from __future__ import annotations

import aiosmtplib

from mailbot.config import SmtpSettings
from mailbot.login.failures import AuthFailure


async def smtp_login(client: aiosmtplib.SMTP, relay: SmtpSettings) -> None:
    """Logs ``client`` in to the relay when it has a username; ``AuthFailure`` when the
    relay refuses the credentials."""
    if not relay.username:
        return
    try:
        await client.login(relay.username, relay.password or "")
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise AuthFailure(relay.key, f"{exc.code} {exc.message}",
                          advice="check the relay's username and password (password_env)"
                          ) from None
