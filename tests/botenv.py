"""A mailbot installation for end-to-end tests: config file, database, readers and codes,
wired to the test suite's real Dovecot and aiosmtpd."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from mailbot.cli import main
from mailbot.clock import month_key, month_of, utcnow
from mailbot.config import load_settings
from mailbot.db.models import Request
from mailbot.db.session import open_database
from mailbot.rules.window import window_opens

WAW = ZoneInfo("Europe/Warsaw")
_ids = itertools.count(1)

READER_HEADER = ("numer_karty;imie;nazwisko;email;wazna_do;zadluzenie;przetrzymania;"
                 "aktualizacja_danych;ostatnie_wypozyczenie")


def valid_reader(year: int) -> str:
    """The fields after a reader row's e-mail for a reader with nothing against them in
    ``year`` (card valid, no debt or overdue items, data updated, a loan this year)."""
    return f"{year + 1}-12-31;0;0;{year}-01-15;{year}-02-01"


def request_mail(sender: str, subject: str, body: str, *, date: datetime | None = None,
                 headers: dict[str, str] | None = None, html: bool = False) -> tuple[bytes, str]:
    """A patron's mail; returns (raw bytes, its Message-ID)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "ebooki@biblioteka.test"
    # An already encoded subject (RFC 2047) goes onto the wire exactly as given.
    msg["Subject"] = "SUBJECT-AS-GIVEN" if subject.startswith("=?") else subject
    mid = f"<req-{next(_ids)}-{id(msg)}@patron.test>"
    msg["Message-ID"] = mid
    if date is not None:
        msg["Date"] = format_datetime(date)
    for k, v in (headers or {}).items():
        msg[k] = v
    if html:
        msg.set_content(body, subtype="html")
    else:
        msg.set_content(body)
    raw = bytes(msg)
    if subject.startswith("=?"):
        raw = raw.replace(b"SUBJECT-AS-GIVEN", subject.encode("ascii"))
    return raw, mid


@dataclass
class Bot:
    root: Path
    config: Path
    library: str = "lib"
    extra: dict[str, Any] = field(default_factory=dict)

    def cli(self, *args: str) -> int:
        return main(["--config", str(self.config), *args])

    def run_once(self) -> int:
        return self.cli("run", "--once")

    def add_user(self, name: str, password: str, *, library: str | None = "lib") -> None:
        """A dashboard account made as IT makes one (``mailbot user add``)."""
        os.environ["MAILBOT_NEW_PASSWORD"] = password
        try:
            scope = ("--library", library) if library else ()
            assert self.cli("user", "add", name, *scope) == 0
        finally:
            del os.environ["MAILBOT_NEW_PASSWORD"]

    def settings(self):  # noqa: ANN201
        return load_settings(self.config)

    def requests(self) -> list[Request]:
        sessions = open_database(self.settings().database_url)
        with sessions() as s:
            return list(s.scalars(select(Request).options(selectinload(Request.code))
                                  .order_by(Request.received_at, Request.uid)))

    def window(self) -> datetime:
        """When this month's window opened (the tests' mail is dated from here)."""
        settings = self.settings()
        y, m = month_of(utcnow(), WAW)
        return window_opens(settings.library(self.library), WAW, y, m)

    @property
    def month(self) -> str:
        return month_key(*month_of(utcnow(), WAW))

    def import_readers(self, rows: list[str]) -> int:
        path = self.root / f"readers-{next(_ids)}.csv"
        path.write_text("\n".join([READER_HEADER, *rows]) + "\n", encoding="utf-8")
        return self.cli("import-readers", str(path), "--library", self.library)

    def import_codes(self, codes: list[str], *, service: str = "legimi") -> int:
        path = self.root / f"codes-{next(_ids)}.csv"
        path.write_text("kod\n" + "".join(c + "\n" for c in codes), encoding="utf-8")
        return self.cli("import-codes", str(path), "--library", self.library, "--service",
                        service, "--month", self.month)


def mailbox_toml(library: str, address: str, user: Any) -> str:
    """A [[mailboxes]] table for a test IMAP user (plain IMAP on loopback)."""
    return f"""
[[mailboxes]]
library = "{library}"
address = "{address}"
type = "imap"
host = "{user.host}"
port = {user.port}
ssl = false
username = "{user.name}"
password = "{user.password}"
"""


def sip2_policy(port: int) -> str:
    """A library's policy keys for a SIP2 reader source on 127.0.0.1:``port`` (login
    mailbot / sip-secret), quick to give up when it does not answer."""
    return f"""
reader_source = "sip2"
[libraries.sip2]
host = "127.0.0.1"
port = {port}
username = "mailbot"
password = "sip-secret"
timeout = 0.5
retries = 1
"""


def make_bot(tmp_path: Path, *, smtp: Any, mailboxes: list[Any], library: str = "lib",
             policy: str = "", tables: str = "", database_url: str | None = None) -> Bot:
    """Writes the TOML config: one library, the given IMAP users as its mailboxes."""
    mb_text = "".join(mailbox_toml(library, f"ebooki{i}@biblioteka.test", u)
                      for i, u in enumerate(mailboxes))
    config = tmp_path / "mailbot.toml"
    config.write_text(f"""
timezone = "Europe/Warsaw"
database_url = "{database_url or f'sqlite:///{tmp_path}/mailbot.db'}"

[smtp]
host = "{smtp.host}"
port = {smtp.port}

[[libraries]]
id = "{library}"
name = "Biblioteka Testowa"
{policy}
{mb_text}
{tables}
""", encoding="utf-8")
    return Bot(root=tmp_path, config=config, library=library)
