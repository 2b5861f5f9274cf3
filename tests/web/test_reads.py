"""Pages and reports that only read neither wait for the bot's writes nor hold them up
(SQLite): during the midnight burst intake and deciding hold the one write lock in turn,
and a librarian watching the dashboard must not slow them or be stalled by them."""

from __future__ import annotations

import sqlite3

from sqlalchemy import select

import mailbot.db.session as db_session
from mailbot.db.models import Code
from tests.web.webenv import csrf_of, login, make_site, seed_requests


def test_dashboard_pages_status_and_the_report_read_while_the_bot_holds_the_write_lock(
        tmp_path, monkeypatch, capsys):
    site = make_site(tmp_path)
    seed_requests(site)
    assert site.add_user("boss", admin=True) == 0
    issued = site.request_of("anna@patron.test")
    with site.sessions() as s:
        code_id = s.scalar(select(Code.id).where(Code.request_id == issued.id))
    # A page that waited for the lock would fail after this instead of 30 s.
    monkeypatch.setattr(db_session, "SQLITE_TIMEOUT", 0.3)
    c = site.client()
    assert login(c, "boss").status_code == 200  # a login writes: before the lock is taken
    # A slip opens only after its (audited) reprint, which writes: before the lock too.
    r = c.post("/desk", data={"csrf": csrf_of(c.get("/desk").text), "library": "north",
                              "card": "1000001", "service": "legimi", "action": "reprint",
                              "code_id": str(code_id)}, follow_redirects=False)
    assert r.status_code == 303
    bot = sqlite3.connect(tmp_path / "mailbot.db", isolation_level=None)
    bot.execute("BEGIN IMMEDIATE")  # the bot in the middle of writing a batch
    try:
        for url in ("/queue", "/queue/live", "/requests", f"/requests/{issued.id}", "/pools",
                    "/audit", "/reports", "/reports/download", f"/desk/slip/{code_id}",
                    "/imports"):
            r = c.get(url)
            assert r.status_code == 200, (url, r.status_code, r.text[-300:])
        capsys.readouterr()
        assert site.cli("status") == 0
        assert "library north" in capsys.readouterr().out
        assert site.cli("user", "list") == 0
    finally:
        bot.execute("ROLLBACK")
        bot.close()
