"""A bearer token for SASL XOAUTH2, and what hands tokens out (``Source``).

``login.microsoft`` and ``login.google`` are sources; ``login.tokens`` keeps one source per
account and is what the IMAP and SMTP logins ask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    # Fetched from the identity provider for this call, not taken from the cache: a
    # server refusing a fresh token will refuse the next one too.
    fresh: bool


class Source(Protocol):
    """One cached account at one identity provider (login.microsoft, login.google)."""

    def token(self, who: str) -> Token: ...
    def forget(self) -> None: ...
