"""Serving the dashboard with uvicorn: in a thread beside the daemon's, or in the
foreground for ``mailbot demo`` (Ctrl-C stops it)."""

from __future__ import annotations

import logging
import threading
import time

import uvicorn
from starlette.applications import Starlette

log = logging.getLogger(__name__)


class WebServer:
    def __init__(self, app: Starlette, *, host: str, port: int,
                 forwarded_allow_ips: str = "127.0.0.1") -> None:
        config = uvicorn.Config(
            app, host=host, port=port, lifespan="off", log_config=None,
            # The access log would carry search terms (card numbers, addresses): off.
            access_log=False, proxy_headers=True, forwarded_allow_ips=forwarded_allow_ips,
            server_header=False, date_header=False)
        self.server = uvicorn.Server(config)
        self.host, self.port = host, port
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
            self.server.run()
        except SystemExit:  # uvicorn exits this way when the port is taken
            log.error("dashboard: cannot listen on %s:%s", self.host, self.port)
        except Exception:
            log.exception("dashboard crashed")

    def serve_forever(self) -> None:
        """In the foreground until Ctrl-C or SIGTERM; then returns normally."""
        try:
            self.server.run()
        except KeyboardInterrupt:
            # uvicorn shuts down gracefully, then re-raises the signal it caught.
            pass

    def stop(self) -> None:
        self.server.should_exit = True

    def join(self, timeout: float = 10.0) -> None:
        if self.thread is not None:
            self.thread.join(timeout)
