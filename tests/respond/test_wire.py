"""The SMTP lane writes DATA itself (respond/smtp.py): the bytes must be exactly what
aiosmtplib's own data() would put on the wire, and a real server must get the message whole.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiosmtplib.email import quote_address
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbot.config import SmtpSettings
from mailbot.respond.outbox import Pending
from mailbot.respond.smtp import SmtpTransport, on_the_wire, smtp_path
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
        assert not lane.in_data and lane.conn is None

    with SmtpSink() as sink:
        asyncio.run(asyncio.wait_for(go(sink), 30))
        got = sink.wait_for(2)
        assert [m.rcpt_tos for m in got] == [("p1@patron.test",), ("p3@patron.test",)]
        for mail in got:
            assert mail.raw.replace(b"\r\n", b"\n").rstrip(b"\n") == body
            assert mail.message.get_content().splitlines()[:3] == [".", ".. two",
                                                                   ".leading dot"]
        assert len(sink.messages) == 2


_ATOM = st.text(alphabet="abcXYZ019!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=8)


@given(local=st.lists(_ATOM, min_size=1, max_size=3),
       domain=st.lists(st.text(alphabet="abz09-", min_size=1, max_size=6), min_size=1,
                       max_size=3))
def test_a_plain_address_goes_on_the_wire_as_aiosmtplib_would_put_it(local, domain) -> None:
    address = ".".join(local) + "@" + ".".join(domain)
    path = smtp_path(address)
    if path is not None:
        assert path == quote_address(address).encode("ascii")


@given(st.text(max_size=40))
def test_whatever_the_fast_path_takes_aiosmtplib_takes_the_same_way(address: str) -> None:
    path = smtp_path(address)
    if path is not None:
        assert path == quote_address(address).encode("ascii")


def test_anything_but_a_plain_address_is_left_to_aiosmtplib() -> None:
    assert smtp_path("p1@patron.test") == b"<p1@patron.test>"
    assert smtp_path("o'brien+ebook@mail.example.pl") == b"<o'brien+ebook@mail.example.pl>"
    for odd in ['"a b"@patron.test', "a b@patron.test", "<a@patron.test>", "a@b>c",
                "a@patron.test\r\nRCPT TO:<x@y>", "zażółć@patron.test", "a..b@patron.test",
                ".a@patron.test", "a@-patron.test", "a@patron.test ", "Ala <a@patron.test>",
                "a@", "@patron.test", "a"]:
        assert smtp_path(odd) is None, odd


def test_the_first_reply_on_a_connection_announces_its_size_and_odd_addresses_still_go() -> None:
    # The relay's extensions are known from the greeting on: SIZE goes with the first
    # MAIL FROM too. A quoted local part goes as written (mailbot.addresses checks it).
    body = b"Subject: rozmiar\nMIME-Version: 1.0\n\ntresc\n"

    async def go(sink: SmtpSink) -> None:
        settings = SmtpSettings(host=sink.host, port=sink.port, connections=1)
        async with SmtpTransport(settings) as transport:
            lane = transport.lanes[0]
            for row in (_row(1, body), Pending(2, 2, "reply", "issued", "biblioteka@lib.test",
                                               '"Ala Nowak"@patron.test', body, 0,
                                               datetime.now(UTC))):
                await lane.prepare(row)
                await lane.finish(row)

    with SmtpSink() as sink:
        asyncio.run(asyncio.wait_for(go(sink), 30))
        got = sink.wait_for(2)
        wire_size = len(on_the_wire(body)) - len(b".\r\n")
        assert [m.mail_options for m in got] == [(f"SIZE={wire_size}",)] * 2
        assert [m.rcpt_tos for m in got] == [("p1@patron.test",), ('"Ala Nowak"@patron.test',)]
        assert [m.mail_from for m in got] == ["biblioteka@lib.test"] * 2
