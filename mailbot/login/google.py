"""Google Workspace access tokens: google-auth's service account with domain-wide
delegation, acting as one mailbox (the subject).

The credentials object is built from the JSON key at the first token and kept; its token
is handed out again while google-auth calls it fresh (``token_state``: more than
``REFRESH_THRESHOLD``, 3 min 45 s in google-auth 2.63, before expiry), else refreshed
first. The token comes from the key's ``token_uri`` (Google's:
https://oauth2.googleapis.com/token) with a JWT signed by the key (the JWT bearer grant).

The key file is read at each token request: a key replaced by IT is used from the next
login on, without a restart (a changed file builds new credentials).
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mailbot.config import OAuthSettings
from mailbot.login.advice import GOOGLE, for_google
from mailbot.login.failures import AuthFailure, IdentityUnreachable
from mailbot.login.http import session
from mailbot.login.bearer import Token

DEFAULT_SCOPE = "https://mail.google.com/"


class GoogleAccount:
    """One service account acting as one subject; thread-safe (one refresh at a time)."""

    def __init__(self, oauth: OAuthSettings, subject: str) -> None:
        self.oauth = oauth
        self.subject = subject
        self.scope = oauth.scope or DEFAULT_SCOPE
        self._credentials: Any = None
        self._key_hash = ""
        self._request: Any = None
        self._lock = threading.Lock()

    def token(self, who: str) -> Token:
        from google.auth import exceptions
        from google.auth.credentials import TokenState

        with self._lock:
            credentials = self._current(who)
            if credentials.token_state == TokenState.FRESH:
                return Token(credentials.token, fresh=False)
            try:
                credentials.refresh(self._transport())
            except exceptions.RefreshError as exc:
                raise self._refused(who, credentials, exc) from None
            except exceptions.TransportError as exc:
                raise self._unreachable(who, credentials, exc) from None
            return Token(credentials.token, fresh=True)

    def forget(self) -> None:
        with self._lock:
            if self._credentials is not None:
                self._credentials.token = None

    # -- the credentials

    def _current(self, who: str) -> Any:
        from google.oauth2 import service_account

        path = self.oauth.service_account_file or ""
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise AuthFailure(who, f"cannot read service_account_file {path}: "
                              f"{exc.strerror or type(exc).__name__}", provider=GOOGLE,
                              advice=f"make {path} readable for mailbot (it is read at each "
                              "token request)") from None
        digest = hashlib.sha256(raw).hexdigest()
        if self._credentials is None or digest != self._key_hash:
            try:
                info = json.loads(raw)
                self._credentials = service_account.Credentials.from_service_account_info(
                    info, scopes=[self.scope], subject=self.subject)
            except (ValueError, KeyError, TypeError) as exc:
                raise AuthFailure(who, f"service_account_file {path} is not a service "
                                  f"account's JSON key ({type(exc).__name__})",
                                  provider=GOOGLE, advice=for_google("invalid_grant",
                                                                     "signature")) from None
            self._key_hash = digest
        return self._credentials

    def _transport(self) -> Any:
        if self._request is None:
            self._request = _timed_request(session(self.oauth.ca_file, self.oauth.timeout),
                                           self.oauth.timeout)
        return self._request

    # -- errors

    def _unreachable(self, who: str, credentials: Any, exc: Exception) -> IdentityUnreachable:
        host = urlparse(getattr(credentials, "_token_uri", "") or "").netloc
        return IdentityUnreachable(f"{who}: cannot get a token from {GOOGLE} at {host}: "
                                   f"{type(exc).__name__}: {str(exc)[:200]}")

    def _refused(self, who: str, credentials: Any, exc: Exception) -> Exception:
        if getattr(exc, "retryable", False):  # 5xx, 429, temporarily_unavailable
            return self._unreachable(who, credentials, exc)
        data = exc.args[1] if len(exc.args) > 1 else None
        if not isinstance(data, dict):
            # Not an OAuth2 answer (an HTML error page: the wrong token_uri?).
            text = str(exc.args[0] if exc.args else exc)[:200]
            return AuthFailure(who, f"the token endpoint answered: {text}", provider=GOOGLE,
                               advice="check token_uri in the service account's JSON key")
        error = str(data.get("error") or "")
        description = str(data.get("error_description") or "")
        return AuthFailure(who, description[:300] or error, provider=GOOGLE, code=error,
                           advice=for_google(error, description))


def _timed_request(http: Any, timeout: float) -> Any:
    """google-auth's requests transport with ``timeout`` instead of its fixed 120 s (the
    token request passes none of its own)."""
    from google.auth.transport.requests import Request

    class TimedRequest(Request):
        def __call__(self, url: str, method: str = "GET", body: Any = None,
                     headers: Any = None, timeout: Any = timeout, **kwargs: Any) -> Any:
            return super().__call__(url, method=method, body=body, headers=headers,
                                    timeout=timeout, **kwargs)

    return TimedRequest(http)
