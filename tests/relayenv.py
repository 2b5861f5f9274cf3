"""A consortium for the relay tests: several libraries, each with its IMAP mailbox and,
optionally, its own relay (``[mailboxes.smtp]``) with sending limits, wired to the suite's
real Dovecot and to SmtpSinks on 127.0.0.1."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from mailbot.db.models import Outbox
from mailbot.db.session import open_database
from tests.botenv import Bot, request_mail, valid_reader


@dataclass
class Branch:
    """One library of the consortium: its id, its mailbox (an ImapUser), its relay (a
    sink, or None for the global one) and that relay's extra keys (limits, auth …)."""

    library: str
    user: Any
    relay: Any = None
    relay_keys: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"ebooki@{self.library}.test"


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return str(v)


def make_consortium(tmp_path: Path, *, smtp: Any, branches: list[Branch],
                    database_url: str | None = None, policy: str = "",
                    daemon: str = "", tables: str = "") -> dict[str, Bot]:
    """Writes the config; returns a Bot per library (they share the config file)."""
    libraries = "".join(f"""
[[libraries]]
id = "{b.library}"
name = "Biblioteka {b.library}"
{policy}
""" for b in branches)
    mailboxes = ""
    for b in branches:
        mailboxes += f"""
[[mailboxes]]
library = "{b.library}"
address = "{b.address}"
type = "imap"
host = "{b.user.host}"
port = {b.user.port}
ssl = false
username = "{b.user.name}"
password = "{b.user.password}"
"""
        if b.relay is not None:
            keys = {"host": b.relay.host, "port": b.relay.port, **b.relay_keys}
            mailboxes += "[mailboxes.smtp]\n" + "".join(
                f"{k} = {_value(v)}\n" for k, v in keys.items())
    config = tmp_path / "mailbot.toml"
    config.write_text(f"""
timezone = "Europe/Warsaw"
database_url = "{database_url or f'sqlite:///{tmp_path}/mailbot.db'}"

[smtp]
host = "{smtp.host}"
port = {smtp.port}
{f"[daemon]{chr(10)}{daemon}" if daemon else ""}
{tables}
{libraries}
{mailboxes}
""", encoding="utf-8")
    return {b.library: Bot(root=tmp_path, config=config, library=b.library) for b in branches}


def request_burst(bot: Bot, user: Any, n: int, *, prefix: str = "p") -> list[str]:
    """``n`` valid requests (readers, codes, mails one second apart from the window's
    opening) for ``bot``'s library in ``user``'s mailbox; the patrons' addresses in
    arrival order."""
    w = bot.window()
    ok = valid_reader(w.year)
    tag = bot.library
    head = zlib.crc32(f"{tag}|{prefix}".encode()) % 90 + 10
    cards = [f"{head:02d}{i:05d}" for i in range(n)]
    addresses = [f"{prefix}{i}@{tag}.patron.test" for i in range(n)]
    bot.import_readers([f"{card};Ala;Nowak{i};{addr};{ok}"
                        for i, (card, addr) in enumerate(zip(cards, addresses, strict=True))])
    bot.import_codes([f"{tag.upper()}-{prefix.upper()}{i:05d}" for i in range(n)])
    for i, (card, addr) in enumerate(zip(cards, addresses, strict=True)):
        raw, _ = request_mail(addr, "LEGIMI", f"Ala Nowak{i} {card}")
        user.append(raw, internaldate=w + timedelta(seconds=i + 1))
    return addresses


def outbox_rows(bot: Bot) -> list[Outbox]:
    sessions = open_database(bot.settings().database_url)
    with sessions() as s:
        rows = list(s.scalars(select(Outbox).order_by(Outbox.id)))
        s.expunge_all()
    sessions.kw["bind"].dispose()
    return rows
