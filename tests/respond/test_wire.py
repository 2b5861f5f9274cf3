"""The SMTP lane writes DATA itself (respond/send.py): the bytes must be exactly what
aiosmtplib's own data() would put on the wire, and a real server must get the message whole.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbot.config import SmtpSettings
from mailbot.respond.send import Pending, SmtpTransport, on_the_wire
from tests.servers import SmtpSink

_LINES = st.lists(st.sampled_from([b".", b"..", b".x", b"a.b", b"", b"text", b"\r", b" ."]),
                  max_size=12)


def _aiosmtplib_wire(message: bytes) -> bytes:
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message)) + b".\r\n"


@settings(max_examples=400, deadline=None)
@given(parts=_LINES, ends=st.lists(st.sampled_from([b"\n", b"\r\n", b"\r"]), max_size=12))
def test_the_wire_form_is_what_aiosmtplib_itself_sends(parts: list[bytes],
                                                        ends: list[bytes]) -> None:
    message = b"".join(p + (ends[i % len(ends)] if ends else b"\n")
                       for i, p in enumerate(parts))
    assert on_the_wire(message) == _aiosmtplib_wire(message)


@given(st.binary(max_size=300))
def test_any_bytes_give_the_same_wire_form(message: bytes) -> None:
    assert on_the_wire(message) == _aiosmtplib_wire(message)


def _row(oid: int, message: bytes) -> Pending:
    return Pending(oid, oid, "reply", "issued", "biblioteka@lib.test", f"p{oid}@patron.test",
                   message, 0, datetime.now(UTC))


def test_a_message_with_dot_lines_arrives_whole_and_an_abandoned_data_sends_nothing() -> None:
    body = (b"Subject: kropki\nMIME-Version: 1.0\n\n.\n.. two\n.leading dot\nlast line")

    async def go(sink: SmtpSink) -> None:
        settings = SmtpSettings(host=sink.host, port=sink.port, connections=1)
        async with SmtpTransport(settings) as transport:
            lane = transport.lanes[0]
            await lane.prepare(_row(1, body))
            assert lane.in_data
            await lane.finish(_row(1, body))
            # Prepared (the relay said 354) but never handed over, as when another lane
            # finds the relay refusing us: the next reply still goes out on this lane.
            await lane.prepare(_row(2, b"Subject: porzucona\n\nnie wyslana\n"))
            await lane.prepare(_row(3, body))
            await lane.finish(_row(3, body))
            # A lane left mid-DATA is closed without QUIT (it would become message text).
            await lane.prepare(_row(4, b"Subject: porzucona\n\ntez nie\n"))
        assert not lane.in_data and lane.client is None

    with SmtpSink() as sink:
        asyncio.run(asyncio.wait_for(go(sink), 30))
        got = sink.wait_for(2)
        assert [m.rcpt_tos for m in got] == [("p1@patron.test",), ("p3@patron.test",)]
        for mail in got:
            assert mail.raw.replace(b"\r\n", b"\n").rstrip(b"\n") == body
            assert mail.message.get_content().splitlines()[:3] == [".", ".. two",
                                                                   ".leading dot"]
        assert len(sink.messages) == 2
