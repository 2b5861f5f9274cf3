"""The mail accounts mailbot logs in to: a mailbox it reads (``[[mailboxes]]``), a relay it
sends through (``[smtp]``, or a mailbox's own ``[mailboxes.smtp]``), and how an OAuth2 token
for either is obtained (``oauth``). The rest of the settings are in sections.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mailbot.config.checks import (
    CLOSED,
    AtLeastOne,
    Address,
    Bool,
    Connections,
    Float,
    Int,
    NoneIfEmpty,
    Positive,
    Str,
)

Auth = Literal["password", "oauth2-microsoft", "oauth2-google"]


@dataclass(frozen=True)
class OAuthSettings:
    """``[mailboxes.oauth]`` / ``[smtp.oauth]``: how an OAuth2 access token is obtained for
    ``auth = "oauth2-microsoft"`` (msal, client credentials) or ``"oauth2-google"``
    (google-auth, a service account with domain-wide delegation). Checked against ``auth``
    in mailbot.config.load; the tokens are fetched by mailbot.login."""

    # Microsoft 365: the directory (tenant) id or domain, and the app registration's
    # application (client) id.
    tenant: Str | None = None
    client_id: Str | None = None
    # Its secret: from this environment variable, or this file (first line), or, instead
    # of a secret, a certificate (PEM with the private key) and its SHA-1 thumbprint.
    client_secret: Str | None = field(default=None, repr=False)
    client_secret_env: Str | None = None
    client_secret_file: Str | None = None
    certificate_file: Str | None = None
    certificate_thumbprint: Str | None = None
    # Google Workspace: the service account's JSON key file; the mailbox (the account the
    # token acts as) is ``subject``, by default the login username.
    service_account_file: Str | None = None
    subject: Str | None = None
    # Rarely changed: the scope (default: https://outlook.office365.com/.default for
    # Microsoft, https://mail.google.com/ for Google) and Microsoft's authority host
    # (default https://login.microsoftonline.com; another for national clouds).
    scope: Str | None = None
    authority: Str | None = None
    # Verify the identity endpoint's TLS certificate against this CA (default: system CAs).
    ca_file: Str | None = None
    timeout: Positive = 30.0

    __pydantic_config__ = CLOSED


@dataclass(frozen=True)
class SmtpSettings:
    """``[smtp]`` (the default relay) or a mailbox's own ``[mailboxes.smtp]``."""

    host: Str = "localhost"
    port: Int = 25
    ssl: Bool = False
    starttls: Bool = False
    username: Str | None = None
    # MAILBOT_SMTP_PASSWORD, when set, wins over both (mailbot.config.load).
    password: Str | None = field(default=None, repr=False)
    password_env: Str | None = None
    # TLS certificates are always verified: against the system's CAs, or this CA file
    # (a library's own CA, or a self-signed relay certificate exported as PEM).
    ca_file: Str | None = None
    timeout: Float = 30.0
    # Connections to the relay. While one hands a reply over, the others prepare the next
    # (MAIL FROM, RCPT TO); the relay still takes one reply at a time, each recorded before
    # the next, so a crash can repeat at most one reply whatever the number.
    connections: Connections = 2
    # When set, replies are written as .eml files into this folder instead of being sent
    # (the demo's "file outbox"; also handy for a dry run of a new installation).
    file_outbox: Str | None = None
    # How we log in: with username and password, or with an OAuth2 token (XOAUTH2) for
    # username. A mailbox's relay without its own [mailboxes.smtp.oauth] uses the
    # mailbox's [mailboxes.oauth].
    auth: Auth = "password"
    oauth: OAuthSettings | None = None
    # The provider's sending limits for this account (absent = unlimited): replies are
    # paced to them, in arrival order (README, "Sending limits"). Mailboxes whose relays
    # are the same account (host, port, username) share one set of limits.
    max_per_minute: AtLeastOne | None = None
    max_per_hour: AtLeastOne | None = None
    max_per_day: AtLeastOne | None = None

    __pydantic_config__ = CLOSED

    @property
    def key(self) -> str:
        """Identifies the sending account: its limits, its sent count and its health are
        kept under this key (the outbox's ``relay`` column, the ``relays`` table)."""
        if self.file_outbox:
            return f"file:{self.file_outbox}"
        return f"smtp://{self.username or ''}@{self.host}:{self.port}"


@dataclass(frozen=True)
class MailboxSettings:
    # Also checked against the rest (mailbot.config.load): the library exists; an IMAP
    # mailbox has a username, a Maildir a path; ssl and starttls exclude each other; no
    # mailbox and folder is configured twice.
    library: Str
    address: Address
    type: Literal["imap", "maildir"] = "imap"
    host: Str = "localhost"
    port: Int = 993
    ssl: Bool = True
    starttls: Bool = False
    username: Str | None = None
    password: Str | None = field(default=None, repr=False)
    password_env: Str | None = None
    ca_file: Str | None = None  # verify the server against this CA (default: system CAs)
    folder: Str = "INBOX"
    manual_folder: Str = "mailbot/manual"
    processed_folder: NoneIfEmpty | None = "mailbot/processed"  # None: leave mail in place
    path: Str | None = None  # for type = "maildir": the Maildir directory
    timeout: Float = 60.0
    # "password", or OAuth2 (XOAUTH2) with a token for username, obtained as [mailboxes.oauth]
    # says: Microsoft 365 retired password logins for IMAP, Google Workspace too.
    auth: Auth = "password"
    oauth: OAuthSettings | None = None
    # This mailbox's own outgoing account (the same keys as [smtp]): its replies and
    # reminders leave through it, so that SPF, DKIM and DMARC of its domain align.
    # Absent: the global [smtp].
    smtp: SmtpSettings | None = None

    __pydantic_config__ = CLOSED

    @property
    def key(self) -> str:
        """Identifies the mailbox across restarts (its database row)."""
        if self.type == "maildir":
            return f"maildir:{self.path}"
        return f"imap://{self.username}@{self.host}:{self.port}/{self.folder}"
