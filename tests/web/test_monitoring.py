"""GET /healthz and GET /metrics, scraped from the dashboard served by a real uvicorn (as
`mailbot run` and `mailbot demo` serve it), over a real SQLite database fed through real
Maildirs (issue 18): no login and no cookie, 200 or 503 as `mailbot status` exits 0 or 1,
the metrics read from the database at each scrape, nothing written, no write lock."""

from __future__ import annotations

import http.cookiejar
import json
import shutil
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import sessionmaker

from mailbot.clock import utcnow
from mailbot.db import session as db_session
from mailbot.db.session import make_engine, open_database
from mailbot.web.app import SESSION_COOKIE, create_app
from mailbot.web.server import WebServer
from tests.servers import free_port
from tests.web.webenv import PASSWORD, csrf_of, make_site, seed_requests


@contextmanager
def served(settings: Any, sessions: Any) -> Iterator[str]:
    """The dashboard app on a real uvicorn on 127.0.0.1; yields its base URL."""
    server = WebServer(create_app(settings, sessions, secret="s" * 32), host="127.0.0.1",
                       port=free_port())
    assert server.start()
    try:
        yield server.url.rstrip("/")
    finally:
        server.stop()
        server.join()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect comes back as the answer (an HTTPError with its 30x status)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def not_following(*handlers: Any) -> Any:
    """An opener that does not follow redirects: a 302 to /login is seen as a 302."""
    return urllib.request.build_opener(_NoRedirect, *handlers)


def get(url: str, opener: Any = None) -> tuple[int, dict[str, str], str]:
    """Status, headers (names in lower case) and body of a GET."""
    try:
        with (opener or not_following()).open(url, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()


def scrape(base: str) -> dict[tuple[str, frozenset], float]:
    status, headers, body = get(f"{base}/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "set-cookie" not in headers
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_a_healthy_site_answers_200_and_its_metrics_say_what_happened(tmp_path):
    # North: a code issued, an unknown card; south: a code issued. /healthz 200 ok, no
    # login asked, no cookie set; /metrics counts the outcomes, the pools, the queues, each
    # mailbox's last poll and the relays' health, and the send latency of the last hour.
    site = make_site(tmp_path)
    seed_requests(site)
    settings = site.settings
    month = site.month
    with served(settings, open_database(settings.database_url)) as base:
        status, headers, body = get(f"{base}/healthz")
        assert status == 200 and headers["content-type"] == "application/json"
        data = json.loads(body)
        assert data["ok"] is True and data["database"] is True and data["attention"] == []
        assert "set-cookie" not in headers
        m = scrape(base)
        types = {f.name: f.type for f in text_string_to_metric_families(
            get(f"{base}/metrics")[2])}
    assert value(m, "mailbot_up") == 1 and value(m, "mailbot_attention") == 0
    assert value(m, "mailbot_requests", library="north", outcome="issued") == 1
    assert value(m, "mailbot_requests", library="north", outcome="unknown_card") == 1
    assert value(m, "mailbot_requests", library="south", outcome="issued") == 1
    assert types["mailbot_requests"] == "gauge"  # an override moves a request: it can go down
    assert value(m, "mailbot_codes_left", library="north", service="legimi", month=month) == 2
    assert value(m, "mailbot_codes_imported", library="north", service="legimi",
                 month=month) == 3
    assert value(m, "mailbot_codes_left", library="south", service="empik_go",
                 month=month) == 0
    for lib in ("north", "south"):
        assert value(m, "mailbot_queue_waiting", library=lib) == 0
        assert value(m, "mailbot_outbox_pending", library=lib) == 0
        assert value(m, "mailbot_outbox_failed", library=lib) == 0
        assert value(m, "mailbot_reminders_failed", library=lib) == 0
        assert value(m, "mailbot_set_aside", library=lib) == 0
        assert value(m, "mailbot_reader_source_up", library=lib) == 1
    north = next(mb.key for mb in settings.mailboxes if mb.library == "north")
    assert value(m, "mailbot_mailbox_up", library="north", mailbox=north) == 1
    polled = value(m, "mailbot_mailbox_last_poll_timestamp_seconds", library="north",
                   mailbox=north)
    assert 0 <= utcnow().timestamp() - polled < 120
    relay = settings.smtp.key
    assert value(m, "mailbot_relay_up", relay=relay) == 1
    assert value(m, "mailbot_relay_pending", relay=relay) == 0
    assert value(m, "mailbot_replies_sent_last_hour", library="north") == 2
    assert value(m, "mailbot_replies_sent_last_hour", library="south") == 1
    fast, slowest = (value(m, "mailbot_send_latency_seconds", library="north", quantile=q)
                     for q in ("0.5", "1"))
    assert 0 <= fast <= slowest < 60
    assert value(m, "mailbot_info", version=__import__("mailbot").__version__) == 1
    # Low-cardinality labels only: no patron's address or card, no code.
    text = repr(sorted(m))
    assert "@patron.test" not in text and "1000001" not in text and "CODE" not in text


def test_a_broken_mailbox_makes_healthz_503_and_metrics_count_it(tmp_path):
    # North's Maildir is a file now (a disk mounted wrong): after a run, /healthz answers 503 with
    # the mailbox in its attention list, as `mailbot status` lists it; /metrics has
    # mailbot_attention 1 and that mailbox down; the numbers change at the next scrape,
    # with no restart (read at each scrape).
    site = make_site(tmp_path)
    seed_requests(site)
    settings = site.settings
    with served(settings, open_database(settings.database_url)) as base:
        assert get(f"{base}/healthz")[0] == 200
        assert value(scrape(base), "mailbot_attention") == 0
        shutil.rmtree(tmp_path / "north")
        (tmp_path / "north").write_text("not a Maildir")
        site.run_once()
        status, _, body = get(f"{base}/healthz")
        m = scrape(base)
        live, headers, live_body = get(f"{base}/livez")  # for a load balancer: still up
    assert live == 200 and headers["content-type"] == "application/json"
    assert json.loads(live_body)["ok"] is True and json.loads(live_body)["database"] is True
    data = json.loads(body)
    north = next(mb.key for mb in settings.mailboxes if mb.library == "north")
    assert status == 503 and data["ok"] is False
    assert [(p["what"], p["key"], p["library"]) for p in data["attention"]] == [
        ("mailbox", north, "north")]
    assert value(m, "mailbot_attention") == 1
    assert value(m, "mailbot_mailbox_up", library="north", mailbox=north) == 0
    south = next(mb.key for mb in settings.mailboxes if mb.library == "south")
    assert value(m, "mailbot_mailbox_up", library="south", mailbox=south) == 1
    assert site.cli("status") == 1


def test_a_mailbox_never_read_is_not_up(tmp_path):
    # Just configured, before the first run: no mailbox has worked yet, so none is up and
    # none has a last-poll time; after the run both are up.
    site = make_site(tmp_path)
    settings = site.settings
    keys = {mb.library: mb.key for mb in settings.mailboxes}
    with served(settings, open_database(settings.database_url)) as base:
        before = scrape(base)
        site.run_once()
        after = scrape(base)
    for lib, key in keys.items():
        assert value(before, "mailbot_mailbox_up", library=lib, mailbox=key) == 0
        assert ("mailbot_mailbox_last_poll_timestamp_seconds",
                frozenset({"library": lib, "mailbox": key}.items())) not in before
        assert value(after, "mailbot_mailbox_up", library=lib, mailbox=key) == 1


def test_a_database_that_cannot_be_read_is_503_and_mailbot_up_0(tmp_path):
    # The database cannot be opened: /healthz 503 saying so (not why: that is logged),
    # /metrics mailbot_up 0 and nothing else.
    site = make_site(tmp_path)
    gone = make_engine(f"sqlite:///{tmp_path}/no-such-folder/mailbot.db")
    with served(site.settings, sessionmaker(gone)) as base:
        status, _, body = get(f"{base}/healthz")
        m = scrape(base)
        live, _, live_body = get(f"{base}/livez")
    data = json.loads(body)
    assert status == 503 and data["ok"] is False and data["database"] is False
    assert live == 503 and json.loads(live_body)["database"] is False
    assert "no-such-folder" not in live_body
    assert [p["what"] for p in data["attention"]] == ["database"]
    assert "no-such-folder" not in body
    assert m == {("mailbot_up", frozenset()): 0}


def test_monitoring_needs_no_login_sets_no_cookie_and_takes_no_write_lock(
        tmp_path, monkeypatch):
    # A logged-in browser's session cookie is neither read nor renewed on /healthz and
    # /metrics (a scraper has none: it is not sent to the login page); while the bot holds
    # SQLite's write lock both answer at once, so neither writes.
    site = make_site(tmp_path)
    seed_requests(site)
    assert site.add_user("boss", "north") == 0
    settings = site.settings
    with served(settings, open_database(settings.database_url)) as base:
        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = get(f"{base}/login", browser)[2]
        data = urllib.parse.urlencode({"csrf": csrf_of(page), "name": "boss",
                                       "password": PASSWORD, "next": "/queue"}).encode()
        assert browser.open(f"{base}/login", data=data, timeout=10).geturl().endswith("/queue")
        assert SESSION_COOKIE in {c.name for c in jar}
        # (The opener of get() follows no redirect: a page that needs a login is a 302.)
        assert get(f"{base}/queue")[0] in (302, 303)
        kinds = {"/healthz": "application/json", "/livez": "application/json",
                 "/metrics": "text/plain; version=0.0.4"}
        for path, kind in kinds.items():
            status, headers, _ = get(f"{base}{path}",
                                     not_following(urllib.request.HTTPCookieProcessor(jar)))
            assert status == 200 and "set-cookie" not in headers, path
            status, headers, _ = get(f"{base}{path}")  # no cookie: no redirect to /login
            assert status == 200 and headers["content-type"].startswith(kind), path

        monkeypatch.setattr(db_session, "SQLITE_TIMEOUT", 0.3)
        bot = sqlite3.connect(tmp_path / "mailbot.db", isolation_level=None)
        bot.execute("BEGIN IMMEDIATE")  # the bot in the middle of writing a batch
        try:
            started = time.monotonic()
            assert get(f"{base}/healthz")[0] == 200
            assert value(scrape(base), "mailbot_up") == 1
            assert time.monotonic() - started < 5
        finally:
            bot.execute("ROLLBACK")
            bot.close()


def test_an_outcome_staff_change_moves_mailbot_requests_down(tmp_path):
    # Staff issue a code anyway for the unknown card: the request's outcome is issued now,
    # so unknown_card goes from 1 to 0 (absent) and issued from 1 to 2: a gauge.
    site = make_site(tmp_path)
    seed_requests(site)
    assert site.add_user("north-staff", "north") == 0
    refused = site.request_of("obcy@patron.test")
    c = site.client()
    c.post("/login", data={"csrf": csrf_of(c.get("/login").text), "name": "north-staff",
                           "password": PASSWORD, "next": "/queue"})
    token = csrf_of(c.get(f"/requests/{refused.id}").text)
    r = c.post(f"/requests/{refused.id}/override", follow_redirects=True, data={
        "csrf": token, "service": "legimi", "card": "1000002",
        "reason": "numer karty sprawdzony telefonicznie"})
    assert r.status_code == 200 and site.request_of("obcy@patron.test").outcome == "issued"
    settings = site.settings
    with served(settings, open_database(settings.database_url)) as base:
        m = scrape(base)
    assert value(m, "mailbot_requests", library="north", outcome="issued") == 2
    assert ("mailbot_requests", frozenset({("library", "north"),
                                           ("outcome", "unknown_card")})) not in m
