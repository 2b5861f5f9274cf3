"""Microsoft 365 access tokens: msal's client credentials flow for one app registration.

The app (``ConfidentialClientApplication``) is built at the first token and kept: msal
caches its token in memory and hands it out again until less than 5 minutes are left
(msal 1.39, ``_acquire_token_silent_from_cache_and_possibly_refresh_it``: a cached token
with ``expires_on - now < 300`` counts as expired), then fetches a new one. Building the
app fetches the tenant's OpenID configuration (``<authority>/<tenant>/v2.0/.well-known/
openid-configuration``).

The credential is read at each token request: a ``client_secret_file`` (its first line) or
a ``certificate_file`` replaced by IT is used from the next login on, without a restart
(a changed credential builds a new app, so the old token cache goes with it).

Authority: ``oauth.authority`` (default https://login.microsoftonline.com) plus the tenant.
A host that msal knows as Microsoft's (the public and national clouds) is used with msal's
defaults; any other host (a test's identity provider, a proxy) is taken as given, without
msal's instance discovery, which would ask login.microsoftonline.com about it.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mailbot.config import OAuthSettings
from mailbot.login.advice import ENTRA, for_entra
from mailbot.login.failures import AuthFailure, IdentityUnreachable
from mailbot.login.http import session
from mailbot.login.bearer import Token

DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
DEFAULT_SCOPE = "https://outlook.office365.com/.default"

_CODE = re.compile(r"AADSTS\d+")
_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.+?-----END [A-Z ]*PRIVATE KEY-----",
                          re.DOTALL)
# Entra's errors that say "not now" rather than "no".
_TEMPORARY_ERRORS = ("temporarily_unavailable", "server_error")


class MicrosoftApp:
    """One app registration's tokens; thread-safe (one fetch at a time, shared)."""

    def __init__(self, oauth: OAuthSettings) -> None:
        self.oauth = oauth
        self.authority = (f"{(oauth.authority or DEFAULT_AUTHORITY).rstrip('/')}/"
                          f"{oauth.tenant}")
        self.scope = oauth.scope or DEFAULT_SCOPE
        self._app: Any = None
        self._credential_hash = ""
        self._lock = threading.Lock()

    def token(self, who: str) -> Token:
        import requests  # msal's transport
        from msal.exceptions import MsalServiceError

        with self._lock:
            try:
                app = self._current_app(who)
                result = app.acquire_token_for_client(scopes=[self.scope])
            except (requests.RequestException, MsalServiceError) as exc:
                raise self._unreachable(who, exc) from None
            except json.JSONDecodeError as exc:  # a token answer that is not OAuth2
                raise self._unreachable(who, exc) from None
            except AuthFailure:
                raise
            except Exception as exc:  # noqa: BLE001 - see below
                # The private key cannot sign: not a usable key (ValueError), encrypted
                # (TypeError from cryptography), not RSA (PyJWT's InvalidKeyError) … Each
                # is the credential's fault, never a reply's: named as the certificate's.
                raise AuthFailure(who, "cannot sign with certificate_file "
                                  f"{self.oauth.certificate_file or '?'}: "
                                  f"{type(exc).__name__}: {str(exc)[:200]}", provider=ENTRA,
                                  advice=for_entra("AADSTS700027")) from None
        if "access_token" not in result:
            raise self._refused(who, result)
        return Token(result["access_token"], fresh=result.get("token_source") != "cache")

    def forget(self) -> None:
        with self._lock:
            if self._app is not None:
                self._app.remove_tokens_for_client()

    # -- the app and its credential

    def _current_app(self, who: str) -> Any:
        credential, digest = self._credential(who)
        if self._app is None or digest != self._credential_hash:
            self._app = self._build(who, credential)
            self._credential_hash = digest
        return self._app

    def _credential(self, who: str) -> tuple[Any, str]:
        """The secret or certificate as msal takes it, and a digest to notice a change."""
        o = self.oauth
        if o.client_secret:
            secret = o.client_secret
            return secret, hashlib.sha256(secret.encode()).hexdigest()
        if o.client_secret_file:
            text = self._read(who, o.client_secret_file, "client_secret_file")
            secret = text.strip().splitlines()[0].strip() if text.strip() else ""
            if not secret:
                raise AuthFailure(who, f"client_secret_file {o.client_secret_file} is empty",
                                  provider=ENTRA, advice=for_entra("AADSTS7000215"))
            return secret, hashlib.sha256(secret.encode()).hexdigest()
        path = o.certificate_file or ""
        text = self._read(who, path, "certificate_file")
        found = _PRIVATE_KEY.search(text)
        if found is None:
            raise AuthFailure(who, f"certificate_file {path} holds no PEM private key",
                              provider=ENTRA, advice=for_entra("AADSTS700027"))
        thumbprint = re.sub(r"[\s:]", "", o.certificate_thumbprint or "")
        digest = hashlib.sha256(f"{thumbprint}\n{text}".encode()).hexdigest()
        return {"private_key": found.group(0), "thumbprint": thumbprint}, digest

    @staticmethod
    def _read(who: str, path: str, key: str) -> str:
        try:
            return Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AuthFailure(who, f"cannot read {key} {path}: "
                              f"{getattr(exc, 'strerror', None) or type(exc).__name__}",
                              provider=ENTRA, advice=f"make {path} readable for mailbot "
                              "(it is read at each token request)") from None

    def _build(self, who: str, credential: Any) -> Any:
        import msal
        from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

        known = urlparse(self.authority).hostname in WELL_KNOWN_AUTHORITY_HOSTS
        try:
            return msal.ConfidentialClientApplication(
                self.oauth.client_id, client_credential=credential,
                authority=self.authority,
                http_client=session(self.oauth.ca_file, self.oauth.timeout),
                instance_discovery=None if known else False)
        except ValueError as exc:
            # The tenant's OpenID configuration was refused (an unknown tenant: 400 with
            # AADSTS90002 in its text) or the authority is no URL msal accepts.
            # msal raises its own text; the answer (with the code) is in the context.
            text = f"{exc} {exc.__context__ or ''}"
            found = _CODE.search(text)
            code = found.group(0) if found else ""
            message = ("the tenant's OpenID configuration was refused" if found else
                       str(exc).split(". ")[0][:300])
            raise AuthFailure(who, f"{message} ({self.authority})", provider=ENTRA,
                              code=code, advice=for_entra(code)) from None

    # -- errors

    def _unreachable(self, who: str, exc: Exception) -> IdentityUnreachable:
        host = urlparse(self.authority).netloc
        return IdentityUnreachable(f"{who}: cannot get a token from {ENTRA} at {host}: "
                                   f"{type(exc).__name__}: {str(exc)[:200]}")

    def _refused(self, who: str, result: dict[str, Any]) -> Exception:
        error = str(result.get("error") or "")
        description = str(result.get("error_description") or "")
        if error in _TEMPORARY_ERRORS:
            return self._unreachable(who, RuntimeError(f"{error}: {_first_line(description)}"))
        found = _CODE.search(description)
        code = found.group(0) if found else error
        message = _first_line(description)
        if found and message.startswith(code):
            message = message[len(code):].lstrip(": ")
        return AuthFailure(who, message or error or "no token", provider=ENTRA, code=code,
                           advice=for_entra(code if found else ""))


def _first_line(description: str) -> str:
    """Entra's description without its Trace ID, Correlation ID and Timestamp lines."""
    return description.strip().splitlines()[0].strip()[:300] if description.strip() else ""
