"""The reply-text preview (Teksty odpowiedzi), in real Chromium: a library's own text
(``texts_dir``) is what the preview shows and what the patron then gets, marked as the
library's own; the other outcomes are the shipped texts; the library's activation pages
are shown; the HTML runs in a sandboxed frame."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from playwright.sync_api import expect

from mailbot.web.app import create_app
from mailbot.web.server import WebServer
from tests.botenv import request_mail
from tests.servers import free_port
from tests.web.conftest import SHOTS

OWN_TEXT = (
    '{% import "email/pl/_macros.txt.j2" as m %}'
    "Dzień dobry,\n\nFilia nr 3 przesyła kod do serwisu {{ service_name }} na "
    "{{ month|month }}: {{ code }}\n\nKod prosimy aktywować do {{ deadline|date }}.\n"
)


def test_the_preview_shows_the_librarys_own_text_that_the_patron_then_gets(
        dashboard, imap_user, smtp_sink):
    # Filia 3 keeps its own Polish `issued` text; the preview shows it with a sample
    # patron and marks the file as the library's own; a real request then gets it.
    bot, server, page, context, dialogs, sessions = dashboard
    own = bot.root / "texts" / "filia-3" / "pl"
    own.mkdir(parents=True)
    (own / "issued.txt.j2").write_text(OWN_TEXT, encoding="utf-8")
    # texts_dir relative to the config file's folder, like every path in it.
    text = bot.config.read_text(encoding="utf-8")
    bot.config.write_text(text.replace('name = "Biblioteka Testowa"\n',
                                       'name = "Biblioteka Testowa"\n'
                                       'texts_dir = "texts/filia-3"\n'
                                       'activation_url_legimi = '
                                       '"https://www.legimi.pl/filia-3/"\n', 1),
                          encoding="utf-8")
    settings = bot.settings()
    assert settings.library("lib").texts_dir == str(bot.root / "texts" / "filia-3")
    # The dashboard with the new settings (same database and key: the session goes on).
    served = WebServer(create_app(settings, sessions), host="127.0.0.1", port=free_port())
    assert served.start()
    try:
        page.goto(served.url + "queue")
        page.get_by_role("link", name="Teksty odpowiedzi").click()
        expect(page.locator("h1")).to_have_text("Teksty odpowiedzi")
        expect(page.get_by_test_id("texts-folder")).to_contain_text("1 plik własny")
        expect(page.get_by_test_id("texts-folder")).to_contain_text("pl/issued.txt.j2")
        expect(page.get_by_test_id("activation-urls")).to_contain_text(
            "https://www.legimi.pl/filia-3/")
        expect(page.get_by_test_id("activation-urls")).to_contain_text(
            "https://www.empikgo.com/")
        preview = page.get_by_test_id("preview-text")
        expect(preview).to_contain_text("Filia nr 3 przesyła kod do serwisu Legimi")
        expect(preview).to_contain_text("LGM-7Q2X-9KD4-PL")  # the sample code
        # The English section under it is the shipped text.
        expect(preview).to_contain_text("English version below")
        sources = page.get_by_test_id("sources")
        expect(sources.locator("li", has_text="pl/issued.txt.j2")).to_contain_text(
            "własny biblioteki")
        expect(sources.locator("li", has_text="pl/issued.html.j2")).to_contain_text(
            "dostarczony")
        # The HTML part (shipped) in its sandboxed frame, with the library's own
        # activation page and the sample code.
        frame = page.frame_locator("iframe[data-testid=preview-html]")
        expect(frame.locator("body")).to_contain_text("LGM-7Q2X-9KD4-PL")
        # Made inert (web.mailhtml): the link's target is only its tooltip.
        expect(frame.locator("a[title='https://www.legimi.pl/filia-3/']").first).to_be_attached()
        expect(frame.locator("a[href]")).to_have_count(0)
        assert page.get_by_test_id("preview-html").get_attribute("sandbox") == ""
        page.get_by_test_id("preview-html").scroll_into_view_if_needed()
        page.wait_for_timeout(500)  # the frame paints after its content is there
        page.screenshot(path=SHOTS / "texts-preview.png", full_page=True)

        # Another outcome falls back to the shipped text, with the sample's values.
        page.get_by_role("link", name="zadłużenie").click()
        expect(page.get_by_test_id("preview-text")).to_contain_text("12,50")
        expect(page.get_by_test_id("preview-text")).not_to_contain_text("Filia nr 3")
        expect(page.get_by_test_id("sources")).not_to_contain_text("własny biblioteki")

        for width, name in ((768, "texts-preview-tablet.png"), (390, "texts-preview-phone.png")):
            page.set_viewport_size({"width": width, "height": 900})
            page.goto(served.url + "texts")
            expect(frame.locator("body")).to_contain_text("LGM-7Q2X-9KD4-PL")
            page.get_by_test_id("preview-html").scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            assert page.evaluate("document.documentElement.scrollWidth <= "
                                 "document.documentElement.clientWidth"), name
            page.screenshot(path=SHOTS / name, full_page=True)
    finally:
        served.stop()
        served.join()

    # What the preview showed is what a patron gets.
    raw, _ = request_mail("ala@patron.test", "LEGIMI", "Alicja Łada 0990001")
    imap_user.append(raw, internaldate=bot.window() + timedelta(seconds=3))
    assert bot.run_once() == 0
    reply = smtp_sink.messages[-1].message
    body = reply.get_body(("plain",)).get_content()
    assert "Filia nr 3 przesyła kod do serwisu Legimi" in body
    assert "LEG-0001-E2E" in body


def test_every_reply_previews_for_the_librarys_own_settings_only(tmp_path):
    # Each outcome that replies (and the reminder) previews without an error, text and
    # HTML, with that library's name; another library's preview is "not found" for its
    # staff, as is an outcome that gets no reply.
    from mailbot.respond.render import NOTICES, REPLY_OUTCOMES
    from tests.web.webenv import login, make_site

    site = make_site(tmp_path)
    assert site.add_user("anna", "north") == 0
    client = site.client()
    login(client, "anna")
    for outcome in (*REPLY_OUTCOMES, *NOTICES):
        page = client.get(f"/texts?outcome={outcome}")
        assert page.status_code == 200, outcome
        assert 'data-testid="text-error"' not in page.text, (outcome, page.text)
        assert 'data-testid="preview-text"' in page.text
        frame = client.get(f"/texts/north/{outcome}.html")
        assert frame.status_code == 200 and "Biblioteka Północna" in frame.text, outcome
        assert frame.headers["content-security-policy"].startswith("sandbox;")
    assert client.get("/texts?library=south").status_code == 404
    assert client.get("/texts/south/issued.html").status_code == 404
    assert client.get("/texts?outcome=ignored_loop").status_code == 404


def test_the_pool_not_ready_preview_says_staff_were_told_when_they_would_be(tmp_path):
    # Without a staff address the reply does not say staff were told; with the library's
    # staff_email the real run alerts them, and the previewed reply (text and HTML) says
    # so, as the patron's will.
    from tests.web.webenv import login, make_site

    site = make_site(tmp_path)
    assert site.add_user("anna", "north") == 0

    def preview() -> tuple[str, str]:
        client = site.client()
        login(client, "anna")
        page = client.get("/texts?outcome=pool_not_ready")
        frame = client.get("/texts/north/pool_not_ready.html")
        assert page.status_code == 200 and frame.status_code == 200
        return " ".join(page.text.split()), " ".join(frame.text.split())

    told_pl = "Pracownicy biblioteki zostali o tym powiadomieni."
    told_en = "The library staff have been told."
    page, frame = preview()
    assert told_pl not in page and told_en not in frame
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace('name = "Biblioteka Północna"\n',
                                        'name = "Biblioteka Północna"\n'
                                        'staff_email = "kierownik@north.test"\n', 1),
                           encoding="utf-8")
    page, frame = preview()
    assert told_pl in page and told_en in page
    assert told_pl in frame and told_en in frame


def test_a_broken_own_text_is_named_on_the_preview(tmp_path):
    # A syntax error in the library's own file: the preview names the file and line (as
    # `mailbot check` does) and says the reply cannot be put together, instead of failing.
    from tests.web.webenv import login, make_site

    site = make_site(tmp_path)
    assert site.add_user("anna", "north") == 0
    own = tmp_path / "texts" / "north" / "pl"
    own.mkdir(parents=True)
    (own / "debt.txt.j2").write_text("Dzień dobry,\n{% if balance_due %}\n", encoding="utf-8")
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace('name = "Biblioteka Północna"\n',
                                        'name = "Biblioteka Północna"\n'
                                        'texts_dir = "texts/north"\n', 1), encoding="utf-8")
    client = site.client()
    login(client, "anna")
    page = client.get("/texts?outcome=debt")
    assert page.status_code == 200
    assert "Problemy w plikach biblioteki" in page.text
    # Polish, from the catalogue: the file, its line, what follows; Jinja's own English
    # only folded under "Szczegóły".
    assert f"<code>{own / 'debt.txt.j2'}</code>, wiersz 2: błąd w zapisie szablonu" in page.text
    assert 'data-testid="text-error"' in page.text
    assert f"Tego tekstu nie da się złożyć: błąd w pliku {own / 'debt.txt.j2'}" in page.text
    assert "TemplateSyntaxError" not in page.text and ", line 2" not in page.text
    assert '<details class="it-details"><summary>Szczegóły (komunikat programu, po ' \
        "angielsku)</summary>" in page.text
    assert client.get("/texts/north/debt.html").status_code == 404
    # The other replies of the library are still previewed.
    assert 'data-testid="text-error"' not in client.get("/texts?outcome=issued").text


def _site_with_texts(tmp_path, files):
    from tests.web.webenv import login, make_site

    site = make_site(tmp_path)
    assert site.add_user("anna", "north") == 0
    own = tmp_path / "texts" / "north"
    for name, text in files.items():
        (own / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, Path):
            (own / name).symlink_to(text)
        else:
            (own / name).write_text(text, encoding="utf-8")
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace('name = "Biblioteka Północna"\n',
                                        'name = "Biblioteka Północna"\n'
                                        'texts_dir = "texts/north"\n', 1), encoding="utf-8")
    client = site.client()
    login(client, "anna")
    return client, own


def test_a_library_text_cannot_run_commands_or_read_server_files(tmp_path):
    # The reviewer's payload: in a plain Jinja environment it ran `id -un`. Sandboxed, the
    # preview names the file and the attribute, and no user name of the server is shown;
    # a symlink to /etc/hostname is refused, its content never shown.
    import getpass
    import socket

    payload = '{{ cycler.__init__.__globals__.os.popen("id -un").read() }}\n'
    client, own = _site_with_texts(tmp_path, {"pl/issued.txt.j2": payload,
                                              "pl/debt.txt.j2": Path("/etc/hostname")})
    page = client.get("/texts?outcome=issued")
    assert page.status_code == 200
    problems = page.text.split('data-testid="texts-problems"')[1].split("</div>")[0]
    assert f"<code>{own / 'pl/issued.txt.j2'}</code>, wiersz 1: używa atrybutu, którego " \
        "teksty odpowiedzi ze względów bezpieczeństwa nie mogą używać" in problems
    assert "Atrybut: <code>__globals__</code>" in problems
    assert f"<code>{own / 'pl/debt.txt.j2'}</code>: to dowiązanie do pliku spoza folderu" \
        in problems and "Wskazuje na: <code>/etc/hostname</code>" in problems
    assert 'data-testid="text-error"' in page.text
    assert f">{getpass.getuser()}\n" not in page.text and "uid=" not in page.text
    assert client.get("/texts/north/issued.html").status_code == 404
    hostname = socket.gethostname()
    debt = client.get("/texts?outcome=debt")
    assert f"Tego tekstu nie da się złożyć: błąd w pliku {own / 'pl/debt.txt.j2'}" in debt.text
    assert 'data-testid="preview-text"' not in debt.text
    assert hostname not in debt.text.replace(str(tmp_path), "")
    # The library's other replies still preview (shipped texts, sandboxed too).
    assert 'data-testid="text-error"' not in client.get("/texts?outcome=overdue").text


def test_the_preview_shows_a_changed_text_at_once(tmp_path):
    # The process caches compiled templates (the daemon needs a restart); the preview
    # reads the files as they are now.
    client, own = _site_with_texts(tmp_path, {"pl/issued.txt.j2": "Pierwsza wersja {{ code }}\n"})
    assert "Pierwsza wersja LGM-7Q2X-9KD4-PL" in client.get("/texts?outcome=issued").text
    (own / "pl/issued.txt.j2").write_text("Druga wersja {{ code }}\n", encoding="utf-8")
    page = client.get("/texts?outcome=issued").text
    assert "Druga wersja LGM-7Q2X-9KD4-PL" in page and "Pierwsza" not in page
    (own / "pl/issued.html.j2").write_text("<p>Nowy HTML {{ code }}</p>\n", encoding="utf-8")
    assert "Nowy HTML LGM-7Q2X-9KD4-PL" in client.get("/texts/north/issued.html").text


def test_the_served_frame_names_no_external_host(tmp_path):
    # A library's HTML with a preconnect, a tracking image, a stylesheet, a frame and a
    # link: the frame's CSP alone does not stop Chromium's preconnects, so the served
    # HTML must name none of these hosts; the shipped texts' links lose their targets.
    own_html = ('<link rel="preconnect" href="https://pre.tracker.test">'
                '<img src="https://img.tracker.test/p.gif" alt="">'
                '<div style="background:url(https://css.tracker.test/b.png)">Kod: {{ code }}'
                '</div><iframe src="https://frame.tracker.test/"></iframe>'
                '<meta http-equiv="refresh" content="0;url=https://meta.tracker.test/">\n')
    client, _ = _site_with_texts(tmp_path, {"pl/issued.html.j2": own_html})
    frame = client.get("/texts/north/issued.html")
    assert frame.status_code == 200
    assert "Kod: LGM-7Q2X-9KD4-PL" in frame.text
    assert "tracker.test" not in frame.text, frame.text
    shipped = client.get("/texts/north/debt.html").text
    assert "href=" not in shipped and "src=" not in shipped.replace('src="data:', "")
