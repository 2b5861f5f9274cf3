"""`mailbot run` and the dashboard's port (issue 18): a port another program holds stops
the daemon before anything starts (exit 2, naming host:port and web.port), instead of a
daemon running on without its dashboard, /healthz and /metrics; with web.enabled = false
it says so once, loudly, and runs."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from mailbot.daemon import Daemon
from mailbot.db.models import JobRun, Request
from mailbot.db.session import open_database
from tests.botenv import request_mail
from tests.servers import free_port
from tests.web.webenv import make_site

ROOT = Path(__file__).resolve().parents[1]


def test_mailbot_run_with_its_port_taken_exits_2_at_once_and_starts_nothing(tmp_path):
    # Another program listens on web.port: `mailbot run` exits 2 within seconds, says
    # which address and which key; no mail was read, no job ran, the other program keeps
    # its port.
    site = make_site(tmp_path)
    port = free_port()
    site.config.write_text(site.config.read_text().replace("[web]\n", f"[web]\nport = {port}\n"))
    site.add_mail("north", request_mail("anna@patron.test", "LEGIMI", "Anna Nowak 1000001")[0],
                  site.window() + timedelta(seconds=5))
    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    other.bind(("127.0.0.1", port))
    other.listen()
    try:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "mailbot", "--config", str(site.config),
                               "run"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        took = time.monotonic() - started
        assert proc.returncode == 2, proc.stderr
        assert took < 15
        assert f"127.0.0.1:{port}" in proc.stderr and "web.port" in proc.stderr, proc.stderr
        assert str(site.config) in proc.stderr
        other.settimeout(1)
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            other.accept()[0].close()  # still the other program's
    finally:
        other.close()
    with open_database(site.settings.database_url)() as s:
        assert s.scalar(select(func.count(Request.id))) == 0
        assert s.scalar(select(func.count()).select_from(JobRun)) == 0
    assert len(list((tmp_path / "north" / "new").iterdir())) == 1  # still unread


def test_with_the_dashboard_off_the_daemon_says_so_once_and_runs(tmp_path, caplog):
    # web.enabled = false: one WARNING line at the start says there is no dashboard,
    # /healthz or /metrics; the daemon reads and answers mail all the same.
    site = make_site(tmp_path)
    site.config.write_text(site.config.read_text().replace("[web]\n", "[web]\nenabled = false\n"))
    site.add_mail("north", request_mail("anna@patron.test", "LEGIMI", "Anna Nowak 1000001")[0],
                  site.window() + timedelta(seconds=5))
    settings = site.settings
    caplog.set_level(logging.INFO)
    daemon = Daemon(settings, open_database(settings.database_url))
    daemon.start()
    try:
        deadline = time.monotonic() + 15
        while site.request_of("anna@patron.test") is None or \
                site.request_of("anna@patron.test").outcome is None:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        daemon.stop()
        daemon.join(30)
    assert daemon.web is None
    warned = [r for r in caplog.records if r.levelno == logging.WARNING
              and "web.enabled = false" in r.getMessage()]
    assert len(warned) == 1
    assert "/healthz" in warned[0].getMessage() and "/metrics" in warned[0].getMessage()
    assert site.request_of("anna@patron.test").outcome == "issued"
