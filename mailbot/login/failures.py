"""A refused login, in words staff and IT can act on.

``AuthFailure`` names who could not log in (a mailbox's or relay's key), the provider's
error code and text when there is one (``AADSTS7000222``, ``invalid_grant`` …) and what to
do (``advice``). Its ``str()`` is what the log, ``mailbot status`` and the dashboard show;
it never holds a password, a secret or a token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailbot.config import DaemonSettings


class AuthFailure(Exception):
    """The server or the identity provider refused our credentials: trying again at once
    will not help (the daemon and run --once wait daemon.auth_retry, growing)."""

    def __init__(self, who: str, message: str, *, provider: str = "", code: str = "",
                 advice: str = "") -> None:
        self.who = who
        self.provider = provider
        self.code = code
        self.message = message
        self.advice = advice
        super().__init__(str(self))

    def __str__(self) -> str:
        head = f"{self.who}: login refused"
        if self.provider:
            head += f" by {self.provider}"
        text = f"{head}: {self.code + ' ' if self.code else ''}{self.message}"
        return f"{text} — {self.advice}" if self.advice else text


class IdentityUnreachable(OSError):
    """The identity provider could not be asked for a token (network, timeout, a 5xx or
    an answer that is not OAuth2): nothing was refused, so this is a temporary network
    error like any other ``OSError`` (intake and the SMTP lanes retry it as such, without
    the back-off of an ``AuthFailure``). Its text names the provider and the mailbox or
    relay, never a secret."""


def login_wait(failures: int, daemon: DaemonSettings) -> float:
    """Seconds before the next login after ``failures`` refused logins in a row (a
    mailbox's, or a relay's pause): auth_retry, doubling with each, at most
    auth_retry_max."""
    return min(daemon.auth_retry * 2 ** max(0, failures - 1), daemon.auth_retry_max)
