"""Which relay answers mean "slow down" (the relay is paused) rather than "not this reply"."""

from __future__ import annotations

import pytest

from mailbot.respond.answers import throttling


@pytest.mark.parametrize(("code", "text", "stage"), [
    (421, "4.7.0 Try again later, closing connection", "RCPT"),  # anywhere
    (421, "4.3.2 Service shutting down", "connect"),
    (450, "4.7.1 Too many messages", "MAIL"),
    (451, "4.7.1 Please slow down", "MAIL"),
    (452, "4.5.3 Too many messages this hour", "MAIL"),
    (451, "4.7.0 Rate limit exceeded, please slow down", "DATA"),
    (432, "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", "DATA"),
    (550, "5.4.5 Daily user sending limit exceeded. For more information …", "DATA"),
    (550, "5.4.5 Daily user sending quota exceeded.", "RCPT"),
    (554, "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
          "process message due to a permanent exception", "DATA"),
    (450, "4.4.2 Message submission rate for this client has exceeded the configured limit",
     "RCPT"),
])
def test_throttling_answers(code: int, text: str, stage: str) -> None:
    # The account sent too much: the relay is paused, no reply fails.
    assert throttling(code, text, stage=stage)


@pytest.mark.parametrize(("code", "text", "stage"), [
    (450, "4.2.0 Greylisted, please try again later", "RCPT"),  # this recipient
    (451, "4.7.1 Greylisting in action", "RCPT"),
    (452, "4.2.2 Mailbox full", "RCPT"),
    # At the end of DATA, about this message: a content filter's tempfail, a full mailbox.
    # (Taken as throttling, the same reply headed the queue after every pause and held
    # the relay for good.)
    (451, "4.7.1 Please try again later", "DATA"),
    (450, "4.7.1 Virus scanner unavailable", "DATA"),
    (452, "4.2.2 Mailbox full", "DATA"),
    (552, "5.2.2 Mailbox quota exceeded", "DATA"),  # the patron's full mailbox
    (550, "5.1.1 No such user", "MAIL"),
    (554, "5.7.1 Message rejected as spam", "DATA"),
])
def test_answers_about_one_reply_are_not_throttling(code: int, text: str, stage: str) -> None:
    # These are the reply's own: deferred or failed as before; the relay goes on.
    assert not throttling(code, text, stage=stage)
