"""The dashboard is served by `mailbot run` (the daemon) and by `mailbot demo`; the monthly
report comes out of `mailbot report` too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import openpyxl

from mailbot.daemon import Daemon
from mailbot.db.session import open_database
from tests.botenv import request_mail
from tests.servers import free_port
from tests.web.webenv import make_site, seed_requests

ROOT = Path(__file__).resolve().parents[2]


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read().decode()


def test_the_daemon_serves_the_dashboard_and_stops_with_it(tmp_path):
    # `mailbot run` starts the dashboard on [web] host/port with a key file made on first
    # start (mode 0600), and stops it on shutdown.
    site = make_site(tmp_path)
    port = free_port()
    text = site.config.read_text().replace("[web]\n", f"[web]\nport = {port}\n")
    site.config.write_text(text)
    settings = site.settings
    daemon = Daemon(settings, open_database(settings.database_url))
    daemon.start()
    try:
        status, body = _get(f"http://127.0.0.1:{port}/login")
        assert status == 200 and "Logowanie" in body
        key = tmp_path / "web.key"
        assert key.exists() and (key.stat().st_mode & 0o777) == 0o600
    finally:
        daemon.stop()
        daemon.join(30)
    try:
        _get(f"http://127.0.0.1:{port}/login")
        raise AssertionError("the dashboard still answers after the daemon stopped")
    except OSError:
        pass


def test_the_demo_serves_the_dashboard_with_a_printed_login(tmp_path):
    # `mailbot demo` prints a login, serves on 127.0.0.1 until Ctrl-C, and that login works.
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mailbot", "demo", "--dir",
                             str(tmp_path / "demo"), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "dashboard:" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, proc.stderr.read()
        assert f"http://127.0.0.1:{port}/" in line
        password = line.split("password:")[1].strip()
        from tests.web.webenv import csrf_of
        import http.cookiejar

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        deadline = time.monotonic() + 30
        while True:
            try:
                page = opener.open(f"http://127.0.0.1:{port}/login", timeout=5).read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        data = urllib.parse.urlencode({"csrf": csrf_of(page), "name": "demo",
                                       "password": password, "next": "/requests"}).encode()
        listing = opener.open(f"http://127.0.0.1:{port}/login", data=data, timeout=10)
        body = listing.read().decode()
        assert listing.geturl().endswith("/requests")
        assert "anna.kowalska@example.org" in body and "wydano kod" in body
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0


def test_mailbot_report_writes_the_monthly_xlsx(tmp_path, capsys):
    # Per library, branch and service: issued, refusals by reason, activated, expired and
    # the median reply time; an unknown month format is bad input (exit 2).
    site = make_site(tmp_path)
    seed_requests(site)
    raw, _ = request_mail("jan@patron.test", "LEGIMI", "Jan Zły 1000002")
    site.add_mail("north", raw, site.window() + timedelta(seconds=50))
    assert site.run_once() == 0
    out = tmp_path / "raport.xlsx"
    assert site.cli("report", "--month", site.month, "-o", str(out), "--lang", "en") == 0
    ws = openpyxl.load_workbook(out)[site.month]
    header = [c.value for c in ws[3]]
    rows = [dict(zip(header, (c.value for c in r), strict=True)) for r in ws.iter_rows(min_row=4)]
    north = next(r for r in rows if r["Library"] == "north"
                 and r["Branch (mailbox)"] == "ebooki@north.test" and r["Service"] == "Legimi")
    assert north["Requests"] == 3 and north["Codes issued"] == 1
    assert north["unknown card"] == 1 and north["name does not match"] == 1
    assert north["Refusals total"] == 2
    assert north["Median reply time [s]"] is not None
    total = next(r for r in rows if r["Library"] == "north" and r["Branch (mailbox)"] == "TOTAL"
                 and r["Service"] == "Legimi")
    assert (total["Bought"], total["Left"], total["Expired (never issued)"]) == (3, 2, 0)
    south = next(r for r in rows if r["Library"] == "south" and r["Service"] == "Legimi"
                 and r["Branch (mailbox)"] == "ebooki@south.test")
    assert south["Codes issued"] == 1
    assert site.cli("report", "--month", "2026/11", "-o", str(out)) == 2
    assert "YYYY-MM" in capsys.readouterr().err


def test_a_stop_during_start_up_never_leaves_the_dashboard_running(tmp_path, monkeypatch):
    # SIGTERM can come while the daemon is still starting (a burst may be answered before
    # the dashboard is up): the dashboard must then not start, and join must return.
    import mailbot.web.app as web_app

    site = make_site(tmp_path)
    port = free_port()
    site.config.write_text(site.config.read_text().replace("[web]\n", f"[web]\nport = {port}\n"))
    settings = site.settings
    daemon = Daemon(settings, open_database(settings.database_url))
    real = web_app.create_app

    def signal_arrives_now(*args, **kwargs):
        daemon.stop()  # what the SIGTERM handler does, half-way through start()
        return real(*args, **kwargs)

    monkeypatch.setattr(web_app, "create_app", signal_arrives_now)
    daemon.start()
    started = time.monotonic()
    daemon.join(30)
    assert time.monotonic() - started < 10
    assert daemon.web is None
    assert not [t.name for t in daemon.threads if t.is_alive()]
    try:
        _get(f"http://127.0.0.1:{port}/login")
        raise AssertionError("the dashboard answers although the daemon was stopped")
    except OSError:
        pass
