"""Which credentials a refused login was tried with, as a short fingerprint.

A refused login puts the next one off for minutes, up to an hour (``daemon.auth_retry``):
providers lock accounts that keep trying a wrong secret. But once IT has put the right
password or a renewed secret in place, the next login should go at once, not after the
wait that the old one earned. So the refusal is recorded with this fingerprint of what
was tried (username, password, OAuth2 settings, the secret and key files' contents), and
the wait holds only while the credentials are the same.

It is 8 hexadecimal digits of a SHA-256: enough to notice a change, far too short to
confirm a guessed password (every guess of a dictionary matches some 2**32-th of them).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mailbot.config import MailboxSettings, OAuthSettings, SmtpSettings


def credentials(account: MailboxSettings | SmtpSettings) -> str:
    """The fingerprint of the credentials ``account`` logs in with now."""
    digest = hashlib.sha256()
    for part in (account.auth, account.username or "", account.password or ""):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    if account.oauth is not None:
        _oauth(digest, account.oauth)
    return digest.hexdigest()[:8]


def _oauth(digest: hashlib._Hash, oauth: OAuthSettings) -> None:
    digest.update(repr(oauth).encode("utf-8", "surrogateescape"))
    digest.update((oauth.client_secret or "").encode("utf-8", "surrogateescape"))
    for path in (oauth.client_secret_file, oauth.certificate_file, oauth.service_account_file):
        if path:
            try:
                digest.update(Path(path).read_bytes())
            except OSError:
                digest.update(b"unreadable")
