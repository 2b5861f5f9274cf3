"""`mailbot run` and the dashboard's port (issue 18): a port another program holds, an
address not this machine's or a bad secret key stops the daemon before anything starts
(exit 2, naming the key to change), instead of a daemon running on without its dashboard,
/healthz and /metrics; with web.enabled = false it says so once, loudly, and runs. The
real daemon serves /healthz, /livez and /metrics on its port."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
import urllib.error
from datetime import timedelta
from pathlib import Path

import json
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from mailbot.daemon import Daemon
from mailbot.db.models import JobRun, Request
from mailbot.db.session import open_database
from mailbot.errors import ConfigError
from mailbot.web.server import take_port
from tests.botenv import request_mail
from tests.chaos import DaemonProcess
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
        assert "taken by another program" in proc.stderr, proc.stderr
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


def _web(site, lines: str) -> None:
    site.config.write_text(site.config.read_text().replace("[web]\n", f"[web]\n{lines}\n"))


def test_a_short_secret_key_in_the_environment_stops_mailbot_run(tmp_path, monkeypatch):
    # web.secret_key_env names a variable holding 20 characters: exit 2 at once naming the
    # variable and the key, never its value; nothing read.
    monkeypatch.setenv("TEST_SHORT_KEY", "short-key-20-chars!!")
    site = make_site(tmp_path)
    text = site.config.read_text().replace(f'secret_key_file = "{tmp_path}/web.key"\n', "")
    site.config.write_text(text.replace("[web]\n", f"[web]\nport = {free_port()}\n"
                                                   'secret_key_env = "TEST_SHORT_KEY"\n'))
    site.add_mail("north", request_mail("anna@patron.test", "LEGIMI", "Anna Nowak 1000001")[0],
                  site.window() + timedelta(seconds=5))
    proc = subprocess.run([sys.executable, "-m", "mailbot", "--config", str(site.config),
                           "run"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "TEST_SHORT_KEY" in proc.stderr and "web.secret_key_env" in proc.stderr
    assert "32 characters" in proc.stderr and "short-key-20-chars!!" not in proc.stderr
    assert len(list((tmp_path / "north" / "new").iterdir())) == 1  # still unread


@pytest.mark.parametrize("bad", ["short", "folder"])
def test_a_bad_secret_key_file_stops_the_daemon_before_anything_starts(tmp_path, bad):
    # The key file is too short, or cannot be read (a folder where the file should be):
    # ConfigError naming the file and web.secret_key_file, no thread started, the port
    # not taken.
    site = make_site(tmp_path)
    port = free_port()
    _web(site, f"port = {port}")
    key = tmp_path / "web.key"
    if bad == "short":
        key.write_text("only-16-chars-xx\n")
    else:
        key.mkdir()
    settings = site.settings
    daemon = Daemon(settings, open_database(settings.database_url))
    with pytest.raises(ConfigError) as raised:
        daemon.start()
    assert raised.value.column == "web.secret_key_file" and str(key) in str(raised.value)
    assert ("too short" if bad == "short" else "cannot be read") in str(raised.value)
    assert daemon.threads == [] and daemon.web is None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # free: nothing listens on it


def test_a_web_host_not_of_this_machine_names_web_host(tmp_path):
    # 192.0.2.1 (TEST-NET-1) is nobody's address here: the message says so and names
    # web.host, not the port.
    site = make_site(tmp_path)
    _web(site, f'host = "192.0.2.1"\nport = {free_port()}')
    with pytest.raises(ConfigError) as raised:
        take_port(site.settings)
    assert raised.value.column == "web.host"
    assert "web.host is not an address of this machine" in str(raised.value)
    assert "192.0.2.1" in str(raised.value)


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def test_the_running_daemon_serves_healthz_livez_and_metrics_on_its_port(tmp_path):
    # `mailbot run` as a real process: once it has answered a patron, its web.port answers
    # /healthz 200 ok, /livez 200, and /metrics with the request it decided; SIGTERM
    # stops it with exit 0.
    site = make_site(tmp_path)
    port = free_port()
    _web(site, f"port = {port}")
    site.add_mail("north", request_mail("anna@patron.test", "LEGIMI", "Anna Nowak 1000001")[0],
                  site.window() + timedelta(seconds=5))
    daemon = DaemonProcess(site.config, tmp_path)
    daemon.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert daemon.alive, daemon.log_text()
            assert time.monotonic() < deadline, daemon.log_text()
            try:
                status, kind, body = _get(f"{base}/metrics")
            except OSError:  # not listening yet
                time.sleep(0.1)
                continue
            samples = {(s.name, frozenset(s.labels.items())): s.value
                       for f in text_string_to_metric_families(body) for s in f.samples}
            issued = ("mailbot_requests", frozenset({("library", "north"),
                                                     ("outcome", "issued")}))
            if samples.get(issued) == 1 and samples.get(
                    ("mailbot_outbox_pending", frozenset({("library", "north")}))) == 0:
                break
            time.sleep(0.1)
        assert status == 200 and kind.startswith("text/plain; version=0.0.4")
        assert samples[("mailbot_up", frozenset())] == 1
        status, kind, body = _get(f"{base}/healthz")
        assert status == 200 and kind == "application/json", body
        assert json.loads(body)["ok"] is True
        status, _, body = _get(f"{base}/livez")
        assert status == 200 and json.loads(body) == {**json.loads(body), "ok": True,
                                                      "database": True}
        assert daemon.terminate() == 0
    finally:
        daemon.stop_quietly()
