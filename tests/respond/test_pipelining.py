"""A reply's envelope as one group when the relay offers PIPELINING (RFC 2920), one command
at a time when it does not; answers read in order, refusals inside a group still the
reply's own (issue 21).

Against Postfix's smtp-sink (it offers PIPELINING; ``-p`` turns it off) and a relay
scripted here on a loopback socket that notes whether the envelope's three commands came
before its first answer — what tells a pipelining client from one that waits.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailbot.config import SmtpSettings
from mailbot.respond.smtp import SmtpLane, SmtpTransport, TransportError
from tests.servers import free_port

SINK = "/usr/sbin/smtp-sink"


@dataclass
class Reply:
    id: int
    to_address: str
    message: bytes
    outcome: str | None = "issued"
    mail_from: str = "ebooki@biblioteka.test"


def _reply(n: int) -> Reply:
    return Reply(n, f"p{n}@patron.test",
                 f"From: ebooki@biblioteka.test\nSubject: kod {n}\n\nTre\u015b\u0107 {n}\n.kropka\n"
                 .encode())


class ScriptedRelay:
    """An SMTP relay on 127.0.0.1 that answers ``rcpt_code`` to RCPT (e.g. 550, or 421
    and closing) and writes down, for each envelope, whether MAIL, RCPT and DATA had all
    arrived before it answered MAIL."""

    def __init__(self, *, pipelining: bool, rcpt_code: int = 250) -> None:
        self.pipelining, self.rcpt_code = pipelining, rcpt_code
        self.grouped: list[bool] = []
        self.messages: list[bytes] = []
        self.port = 0

    async def __aenter__(self) -> ScriptedRelay:
        self.server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 relay.test ESMTP\r\n")
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-relay.test\r\n" + (b"250-PIPELINING\r\n" if self.pipelining
                                                          else b"") + b"250 SIZE 1000000\r\n")
                elif verb == b"MAIL":
                    # Do the other two commands come before any answer?
                    try:
                        rest = [await asyncio.wait_for(reader.readline(), 0.5) for _ in range(2)]
                    except asyncio.TimeoutError:
                        rest = None
                    self.grouped.append(rest is not None)
                    writer.write(b"250 2.1.0 Ok\r\n")
                    if rest is None:
                        await writer.drain()
                        rest = [await reader.readline()]
                    if not await self._rcpt(reader, writer, rest):
                        return
                elif verb == b"QUIT":
                    writer.write(b"221 Bye\r\n")
                    await writer.drain()
                    return
                else:
                    writer.write(b"500 what?\r\n")
                await writer.drain()
        finally:
            writer.close()

    async def _rcpt(self, reader, writer, rest: list[bytes]) -> bool:  # noqa: ANN001
        assert rest[0].upper().startswith(b"RCPT TO:")
        if self.rcpt_code == 421:
            writer.write(b"421 4.7.0 Too many messages, slow down\r\n")
            await writer.drain()
            return False
        if self.rcpt_code != 250:
            writer.write(b"%d 5.1.1 No such user\r\n" % self.rcpt_code)
            data = rest[1] if len(rest) > 1 else await reader.readline()
            assert data.upper().startswith(b"DATA")
            writer.write(b"554 5.5.1 No valid recipients\r\n")
            return True
        writer.write(b"250 2.1.5 Ok\r\n")
        if len(rest) == 1:
            await writer.drain()
            rest.append(await reader.readline())
        assert rest[1].upper().startswith(b"DATA")
        writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        await writer.drain()
        body = bytearray()
        while (line := await reader.readline()) != b".\r\n":
            body += line
        self.messages.append(bytes(body))
        writer.write(b"250 2.0.0 Ok: queued\r\n")
        return True


def _settings(port: int, connections: int = 1) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=port, connections=connections, timeout=10)


async def _send(lane: SmtpLane, reply: Reply) -> None:
    await lane.prepare(reply)
    await lane.finish(reply)


@pytest.mark.parametrize("pipelining", [True, False])
def test_the_envelope_is_one_group_only_where_the_relay_offers_pipelining(pipelining):
    # With PIPELINING: MAIL, RCPT and DATA arrive before the relay's first answer, for
    # every reply on the connection. Without: the lane waits for each answer (RFC 5321).
    # The messages arrive whole either way (dot-stuffed, CRLF).
    async def go() -> ScriptedRelay:
        async with ScriptedRelay(pipelining=pipelining) as relay:
            lane = SmtpLane(_settings(relay.port))
            try:
                for n in range(1, 4):
                    await _send(lane, _reply(n))
                assert lane.conn is not None and lane.conn.pipelining is pipelining
            finally:
                await lane.close()
            return relay

    relay = asyncio.run(asyncio.wait_for(go(), 30))
    assert relay.grouped == [pipelining] * 3
    assert [m.split(b"\r\n")[1] for m in relay.messages] == [
        b"Subject: kod 1", b"Subject: kod 2", b"Subject: kod 3"]
    assert all(b"\r\n..kropka\r\n" in m for m in relay.messages)


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_recipient_refused_inside_a_group_fails_that_reply_and_the_next_goes_on(pipelining):
    # RCPT 550 (and DATA then 554, as relays answer a group with no recipient): that
    # reply fails for good, naming the refusal; the lane reconnects for the next one.
    async def go() -> tuple[ScriptedRelay, TransportError]:
        async with ScriptedRelay(pipelining=pipelining, rcpt_code=550) as relay:
            lane = SmtpLane(_settings(relay.port))
            try:
                with pytest.raises(TransportError) as refused:
                    await lane.prepare(_reply(1))
                assert not lane.in_data and lane.conn is None
                relay.rcpt_code = 250
                await _send(lane, _reply(2))
            finally:
                await lane.close()
            return relay, refused.value

    relay, refused = asyncio.run(asyncio.wait_for(go(), 30))
    assert refused.permanent and not refused.unreachable
    assert "recipient refused: 550" in str(refused)
    assert len(relay.messages) == 1 and b"Subject: kod 2" in relay.messages[0]


def test_a_421_to_rcpt_inside_a_group_pauses_the_relay_not_the_reply():
    # The relay answers RCPT with 421 and closes before answering DATA: the 421 counts
    # (the relay asks us to slow down), not the connection closing after it.
    async def go() -> TransportError:
        async with ScriptedRelay(pipelining=True, rcpt_code=421) as relay:
            lane = SmtpLane(_settings(relay.port))
            try:
                with pytest.raises(TransportError) as paused:
                    await lane.prepare(_reply(1))
            finally:
                await lane.close()
            return paused.value

    paused = asyncio.run(asyncio.wait_for(go(), 30))
    assert paused.throttled and not paused.permanent
    assert "421" in str(paused)


class SmtpSink:
    """Postfix's smtp-sink, each message dumped to a file of ``folder``."""

    def __init__(self, folder: Path, *options: str) -> None:
        assert os.access(SINK, os.X_OK), f"{SINK} is missing: scripts/test installs postfix"
        self.folder, self.port = folder, free_port()
        folder.mkdir()
        self.proc = subprocess.Popen(
            [SINK, "-u", "root", "-d", f"{folder}/%H%M%S.", *options, f"127.0.0.1:{self.port}",
             "100"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("smtp-sink did not start: " + self.proc.stderr.read().decode())

    def dumps(self, count: int) -> list[bytes]:
        deadline = time.monotonic() + 10
        while len(files := sorted(self.folder.iterdir())) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return [f.read_bytes() for f in files]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.mark.parametrize("options, pipelined", [((), True), (("-p",), False)],
                         ids=["pipelining", "without"])
def test_replies_to_postfix_smtp_sink_arrive_whole_over_two_lanes(tmp_path, options,
                                                                   pipelined):
    # 40 replies over the transport's two lanes, alternating: each arrives once, whole,
    # to its own recipient; smtp-sink offers PIPELINING and the lanes use it.
    sink = SmtpSink(tmp_path / "dumps", *options)
    try:
        async def go() -> None:
            async with SmtpTransport(_settings(sink.port, connections=2)) as transport:
                for n in range(1, 41):
                    await _send(transport.lanes[n % 2], _reply(n))
                assert [lane.conn.pipelining for lane in transport.lanes] == [pipelined] * 2

        asyncio.run(asyncio.wait_for(go(), 60))
        dumps = sink.dumps(40)
    finally:
        sink.close()
    assert len(dumps) == 40
    # (smtp-sink writes what it took with LF line ends, the dots unstuffed and an empty
    # line after each message.)
    numbers = [int(d.split(b"Subject: kod ")[1].split(b"\n")[0]) for d in dumps]
    assert sorted(numbers) == list(range(1, 41))
    for n, dump in zip(numbers, dumps, strict=True):
        assert f"X-Rcpt-Args: <p{n}@patron.test>\n".encode() in dump, dump[:400]
        assert dump.endswith(f"\n\nTreść {n}\n.kropka\n\n".encode()), dump
