"""A librarian who reads Polish meets no English on the dashboard (issue 19).

Every GET page of the route table is rendered in Polish over the demo's data and a second
round of mail the demo has no outcome for (a branch that offers Legimi only and has not
imported its pool, whose staff alert could not be sent; a family sharing one address; a
child; a TEST mail; a blocked sender): a request of every outcome, with its rule trail,
loops and mail left for staff. Then staff actions that write the audit log (issue anyway,
resend, handled), a mailbox whose login is refused and a relay that cannot be reached.
The visible text (and the texts a screen reader reads: title, aria-label, placeholder,
alt) must hold no word of an English word list. What the patron or a server wrote is not
ours to translate and is taken out first: subjects, mail text, names, addresses, card
numbers, codes, and the technical details folded away for IT.

And the notes a rule can leave: each has its text in both languages, each note the demo's
trails hold has one, and no Polish note text holds an English word.
"""

from __future__ import annotations

import ast
import html
import mailbox
import os
import re
import string
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from starlette.routing import Route

from mailbot import translations
from mailbot.db.models import AuditLog, Code, LedgerEntry, Mailbox, Outbox, Reader, Relay, \
    Request
from mailbot.db.session import open_database, sync_config
from mailbot.demo import run_demo
from mailbot.intake import loops
from mailbot.outcomes import REFUSALS, Outcome
from mailbot.rules import intake as intake_rules
from mailbot.web import i18n, notes
from mailbot.web.staff_accounts import add_user
from mailbot.web.views import routes
from tests.web.webenv import PASSWORD, csrf_of

RULES_DIR = Path(__file__).resolve().parents[2] / "mailbot" / "rules"
WAW = ZoneInfo("Europe/Warsaw")

# Words that are not Polish and that the pages used to show ("balance due 12.50", "2
# overdue item(s)", "code #1 from pool #1", "all rules passed", "debt -> issued" …), and
# the words of English notes, errors and labels besides. Each is matched as a whole word,
# letter case ignored. (Not here: words that are Polish too — "to", "na", "test", "limit",
# "status", "import", "was", "no", "on", "a", "i", "by".)
ENGLISH = frozenset("""
the and of for with from until not found left code codes pool pools issued passed
refused error errors failed balance due overdue item items valid debt loop subject
sender address request requests reply replies window opens received header blocked
month never last loan loans age below only nothing eligible waiting handled resent
attempt attempts marked bounce bounced server connection mailbox relay sent pending
already cap today this that there is are has have been will could cannot should
unknown candidates card surname mail note notes none yes empty list reason refusal
refusals outcome service services report generated total branch library desk staff
override anyway expired activated bought show filter clear print log login logout
password user users account accounts name names queue live decided decision rule rules
trail details detail action actions date time when who what why which where page
next previous back cancel confirm withdraw withdrawn upload download
""".split())
# Phrases and marks: an unlabelled UTC, "->" of an old audit line, "item(s)".
ENGLISH_MARKS = (re.compile(r"\bUTC\b"), re.compile(r"->"), re.compile(r"\(s\)"),
                 re.compile(r"\ball rules\b", re.I), re.compile(r"\bauto-submitted\b", re.I),
                 re.compile(r"\bempik_go\b"), re.compile(r"\b[a-z]+_[a-z_]+\b"))
# Proper names and technical names that are the same in Polish.
NAMES = ("Legimi", "Empik Go", "mailbot", "XLSX", "CSV", "HTML", "IMAP", "SMTP", "TLS",
         "SIP2", "SQL", "RODO", "CET", "CEST", "Europe/Warsaw", "MAILER-DAEMON",
         "postmaster", "noreply", "iCloud", "root", "cron", "Maildir",
         # A file's column names (SPEC 4, the reader file) and configuration keys are
         # names a file or the config must spell so: shown as they are.
         "numer_karty", "imie", "nazwisko", "wazna_do", "zadluzenie", "przetrzymania",
         "aktualizacja_danych", "ostatnie_wypozyczenie", "texts_dir", "templates_dir",
         "activation_url_legimi", "activation_url_empik_go", "mailbox_grace")


class _Visible(HTMLParser):
    """The text a reader sees or hears, without what the patron or a server wrote where
    the page marks it: mail text and headers, the sandboxed HTML, the details for IT."""

    SKIP = {"script", "style", "iframe", "svg", "code"}  # <code>: a file name, a URL
    SKIP_CLASSES = {"mail-text", "headers", "it-details", "addr", "code"}
    READ = ("title", "aria-label", "placeholder", "alt")
    VOID = {"br", "img", "input", "meta", "link", "hr", "col", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.stack: list[bool] = []  # per open element: is it skipped?

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        skipped = bool(self.stack and self.stack[-1]) or tag in self.SKIP or bool(
            self.SKIP_CLASSES & set((a.get("class") or "").split()))
        if not skipped:
            self.parts.extend(a[k] or "" for k in self.READ if a.get(k))
            if tag == "input" and a.get("type") in ("submit", "button") and a.get("value"):
                self.parts.append(a["value"] or "")
        if tag not in self.VOID:
            self.stack.append(skipped)

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if not (self.stack and self.stack[-1]):
            self.parts.append(data)


def visible_text(page: str, patron_data: list[str]) -> str:
    parser = _Visible()
    parser.feed(page)
    text = " ".join(" ".join(parser.parts).split())
    # Longest first: a subject that contains a name is taken out whole.
    for value in sorted(patron_data, key=len, reverse=True):
        text = text.replace(value, " ")
    for name in NAMES:
        text = text.replace(name, " ")
    return text


def english_in(text: str) -> list[str]:
    found = [w for w in re.findall(r"[^\W\d_](?:[^\W_]|-)*", text)
             if w.lower().strip("-") in ENGLISH]
    found += [m.group() for mark in ENGLISH_MARKS for m in mark.finditer(text)]
    return found


def _around(text: str, word: str) -> str:
    at = text.find(word)
    return text[max(0, at - 50):at + len(word) + 30]


def _patron_data(sessions) -> list[str]:  # noqa: ANN001
    """Everything on the pages that the patrons, their mail servers or the platforms
    wrote: not the dashboard's words."""
    values: set[str] = set()
    with sessions() as s:
        for r in s.scalars(select(Request)):
            values.update(v for v in (r.subject, r.from_address, r.card_number, r.patron_name,
                                      r.message_id, r.error) if v)
            # The candidates an ambiguous mail gave (its trail names them).
            values.update(re.findall(r"\b\d{5,}\b", r.subject or ""))
        for rd in s.scalars(select(Reader)):
            values.update(v for v in (rd.first_name, rd.last_name,
                                      f"{rd.first_name} {rd.last_name}", rd.email,
                                      rd.card_number) if v)
        values.update(c.code for c in s.scalars(select(Code)))
        for o in s.scalars(select(Outbox)):
            values.update(v for v in (o.to_address, o.last_error) if v)
        for mb in s.scalars(select(Mailbox)):
            values.update(v for v in (mb.address, mb.last_error) if v)
        for a in s.scalars(select(AuditLog)):
            values.update(v for v in (a.user_name,) if v)
    # Subjects are shown cut to 40 characters ("…").
    values |= {v[:37] for v in values if len(v) > 40}
    return [v for v in values if len(v) >= 2]


BRANCH = "filia"  # the second round's branch: Legimi only, no pool imported this month
# The second round: what the demo's mail does not reach. A top-level block list and staff
# address; the demo library answers TEST mail, has a minimum age for Legimi and lets one
# address collect one code a month; a branch offers Legimi only.
ROUND_TWO_TOP = """blocked_senders = ["*@oferty.example.net"]
staff_email = "it@biblioteka-demo.example.org"
"""
ROUND_TWO_DEMO = """eligibility_test = true
min_age_legimi = 16
max_codes_per_address_per_month = 1
"""
ROUND_TWO_BRANCH = """
[[libraries]]
id = "filia"
name = "Biblioteka Publiczna Demo, Filia nr 2"
contact = "tel. 22 000 00 02"
services = ["legimi"]
require_confirmed_account = true

[[mailboxes]]
library = "filia"
address = "filia@biblioteka-demo.example.org"
type = "maildir"
path = "{root}/Maildir-filia"
"""
READERS_HEADER = ("numer_karty;imie;nazwisko;email;wazna_do;zadluzenie;przetrzymania;"
                  "aktualizacja_danych;ostatnie_wypozyczenie;data_urodzenia;potwierdzone\n")
# (card, first name, surname, address, birth date), each card valid, owing nothing, its
# data and a loan of this year: two of a family writing from the father's address (he had
# his code), a child ({y10}: ten years ago), a patron who tests first; the branch's reader.
ROUND_TWO_READERS = {
    "demo": (("0001013", "Ewa", "Nowak", "piotr.nowak@example.org", "02.02.1990"),
             ("0001014", "Adam", "Nowak", "piotr.nowak@example.org", "03.03.1992"),
             ("0001015", "Barbara", "Mazur", "b.mazur@example.org", "04.04.1980"),
             ("0001016", "Ola", "Zając", "ola.zajac@example.org", "15.06.{y10}")),
    BRANCH: (("0002001", "Leszek", "Mazur", "l.mazur@example.org", "05.05.1975"),
             # Registered online, never confirmed at the branch's desk.
             ("0002002", "Marta", "Nowicka", "m.nowicka@example.org", "06.06.1985")),
}
UNCONFIRMED = {"0002002"}
# (library, sender, subject, body, the outcome it must get), in arrival order.
ROUND_TWO_MAIL = (
    ("demo", "piotr.nowak@example.org", "LEGIMI", "Ewa Nowak, karta 0001013", "address_limit"),
    ("demo", "piotr.nowak@example.org", "LEGIMI", "Adam Nowak, karta 0001014", "address_limit"),
    ("demo", "ola.zajac@example.org", "LEGIMI", "Ola Zając 0001016", "age_restricted"),
    ("demo", "b.mazur@example.org", "TEST LEGIMI", "Barbara Mazur 0001015", "eligibility_test"),
    # A test whose verdict is a refusal (debt) reads in Polish too.
    ("demo", "jan.wojcik@example.org", "TEST LEGIMI", "Jan Wójcik 0001004", "eligibility_test"),
    ("demo", "Promocje <promocje@oferty.example.net>", "LEGIMI", "Kody taniej!",
     "ignored_sender"),
    (BRANCH, "l.mazur@example.org", "LEGIMI", "Leszek Mazur 0002001", "pool_not_ready"),
    (BRANCH, "l.mazur@example.org", "EMPIK GO", "Leszek Mazur 0002001", "service_not_offered"),
    (BRANCH, "m.nowicka@example.org", "LEGIMI", "Marta Nowicka 0002002", "unconfirmed_account"),
)


def _round_two_mail(sender: str, to: str, subject: str, body: str) -> tuple[str, bytes]:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content(body)
    return msg["Message-ID"], bytes(msg)


def _round_two(root: Path, config: Path, now: datetime) -> None:
    """The demo's installation reconfigured and sent the mail of ROUND_TWO_MAIL, processed
    as ``run --once`` does, each mail checked for the outcome it is there for."""
    from mailbot.clock import month_of
    from mailbot.config import load_settings
    from mailbot.imports.load import import_readers
    from mailbot.rules.window import window_opens
    from mailbot.runonce import run_once

    text = config.read_text(encoding="utf-8")
    top, demo = "\n[smtp]\n", "replies_per_sender_per_day = 3\n"
    assert top in text and demo in text, "the demo's config changed: update the second round"
    text = text.replace(top, "\n" + ROUND_TWO_TOP + top, 1).replace(demo, demo + ROUND_TWO_DEMO)
    config.write_text(text + ROUND_TWO_BRANCH.format(root=root), encoding="utf-8")
    settings = load_settings(config)
    sessions = open_database(settings.database_url)
    sync_config(sessions, settings)
    year, month = month_of(now, WAW)
    for lib, readers in ROUND_TWO_READERS.items():
        rows = "".join(f"{card};{first};{last};{email};31.12.{year + 1};0;0;01.01.{year};"
                       f"01.{month:02d}.{year};{born.format(y10=year - 10)};"
                       f"{'nie' if card in UNCONFIRMED else 'tak'}\n"
                       for card, first, last, email, born in readers)
        path = root / f"readers-{lib}.csv"
        path.write_text(READERS_HEADER + rows, encoding="utf-8")
        import_readers(sessions, settings, path=str(path), library_id=lib, now=now)
    window = window_opens(settings.library("demo"), WAW, year, month)
    expected = {}
    for i, (lib, sender, subject, body, outcome) in enumerate(ROUND_TWO_MAIL):
        box = settings.mailboxes_of(lib)[0]
        message_id, raw = _round_two_mail(sender, box.address, subject, body)
        md = mailbox.Maildir(box.path, create=True)
        key = md.add(raw)
        arrival = (window + timedelta(minutes=2, seconds=5 * i)).timestamp()
        os.utime(next(Path(box.path).glob(f"*/{key}*")), (arrival, arrival))
        expected[message_id] = outcome
    run_once(sessions, settings, now=max(now, window + timedelta(minutes=10)))
    with sessions() as s:
        got = {r.message_id: r.outcome for r in s.scalars(
            select(Request).where(Request.message_id.in_(expected)))}
    assert got == expected


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The demo installation and its second round, its staff's actions done, a mailbox
    and a relay failing."""
    root = tmp_path_factory.mktemp("polish") / "demo"
    now = datetime.now(UTC)
    assert run_demo(str(root), now=now) == 0
    config = root / "mailbot.toml"
    _round_two(root, config, now)
    # A relay that cannot be reached, so the queue shows its row (the demo's replies went
    # to the file outbox before).
    text = config.read_text(encoding="utf-8").replace(
        f'file_outbox = "{root}/outbox"',
        'host = "127.0.0.1"\nport = 1\nstarttls = false\ntimeout = 2')
    config.write_text(text, encoding="utf-8")
    from mailbot.config import load_settings
    from mailbot.web.app import create_app

    settings = load_settings(config)
    sessions = open_database(settings.database_url)
    add_user(sessions, settings, name="bibliotekarka", password=PASSWORD, libraries=["demo"],
             is_admin=True, now=now)
    with sessions.begin() as s:
        mb = s.scalars(select(Mailbox).where(
            Mailbox.address == "ebooki@biblioteka-demo.example.org")).one()
        mb.last_error = ("imap.biblioteka-demo.example.org:993: login refused: "
                         "[AUTHENTICATIONFAILED] Invalid credentials (Failure)")
        mb.down_since = now - timedelta(minutes=20)
        key = settings.smtp.key
        relay = s.get(Relay, key) or Relay(key=key, failures=0)
        relay.last_error = "connection refused: is the relay running, are host and port right?"
        relay.down_since = now - timedelta(minutes=5)
        s.add(relay)
        # One reply that could not go out, and one that bounced: the queue's failed list.
        failed = s.scalars(select(Outbox).where(Outbox.state == "sent",
                                                Outbox.kind != "staff_alert")
                           .order_by(Outbox.id)).first()
        assert failed is not None
        failed.state, failed.attempts = "failed", 3
        failed.last_error = "the relay answered 550 5.1.1 <x@example.org>: user unknown"
        # And the branch's staff alert (its pool is not imported): the queue's banner says
        # the staff were not told.
        alert = s.scalars(select(Outbox).where(Outbox.kind == "staff_alert")).one()
        alert.state, alert.attempts = "failed", 3
        alert.last_error = "the relay answered 550 5.7.1 <it@biblioteka-demo.example.org>: " \
                           "relaying denied"
    from starlette.testclient import TestClient

    client = TestClient(create_app(settings, sessions), base_url="http://testserver")
    page = client.get("/login?lang=pl")
    r = client.post("/login", data={"csrf": csrf_of(page.text), "name": "bibliotekarka",
                                    "password": PASSWORD, "next": "/queue"},
                    follow_redirects=True)
    assert r.status_code == 200
    with sessions() as s:
        by_outcome = {}
        for req in s.scalars(select(Request).order_by(Request.id)):
            by_outcome.setdefault(req.outcome, req.id)
    # Staff actions: issue anyway (debt: the patron has just paid), mark handled (the
    # question about opening hours, answered by phone), resend a sent reply.
    debt = by_outcome["debt"]
    form = csrf_of(client.get(f"/requests/{debt}").text)
    r = client.post(f"/requests/{debt}/override", follow_redirects=True,
                    data={"csrf": form, "service": "legimi", "card": "0001004",
                          "reason": "zapłacił karę przy ladzie"})
    assert r.status_code == 200
    manual = by_outcome["not_a_request"]
    r = client.post(f"/requests/{manual}/handled", follow_redirects=True,
                    data={"csrf": form, "note": "odpowiedziano telefonicznie"})
    assert r.status_code == 200
    issued = by_outcome["issued"]
    with sessions() as s:
        sent = s.scalars(select(Outbox).where(Outbox.request_id == issued)).first()
    r = client.post(f"/requests/{issued}/resend", follow_redirects=True,
                    data={"csrf": form, "outbox_id": str(sent.id)})
    assert r.status_code == 200
    # Issue anyway over the address limit: a daughter with a card of her own.
    family = by_outcome["address_limit"]
    r = client.post(f"/requests/{family}/override", follow_redirects=True,
                    data={"csrf": form, "service": "legimi", "card": "0001013",
                          "reason": "córka, własna karta"})
    assert r.status_code == 200
    with sessions() as s:
        actions = [a.action for a in s.scalars(select(AuditLog))]
        assert {"override", "handled", "resend"} <= set(actions)
        assert actions.count("override") == 2
    return settings, sessions, client


def test_the_pages_are_read_over_a_request_of_every_outcome(site):
    # Each outcome of the catalogue is some request's (or was, before staff issued a code
    # anyway), and the queue shows the branch's missing pool and its unsent staff alert:
    # the pages above are read with all of them, and a change here cannot drop one unseen.
    settings, sessions, client = site
    with sessions() as s:
        reqs = list(s.scalars(select(Request)))
    outcomes = {r.outcome for r in reqs}
    was = {step["args"]["was"] for r in reqs for step in r.trail or []
           if step.get("rule") == "staff_override"}
    assert {"debt", "address_limit"} <= was
    assert sorted(set(Outcome) - outcomes - was) == []
    assert "address_limit" in outcomes  # the family's other request, still refused
    queue = client.get("/queue/live?lang=pl").text
    assert f'data-testid="pool-not-ready-{BRANCH}-legimi"' in queue
    assert f'data-testid="staff-alert-failed-{BRANCH}-legimi"' in queue


def _get_urls(sessions) -> list[str]:  # noqa: ANN001
    """Every GET page of the route table, its path parameters filled from the data."""
    with sessions() as s:
        request_ids = [r.id for r in s.scalars(select(Request).order_by(Request.id))]
        # This month's (a slip is reprinted only for a code of this month).
        code_ids = [e.code_id for e in s.scalars(select(LedgerEntry).order_by(
            LedgerEntry.month.desc(), LedgerEntry.id).limit(2))]
        month = s.scalars(select(Code.month)).first()
    urls = []
    for route in routes():
        if not isinstance(route, Route) or "GET" not in (route.methods or ()):
            continue
        path = route.path
        if path in ("/login", "/pomoc/zrzuty/{name:str}") or path.endswith(".html"):
            continue  # the login page is seen logged in elsewhere; images; mail HTML
        if "{request_id:int}" in path:
            urls += [path.replace("{request_id:int}", str(i)) for i in request_ids]
        elif "{code_id:int}" in path:
            urls += [path.replace("{code_id:int}", str(i)) for i in code_ids]
        elif "{" in path:
            pytest.fail(f"a GET page this test does not know how to fill: {path}")
        elif path == "/pools":
            urls += ["/pools", f"/pools?library=demo&service=legimi&month={month}"]
        elif path == "/pools/withdraw":
            urls.append(f"/pools/withdraw?library=demo&service=legimi&month={month}")
        elif path == "/accounts/remove":
            urls.append("/accounts/remove?name=bibliotekarka")  # the confirmation page
        elif path == "/reports/download":
            continue  # the XLSX: below
        else:
            urls.append(path)
    return urls


def _reprint(client, sessions, code_id: int) -> None:  # noqa: ANN001
    """The desk's audited reprint of a code, after which its slip may be opened."""
    with sessions() as s:
        entry = s.scalars(select(LedgerEntry).where(LedgerEntry.code_id == code_id)).one()
    form = csrf_of(client.get("/desk").text)
    r = client.post("/desk", follow_redirects=False,
                    data={"csrf": form, "library": entry.library_id, "service": entry.service,
                          "card": entry.card_number, "action": "reprint",
                          "code_id": str(code_id)})
    assert r.status_code == 303, (r.status_code, entry.month)


def test_every_page_in_polish_holds_no_english_word(site):
    # Every page the route table serves, over every outcome's request: Polish only.
    settings, sessions, client = site
    patron = _patron_data(sessions)
    problems = {}
    urls = _get_urls(sessions)
    assert len([u for u in urls if u.startswith("/requests/")]) >= 20
    for url in urls:
        if url.startswith("/desk/slip/"):  # a slip opens only after its (re)print
            _reprint(client, sessions, int(url.rsplit("/", 1)[1]))
        r = client.get(url + ("&" if "?" in url else "?") + "lang=pl")
        assert r.status_code == 200, (url, r.status_code)
        text = visible_text(r.text, patron)
        found = english_in(text)
        if found:
            problems[url] = sorted({f"{w}: …{_around(text, w)}…" for w in found})
        assert client.get(url + ("&" if "?" in url else "?") + "lang=en").status_code == 200
    # The desk's verdict for a patron with overdue loans, its trail unfolded.
    desk = client.get("/desk?lang=pl").text
    r = client.post("/desk", data={"csrf": csrf_of(desk), "library": "demo", "card": "0001005",
                                   "name": "Maria Kamińska", "service": "legimi",
                                   "action": "check"})
    assert r.status_code == 200 and "2 przetrzymane pozycje" in html.unescape(r.text)
    text = visible_text(r.text, patron)
    if english_in(text):
        problems["POST /desk"] = sorted(set(english_in(text)))
    assert not problems, problems


def test_the_trail_of_every_outcome_reads_in_polish_with_times_in_the_librarys_zone(site):
    # Every request's trail: each step's note in Polish, and the too-early note's times on
    # the Warsaw clock, labelled, never UTC.
    settings, sessions, client = site
    with sessions() as s:
        reqs = list(s.scalars(select(Request).order_by(Request.received_at)))
    too_early = next(r for r in reqs if r.outcome == "too_early")
    page = client.get(f"/requests/{too_early.id}?lang=pl").text
    received = too_early.received_at.replace(tzinfo=UTC).astimezone(WAW)
    assert f"Wpłynęło {received:%Y-%m-%d %H:%M:%S %Z}" in html.unescape(page)
    notes_seen = 0
    for r in reqs:
        page = html.unescape(client.get(f"/requests/{r.id}?lang=pl").text)
        for step in r.trail or []:
            if "note" not in step:
                continue
            assert "args" in step, (r.outcome, step)  # nothing new is stored as English
            text = notes.note_text("pl", step, zone=WAW)
            assert text != step["note"], ("no text for the note", step)
            assert text in page, (r.outcome, text)
            notes_seen += 1
    assert notes_seen >= 20


def test_the_audit_log_words_its_entries_in_the_staffs_language(site):
    # The actions done above, worded from their values in Polish and English; an old row
    # (English detail, no values) is shown as it was stored.
    settings, sessions, client = site
    with sessions.begin() as s:
        s.add(AuditLog(at=datetime.now(UTC), user_name="stary", library_id="demo",
                       action="override", detail="debt -> issued (legimi, card 1): old row"))
    pl = html.unescape(client.get("/audit?lang=pl").text)
    en = html.unescape(client.get("/audit?lang=en").text)
    assert "Zamiast „zadłużenie” wydano kod Legimi (karta 0001004). Powód: zapłacił karę " \
           "przy ladzie" in pl
    assert "Notatka: odpowiedziano telefonicznie" in pl
    assert "wróciła do kolejki wysyłki (była: wysłana" in pl
    assert "a code for Legimi was issued (card 0001004). Reason: zapłacił karę przy ladzie" in en
    assert "is back in the sending queue (was: sent" in en
    assert "debt -> issued (legimi, card 1): old row" in pl  # old rows stay readable


def test_mailbox_and_relay_errors_lead_with_a_polish_sentence_and_fold_the_raw_text(site):
    settings, sessions, client = site
    page = html.unescape(client.get("/queue/live?lang=pl").text)
    assert i18n.t("pl", "problem_login") in page
    assert i18n.t("pl", "problem_unreachable") in page
    assert i18n.t("pl", "problem_refused") in page
    # The server's own words are there for IT, folded away.
    details = re.findall(r'<details class="it-details">(.*?)</details>', page, re.S)
    assert any("[AUTHENTICATIONFAILED]" in d for d in details)
    assert "[AUTHENTICATIONFAILED]" not in re.sub(r'<details class="it-details">.*?</details>',
                                                  "", page, flags=re.S)


def test_the_xlsx_report_in_polish_names_refusals_and_services_and_the_local_time(site):
    import io

    from openpyxl import load_workbook

    settings, sessions, client = site
    page = html.unescape(client.get("/reports?lang=pl").text)
    assert re.search(r"Stan na \d{4}-\d\d-\d\d \d\d:\d\d CES?T \(Europe/Warsaw\)", page)
    r = client.get("/reports/download?lang=pl")
    assert r.status_code == 200
    wb = load_workbook(io.BytesIO(r.content))
    sheet = wb.worksheets[0]
    cells = [str(c.value) for row in sheet.iter_rows() for c in row if c.value is not None]
    generated = next(c for c in cells if c.startswith("Wygenerowano"))
    assert "UTC" not in generated and "(Europe/Warsaw)" in generated
    assert re.search(r"\d{2}:\d{2} CES?T \(Europe/Warsaw\)", generated)
    header = [c.value for c in sheet[3]]
    labels = {Outcome(o).label("pl"): o for o in REFUSALS}
    assert len([h for h in header if h in labels]) >= 8  # the demo's refusals, by name
    assert not set(header) & set(REFUSALS)
    assert "Empik Go" in cells and "empik_go" not in cells
    refusals = wb.worksheets[1]
    rows = list(refusals.iter_rows(values_only=True))
    assert rows[0][3] == "Powód odmowy" and rows[0][5] == "Kod wyniku"
    # The label for staff, the outcome id kept for tools that filter.
    assert len(rows) > 8
    assert all(labels[row[3]] == row[5] for row in rows[1:])
    assert ("za wcześnie", "too_early") in {(row[3], row[5]) for row in rows[1:]}
    for row in sheet.iter_rows(min_row=3, values_only=True):
        words = " ".join(str(v) for v in row if isinstance(v, str) and "@" not in v)
        assert not english_in(words.replace("Legimi", "").replace("Empik Go", "")), row


def _hit_notes() -> set[str]:
    """The note keys the rules' source gives ``Hit`` (and pool's helper) literally."""
    keys: set[str] = set()
    for path in RULES_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or len(node.args) < 2:
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name != "Hit" and not name.startswith("_"):
                continue
            note = node.args[1]
            for value in (note.body, note.orelse) if isinstance(note, ast.IfExp) else (note,):
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    keys.add(value.value)
    return keys


def test_every_note_a_rule_can_leave_has_its_text_in_both_languages(site):
    settings, sessions, client = site
    keys = _hit_notes()
    # What intake's rules choose by table, and each loop reason's key.
    keys |= set(intake_rules._READS_KEYS.values()) | {"reads_automatic"}
    reasons = [*loops._REASON_KEYS, "precedence:bulk", "x-autoreply", "list-post"]
    keys |= {loops.reason_note(reason)[0] for reason in reasons}
    assert {"no_card", "debt", "overdue", "too_early", "loop_auto_submitted",
            "staff_override"} - {"staff_override"} <= keys
    # And every note the demo's trails hold (the pool's and the desk's among them).
    with sessions() as s:
        for r in s.scalars(select(Request)):
            keys |= {step["note"] for step in r.trail or [] if "note" in step}
    missing = {}
    for lang in i18n.LANGUAGES:
        missing[lang] = sorted(k for k in keys if not i18n.has(lang, f"note_{k}"))
    assert missing == {"pl": [], "en": []}


def test_no_polish_note_text_holds_an_english_word():
    # Each note text, its values filled as a rule fills them, reads Polish.
    sample = {"n": 3, "cap": 1, "age": 10, "min_age": 16, "amount": "12.50",
              "received_at": "2026-11-30T22:59:50+00:00", "opens_at": "2026-11-30T23:00:00+00:00",
              "date_at": "2026-11-30T22:59:48+00:00", "issued_at": "2026-12-01T21:45:00+00:00",
              "service": "empik_go", "was": "debt", "reply_state": "sent"}
    pl = translations.entries("pl")
    for key, forms in sorted((k, t) for k, t in pl.items()
                             if k.startswith(("note_", "audit_", "problem_"))):
        counted = isinstance(forms, tuple)  # a plural entry: each of its forms is read
        fields = {f for form in (forms if counted else (forms,))
                  for _, f, _, _ in string.Formatter().parse(form) if f}
        for n in (1, 3, 5) if counted else (3,):
            args = {f: sample.get(f, "0001004") for f in fields} | ({"n": n} if counted else {})
            prefix, _, rest = key.partition("_")
            if prefix == "audit":
                action, variant = rest, None
                for known in ("resend", "handled", "override"):
                    if rest.startswith(known + "_"):
                        action, variant = known, rest[len(known) + 1:]
                text = notes.audit_text("pl", action, {**args, **({"variant": variant}
                                                                 if variant else {})},
                                        "", zone=WAW)
            elif prefix == "note":
                text = notes.note_text("pl", rest, args, zone=WAW)
            else:
                text = i18n.tn("pl", key, **args) if counted else forms
            text = text.replace("Legimi", "").replace("Empik Go", "")
            assert not english_in(text), (key, n, text)
    # Times as the Warsaw clock says them, with the zone's name.
    assert notes.note_text("pl", "already_received", {"service": "legimi",
                                                      "issued_at": sample["issued_at"]},
                           zone=WAW) == "Kod Legimi wydany 2026-12-01 22:45 CET."
    assert notes.note_text("pl", "overdue", {"n": 2}, zone=WAW) == "2 przetrzymane pozycje."
    assert notes.note_text("pl", "overdue", {"n": 5}, zone=WAW) == "5 przetrzymanych pozycji."
    assert notes.note_text("en", "overdue", {"n": 1}, zone=WAW) == "1 overdue item."
    assert notes.note_text("pl", "debt", {"amount": "12.50"}, zone=WAW) == "Zadłużenie: 12,50 zł."
    # An old step (no values) is the English it was stored as.
    assert notes.note_text("pl", {"rule": "debt", "result": "refused",
                                  "note": "balance due 12.50"}, zone=WAW) == "balance due 12.50"
