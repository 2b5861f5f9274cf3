"""A local OAuth2 identity provider and an XOAUTH2 relay, for the OAuth2 login tests.

``IdentityProvider(pki)`` is a real HTTPS server (TLS with a test CA from tests.pki) on
127.0.0.1 and a free port, speaking just enough of two providers for msal and google-auth:

- Microsoft Entra ID, client credentials: ``/<tenant>/v2.0/.well-known/openid-configuration``
  (what msal fetches when its app is built, with instance discovery off) and
  ``/<tenant>/oauth2/v2.0/token`` (``grant_type=client_credentials`` with a
  ``client_secret``, or a ``client_assertion`` JWT signed with a registered certificate).
  It answers errors as Entra does: ``{"error": "invalid_client", "error_description":
  "AADSTS7000222: ..."}`` with HTTP 401 for an expired secret, and so on.
- Google, the JWT bearer grant of a service account with domain-wide delegation:
  ``/google/token``. The assertion's signature is checked with the service account key's
  public key, its ``aud`` must be Google's token URI, its ``sub`` a known user and its
  scope delegated to the account.
- ``/introspect`` (RFC 7662, ``token=`` by POST), which Dovecot's oauth2 passdb asks:
  ``{"active": true, "username": <the mailbox>}`` for a live token. A Microsoft app token
  opens the mailbox the app has been given (``grant_mailbox``: Exchange's
  Add-MailboxPermission; Dovecot compares one username, so one mailbox for IMAP); a Google
  token opens its subject's mailbox.

Tokens are opaque random strings living ``lifetime`` seconds (changeable at any time).
``requests`` records every token request (which provider, which client, whether a token
was issued). ``fail_with(status)`` makes the next token requests answer with an HTTP error.

``XOAuth2Sink(idp)`` is tests.servers.SmtpSink offering only AUTH XOAUTH2, checking each
token with the identity provider (in-process: the same ``introspect``).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.pki import Pki
from tests.servers import LOCALHOST, SmtpLogin, SmtpSink, _over_tls, _SinkHandler, free_port

MS_SCOPE = "https://outlook.office365.com/.default"
GOOGLE_SCOPE = "https://mail.google.com/"
GOOGLE_AUDIENCE = "https://oauth2.googleapis.com/token"  # what google-auth signs as aud
_TRACE = ("\r\nTrace ID: 00000000-0000-0000-0000-000000000000\r\nCorrelation ID: "
          "00000000-0000-0000-0000-000000000000\r\nTimestamp: 2026-12-02 05:00:00Z")


@dataclass
class MicrosoftApp:
    tenant: str
    client_id: str
    secret: str | None = None
    certificate: x509.Certificate | None = None
    secret_expired: bool = False
    mailboxes: list[str] = field(default_factory=list)


@dataclass
class ServiceAccount:
    client_email: str
    client_id: str
    keys: dict[str, Any]  # key id -> public key; a deleted key is gone from here
    scopes: set[str]  # domain-wide delegation: the scopes granted to client_id


@dataclass(frozen=True)
class TokenRequest:
    provider: str  # "microsoft" | "google"
    client: str  # the client id or the service account's e-mail
    issued: bool


@dataclass
class _Issued:
    provider: str
    client: str
    mailboxes: tuple[str, ...]
    expires: float


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def self_signed(key: rsa.RSAPrivateKey, name: str = "mailbot test app") -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=2))
            .sign(key, hashes.SHA256()))


def thumbprint(cert: x509.Certificate) -> str:
    """The certificate's SHA-1 thumbprint, as Entra shows it (hex)."""
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - Entra's thumbprint


class IdentityProvider:
    def __init__(self, pki: Pki, *, lifetime: int = 3600) -> None:
        self.pki = pki
        self.lifetime = lifetime
        self.host = LOCALHOST
        self.port = free_port()
        self.apps: dict[tuple[str, str], MicrosoftApp] = {}
        self.accounts: dict[str, ServiceAccount] = {}
        self.users: set[str] = set()  # the Google Workspace's users (possible subjects)
        self.requests: list[TokenRequest] = []
        self.introspections = 0
        self._issued: dict[str, _Issued] = {}
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[Any] = set()
        self._started_once = False

    def reset(self, *, lifetime: int = 3600) -> None:
        """Forgets every app, account, user, token, request and pending failure."""
        with self._lock:
            self.lifetime = lifetime
            self.apps.clear()
            self.accounts.clear()
            self.users.clear()
            self.requests.clear()
            self.introspections = 0
            self._issued.clear()
            self._failures.clear()

    # -- addresses

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.pki.ca_file

    @property
    def introspection_url(self) -> str:
        return f"{self.url}/introspect"

    @property
    def google_token_uri(self) -> str:
        return f"{self.url}/google/token"

    # -- Microsoft

    def add_app(self, tenant: str, client_id: str, *, secret: str | None = None,
                certificate: x509.Certificate | None = None,
                mailbox: str | None = None) -> MicrosoftApp:
        app = MicrosoftApp(tenant, client_id, secret, certificate)
        if mailbox:
            app.mailboxes.append(mailbox)
        with self._lock:
            self.apps[(tenant, client_id)] = app
        return app

    def grant_mailbox(self, tenant: str, client_id: str, mailbox: str) -> None:
        with self._lock:
            self.apps[(tenant, client_id)].mailboxes.append(mailbox)

    def expire_secret(self, tenant: str, client_id: str) -> None:
        """The app's secret passes its expiry date: its tokens still live, new ones are
        refused (AADSTS7000222), as with Entra."""
        with self._lock:
            self.apps[(tenant, client_id)].secret_expired = True

    def new_secret(self, tenant: str, client_id: str, secret: str) -> None:
        with self._lock:
            app = self.apps[(tenant, client_id)]
            app.secret, app.secret_expired = secret, False

    # -- Google

    def add_service_account(self, email: str, *, client_id: str = "100000000000000000001",
                            scopes: tuple[str, ...] = (GOOGLE_SCOPE,)
                            ) -> ServiceAccount:
        account = ServiceAccount(email, client_id, {}, set(scopes))
        with self._lock:
            self.accounts[email] = account
        return account

    def write_key(self, email: str, path: Path) -> str:
        """A new JSON key of the service account, written to ``path``; its key id."""
        key = rsa_key()
        kid = secrets.token_hex(20)
        account = self.accounts[email]
        with self._lock:
            account.keys[kid] = key.public_key()
        path.write_text(json.dumps({
            "type": "service_account", "project_id": "mailbot-test", "private_key_id": kid,
            "private_key": pem(key), "client_email": email, "client_id": account.client_id,
            "auth_uri": f"{self.url}/google/auth", "token_uri": self.google_token_uri,
        }), encoding="utf-8")
        return kid

    def delete_key(self, email: str, kid: str) -> None:
        with self._lock:
            self.accounts[email].keys.pop(kid, None)

    # -- tokens

    def revoke_tokens(self) -> None:
        """Every token issued so far stops working (the mail servers refuse it)."""
        with self._lock:
            self._issued.clear()

    def fail_with(self, status: int, count: int = 1) -> None:
        with self._lock:
            self._failures.extend([status] * count)

    def count(self, provider: str | None = None, *, issued: bool = True) -> int:
        with self._lock:
            return sum(1 for r in self.requests
                       if (provider is None or r.provider == provider) and r.issued == issued)

    def introspect(self, token: str) -> dict[str, Any]:
        """What the identity provider says about a token (RFC 7662)."""
        with self._lock:
            self.introspections += 1
            issued = self._issued.get(token)
            if issued is None or issued.expires <= time.time():
                return {"active": False}
            answer: dict[str, Any] = {"active": True, "client_id": issued.client,
                                      "exp": int(issued.expires)}
            # A token that opens no mailbox names none Dovecot could match (without a
            # username at all Dovecot would call it an internal failure, [UNAVAILABLE]).
            answer["username"] = issued.mailboxes[0] if issued.mailboxes else \
                f"app:{issued.client}"
            return answer

    def may_open(self, token: str, mailbox: str) -> bool:
        """The token is live and gives access to ``mailbox``."""
        with self._lock:
            issued = self._issued.get(token)
            return (issued is not None and issued.expires > time.time()
                    and mailbox.lower() in (m.lower() for m in issued.mailboxes))

    def _issue(self, provider: str, client: str, mailboxes: tuple[str, ...]) -> dict[str, Any]:
        token = secrets.token_urlsafe(32)
        lifetime = self.lifetime
        self._issued[token] = _Issued(provider, client, mailboxes, time.time() + lifetime)
        self.requests.append(TokenRequest(provider, client, True))
        return {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                "access_token": token}

    # -- server

    def start(self) -> IdentityProvider:
        """Starts serving (a no-op while running); after a ``stop`` on the same port, which
        Dovecot's configuration names."""
        if self._server is not None:
            return self
        context = self.pki.server_context()
        provider = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def finish_request(self, request: Any, client_address: Any) -> None:
                # The TLS handshake runs in the request's thread, not the accept loop.
                with provider._lock:
                    provider._connections.add(request)
                try:
                    tls = context.wrap_socket(request, server_side=True)
                    Handler(tls, client_address, self)
                    tls.close()
                except (ssl.SSLError, OSError):
                    pass
                finally:
                    with provider._lock:
                        provider._connections.discard(request)

        class Handler(_Handler):
            idp = provider

        attempts = 1 if self._started_once else 3
        for attempt in range(attempts):
            try:
                self._server = Server((self.host, self.port), Handler)
                break
            except OSError:
                if attempt + 1 == attempts:
                    raise
                self.port = free_port()  # free_port() is racy: someone took it meanwhile
        self._started_once = True
        assert self._server is not None
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True, name="identity-provider").start()
        return self

    def stop(self) -> None:
        """Stops listening and cuts every open connection (a client keeping one alive,
        as Dovecot's HTTP client does, must not be served by a stopped provider)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> IdentityProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- endpoints (called by _Handler, under no lock)

    def _discovery(self, tenant: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            known = any(t == tenant for t, _ in self.apps)
        if not known:
            return 400, {"error": "invalid_tenant", "error_description":
                         f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you "
                         "have the correct tenant ID and are signing into the correct cloud."
                         + _TRACE, "error_codes": [90002]}
        base = f"{self.url}/{tenant}"
        return 200, {"issuer": f"{base}/v2.0", "token_endpoint": f"{base}/oauth2/v2.0/token",
                     "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                     "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                     "jwks_uri": f"{base}/discovery/v2.0/keys",
                     "token_endpoint_auth_methods_supported": ["client_secret_post",
                                                               "private_key_jwt"]}

    def _failure(self) -> int | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def _microsoft_token(self, tenant: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        client_id = form.get("client_id", "")
        with self._lock:
            app = self.apps.get((tenant, client_id))

            def refuse(status: int, error: str, code: int, text: str) -> tuple[int, dict]:
                self.requests.append(TokenRequest("microsoft", client_id, False))
                return status, {"error": error, "error_description": f"AADSTS{code}: {text}"
                                + _TRACE, "error_codes": [code]}

            if app is None:
                return refuse(400, "unauthorized_client", 700016,
                              f"Application with identifier '{client_id}' was not found in "
                              f"the directory '{tenant}'.")
            if form.get("grant_type") != "client_credentials":
                return refuse(400, "unsupported_grant_type", 70003, "The app requested an "
                              "unsupported grant type.")
            if form.get("scope", "").split() != [MS_SCOPE]:
                return refuse(400, "invalid_scope", 70011, "The provided value for the input "
                              "parameter 'scope' is not valid.")
            if "client_assertion" in form:
                if not self._assertion_ok(app, tenant, form["client_assertion"]):
                    return refuse(401, "invalid_client", 700027, "Client assertion contains "
                                  "an invalid signature.")
            elif app.secret is None or form.get("client_secret") != app.secret:
                return refuse(401, "invalid_client", 7000215, "Invalid client secret "
                              "provided. Ensure the secret being sent in the request is the "
                              f"client secret value, not the client secret ID, for a secret "
                              f"added to app '{client_id}'.")
            elif app.secret_expired:
                return refuse(401, "invalid_client", 7000222, "The provided client secret "
                              f"keys for app '{client_id}' are expired. Visit the Azure "
                              "portal to create new keys for your app.")
            return 200, self._issue("microsoft", client_id, tuple(app.mailboxes))

    def _assertion_ok(self, app: MicrosoftApp, tenant: str, assertion: str) -> bool:
        if app.certificate is None:
            return False
        try:
            header = jwt.get_unverified_header(assertion)
            x5t = (header.get("x5t") or "").rstrip("=")  # msal keeps the padding
            wanted = base64.urlsafe_b64encode(
                app.certificate.fingerprint(hashes.SHA1())).rstrip(b"=").decode()  # noqa: S303
            if x5t != wanted:
                return False
            jwt.decode(assertion, app.certificate.public_key(), algorithms=["RS256", "PS256"],
                       audience=f"{self.url}/{tenant}/oauth2/v2.0/token",
                       issuer=app.client_id)
        except jwt.PyJWTError:
            return False
        return True

    def _google_token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        assertion = form.get("assertion", "")
        try:
            claims = jwt.decode(assertion, options={"verify_signature": False})
            kid = jwt.get_unverified_header(assertion).get("kid", "")
        except jwt.PyJWTError:
            claims, kid = {}, ""
        email = str(claims.get("iss", ""))
        with self._lock:
            account = self.accounts.get(email)

            def refuse(status: int, error: str, text: str) -> tuple[int, dict]:
                self.requests.append(TokenRequest("google", email, False))
                return status, {"error": error, "error_description": text}

            if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
                return refuse(400, "unsupported_grant_type", "Invalid grant_type")
            if account is None:
                return refuse(400, "invalid_grant", "Invalid grant: account not found")
            key = account.keys.get(kid)
            if key is None:
                return refuse(400, "invalid_grant", "Invalid JWT Signature.")
            try:
                claims = jwt.decode(assertion, key, algorithms=["RS256"],
                                    audience=GOOGLE_AUDIENCE, issuer=email)
            except jwt.InvalidSignatureError:
                return refuse(400, "invalid_grant", "Invalid JWT Signature.")
            except jwt.PyJWTError as exc:
                return refuse(400, "invalid_grant", f"Invalid JWT: {exc}")
            subject = str(claims.get("sub", ""))
            if subject not in self.users:
                return refuse(400, "invalid_grant", "Invalid email or User ID")
            if not set(str(claims.get("scope", "")).split()) <= account.scopes:
                return refuse(401, "unauthorized_client", "Client is unauthorized to retrieve "
                              "access tokens using this method, or client not authorized for "
                              "any of the scopes requested.")
            return 200, self._issue("google", email, (subject,))


class _Handler(BaseHTTPRequestHandler):
    idp: IdentityProvider
    protocol_version = "HTTP/1.0"  # one request a connection: nothing lingers at stop()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet: tokens must not reach any log, not even the tests'

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        text = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        return {k: v[0] for k, v in urllib.parse.parse_qs(text).items()}

    def do_GET(self) -> None:  # noqa: N802
        parts = urllib.parse.urlsplit(self.path).path.strip("/").split("/")
        if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            self._send(*self.idp._discovery(parts[0]))
            return
        self._send(404, {"error": "not_found"})

    def do_POST(self) -> None:  # noqa: N802
        path = urllib.parse.urlsplit(self.path).path.strip("/")
        form = self._form()
        if path == "introspect":
            self._send(200, self.idp.introspect(form.get("token", "")))
            return
        failure = self.idp._failure()
        if failure is not None:
            self._send(failure, {"error": "temporarily_unavailable",
                                 "error_description": "the test provider fails on purpose"})
            return
        parts = path.split("/")
        if path == "google/token":
            self._send(*self.idp._google_token(form))
        elif len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
            self._send(*self.idp._microsoft_token(parts[0], form))
        else:
            self._send(404, {"error": "not_found"})


# --------------------------------------------------------------------------- XOAUTH2 relay


def parse_xoauth2(blob: bytes) -> tuple[str, str]:
    """(user, token) from an XOAUTH2 initial response ("user=…^Aauth=Bearer …^A^A")."""
    fields = dict(part.split("=", 1) for part in blob.decode("utf-8", "replace").split("\x01")
                  if "=" in part)
    auth = fields.get("auth", "")
    return fields.get("user", ""), auth[7:] if auth.lower().startswith("bearer ") else ""


class XOAuth2Sink(SmtpSink):
    """An SmtpSink that takes AUTH XOAUTH2 only (required), checking each token with
    ``idp``: the token must be live and open the mailbox named as user. A refusal is
    answered as Gmail and Exchange do: a 334 with a JSON error, then 535 after the client's
    empty line. Every attempt is kept in ``logins``."""

    def __init__(self, idp: IdentityProvider, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.idp = idp

    def start(self) -> XOAuth2Sink:
        from aiosmtpd.controller import Controller

        if self._controller is not None:
            return self
        for attempt in range(3):
            kwargs: dict[str, Any] = dict(
                hostname=self.host, port=self.port, server_hostname=self.hostname,
                enable_SMTPUTF8=self.smtputf8, ready_timeout=10.0, auth_required=True,
                auth_require_tls=self.tls is not None,
                auth_exclude_mechanism=["PLAIN", "LOGIN"],
                authenticator=lambda *args: _refused())
            if self.tls is not None:
                kwargs["tls_context"] = self.tls.server_context()
            controller = Controller(_XOAuth2Handler(self), **kwargs)
            try:
                controller.start()
            except Exception:
                if attempt == 2:
                    raise
                self.port = free_port()
                continue
            self._controller = controller
            break
        return self


def _refused() -> Any:
    from aiosmtpd.smtp import AuthResult

    return AuthResult(success=False)


class _XOAuth2Handler(_SinkHandler):
    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> Any:  # noqa: N802
        from aiosmtpd.smtp import MISSING, AuthResult, LoginPassword

        if len(args) == 1:
            blob = await server.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except (binascii.Error, ValueError):
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        user, token = parse_xoauth2(blob)
        ok = bool(user) and self.sink.idp.may_open(token, user)
        with self.sink._cond:
            self.sink._logins.append(SmtpLogin(user or None, ok, _over_tls(server)))
        if ok:
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": GOOGLE_SCOPE})
        await server.challenge_auth(error.encode())  # the client answers with an empty line
        return AuthResult(success=False, handled=False,
                          message="535 5.7.3 Authentication unsuccessful")
