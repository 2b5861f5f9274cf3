"""OAuth2 access tokens for XOAUTH2 logins, cached in memory per app and account.

``access_token(who, auth, oauth, user)`` returns a ``Token`` for ``auth =
"oauth2-microsoft"`` (msal, client credentials: login.microsoft) or ``"oauth2-google"``
(google-auth, a service account acting as the mailbox: login.google). One msal app or one
google-auth credentials object is kept per account (Microsoft: the app registration, its
authority, tenant and scope, whatever the mailbox; Google: the key file, the subject and
the scope), so the daemon's threads share one token and one refresh. A token is handed out
only while it has minutes left (msal: 5 minutes, google-auth: 3 min 45 s, both measured in
their sources and by tests/login/test_tokens.py); otherwise a new one is fetched first.

A refusal by the identity provider is an ``AuthFailure`` with the provider's code and what
to do; a provider that cannot be reached is ``IdentityUnreachable`` (an ``OSError``: a
temporary network error for intake and the SMTP lanes). ``forget`` drops a cached token the
mail server refused, so that the next ``access_token`` fetches a new one. Tokens and
secrets are never logged and never part of an error's text.

msal and google-auth are imported by the first token of their kind, not by ``import
mailbot.login``: a password-only installation never loads them.
"""

from __future__ import annotations

import dataclasses
import threading

from mailbot.config import OAuthSettings
from mailbot.login.advice import ENTRA, GOOGLE
from mailbot.login.bearer import Source, Token

__all__ = ["PROVIDERS", "Token", "access_token", "clear", "forget"]

PROVIDERS = {"oauth2-microsoft": ENTRA, "oauth2-google": GOOGLE}

_sources: dict[tuple[object, ...], Source] = {}
_lock = threading.Lock()


def access_token(who: str, auth: str, oauth: OAuthSettings, user: str) -> Token:
    """A valid access token for ``user`` (a mailbox's or relay's username); ``who`` (the
    mailbox's or relay's key) names it in errors. Blocks while a token is fetched."""
    return _source(auth, oauth, user).token(who)


def forget(auth: str, oauth: OAuthSettings, user: str) -> None:
    """Drops the cached token of this account (the mail server refused it)."""
    _source(auth, oauth, user).forget()


def clear() -> None:
    """Forgets every account and token (tests; a process that reloads its settings)."""
    with _lock:
        _sources.clear()


def _source(auth: str, oauth: OAuthSettings, user: str) -> Source:
    if auth == "oauth2-microsoft":
        # An app token is the app's, whichever mailbox it opens: one per app registration.
        key: tuple[object, ...] = (auth, dataclasses.replace(oauth, subject=None))
    elif auth == "oauth2-google":
        key = (auth, oauth, oauth.subject or user)
    else:
        raise ValueError(f"no OAuth2 provider for auth = {auth!r}")
    with _lock:
        source = _sources.get(key)
        if source is None:
            if auth == "oauth2-microsoft":
                from mailbot.login.microsoft import MicrosoftApp
                source = MicrosoftApp(oauth)
            else:
                from mailbot.login.google import GoogleAccount
                source = GoogleAccount(oauth, oauth.subject or user)
            _sources[key] = source
        return source
