"""The dashboard's access control: scopes, CSRF, safe mail rendering, lock-out, password
storage — against the real app (Starlette's TestClient) and a real SQLite database."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailbot.clock import utcnow
from mailbot.db.models import AuditLog, Code, LedgerEntry, LoginAttempt, Outbox, StaffUser
from tests.botenv import request_mail
from tests.web.webenv import PASSWORD, csrf_of, login, make_site, seed_requests


@pytest.fixture
def site(tmp_path):
    site = make_site(tmp_path)
    seed_requests(site)
    assert site.add_user("north-staff", "north") == 0
    assert site.add_user("south-staff", "south") == 0
    assert site.add_user("boss", admin=True) == 0
    return site


def _counts(site):
    with site.sessions() as s:
        return (s.scalar(select(func.count(AuditLog.id))),
                s.scalar(select(func.count(Outbox.id))),
                s.scalar(select(func.count(LedgerEntry.id))),
                s.scalar(select(func.count(Code.id))))


def test_another_librarys_staff_cannot_see_or_act_outside_their_scope(site):
    # South's staff get 404 for North's requests, codes, readers and pools, by direct URL
    # and by forms carrying a valid CSRF token; nothing changes in the database.
    north = site.request_of("obcy@patron.test")
    issued = site.request_of("anna@patron.test")
    with site.sessions() as s:
        north_code = s.scalar(select(Code.id).where(Code.request_id == issued.id))
        north_reply = s.scalar(select(Outbox.id).where(Outbox.request_id == issued.id))
    c = site.client()
    assert login(c, "south-staff").status_code == 200
    token = csrf_of(c.get("/queue").text)
    before = _counts(site)
    for url in (f"/requests/{north.id}", f"/requests/{north.id}/mail.html",
                f"/requests/{issued.id}", f"/desk/slip/{north_code}", "/requests?library=north",
                "/pools?library=north", "/queue/live?library=north", "/audit?library=north",
                "/reports?library=north", "/reports/download?library=north"):
        r = c.get(url)
        assert r.status_code == 404, url
        assert "NORTH-CODE" not in r.text and "anna@patron.test" not in r.text
    forms = [
        (f"/requests/{north.id}/override", {"service": "legimi", "card": "1000002",
                                            "reason": "walk-in"}),
        (f"/requests/{north.id}/handled", {"note": "x"}),
        (f"/requests/{issued.id}/resend", {"outbox_id": str(north_reply)}),
        ("/desk", {"library": "north", "card": "1000002", "name": "Jan Kowal",
                   "service": "legimi", "action": "issue"}),
        ("/desk", {"library": "north", "card": "1000002", "name": "", "service": "legimi",
                   "action": "check"}),
    ]
    for url, data in forms:
        r = c.post(url, data={"csrf": token, **data})
        assert r.status_code == 404, url
        assert "Kowal" not in r.text
    r = c.post("/imports", data={"csrf": token, "kind": "codes", "library": "north",
                                 "service": "legimi", "month": site.month},
               files={"file": ("more.csv", b"kod\nSNEAKY-1\n", "text/csv")})
    assert r.status_code == 404
    assert _counts(site) == before
    # Their own library's lists show nothing of North's.
    listing = c.get("/requests").text
    assert "olga@patron.test" in listing
    assert "anna@patron.test" not in listing and "obcy@patron.test" not in listing
    queue = c.get("/queue").text
    assert "Biblioteka Południowa" in queue and "Biblioteka Północna" not in queue
    assert "NORTH" not in c.get("/pools").text.upper().replace("NORTH-STAFF", "")
    # An admin sees both.
    admin = site.client()
    login(admin, "boss")
    assert admin.get(f"/requests/{north.id}").status_code == 200
    assert "Biblioteka Północna" in admin.get("/queue").text


def test_no_action_without_a_valid_csrf_token(site):
    # Every POST without the session's token is refused with 403 and changes nothing,
    # including login and logout.
    c = site.client()
    assert c.post("/login", data={"name": "north-staff", "password": PASSWORD}
                  ).status_code == 403
    login(c, "north-staff")
    req = site.request_of("obcy@patron.test")
    before = _counts(site)
    for token in (None, "", "forged-token"):
        data = {"service": "legimi", "card": "1000002", "reason": "because"}
        if token is not None:
            data["csrf"] = token
        assert c.post(f"/requests/{req.id}/override", data=data).status_code == 403
        assert c.post(f"/requests/{req.id}/handled", data={"csrf": token or ""}
                      ).status_code == 403
        assert c.post("/desk", data={"library": "north", "card": "1000002", "name": "",
                                     "service": "legimi", "action": "issue",
                                     **({"csrf": token} if token else {})}).status_code == 403
    # A token from another session does not work either.
    other = site.client()
    login(other, "north-staff")
    foreign = csrf_of(other.get("/queue").text)
    assert c.post(f"/requests/{req.id}/handled", data={"csrf": foreign}).status_code == 403
    assert c.post("/logout", data={}).status_code == 403
    assert _counts(site) == before
    # With the right token the same action works and is audited.
    token = csrf_of(c.get(f"/requests/{req.id}").text)
    assert c.post(f"/requests/{req.id}/handled", data={"csrf": token, "note": "phoned"},
                  follow_redirects=True).status_code == 200
    with site.sessions() as s:
        entry = s.scalars(select(AuditLog)).one()
        assert (entry.user_name, entry.action, entry.request_id) == ("north-staff",
                                                                     "handled", req.id)


HOSTILE = """<html><body><p>Anna Nowak 1000001</p>
<script>document.title='pwned'; fetch('/logout')</script>
<img src="x" onerror="document.title='pwned'">
<a href="javascript:alert(1)">klik</a></body></html>"""


def test_mail_html_cannot_run_script_in_the_page(site):
    # An HTML-only mail with <script> and onerror: the request page shows it escaped as
    # text, and its HTML is only served to a sandbox="" frame under a CSP with no script.
    raw, _ = request_mail("anna@patron.test", "LEGIMI", HOSTILE, html=True)
    site.add_mail("north", raw, site.window() + timedelta(seconds=30))
    assert site.run_once() == 0
    req = site.request_of("anna@patron.test")
    req = [r for r in _all(site, "anna@patron.test")][-1]
    c = site.client()
    login(c, "north-staff")
    page = c.get(f"/requests/{req.id}")
    assert page.status_code == 200
    html = page.text
    assert "<script>document" not in html and "onerror=" not in html
    assert 'href="javascript:' not in html
    assert '<iframe sandbox=""' in html
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("style-src")[0]
    assert "object-src 'none'" in csp
    frame = c.get(f"/requests/{req.id}/mail.html")
    assert frame.status_code == 200
    fcsp = frame.headers["content-security-policy"]
    assert fcsp.startswith("sandbox;") and "default-src 'none'" in fcsp
    assert "script-src" not in fcsp
    assert frame.headers["x-content-type-options"] == "nosniff"


def _all(site, address):
    from mailbot.db.models import Request

    with site.sessions() as s:
        return list(s.scalars(select(Request).where(Request.from_address == address)
                              .order_by(Request.id)))


def test_repeated_failed_logins_lock_the_account_for_a_while(site):
    # Five wrong passwords within 15 minutes lock the name: even the right password is
    # then refused, politely, until 15 minutes after the last failure.
    clock = {"now": utcnow()}
    c = site.client(clock=lambda: clock["now"])
    for _ in range(4):
        assert login(c, "north-staff", "wrong password!").status_code == 401
    r = login(c, "north-staff", "wrong password!")
    assert r.status_code == 429
    assert "Zbyt wiele nieudanych prób logowania" in r.text
    clock["now"] += timedelta(minutes=5)
    r = login(c, "north-staff")
    assert r.status_code == 429 and "/logout" not in r.text
    clock["now"] += timedelta(minutes=11)
    r = login(c, "north-staff")
    assert r.status_code == 200 and "/logout" in r.text
    with site.sessions() as s:
        assert s.scalar(select(func.count(LoginAttempt.id)).where(
            LoginAttempt.ok.is_(False))) == 5


def test_passwords_are_stored_only_as_argon2_hashes(site, capsys):
    # The database holds an argon2id hash, never the password; the CLI never prints it.
    site.cli("user", "list")
    out = capsys.readouterr()
    assert PASSWORD not in out.out + out.err
    with site.sessions() as s:
        hashes = s.scalars(select(StaffUser.password_hash)).all()
    assert len(hashes) == 3 and all(h.startswith("$argon2id$") for h in hashes)
    for path in Path(site.root).glob("mailbot.db*"):
        assert PASSWORD.encode() not in path.read_bytes()
    with sqlite3.connect(site.root / "mailbot.db") as db:
        dump = "\n".join(db.iterdump())
    assert PASSWORD not in dump


def test_a_new_password_logs_out_open_sessions_and_removal_locks_out(site):
    c = site.client()
    login(c, "north-staff")
    assert c.get("/queue").status_code == 200
    import os

    os.environ["MAILBOT_NEW_PASSWORD"] = "another long password"
    try:
        assert site.cli("user", "passwd", "north-staff") == 0
    finally:
        del os.environ["MAILBOT_NEW_PASSWORD"]
    assert c.get("/queue", follow_redirects=False).status_code == 303
    login(c, "north-staff", "another long password")
    assert c.get("/queue", follow_redirects=False).status_code == 200
    assert site.cli("user", "remove", "north-staff") == 0
    assert c.get("/queue", follow_redirects=False).status_code == 303


def test_session_cookie_is_httponly_samesite_and_secure_over_https(site):
    plain = site.client()
    r = plain.get("/login")
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    tls = site.client(base_url="https://testserver")
    cookie = tls.get("/login").headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" in cookie


def test_override_issues_from_the_pool_but_never_a_code_owed_to_earlier_mail(site):
    # Overriding a refusal needs a reason; it issues the next code with a ledger entry and a
    # reply carrying the code. With one code left and an earlier e-mail still undecided, it
    # is refused.
    refused = site.request_of("obcy@patron.test")
    c = site.client()
    login(c, "north-staff")
    token = csrf_of(c.get(f"/requests/{refused.id}").text)
    r = c.post(f"/requests/{refused.id}/override",
               data={"csrf": token, "service": "legimi", "card": "1000002", "reason": " "},
               follow_redirects=True)
    assert "Podaj powód" in r.text
    r = c.post(f"/requests/{refused.id}/override",
               data={"csrf": token, "service": "legimi", "card": "1000002",
                     "reason": "czytelnik podał zły numer, sprawdzone telefonicznie"},
               follow_redirects=True)
    assert "Kod wydany" in r.text and "NORTH-CODE-001" in r.text
    with site.sessions() as s:
        entry = s.scalars(select(LedgerEntry).where(LedgerEntry.channel == "override")).one()
        assert (entry.card_number, entry.request_id) == ("1000002", refused.id)
        reply = s.scalars(select(Outbox).where(Outbox.kind == "override")).one()
        assert b"NORTH-CODE-001" in reply.message or b"NORTH-CODE-001" in \
            reply.message.replace(b"=\r\n", b"").replace(b"=\n", b"")
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "override")).one()
        assert audit.user_name == "north-staff" and "telefonicznie" in audit.detail
    # One code left; an e-mail that arrived before now waits undecided (intake only).
    from mailbot.db.session import open_database
    from mailbot.intake.maildir import poll_all_maildirs

    raw, _ = request_mail("ewa@patron.test", "LEGIMI", "Ewa Lis 1000003")
    site.add_mail("north", raw, site.window() + timedelta(seconds=40))
    raw, _ = request_mail("x@patron.test", "LEGIMI", "Nie Znany 1999998")
    site.add_mail("north", raw, site.window() + timedelta(seconds=20))
    poll_all_maildirs(open_database(site.settings.database_url), site.settings)
    from mailbot.decide import decide_pending

    # Decide only the earlier unknown card; Ewa stays waiting for the last code.
    asked = []
    decide_pending(site.sessions, site.settings,
                   should_stop=lambda: asked.append(1) or len(asked) > 1)
    assert site.request_of("ewa@patron.test").state == "new"
    unknown = site.request_of("x@patron.test")
    assert unknown.outcome == "unknown_card"
    token = csrf_of(c.get(f"/requests/{unknown.id}").text)
    r = c.post(f"/requests/{unknown.id}/override",
               data={"csrf": token, "service": "legimi", "card": "1000002",
                     "reason": "test"}, follow_redirects=True)
    assert "Brak wolnego kodu" in r.text
    assert site.run_once() == 0
    assert site.request_of("ewa@patron.test").outcome == "issued"


def test_resend_and_mark_handled_are_recorded(site):
    issued = site.request_of("anna@patron.test")
    with site.sessions.begin() as s:
        row = s.scalars(select(Outbox).where(Outbox.request_id == issued.id)).one()
        assert row.state == "sent"
        row.state, row.last_error = "failed", "550 mailbox unavailable"
    c = site.client()
    login(c, "north-staff")
    queue = c.get("/queue").text
    assert "550 mailbox unavailable" in queue
    token = csrf_of(c.get(f"/requests/{issued.id}").text)
    r = c.post(f"/requests/{issued.id}/resend", data={"csrf": token, "outbox_id": str(row.id)},
               follow_redirects=True)
    assert "wróciła do kolejki" in r.text
    with site.sessions() as s:
        again = s.get(Outbox, row.id)
        assert again.state == "pending" and again.last_error is None
    assert site.run_once() == 0
    with site.sessions() as s:
        assert s.get(Outbox, row.id).state == "sent"
        actions = [a.action for a in s.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert actions == ["resend"]
    page = c.get(f"/requests/{issued.id}").text
    assert "north-staff" in page and "ponowna wysyłka" in page
    assert "ponowna wysyłka" in c.get("/audit").text


def test_every_page_renders_in_polish_and_english(site):
    # All strings come from the per-language dictionary: a missing one would fail here.
    c = site.client()
    login(c, "boss")
    req = site.request_of("anna@patron.test")
    for lang in ("pl", "en"):
        for url in ("/queue", "/queue/live", "/requests", f"/requests/{req.id}", "/pools",
                    "/desk", "/imports", "/reports", "/audit"):
            r = c.get(f"{url}?lang={lang}")
            assert r.status_code == 200, (url, lang)
            assert f'<html lang="{lang}">' in r.text or url == "/queue/live"
    assert "Kolejka" in c.get("/queue?lang=pl").text
    assert "Live queue" in c.get("/queue?lang=en").text
    # The choice sticks (cookie).
    assert "Live queue" in c.get("/queue").text
