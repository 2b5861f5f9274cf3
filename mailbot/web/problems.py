"""What a mailbox's or relay's stored error means, for the staff reading the queue page.

The error text (a mailbox row's ``last_error``: intake.failures; a relay's: respond.answers
and mailbot.login) is written for IT and the log, in English, with the server's own words
("imap.example.pl:993: mail.example.pl: login refused: [AUTHENTICATIONFAILED] …"). The
dashboard leads with one sentence by kind — the login was refused, the server cannot be
reached, a TLS problem, the provider asks us to slow down — and keeps the text itself for
IT in a fold. The kind is read from the text, so rows stored by any version are sorted.
"""

from __future__ import annotations

import re

# Asked in order: the first kind whose pattern matches the text. A refused login comes
# first (its advice may speak of TLS or certificates), a slow-down before an unreachable
# server (a 421 answer also closes the connection).
_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("bounced", re.compile(r"\Abounced:")),  # a reply's, marked by intake (intake.store)
    ("login", re.compile(
        r"login refused|AUTHENTICATIONFAILED|LoginError|authentication (failed|unsuccessful)"
        r"|invalid credentials|\b535\b|\b5\.7\.(8|3|139)\b|refused the login|AUTHENTICATE failed"
        r"|token was issued but", re.I)),
    ("throttled", re.compile(
        r"\b421\b|\b5\.4\.5\b|too many|rate limit|throttl|quota|sending limit|slow(ly)? down",
        re.I)),
    ("tls", re.compile(r"\bTLS\b|\bSSL\b|certificate|STARTTLS", re.I)),
    ("unreachable", re.compile(
        r"connection refused|host name not found|no answer within|connection lost"
        r"|unreachable|timed out|Name or service not known|Errno 1(01|11|13)"
        r"|Connect call failed|could not be asked for a token", re.I)),
    ("folder", re.compile(r"folder|mailbox (does not exist|not found)|\bSELECT\b|Maildir", re.I)),
    ("refused", re.compile(r"the server refused|the relay answered|cannot do what", re.I)),
)


def problem_kind(error: str | None) -> str | None:
    """``bounced``, ``login``, ``throttled``, ``tls``, ``unreachable``, ``folder``,
    ``refused`` or ``other`` (dashboard key ``problem_<kind>``); None for no error."""
    if not error:
        return None
    for kind, pattern in _KINDS:
        if pattern.search(error):
            return kind
    return "other"
