"""What a relay's answers mean for the sending round (respond/smtp.py asks): whether an
answer asks us to slow down (the relay is paused, no reply fails) or is about one reply,
and why a relay could not be reached, in words staff can act on."""

from __future__ import annotations

import re
from typing import Literal

import aiosmtplib

from mailbot.config import SmtpSettings
from mailbot.connection_errors import in_words

# The providers' answers when an account sent too much, whatever their code: Gmail's
# "550 5.4.5 Daily user sending limit exceeded", Exchange Online's "554 5.2.0 ...
# SubmissionQuotaExceededException" and "4.4.2 Message submission rate for this client
# has exceeded the configured limit". (A full recipient mailbox, 552 5.2.2 "quota
# exceeded", is that reply's own failure and does not match.)
_QUOTA = re.compile(r"\b5\.4\.5\b|daily user sending (limit|quota)|SubmissionQuotaExceeded"
                    r"|submission rate for this client", re.IGNORECASE)
# 4xx answers to MAIL FROM that mean "you, not this message: later".
_SLOW_DOWN = (421, 450, 451, 452)
# At the end of DATA a 4xx may be about this message (a content filter's "451 4.7.1 try
# again later", a full mailbox): it slows the relay down only when it says it is about
# the rate (Exchange's "432 4.3.2 … sender thread limit exceeded", "4.7.0 Rate limit").
_RATE = re.compile(r"\brate\b|too many|limit|throttl|slow(?:ly)? down|server busy|concurrent",
                   re.IGNORECASE)
Stage = Literal["connect", "MAIL", "RCPT", "DATA"]


def throttling(code: int, message: str, *, stage: Stage) -> bool:
    """Whether an answer asks us to slow down rather than refusing one reply: a 421 anywhere,
    a provider's quota answer (even a 5xx), 450/451/452 to MAIL FROM, and a 4xx at the end of
    DATA that speaks of the rate. To RCPT TO a 4xx is that recipient's (greylisting), and
    another 4xx at the end of DATA that message's: the reply's own deferral."""
    if code == 421 or _QUOTA.search(message):
        return True
    if stage == "MAIL":
        return code in _SLOW_DOWN
    if stage == "DATA":
        return 400 <= code < 500 and bool(_RATE.search(message))
    return False


def unreachable_because(exc: BaseException, relay: SmtpSettings) -> str:
    """Why a relay could not be reached, in words staff can act on (status, dashboard):
    not ``SMTPConnectError: Error connecting to … [Errno 111] Connect call failed …``."""
    cause = exc.__cause__ if isinstance(exc, aiosmtplib.SMTPConnectError) and \
        exc.__cause__ is not None else exc
    said = in_words(cause, server="relay", timeout=relay.timeout)
    if said is not None:
        return said
    if isinstance(cause, aiosmtplib.SMTPTimeoutError):
        return f"no answer within {relay.timeout:g} s"
    if isinstance(cause, aiosmtplib.SMTPResponseException):
        return f"the relay answered {cause.code} {cause.message}"
    if isinstance(cause, OSError):
        return cause.strerror or str(cause) or type(cause).__name__
    return f"{type(cause).__name__}: {cause}"
