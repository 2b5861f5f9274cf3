"""``mailbot demo``: the embedded default, no servers needed.

Creates a demo folder with a config, a SQLite database, sample readers and code pools, a
Maildir intake holding sample patron mails (one or more per outcome) and a file outbox;
processes them exactly as ``run --once`` would; prints a table of outcomes.
"""

from __future__ import annotations

import mailbox
import os
import shutil
import sys
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from sqlalchemy import select

from mailbot.clock import add_months, month_key, month_of, utcnow
from mailbot.config import load_settings
from mailbot.db.models import ActivationReport, Code, CodePool, LedgerEntry, Request
from mailbot.db.session import open_database, sync_config
from mailbot.errors import BadInput

MARKER = ".mailbot-demo"
TZ = "Europe/Warsaw"

READERS = """numer_karty;imie;nazwisko;email;wazna_do;zadluzenie;przetrzymania;aktualizacja_danych;ostatnie_wypozyczenie
0001001;Anna;Kowalska;anna.kowalska@example.org;31.12.{y1};0;0;10.01.{y};05.{m}.{y}
0001002;Piotr;Nowak;piotr.nowak@example.org;31.12.{y1};0;0;15.02.{y};02.{m}.{y}
0001003;Zofia;Wiśniewska;zofia.w@example.org;31.12.{y1};0;0;01.03.{y};01.{m}.{y}
0001004;Jan;Wójcik;jan.wojcik@example.org;31.12.{y1};12,50;0;01.03.{y};01.{m}.{y}
0001005;Maria;Kamińska;maria.k@example.org;31.12.{y1};0;2;01.03.{y};01.{m}.{y}
0001006;Tomasz;Lewandowski;tomasz.l@example.org;31.01.{y};0;0;01.03.{y};01.{m}.{y}
0001007;Ewa;Zielińska;ewa.z@example.org;31.12.{y1};0;0;01.12.{y0};01.{m}.{y}
0001008;Krzysztof;Szymański;k.szymanski@example.org;31.12.{y1};0;0;01.03.{y};01.12.{y0}
0001009;Agnieszka;Woźniak;a.wozniak@example.org;31.12.{y1};0;0;01.03.{y};01.{m}.{y}
0001010;Paweł;Dąbrowski;pawel.d@example.org;31.12.{y1};0;0;01.03.{y};01.{m}.{y}
0001011;Katarzyna;Kozłowska;kasia.k@example.org;31.12.{y1};0;0;01.03.{y};01.{m}.{y}
0001012;Michał;Jankowski;michal.j@example.org;31.12.{y1};0;0;01.03.{y};01.{m}.{y}
"""

CONFIG = """# Written by `mailbot demo`; every key is explained in config.example.toml.
timezone = "{tz}"
database_url = "sqlite:///{dir}/demo.db"

[smtp]
file_outbox = "{dir}/outbox"

[[libraries]]
id = "demo"
name = "Biblioteka Publiczna Demo"
contact = "tel. 22 000 00 00, wypozyczalnia@biblioteka-demo.example.org"
check_sender = true
check_data_updated = true
check_loans_this_year = true
penalty_months = 3
replies_per_sender_per_day = 3

[[mailboxes]]
library = "demo"
address = "ebooki@biblioteka-demo.example.org"
type = "maildir"
path = "{dir}/Maildir"
"""


def _mail(sender: str, subject: str, body: str | None, *, html: str | None = None,
          date_header: datetime | None = None, headers: dict[str, str] | None = None,
          charset: str = "utf-8") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "ebooki@biblioteka-demo.example.org"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    if date_header is not None:
        msg["Date"] = format_datetime(date_header)
    for k, v in (headers or {}).items():
        msg[k] = v
    if body is not None:
        msg.set_content(body, charset=charset)
        if html is not None:
            msg.add_alternative(html, subtype="html")
    elif html is not None:
        msg.set_content(html, subtype="html")
    return bytes(msg)


def sample_mails(window: datetime) -> list[tuple[datetime, bytes, str]]:
    """(arrival, raw mail, the outcome the demo expects) in arrival order."""
    t = window
    m = [
        (t - timedelta(seconds=10), _mail("Anna Kowalska <anna.kowalska@example.org>", "LEGIMI",
         "Dzień dobry,\nproszę o kod.\nAnna Kowalska\nnr karty 0001001",
         date_header=t - timedelta(seconds=12)), "too_early"),
        (t + timedelta(seconds=3), _mail("Anna Kowalska <anna.kowalska@example.org>", "LEGIMI",
         "Dzień dobry,\nuprzejmie proszę o kod Legimi.\n\nAnna Kowalska\nkarta: 0001001",
         date_header=t + timedelta(seconds=1)), "issued"),
        (t + timedelta(seconds=7), _mail("piotr.nowak@example.org", "Empik-Go",
         None, html="<p>Dzień dobry,</p><p>Piotr Nowak, numer karty <b>0001002</b></p>"),
         "issued"),
        (t + timedelta(seconds=9), _mail("Zofia <zofia.w@example.org>", "EMPIK GO",
         "Zofia Wiśniewska, karta 0001003", charset="cp1250"), "pool_exhausted"),
        (t + timedelta(seconds=20), _mail("jan.wojcik@example.org", "Re: legimi",
         "Jan Wójcik 0001004"), "debt"),
        (t + timedelta(seconds=25), _mail("maria.k@example.org", "Legimi", "Maria Kamińska 0001005"),
         "overdue"),
        (t + timedelta(seconds=30), _mail("tomasz.l@example.org", "LEGIMI",
         "Tomasz Lewandowski, karta 0001006"), "inactive_account"),
        (t + timedelta(seconds=35), _mail("ewa.z@example.org", "LEGIMI", "Ewa Zielińska 0001007"),
         "data_not_updated"),
        (t + timedelta(seconds=40), _mail("k.szymanski@example.org", "LEGIMI",
         "Krzysztof Szymański 0001008"), "no_loans_this_year"),
        (t + timedelta(seconds=45), _mail("a.wozniak@example.org", "LEGIMI",
         "Agnieszka Woźniak 0001009"), "blocked"),
        (t + timedelta(seconds=50), _mail("inny.adres@example.net", "LEGIMI",
         "Paweł Dąbrowski 0001010"), "sender_mismatch"),
        (t + timedelta(seconds=55), _mail("kasia.k@example.org", "LEGIMI",
         "Katarzyna Nowacka 0001011"), "name_mismatch"),
        (t + timedelta(seconds=60), _mail("ktos@example.net", "LEGIMI", "Jan Nieznany 0009999"),
         "unknown_card"),
        (t + timedelta(seconds=65), _mail("michal.j@example.org", "LEGIMI",
         "Michał Jankowski, proszę o kod"), "no_card"),
        (t + timedelta(seconds=70), _mail("michal.j@example.org", "LEGIMI",
         "Michał Jankowski\n0001012 albo 0001021, nie pamiętam"), "ambiguous_card"),
        (t + timedelta(seconds=75), _mail("michal.j@example.org", "LEGIMI",
         "Dzień dobry, czy mogę prosić o kod?"), "no_card"),
        (t + timedelta(seconds=80), _mail("anna.kowalska@example.org", "Re: LEGIMI",
         "Zgubiłam kod, proszę o ponowne przesłanie.\nAnna Kowalska 0001001"), "already_received"),
        (t + timedelta(seconds=85), _mail("michal.j@example.org", "LEGIMI",
         "Michał Jankowski 0001012"), "rate_limited"),
        (t + timedelta(seconds=90), _mail("MAILER-DAEMON@example.net", "Undelivered Mail",
         "Delivery failed", headers={"Auto-Submitted": "auto-replied"}), "ignored_loop"),
        (t + timedelta(seconds=95), _mail("czytelnik@example.org", "Godziny otwarcia",
         "W jakich godzinach jest czynna biblioteka?"), "not_a_request"),
    ]
    return m


def _seed_history(sessions, *, year: int, month: int, now: datetime) -> None:
    """Last month Agnieszka (0001009) got a code she never activated: she is blocked."""
    py, pm = add_months(year, month, -1)
    prev = month_key(py, pm)
    with sessions.begin() as s:
        pool = CodePool(library_id="demo", service="legimi", month=prev, source_file="demo",
                        imported_at=now, size=1)
        s.add(pool)
        s.flush()
        code = Code(code="DEMO-OLD-0001", pool_id=pool.id, library_id="demo", service="legimi",
                    month=prev, issued_at=now - timedelta(days=30))
        s.add(code)
        s.flush()
        s.add(LedgerEntry(code_id=code.id, library_id="demo", service="legimi", month=prev,
                          card_number="0001009", email="a.wozniak@example.org",
                          issued_at=now - timedelta(days=30), channel="desk"))
        s.add(ActivationReport(library_id="demo", month=prev, imported_at=now))


def prepare(directory: str) -> Path:
    root = Path(directory).resolve()
    if root.exists():
        if not (root / MARKER).exists():
            raise BadInput("exists and is not a demo folder (no .mailbot-demo marker); "
                           "choose another with --dir", file=str(root))
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / MARKER).write_text("created by mailbot demo\n")
    (root / "mailbot.toml").write_text(CONFIG.format(tz=TZ, dir=root), encoding="utf-8")
    return root


DEMO_USER = "demo"


def _demo_login(sessions, settings, now: datetime) -> str:  # noqa: ANN001
    """A fresh admin login for the dashboard; returns its password (shown once)."""
    import secrets

    from mailbot.web.staff_accounts import add_user

    password = secrets.token_urlsafe(12)
    add_user(sessions, settings, name=DEMO_USER, password=password, libraries=["demo"],
             is_admin=True, now=now)
    return password


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_dashboard(sessions, settings, *, port: int, password: str) -> None:  # noqa: ANN001
    """Serves the dashboard on 127.0.0.1 until Ctrl-C; meanwhile mail dropped into the
    demo Maildir is fetched, decided and answered every few seconds, as the daemon would."""
    import threading

    from mailbot.runonce import run_once
    from mailbot.web.app import create_app
    from mailbot.web.server import WebServer

    wake, stop = threading.Event(), threading.Event()

    def work() -> None:
        while not stop.is_set():
            wake.wait(5.0)
            wake.clear()
            if stop.is_set():
                break
            try:
                run_once(sessions, settings)
            except Exception as exc:  # the demo goes on; the dashboard shows the state
                print(f"demo: processing failed: {exc}", file=sys.stderr)

    port = port or _free_port()
    server = WebServer(create_app(settings, sessions, wake_sender=wake.set),
                       host="127.0.0.1", port=port)
    worker = threading.Thread(target=work, name="demo-worker", daemon=True)
    worker.start()
    print(f"\ndashboard: {server.url}   login: {DEMO_USER}   password: {password}")
    print("(Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    finally:
        stop.set()
        wake.set()
        worker.join(30)


def run_demo(directory: str, *, now: datetime | None = None, serve: bool = False,
             port: int = 8080) -> int:
    from zoneinfo import ZoneInfo

    from mailbot.imports.load import import_codes, import_readers
    from mailbot.rules.window import window_opens
    from mailbot.runonce import run_once

    now = now or utcnow()
    root = prepare(directory)
    settings = load_settings(root / "mailbot.toml")
    tz = ZoneInfo(TZ)
    year, month = month_of(now, tz)
    y = year
    (root / "readers.csv").write_text(
        READERS.format(y=y, y0=y - 1, y1=y + 1, m=f"{month:02d}"), encoding="cp1250")
    (root / "legimi.csv").write_text("kod\n" + "".join(f"LEG-{month:02d}{i:02d}-DEMO\n"
                                                       for i in range(1, 11)))
    (root / "empik_go.csv").write_text("Kod dostępu\nEGO-DEMO-0001\n", encoding="utf-8")
    sessions = open_database(settings.database_url)
    sync_config(sessions, settings)
    import_readers(sessions, settings, path=str(root / "readers.csv"), library_id="demo", now=now)
    mk = month_key(year, month)
    import_codes(sessions, settings, path=str(root / "legimi.csv"), library_id="demo",
                 service="legimi", month=mk, column=None, now=now)
    import_codes(sessions, settings, path=str(root / "empik_go.csv"), library_id="demo",
                 service="empik_go", month=mk, column=None, now=now)
    _seed_history(sessions, year=year, month=month, now=now)

    md = mailbox.Maildir(root / "Maildir", create=True)
    window = window_opens(settings.library("demo"), tz, year, month)
    expected = []
    for arrival, raw, outcome in sample_mails(window):
        key = md.add(raw)
        path = next((root / "Maildir").glob(f"*/{key}*"))
        os.utime(path, (arrival.timestamp(), arrival.timestamp()))
        expected.append(outcome)

    run_once(sessions, settings, now=max(now, window + timedelta(minutes=5)))

    with sessions() as s:
        rows = s.execute(select(Request).order_by(Request.received_at)).scalars().all()
        print(f"\nmailbot demo in {root}\n")
        print(f"{'received (Warsaw)':20} {'from':32} {'subject':18} {'card':8} outcome")
        print("-" * 100)
        for r in rows:
            local = r.received_at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
            print(f"{local:20} {(r.from_address or '')[:32]:32} {r.subject[:18]:18} "
                  f"{(r.card_number or '-'):8} {r.outcome or r.state}")
        mismatched = [(r, want) for r, want in zip(rows, expected, strict=True)
                      if r.outcome != want]
    print(f"\nreplies written to {root / 'outbox'} (open the .eml files in a mail client)")
    print(f"config: {root / 'mailbot.toml'}  —  try: mailbot --config {root / 'mailbot.toml'} "
          "status")
    if mismatched:
        for r, want in mismatched:
            print(f"demo: {r.from_address} got {r.outcome}, expected {want}", file=sys.stderr)
        return 1
    password = _demo_login(sessions, settings, now)
    if not serve:
        print(f"dashboard login (mailbot --config {root / 'mailbot.toml'} run serves it): "
              f"{DEMO_USER} / {password}")
        return 0
    from mailbot.db.running import holding_running

    with holding_running(settings.database_url):  # `mailbot restore` refuses meanwhile
        serve_dashboard(sessions, settings, port=port, password=password)
    return 0
