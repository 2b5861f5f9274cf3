"""Helpers for the dashboard tests: a two-library installation fed through real Maildirs
(the same intake as IMAP, no server needed), logins and CSRF tokens."""

from __future__ import annotations

import mailbox
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import warnings

from sqlalchemy import select

with warnings.catch_warnings():
    # Starlette 1.x suggests httpx2 for its TestClient; httpx works the same here.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from mailbot.cli import main
from mailbot.clock import month_key, month_of, utcnow
from mailbot.config import load_settings
from mailbot.db.models import Request
from mailbot.db.session import open_database, sync_config
from mailbot.rules.window import window_opens
from mailbot.web.app import create_app
from tests.botenv import READER_HEADER, WAW, request_mail

PASSWORD = "correct horse battery"

SITE = """
timezone = "Europe/Warsaw"
database_url = "sqlite:///{root}/mailbot.db"

[smtp]
file_outbox = "{root}/outbox"

[web]
secret_key_file = "{root}/web.key"

[[libraries]]
id = "north"
name = "Biblioteka Północna"

[[libraries]]
id = "south"
name = "Biblioteka Południowa"

[[mailboxes]]
library = "north"
address = "ebooki@north.test"
type = "maildir"
path = "{root}/north"

[[mailboxes]]
library = "south"
address = "ebooki@south.test"
type = "maildir"
path = "{root}/south"
"""


def reader_row(card: str, first: str, last: str, email: str, year: int) -> str:
    return f"{card};{first};{last};{email};{year + 1}-12-31;0;0;{year}-01-15;{year}-02-01"


@dataclass
class Site:
    root: Path
    config: Path

    def cli(self, *args: str) -> int:
        return main(["--config", str(self.config), *args])

    @property
    def settings(self) -> Any:
        return load_settings(self.config)

    @property
    def sessions(self) -> Any:
        return open_database(self.settings.database_url)

    @property
    def month(self) -> str:
        return month_key(*month_of(utcnow(), WAW))

    def window(self) -> datetime:
        y, m = month_of(utcnow(), WAW)
        return window_opens(self.settings.library("north"), WAW, y, m)

    def add_mail(self, library: str, raw: bytes, arrival: datetime) -> None:
        md = mailbox.Maildir(self.root / library, create=True)
        key = md.add(raw)
        path = next((self.root / library).glob(f"*/{key}*"))
        os.utime(path, (arrival.timestamp(), arrival.timestamp()))

    def run_once(self) -> int:
        return self.cli("run", "--once")

    def add_user(self, name: str, *libs: str, admin: bool = False,
                 password: str = PASSWORD) -> int:
        os.environ["MAILBOT_NEW_PASSWORD"] = password
        try:
            args = ["user", "add", name, *[x for lib in libs for x in ("--library", lib)]]
            return self.cli(*args, *(["--admin"] if admin else []))
        finally:
            del os.environ["MAILBOT_NEW_PASSWORD"]

    def request_of(self, address: str) -> Request:
        with self.sessions() as s:
            return s.scalars(select(Request).where(Request.from_address == address)
                             .order_by(Request.id)).first()

    def client(self, **kwargs: Any) -> TestClient:
        base_url = kwargs.pop("base_url", "http://testserver")
        settings = self.settings
        sessions = open_database(settings.database_url)
        return TestClient(create_app(settings, sessions, **kwargs), base_url=base_url)


def make_site(root: Path) -> Site:
    config = root / "mailbot.toml"
    config.write_text(SITE.format(root=root), encoding="utf-8")
    site = Site(root, config)
    for lib in ("north", "south"):
        mailbox.Maildir(root / lib, create=True)
    settings = site.settings
    sync_config(open_database(settings.database_url), settings)
    year = site.window().year
    readers = {
        "north": [reader_row("1000001", "Anna", "Nowak", "anna@patron.test", year),
                  reader_row("1000002", "Jan", "Kowal", "jan@patron.test", year),
                  reader_row("1000003", "Ewa", "Lis", "ewa@patron.test", year)],
        "south": [reader_row("2000001", "Olga", "Sowa", "olga@patron.test", year)],
    }
    for lib, rows in readers.items():
        path = root / f"readers-{lib}.csv"
        path.write_text("\n".join([READER_HEADER, *rows]) + "\n", encoding="utf-8")
        assert site.cli("import-readers", str(path), "--library", lib) == 0
        codes = root / f"codes-{lib}.csv"
        codes.write_text("kod\n" + "".join(f"{lib.upper()}-CODE-{i:03d}\n" for i in range(3)),
                         encoding="utf-8")
        assert site.cli("import-codes", str(codes), "--library", lib, "--service", "legimi",
                        "--month", site.month) == 0
    return site


def seed_requests(site: Site) -> None:
    """North: Anna gets a code, a stranger's card is unknown. South: Olga gets a code."""
    w = site.window()
    site.add_mail("north", request_mail("anna@patron.test", "LEGIMI", "Anna Nowak 1000001")[0],
                  w + timedelta(seconds=5))
    site.add_mail("north", request_mail("obcy@patron.test", "LEGIMI", "Obcy Ktoś 1999999")[0],
                  w + timedelta(seconds=6))
    site.add_mail("south", request_mail("olga@patron.test", "LEGIMI", "Olga Sowa 2000001")[0],
                  w + timedelta(seconds=7))
    assert site.run_once() == 0


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF token on the page"
    return m.group(1)


def login(client: TestClient, name: str, password: str = PASSWORD) -> Any:
    page = client.get("/login")
    return client.post("/login", data={"csrf": csrf_of(page.text), "name": name,
                                       "password": password, "next": "/queue"},
                       follow_redirects=True)
