"""Staff accounts on the dashboard (Konta), in real Chromium: an admin adds an account
with a generated password (shown once, a reload neither shows nor resets it again), sees
its last login, resets its password (its sessions end; its owner must choose their own
at the next login), changes its libraries and role,
and removes it; the last admin cannot demote herself (nor, on PostgreSQL, two admins each
other at once; nor the CLI remove her); a paused account shows as such and a new password
lifts the pause. Librarians never see the page. Each step is in the audit log."""

from __future__ import annotations

import base64
import os
import re

from playwright.sync_api import Page, expect
from sqlalchemy import select

from mailbot.db.models import AuditLog, StaffUser
from tests.web.conftest import PASSWORD, SHOTS

ADMIN, ADMIN_PASSWORD = "it-admin", "administrator-2026!"


def _login(page: Page, url: str, name: str, password: str) -> None:
    page.goto(url + "login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def _choose_password(page: Page, current: str, new: str) -> None:
    """The page a login with an administrator's password opens: choose one's own."""
    expect(page.locator("h1")).to_have_text("Zmiana hasła")
    page.get_by_label("Obecne hasło").fill(current)
    page.get_by_label("Nowe hasło", exact=True).fill(new)
    page.get_by_label("Nowe hasło jeszcze raz").fill(new)
    page.get_by_role("button", name="Zmień hasło").click()


def _row(page: Page, name: str):  # noqa: ANN202
    return page.locator(f"tr[data-account='{name}']")


def _no_sideways_scroll(page: Page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= "
                         "document.documentElement.clientWidth"), "the page scrolls sideways"


def test_an_admin_manages_staff_accounts_on_the_dashboard(dashboard):
    # The whole round of an account, as an admin does it without IT's shell.
    bot, server, page, context, dialogs, sessions = dashboard
    # The librarian has no "Konta" in her menu, and the page is "not found" for her.
    expect(page.locator("nav.main-nav")).not_to_contain_text("Konta")
    expect(page.locator("nav.main-nav")).to_contain_text("Teksty odpowiedzi")
    assert page.goto(server.url + "accounts").status == 404

    os.environ["MAILBOT_NEW_PASSWORD"] = ADMIN_PASSWORD
    try:
        assert bot.cli("user", "add", ADMIN, "--admin") == 0
    finally:
        del os.environ["MAILBOT_NEW_PASSWORD"]
    admin_ctx = context.browser.new_context(viewport={"width": 1280, "height": 900},
                                            locale="pl-PL")
    admin = admin_ctx.new_page()
    _login(admin, server.url, ADMIN, ADMIN_PASSWORD)
    admin.get_by_role("link", name="Konta").click()
    expect(admin.locator("h1")).to_have_text("Konta pracowników")
    # Both accounts, with role, libraries and the last login in the library's time; the
    # librarian logged in a moment ago (the fixture), the admin just now.
    librarian = _row(admin, "bibliotekarka")
    expect(librarian).to_contain_text("pracownik")
    expect(librarian).to_contain_text("Biblioteka Testowa")
    with sessions() as s:
        last = s.scalar(select(StaffUser.last_login_at).where(StaffUser.name == "bibliotekarka"))
    assert last is not None
    local = last.astimezone(bot.settings().library_tz("lib")).strftime("%Y-%m-%d %H:%M")
    expect(librarian.get_by_test_id("last-login")).to_have_text(local)
    expect(_row(admin, ADMIN)).to_contain_text("administrator")
    expect(_row(admin, ADMIN)).to_contain_text("(to Ty)")

    # Add "kasia" for the library with a generated password, shown once.
    form = admin.get_by_test_id("add-account")
    form.get_by_label("Nazwa użytkownika").fill("kasia")
    form.get_by_label("Biblioteka Testowa").check()
    form.get_by_role("button", name="Dodaj konto").click()
    expect(admin.locator(".flash.ok")).to_have_text("Dodano konto kasia.")
    shown = admin.get_by_test_id("password-value").inner_text()
    assert re.fullmatch(r"[a-z2-9]{4}(-[a-z2-9]{4}){3}", shown), shown
    expect(_row(admin, "kasia").get_by_test_id("last-login")).to_have_text("nigdy")
    admin.screenshot(path=SHOTS / "accounts.png", full_page=True)
    admin.goto(server.url + "accounts")  # shown once: a reload does not show it again
    expect(admin.get_by_test_id("new-password")).to_have_count(0)
    assert shown not in admin.content()

    # Kasia logs in with it in her own browser; her last login appears.
    kasia_ctx = context.browser.new_context(locale="pl-PL")
    kasia = kasia_ctx.new_page()
    _login(kasia, server.url, "kasia", shown)
    # The admin knows that password: before any other page, Kasia chooses her own; the
    # menu is not there, and another page sends her back.
    expect(kasia.locator("h1")).to_have_text("Zmiana hasła")
    expect(kasia.get_by_test_id("password-form")).to_be_visible()
    expect(kasia.locator("nav.main-nav")).to_have_count(0)
    kasia.screenshot(path=SHOTS / "password-change.png", full_page=True)
    kasia.goto(server.url + "requests")
    expect(kasia.locator("h1")).to_have_text("Zmiana hasła")
    _choose_password(kasia, shown, "kasi-wlasne-haslo")
    expect(kasia.locator("h1")).to_have_text("Kolejka na żywo")
    expect(kasia.locator(".flash.ok")).to_contain_text("Hasło zostało zmienione")
    admin.reload()
    expect(_row(admin, "kasia").get_by_test_id("must-change")).to_have_count(0)
    expect(_row(admin, "kasia").get_by_test_id("last-login")).not_to_have_text("nigdy")

    # A new password chosen by the admin: kasia's session ends at once, the old password
    # no longer works, the new one does.
    row = _row(admin, "kasia")
    row.locator("summary", has_text="Nowe hasło").click()
    row.get_by_test_id("reset-kasia").get_by_label("Hasło").fill("nowe-haslo-kasi-1")
    row.get_by_role("button", name="Ustaw nowe hasło").click()
    expect(admin.locator(".flash.ok")).to_contain_text("Ustawiono nowe hasło konta kasia")
    kasia.goto(server.url + "queue")
    expect(kasia.locator("h1")).to_have_text("Logowanie")
    _login(kasia, server.url, "kasia", shown)
    expect(kasia.locator("[role=alert], .flash.error, .error").first).to_contain_text(
        "Nieprawidłowa nazwa użytkownika lub hasło")
    expect(_row(admin, "kasia").get_by_test_id("must-change")).to_have_text(
        "hasło tymczasowe, do zmiany przy logowaniu")
    _login(kasia, server.url, "kasia", "nowe-haslo-kasi-1")
    _choose_password(kasia, "nowe-haslo-kasi-1", "kasi-drugie-haslo")
    expect(kasia.locator("h1")).to_have_text("Kolejka na żywo")

    # Scope: no library and no admin is refused, in Polish; admin is saved. The last
    # admin cannot take her own admin role away; once kasia is an admin too, she can.
    row = _row(admin, "kasia")
    row.locator("summary", has_text="Biblioteki i rola").click()
    scope = row.get_by_test_id("scope-kasia")
    scope.get_by_label("Biblioteka Testowa").uncheck()
    scope.get_by_role("button", name="Zapisz").click()
    expect(admin.get_by_test_id("account-error")).to_have_text(
        "Wybierz co najmniej jedną bibliotekę albo zaznacz „administrator”.")
    me = _row(admin, ADMIN)
    me.locator("summary", has_text="Biblioteki i rola").click()
    mine = me.get_by_test_id(f"scope-{ADMIN}")
    mine.get_by_label("Biblioteka Testowa").check()
    mine.get_by_label("administrator (wszystkie biblioteki i konta)").uncheck()
    mine.get_by_role("button", name="Zapisz").click()
    expect(admin.get_by_test_id("account-error")).to_contain_text(
        f"{ADMIN} to ostatnie konto administratora")
    row = _row(admin, "kasia")
    row.locator("summary", has_text="Biblioteki i rola").click()
    row.get_by_test_id("scope-kasia").get_by_label(
        "administrator (wszystkie biblioteki i konta)").check()
    row.get_by_test_id("scope-kasia").get_by_role("button", name="Zapisz").click()
    expect(admin.locator(".flash.ok")).to_have_text("Zapisano biblioteki i rolę konta kasia.")
    expect(_row(admin, "kasia")).to_contain_text("administrator")
    kasia.goto(server.url + "accounts")  # her new role reaches her open session
    expect(kasia.locator("h1")).to_have_text("Logowanie")

    # A paused account: five wrong passwords for the librarian from this address. The
    # login page says an admin can set a new password on "Konta"; the list shows the
    # pause; a new password lifts it.
    pause_ctx = context.browser.new_context(locale="pl-PL")
    guesser = pause_ctx.new_page()
    for _ in range(bot.settings().web.lockout_attempts):
        _login(guesser, server.url, "bibliotekarka", "zle-haslo-123")
    _login(guesser, server.url, "bibliotekarka", PASSWORD)
    expect(guesser.locator("main")).to_contain_text("poproś administratora o nowe hasło "
                                                    "(ustawi je na stronie „Konta”")
    admin.reload()
    expect(_row(admin, "bibliotekarka")).to_contain_text("wstrzymane do")
    row = _row(admin, "bibliotekarka")
    row.locator("summary", has_text="Nowe hasło").click()
    row.get_by_test_id("reset-bibliotekarka").get_by_role("button",
                                                          name="Ustaw nowe hasło").click()
    fresh = admin.get_by_test_id("password-value").inner_text()
    expect(_row(admin, "bibliotekarka")).to_contain_text("możliwe")
    # Reloading the page that showed it (POST-redirect-GET) neither shows it again nor
    # sets yet another password: the shown one stays valid.
    assert "shown=" in admin.url
    with sessions() as s:
        before = s.scalar(select(StaffUser.password_hash).where(
            StaffUser.name == "bibliotekarka"))
    admin.reload()
    expect(admin.get_by_test_id("new-password")).to_have_count(0)
    assert fresh not in admin.content()
    with sessions() as s:
        assert s.scalar(select(StaffUser.password_hash).where(
            StaffUser.name == "bibliotekarka")) == before
    _login(guesser, server.url, "bibliotekarka", fresh)
    expect(guesser.locator("h1")).to_have_text("Zmiana hasła")

    # Remove kasia: a confirmation page first, then she is gone.
    _row(admin, "kasia").get_by_test_id("remove-kasia").click()
    expect(admin.locator("h1")).to_have_text("Usunąć konto kasia?")
    with sessions() as s:
        assert s.scalar(select(StaffUser).where(StaffUser.name == "kasia")) is not None
    admin.get_by_test_id("remove-confirm").click()
    expect(admin.locator(".flash.ok")).to_have_text("Usunięto konto kasia.")
    expect(_row(admin, "kasia")).to_have_count(0)

    # Narrow screens: the list becomes cards, nothing scrolls sideways.
    for width, name in ((768, "accounts-tablet.png"), (390, "accounts-phone.png")):
        admin.set_viewport_size({"width": width, "height": 900})
        admin.goto(server.url + "accounts")
        _no_sideways_scroll(admin)
        admin.screenshot(path=SHOTS / name, full_page=True)

    # The audit log: who did what, with the values, in Polish.
    with sessions() as s:
        entries = [(a.user_name, a.action, a.args) for a in s.scalars(
            select(AuditLog).where(AuditLog.action.like("account_%")).order_by(AuditLog.id))]
    assert [e[1] for e in entries] == ["account_add", "account_password", "account_scope",
                                      "account_password", "account_remove"]
    assert all(e[0] == ADMIN for e in entries)
    assert entries[0][2] == {"name": "kasia", "libraries": "lib", "admin": "—"}
    assert entries[2][2]["admin_before"] == "—" and entries[2][2]["admin"] == "✓"
    admin.goto(server.url + "audit")
    expect(admin.locator("main")).to_contain_text("konto kasia; biblioteki: lib; "
                                                  "administrator: —")
    for c in (admin_ctx, kasia_ctx, pause_ctx):
        c.close()


def test_librarians_cannot_reach_accounts_and_the_last_admin_stays(tmp_path):
    # Without a browser (the same app): a librarian's GET and POST to the accounts page
    # are "not found" and change nothing; the last admin cannot be removed; a generated
    # password goes out in the page only, never in the session cookie, and only once.
    from tests.web.webenv import csrf_of, login, make_site

    site = make_site(tmp_path)
    assert site.add_user("boss", admin=True) == 0
    assert site.add_user("anna", "north") == 0
    anna = site.client()
    login(anna, "anna")
    assert anna.get("/accounts").status_code == 404
    assert anna.get("/accounts/remove?name=boss").status_code == 404
    token = csrf_of(anna.get("/queue").text)
    refused = anna.post("/accounts", data={"csrf": token, "do": "add", "name": "intruz",
                                           "admin": "1"})
    assert refused.status_code == 404
    boss = site.client()
    login(boss, "boss")
    token = csrf_of(boss.get("/accounts").text)
    gone = boss.post("/accounts", data={"csrf": token, "do": "remove", "name": "boss"})
    assert gone.status_code == 400
    assert "boss to ostatnie konto administratora" in gone.text
    added = boss.post("/accounts", data={"csrf": token, "do": "add", "name": "ola",
                                         "libraries": ["south"]})
    password = re.search(r'data-testid="password-value">([^<]+)<', added.text).group(1)
    # Shown by a GET after a redirect, once: again (a reload) it is gone, and another
    # session of the same admin with the same address never sees it.
    assert "/accounts?shown=" in str(added.url)
    assert 'data-testid="password-value"' not in boss.get(str(added.url)).text
    boss_elsewhere = site.client()
    login(boss_elsewhere, "boss")
    again = boss.post("/accounts", data={"csrf": token, "do": "password", "name": "anna"})
    anna_password = re.search(r'data-testid="password-value">([^<]+)<', again.text).group(1)
    token_elsewhere = csrf_of(boss_elsewhere.get("/accounts").text)
    assert token_elsewhere != token
    key = str(again.url).split("shown=")[1]
    assert 'data-testid="password-value"' not in boss_elsewhere.get(
        f"/accounts?shown={key}").text
    assert "Zmiana hasła" in login(site.client(), "anna", anna_password).text
    cookie = boss.cookies.get("mailbot_session")
    assert cookie  # signed, not encrypted: its data is readable base64 JSON
    data = base64.b64decode(cookie.split(".")[0] + "==").decode()
    assert "csrf" in data and password not in data
    assert added.headers["cache-control"] == "no-store"
    with site.sessions() as s:
        names = sorted(s.scalars(select(StaffUser.name)))
    assert names == ["anna", "boss", "ola"]  # no "intruz"; the last admin is still there
    ola = site.client()
    assert "Zmiana hasła" in login(ola, "ola", password).text
    # An admin's own new password: this session goes on, her other ones end.
    other = site.client()
    login(other, "boss")
    assert other.get("/accounts").status_code == 200
    reset = boss.post("/accounts", data={"csrf": token, "do": "password", "name": "boss",
                                         "password": "nowe-haslo-szefa"})
    assert reset.status_code == 200 and "Ustawiono nowe hasło konta boss" in reset.text
    assert boss.get("/accounts").status_code == 200
    assert "Logowanie" in other.get("/accounts").text


def test_two_admins_demoting_each_other_at_once_leave_one_on_postgresql(tmp_path):
    # Real PostgreSQL, read committed: boss-b's demotion of boss-a is in flight (it has
    # counted the admins and updated its row, not committed). Boss-a's demotion of boss-b
    # must wait for it and then see that boss-a is the last admin; counting without the
    # lock, each saw the other still an admin and both were demoted.
    import threading

    from sqlalchemy import update

    from mailbot.clock import utcnow
    from mailbot.db.session import open_database
    from mailbot.web import staff_accounts
    from tests.databases import fresh_postgres
    from tests.web.webenv import make_site

    settings = make_site(tmp_path).settings
    with fresh_postgres() as url:
        sessions = open_database(url)
        for name in ("boss-a", "boss-b"):
            staff_accounts.add_user(sessions, settings, name=name, password="haslo-szefa-2026",
                                    libraries=["north"], is_admin=True, now=utcnow())
        other = sessions()
        other.begin()
        assert sum(1 for n in other.scalars(staff_accounts.admin_rows()) if n != "boss-a") == 1
        other.execute(update(StaffUser).where(StaffUser.name == "boss-a")
                      .values(is_admin=False))
        result: list[object] = []

        def demote_b() -> None:
            try:
                result.append(staff_accounts.set_scope(sessions, settings, name="boss-b",
                                                       libraries=["north"], is_admin=False,
                                                       now=utcnow()))
            except staff_accounts.AccountError as exc:
                result.append(exc)

        worker = threading.Thread(target=demote_b)
        worker.start()
        worker.join(timeout=1.5)
        assert worker.is_alive(), f"did not wait for the other demotion: {result}"
        other.commit()
        other.close()
        worker.join(timeout=10)
        assert len(result) == 1 and isinstance(result[0], staff_accounts.AccountError), result
        assert result[0].key == "last_admin"
        with sessions() as s:
            admins = list(s.scalars(select(StaffUser.name).where(
                StaffUser.is_admin.is_(True))))
        assert admins == ["boss-b"]
        sessions.kw["bind"].dispose()


def test_the_cli_keeps_the_last_admin_too(tmp_path, capsys):
    # `mailbot user remove` follows the dashboard's rule: the last admin stays (English,
    # exit 2, nothing changed); once there is another admin, it goes.
    from tests.web.webenv import make_site

    site = make_site(tmp_path)
    assert site.add_user("boss", admin=True) == 0
    assert site.add_user("anna", "north") == 0
    capsys.readouterr()
    assert site.cli("user", "remove", "boss") == 2
    assert "'boss' is the last admin" in capsys.readouterr().err
    with site.sessions() as s:
        assert sorted(s.scalars(select(StaffUser.name))) == ["anna", "boss"]
    assert site.add_user("boss2", admin=True) == 0
    assert site.cli("user", "remove", "boss") == 0
    assert site.cli("user", "remove", "anna") == 0
    with site.sessions() as s:
        assert sorted(s.scalars(select(StaffUser.name))) == ["boss2"]
