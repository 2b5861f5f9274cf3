"""A real SIP2 server for the tests, on 127.0.0.1:<free port>, optionally over TLS.

Requests are decoded by the ``pysip2`` package's codec, not by mailbot's: a frame our client
gets wrong (layout, sequence number, checksum) fails here independently. Responses are written
by hand because they carry extension fields (``PA`` expiry, ``PB`` birth date) that pysip2's
models do not know; their checksums come from pysip2 too.

``mode`` makes the server misbehave, for the failure tests:

==================  ==========================================================================
``normal``          answers 93/94 login (password checked), 99/98 status, 63/64 patron info
``hang``            reads the request and never answers
``drop``            closes the connection after reading a request
``drop_once``       drops the next request only, then behaves normally again
``refuse_login``    answers every login with 940
``garbage``         answers with something that is not SIP2
``bad_checksum``    answers correctly but with a wrong checksum
``resend_once``     answers the next request with 96 (please resend), then behaves normally
==================  ==========================================================================

``make_test_pki(directory)`` (from ``tests/pki.py``, re-exported here) makes a throw-away CA
and a server certificate for 127.0.0.1 and localhost with the ``openssl`` command.
"""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from pysip2 import (
    LoginRequest,
    PatronInformationRequest,
    SCStatusRequest,
    SIP2ChecksumError,
    SIP2Error,
    calculate_checksum,
    decode_message,
)

from tests.pki import Pki, make_test_pki

__all__ = ["MODES", "Patron", "Pki", "Sip2TestServer", "make_test_pki"]

T = TypeVar("T")

MODES = ("normal", "hang", "drop", "drop_once", "refuse_login", "garbage", "bad_checksum",
         "resend_once")


@dataclass
class Patron:
    card: str
    name: str  # AE, as the library system writes it
    email: str | None = None
    fee: str = "0.00"  # BV, as written on the wire
    overdue: int = 0
    status: str = " " * 14  # patron status, 'Y' = denied/true
    expires: str | None = None  # PA
    birth_date: str | None = None  # PB
    extra: dict[str, str] = field(default_factory=dict)  # any other fields, e.g. {"PX": ...}


def _now18() -> str:
    return datetime.now().strftime("%Y%m%d    %H%M%S")


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.authenticated = False


class Sip2TestServer:
    """A threaded SIP2 server; ``with Sip2TestServer(patrons) as server: server.port``."""

    def __init__(
        self,
        patrons: list[Patron] | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        institution_id: str = "",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.patrons = {p.card: p for p in patrons or []}
        self.username = username
        self.password = password
        self.institution_id = institution_id
        self.tls = tls
        self.mode = "normal"
        self.port = 0
        self.connections = 0  # accepted (and, with TLS, handshaken) connections
        self.logins: list[tuple[str, str, str | None]] = []  # (user, password, location)
        self.requests: list[object] = []  # every decoded request, pysip2 models
        self.checksummed: list[bool] = []  # whether each request carried AY/AZ
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None

    # Life cycle ---------------------------------------------------------------------------

    def start(self) -> Sip2TestServer:
        """Listen (again) on 127.0.0.1; the first start picks a free port, restarts keep it."""
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                owner._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._stopping.clear()
        self._server = Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close every open connection (a hung answer ends too)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            for sock in list(self._open):
                try:
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass
            self._open.clear()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Sip2TestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def requests_of(self, kind: type[T]) -> list[T]:
        return [r for r in self.requests if isinstance(r, kind)]

    # One connection ---------------------------------------------------------------------

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        sock = raw
        with self._lock:
            self._open.add(raw)
        try:
            if self.tls is not None:
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # e.g. the client did not trust our certificate
                with self._lock:
                    self._open.add(sock)
            with self._lock:
                self.connections += 1
            self._loop(_Connection(sock))
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(sock)
                self._open.discard(raw)
            try:
                sock.close()
            except OSError:
                pass

    def _loop(self, conn: _Connection) -> None:
        buffer = b""
        while not self._stopping.is_set():
            data = conn.sock.recv(4096)
            if not data:
                return
            buffer += data
            while b"\r" in buffer:
                frame, _, buffer = buffer.partition(b"\r")
                if not self._answer(conn, frame.lstrip(b"\n") + b"\r"):
                    return

    def _answer(self, conn: _Connection, frame: bytes) -> bool:
        """Answer one frame; False closes the connection."""
        mode = self.mode
        try:
            decoded = decode_message(frame, encoding="utf-8")
        except SIP2ChecksumError:
            conn.sock.sendall(self._frame("96", None))
            return True
        except SIP2Error:
            return False  # a frame pysip2 rejects: our client is wrong, hang up loudly
        with self._lock:
            self.requests.append(decoded.message)
            self.checksummed.append(decoded.checksum is not None)

        if mode == "hang":
            self._stopping.wait(30)
            return False
        if mode in ("drop", "drop_once"):
            if mode == "drop_once":
                self.mode = "normal"
            return False
        if mode == "resend_once":
            self.mode = "normal"
            conn.sock.sendall(self._frame("96", None))
            return True
        if mode == "garbage":
            conn.sock.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            return True

        message, seq = decoded.message, decoded.sequence_number
        if isinstance(message, LoginRequest):
            with self._lock:
                self.logins.append(
                    (message.login_user_id, message.login_password, message.location_code)
                )
            ok = (
                mode != "refuse_login"
                and message.login_user_id == self.username
                and message.login_password == self.password
            )
            conn.authenticated = ok
            body = "941" if ok else "940"
        elif isinstance(message, SCStatusRequest):
            body = (f"98YYYNYN030003{_now18()}2.00AO{self.institution_id}|"
                    "BXNYYNYYYYYNNNNNNN|")
        elif isinstance(message, PatronInformationRequest):
            if self.username is not None and not conn.authenticated:
                return False  # like Koha: no patron data before a successful login
            body = self._patron_information(message)
        else:
            return True  # not needed by mailbot: ignored, as the spec says for unknown ones
        conn.sock.sendall(self._frame(body, seq if decoded.checksum else None,
                                      corrupt=mode == "bad_checksum"))
        return True

    def _patron_information(self, request: PatronInformationRequest) -> str:
        patron = self.patrons.get(request.patron_identifier)
        fixed = "64{status}000{date}0000{overdue:04d}0000000000000000"
        if patron is None:
            return (fixed.format(status=" " * 14, date=_now18(), overdue=0)
                    + f"AO{request.institution_id}|AA{request.patron_identifier}|AE|BLN|"
                    "AFPatron not found|")
        body = fixed.format(status=patron.status, date=_now18(), overdue=patron.overdue)
        body += (f"AO{request.institution_id}|AA{patron.card}|AE{patron.name}|"
                 "BZ0010|CA0005|CB0020|BLY|CQN|BHPLN|" f"BV{patron.fee}|")
        fields = {"BE": patron.email, "PA": patron.expires, "PB": patron.birth_date,
                  **patron.extra}
        for field_id, value in fields.items():
            if value is not None:
                body += f"{field_id}{value}|"
        return body

    @staticmethod
    def _frame(body: str, seq: int | None, *, corrupt: bool = False) -> bytes:
        data = body.encode("utf-8")
        if body == "96":
            data += b"AZ"
        elif seq is not None:
            data += b"AY%dAZ" % seq
        else:
            return data + b"\r"
        check = calculate_checksum(data)
        if corrupt:
            check = f"{(int(check, 16) + 1) & 0xFFFF:04X}"
        return data + check.encode("ascii") + b"\r"
