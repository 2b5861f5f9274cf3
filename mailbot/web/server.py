"""Serving the dashboard with uvicorn: in a thread beside the daemon's, or in the
foreground for ``mailbot demo`` (Ctrl-C stops it).

``take_port`` takes the daemon's port first, and checks the dashboard's secret key:
``mailbot run`` refuses to start (exit 2, naming the key to change) when the port cannot be
had or the key is bad, before anything else has started (daemon.py), rather than run on
without its dashboard, /healthz and /metrics."""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING

from mailbot.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.orm import Session, sessionmaker
    from starlette.applications import Starlette

    from mailbot.config import Settings

log = logging.getLogger(__name__)
BACKLOG = 2048  # uvicorn's own default


def take_port(settings: Settings) -> socket.socket | None:
    """``mailbot run``'s dashboard port (web.host, web.port), listening; ConfigError (exit
    2) naming the key when the port cannot be had (taken by another program, below 1024
    without root, web.host not this machine's) or when the dashboard's secret key is bad
    (web_secret). None with web.enabled = false, said once, loudly."""
    web = settings.web
    if not web.enabled:
        log.warning("web.enabled = false: no dashboard, no /healthz and no /metrics "
                    "(mailbot status still answers)")
        return None
    web_secret(settings)  # a bad key stops `mailbot run` here, as a taken port does
    try:
        return listen(web.host, web.port)
    except OSError as exc:
        why, column = PORT_ERRORS.get(exc.errno or 0, (
            f"{exc.strerror or exc}; check web.host and web.port", "web.port"))
        raise ConfigError(
            f"mailbot run cannot listen on {web.host}:{web.port} for the dashboard: {why}, "
            "or set web.enabled = false", file=settings.source, column=column) from None


# Why a port cannot be had, in the operator's words, and the key to change.
PORT_ERRORS = {
    errno.EADDRINUSE: ("the port is taken by another program (or another mailbot); free "
                       "it, or set another web.port", "web.port"),
    errno.EACCES: ("a port below 1024 needs root; choose web.port >= 1024 (a proxy in front "
                   "can serve port 80 or 443)", "web.port"),
    errno.EADDRNOTAVAIL: ("web.host is not an address of this machine; set web.host to one "
                          "of its addresses (127.0.0.1 behind a proxy, 0.0.0.0 for all)",
                          "web.host"),
}


def web_secret(settings: Settings) -> str:
    """The key that signs the dashboard's session cookies (web.auth.secret_key: from
    web.secret_key_env, or the key file, made on first start); ConfigError naming the key
    when it is too short, cannot be read or cannot be made."""
    from mailbot.web.auth import secret_key

    return secret_key(settings)


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (port 0: any free one), as uvicorn would bind it;
    OSError when that cannot be (the port is taken, the address is not this machine's)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        # As uvicorn: a port left in TIME_WAIT by our last run is free; a listening one not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def dashboard(settings: Settings, sessions: sessionmaker[Session], sock: socket.socket, *,
              wake_sender: Callable[[], None]) -> WebServer | None:
    """The daemon's dashboard, to serve on ``sock`` (take_port's, which checked its secret
    key: a bad key stopped the daemon there); None if the app cannot be made all the same
    (the reason logged, the port let go): the bot runs on without it."""
    web = settings.web
    try:
        from mailbot.web.app import create_app

        app = create_app(settings, sessions, secret=web_secret(settings),
                         wake_sender=wake_sender)
        return WebServer(app, host=web.host, port=web.port,
                         forwarded_allow_ips=web.forwarded_allow_ips, sock=sock)
    except Exception as exc:
        sock.close()
        log.error("dashboard not started: %s", exc)
        return None


class WebServer:
    """``sock``: a socket from ``listen`` to serve on (else uvicorn binds host:port)."""

    def __init__(self, app: Starlette, *, host: str, port: int,
                 forwarded_allow_ips: str = "127.0.0.1",
                 sock: socket.socket | None = None) -> None:
        import uvicorn  # here: ``listen`` alone is needed before the daemon starts

        config = uvicorn.Config(
            app, host=host, port=port, lifespan="off", log_config=None,
            # The access log would carry search terms (card numbers, addresses): off.
            access_log=False, proxy_headers=True, forwarded_allow_ips=forwarded_allow_ips,
            server_header=False, date_header=False)
        self.server = uvicorn.Server(config)
        self.sock = sock
        self.host, self.port = host, sock.getsockname()[1] if sock is not None else port
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self, timeout: float = 15.0) -> bool:
        """Serves in a thread; returns once listening (False if it could not start)."""
        self.thread = threading.Thread(target=self._run, name="web", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server.started:
                log.info("dashboard on %s", self.url)
                return True
            if not self.thread.is_alive():
                break
            time.sleep(0.05)
        log.error("the dashboard could not start on %s:%s", self.host, self.port)
        return False

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.sock] if self.sock is not None else None)
        except SystemExit:  # uvicorn exits this way when the port is taken
            log.error("dashboard: cannot listen on %s:%s", self.host, self.port)
        except Exception:
            log.exception("dashboard crashed")

    def serve_forever(self) -> None:
        """In the foreground until Ctrl-C or SIGTERM; then returns normally."""
        try:
            self.server.run(sockets=[self.sock] if self.sock is not None else None)
        except KeyboardInterrupt:
            # uvicorn shuts down gracefully, then re-raises the signal it caught.
            pass

    def stop(self) -> None:
        self.server.should_exit = True

    def close(self) -> None:
        """Lets go of the socket given, for a server that never started."""
        if self.sock is not None:
            self.sock.close()

    def join(self, timeout: float = 10.0) -> None:
        if self.thread is not None:
            self.thread.join(timeout)
