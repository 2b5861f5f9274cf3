"""Staff choose their own password ("Zmień hasło"), and must, before any other page opens,
after an administrator set it on the accounts page (issue 19: staff run it alone, and a
password two people know is not a password)."""

from __future__ import annotations

import re

from sqlalchemy import select

from mailbot.db.models import AuditLog, StaffUser
from tests.web.webenv import PASSWORD, csrf_of, login, make_site


def _change(client, current: str, new: str, repeat: str | None = None):  # noqa: ANN001, ANN202
    token = csrf_of(client.get("/password").text)
    return client.post("/password", data={"csrf": token, "current": current, "new": new,
                                          "repeat": new if repeat is None else repeat},
                       follow_redirects=False)


def test_staff_change_their_own_password_and_their_other_sessions_end(tmp_path):
    site = make_site(tmp_path)
    assert site.add_user("anna", "north") == 0
    anna, elsewhere = site.client(), site.client()
    assert "Kolejka na żywo" in login(anna, "anna").text  # set by IT with the CLI: no change
    login(elsewhere, "anna")
    page = anna.get("/password")
    assert page.status_code == 200 and 'data-testid="password-link"' in page.text
    assert "Nowe hasło kończy Twoje sesje na innych urządzeniach" in page.text
    # Each mistake says what is wrong, in Polish, and changes nothing.
    for current, new, repeat, said in [
            ("zle-haslo-1234", "nowe-haslo-anny", None, "Obecne hasło jest nieprawidłowe."),
            (PASSWORD, "nowe-haslo-anny", "nowe-haslo-anki", "różni się od pierwszego"),
            (PASSWORD, PASSWORD, None, "Nowe hasło musi być inne niż obecne."),
            (PASSWORD, "krotkie", None, "Hasło musi mieć co najmniej 10 znaków.")]:
        refused = _change(anna, current, new, repeat)
        assert refused.status_code == 400 and said in refused.text, said
    with site.sessions() as s:
        before = s.scalar(select(StaffUser).where(StaffUser.name == "anna"))
        assert before.session_version == 1
    assert elsewhere.get("/queue").status_code == 200
    done = _change(anna, PASSWORD, "nowe-haslo-anny")
    assert done.status_code == 303 and done.headers["location"] == "/queue"
    assert "Hasło zostało zmienione" in anna.get("/queue").text  # this session goes on
    assert "Logowanie" in elsewhere.get("/queue").text  # the other one has ended
    assert "Nieprawidłowa nazwa użytkownika lub hasło" in login(site.client(), "anna").text
    assert "Kolejka na żywo" in login(site.client(), "anna", "nowe-haslo-anny").text
    with site.sessions() as s:
        entry = s.scalars(select(AuditLog).where(AuditLog.action == "password_change")).one()
    assert entry.user_name == "anna" and entry.args == {"name": "anna"}
    assert "nowe-haslo-anny" not in entry.detail and PASSWORD not in entry.detail


def test_a_password_the_admin_set_must_be_replaced_before_any_other_page(tmp_path):
    site = make_site(tmp_path)
    assert site.add_user("boss", admin=True) == 0
    assert site.add_user("anna", "north") == 0
    boss = site.client()
    login(boss, "boss")
    token = csrf_of(boss.get("/accounts").text)
    reset = boss.post("/accounts", data={"csrf": token, "do": "password", "name": "anna"})
    given = re.search(r'data-testid="password-value">([^<]+)<', reset.text).group(1)
    assert "hasło tymczasowe, do zmiany przy logowaniu" in boss.get("/accounts").text
    anna = site.client()
    first = login(anna, "anna", given)
    assert "Zmiana hasła" in first.text and "Hasło tego konta ustawił administrator" in first.text
    assert 'class="main-nav"' not in first.text  # no menu to pages that would not open
    for url in ("/queue", "/requests", "/pools", "/desk", "/imports", "/reports", "/audit",
                "/texts", "/queue/live"):
        sent = anna.get(url, follow_redirects=False)
        assert sent.status_code == 303 and sent.headers["location"] == "/password", url
    token = csrf_of(anna.get("/password").text)
    acted = anna.post("/desk", data={"csrf": token, "library": "north", "card": "1",
                                     "service": "legimi", "action": "check"},
                      follow_redirects=False)
    assert acted.status_code == 403
    assert anna.get("/pomoc").status_code == 200  # the guide needs no login at all
    assert _change(anna, given, "anny-wlasne-haslo").status_code == 303
    assert anna.get("/requests", follow_redirects=False).status_code == 200
    assert "hasło tymczasowe, do zmiany" not in boss.get("/accounts").text
    # An admin's own new password, set on the accounts page, is hers: nothing to change.
    token = csrf_of(boss.get("/accounts").text)
    boss.post("/accounts", data={"csrf": token, "do": "password", "name": "boss",
                                 "password": "szefa-nowe-haslo"})
    assert boss.get("/queue", follow_redirects=False).status_code == 200
    # A logout works while the change is pending.
    token = csrf_of(boss.get("/accounts").text)
    again = boss.post("/accounts", data={"csrf": token, "do": "password", "name": "anna"})
    given = re.search(r'data-testid="password-value">([^<]+)<', again.text).group(1)
    pending = site.client()
    assert "Zmiana hasła" in login(pending, "anna", given).text
    token = csrf_of(pending.get("/password").text)
    out = pending.post("/logout", data={"csrf": token}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"


def test_it_can_hand_out_a_temporary_password_with_the_cli(tmp_path):
    # `mailbot user add --temporary` / `user passwd --temporary`: IT sets a first password
    # and the librarian replaces it at the first login, as after the accounts page.
    site = make_site(tmp_path)
    assert site.add_user("anna", "north") == 0
    import os
    os.environ["MAILBOT_NEW_PASSWORD"] = "pierwsze-haslo-1"
    try:
        assert site.cli("user", "add", "ola", "--library", "north", "--temporary") == 0
        assert site.cli("user", "passwd", "anna", "--temporary") == 0
    finally:
        del os.environ["MAILBOT_NEW_PASSWORD"]
    for name in ("ola", "anna"):
        client = site.client()
        assert "Hasło tego konta ustawił administrator" in login(
            client, name, "pierwsze-haslo-1").text, name
