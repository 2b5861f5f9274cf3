"""Which relay answers mean "slow down" (the relay is paused) rather than "not this reply"."""

from __future__ import annotations

import pytest

from mailbot.respond.smtp import throttling


@pytest.mark.parametrize(("code", "text", "envelope_or_data"), [
    (421, "4.7.0 Try again later, closing connection", False),  # anywhere
    (421, "4.3.2 Service shutting down", True),
    (450, "4.7.1 Too many messages", True),
    (451, "4.7.1 Please slow down", True),
    (452, "4.5.3 Too many messages this hour", True),
    (550, "5.4.5 Daily user sending limit exceeded. For more information …", True),
    (550, "5.4.5 Daily user sending quota exceeded.", False),
    (554, "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
          "process message due to a permanent exception", True),
    (450, "4.4.2 Message submission rate for this client has exceeded the configured limit",
     False),
])
def test_throttling_answers(code: int, text: str, envelope_or_data: bool) -> None:
    # The account sent too much: the relay is paused, no reply fails.
    assert throttling(code, text, envelope_or_data=envelope_or_data)


@pytest.mark.parametrize(("code", "text", "envelope_or_data"), [
    (450, "4.2.0 Greylisted, please try again later", False),  # to RCPT TO: this recipient
    (451, "4.7.1 Greylisting in action", False),
    (452, "4.2.2 Mailbox full", False),
    (552, "5.2.2 Mailbox quota exceeded", True),  # the patron's full mailbox
    (550, "5.1.1 No such user", True),
    (554, "5.7.1 Message rejected as spam", True),
])
def test_answers_about_one_reply_are_not_throttling(code: int, text: str,
                                                    envelope_or_data: bool) -> None:
    # These are the reply's own: deferred or failed as before; the relay goes on.
    assert not throttling(code, text, envelope_or_data=envelope_or_data)
