"""SMTP login: AUTH with the relay's username and password (``auth = "password"``), or
AUTH XOAUTH2 (aiosmtplib's ``auth_xoauth2``) with an OAuth2 access token."""

from __future__ import annotations

import asyncio

import aiosmtplib

from mailbot.config import SmtpSettings
from mailbot.login import tokens
from mailbot.login.advice import server_refused
from mailbot.login.failures import AuthFailure


async def smtp_login(client: aiosmtplib.SMTP, relay: SmtpSettings) -> None:
    """Logs ``client`` in to the relay when it has a username; ``AuthFailure`` when the
    relay or the identity provider refuses the credentials, ``IdentityUnreachable`` (an
    OSError) when the provider cannot be reached."""
    if not relay.username:
        return
    if relay.auth != "password":
        await _token_login(client, relay)
        return
    try:
        await client.login(relay.username, relay.password or "")
    except aiosmtplib.SMTPAuthenticationError as exc:
        _unless_temporary(relay, exc)
        raise AuthFailure(relay.key, f"{exc.code} {exc.message}",
                          advice="check the relay's username and password (password_env)"
                          ) from None


class AuthUnavailable(ConnectionError):
    """The relay answered AUTH with a 4xx (RFC 4954: 454 "temporary authentication
    failure"): it cannot check credentials now. A network-like error, tried again as
    such; never a refused login (no back-off, the cached token kept)."""


def _unless_temporary(relay: SmtpSettings, exc: aiosmtplib.SMTPAuthenticationError) -> None:
    # aiosmtplib raises SMTPAuthenticationError for every answer but 235.
    if 400 <= exc.code < 500:
        raise AuthUnavailable(f"{relay.key}: the relay cannot check logins now: "
                              f"{exc.code} {exc.message}") from None


async def _token_login(client: aiosmtplib.SMTP, relay: SmtpSettings) -> None:
    assert relay.oauth is not None and relay.username  # mailbot.config.load checks both
    user = relay.username
    if "xoauth2" not in client.server_auth_methods:
        raise AuthFailure(relay.key, "the relay does not offer AUTH XOAUTH2 (it offers: "
                          f"{' '.join(client.server_auth_methods) or 'no AUTH'})",
                          advice="check host, port and starttls (Microsoft 365: "
                          "smtp.office365.com port 587 with starttls; Google: "
                          "smtp.gmail.com port 465 with ssl)")
    # msal and google-auth block on HTTP: the event loop goes on sending meanwhile. A
    # cached token may have been revoked early: then one newly fetched token decides.
    for attempt in range(2):
        if attempt:
            await asyncio.to_thread(tokens.forget, relay.auth, relay.oauth, user)
        token = await asyncio.to_thread(tokens.access_token, relay.key, relay.auth,
                                        relay.oauth, user)
        try:
            await client.auth_xoauth2(user, token.value)
            return
        except aiosmtplib.SMTPAuthenticationError as exc:
            _unless_temporary(relay, exc)
            refused = exc
        if token.fresh:
            break
    raise AuthFailure(relay.key, f"the relay refused a fresh {tokens.PROVIDERS[relay.auth]} "
                      f"token: {refused.code} {refused.message}",
                      advice=server_refused(relay.auth))
