"""Typed settings loaded from one TOML file, validated at start-up.

Every key is documented in ``config.example.toml``. A wrong key, a wrong type or a missing
required value is a ``ConfigError`` naming the key (exit code 2). Secrets may stay out of the
file: ``password_env = "NAME"`` reads the password from that environment variable, and
``MAILBOT_SMTP_PASSWORD`` / ``MAILBOT_DATABASE_URL`` override the file.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from datetime import time
from functools import cached_property
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailbot.errors import ConfigError

SERVICES = ("legimi", "empik_go")
Service = Literal["legimi", "empik_go"]


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 25
    ssl: bool = False
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    password_env: str | None = None
    # TLS certificates are always verified: against the system's CAs, or this CA file
    # (a library's own CA, or a self-signed relay certificate exported as PEM).
    ca_file: str | None = None
    timeout: float = 30.0
    # Connections to the relay. While one hands a reply over, the others prepare the next
    # (MAIL FROM, RCPT TO); the relay still takes one reply at a time, each recorded before
    # the next, so a crash can repeat at most one reply whatever the number.
    connections: int = 2
    # When set, replies are written as .eml files into this folder instead of being sent
    # (the demo's "file outbox"; also handy for a dry run of a new installation).
    file_outbox: str | None = None


@dataclass(frozen=True)
class DaemonSettings:
    """``mailbot run``: the long-running process."""

    # IMAP servers drop an IDLE after 30 minutes (RFC 2177 allows 29): re-issue before.
    idle_refresh: float = 1500.0
    # Mailboxes whose server has no IDLE (and Maildirs) are polled this often, seconds.
    poll_interval: float = 60.0
    # After a network or server error, reconnect after 1, 2, 4 … seconds, at most this.
    reconnect_max: float = 300.0
    # Temporary SMTP failures are retried with growing pauses (at most send_backoff_max
    # seconds apart) for this long, then the reply is marked failed for staff.
    send_retry_for: float = 172800.0
    send_backoff_max: float = 1800.0
    # Scheduled jobs, library time zone.
    month_close_time: str = "00:05"
    retention_time: str = "03:30"


@dataclass(frozen=True)
class WebSettings:
    """The staff dashboard, served by ``mailbot run`` (and ``mailbot demo``)."""

    enabled: bool = True
    # Loopback by default: put a TLS-terminating proxy (nginx, Caddy) in front for the
    # branches; cookies are marked Secure whenever the request came over https.
    host: str = "127.0.0.1"
    port: int = 8080
    # Sessions are signed with a secret key: read from this environment variable, or else
    # from secret_key_file, which is generated (mode 0600) on first start. Default file:
    # web-secret.key in the SQLite database's folder (else beside the config file).
    secret_key_env: str | None = None
    secret_key_file: str | None = None
    session_hours: float = 12.0  # a login lasts this long
    # Failed logins: this many for one name from one client address within
    # lockout_minutes pause that name's logins from that address (HTTP 429) until
    # lockout_minutes after the last; the owner elsewhere can still log in. And this many
    # from one address, whatever the names, pause every login from it as long. And this
    # many for one name from all addresses together (a guesser with many addresses) pause
    # that name from every address it has not logged in from within a month: the owner's
    # own desks stay open.
    lockout_attempts: int = 5
    lockout_minutes: float = 15.0
    login_address_attempts: int = 20
    login_name_attempts: int = 50
    # The largest request body accepted (an import upload); larger ones get HTTP 413
    # before they are read. Other forms are capped at 1 MiB.
    max_upload_bytes: int = 20 * 1024 * 1024
    # Proxies whose X-Forwarded-Proto/For headers are believed (comma-separated IPs).
    forwarded_allow_ips: str = "127.0.0.1"
    live_refresh_seconds: float = 5.0  # how often the queue page refreshes itself


@dataclass(frozen=True)
class ImportSettings:
    """Bounds on one imported file (CLI and dashboard): a hostile or mistaken file is
    refused with an error naming the bound, before it can fill the daemon's memory."""

    # Rows below the header. A big city library's reader export (~200,000 patrons) and a
    # month's code pool (thousands) fit well within it.
    max_rows: int = 500_000
    # The file's size, and the size of an XLSX's parts once unpacked: a 200,000-reader
    # export is ~25 MB as CSV and ~100 MiB as unpacked XLSX.
    max_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True)
class SqlSourceSettings:
    """``reader_source = "sql"``: read-only access to the library system's database."""

    url: str | None = field(default=None, repr=False)  # SQLAlchemy URL (may hold a password)
    url_env: str | None = None  # or: read the URL from this environment variable
    # A query with a bound :card parameter returning the reader's columns (see
    # mailbot/readers/sql.py), or a preset name: "koha".
    query: str = "koha"
    timeout: float = 10.0


@dataclass(frozen=True)
class Sip2SourceSettings:
    """``reader_source = "sip2"``: the library system's SIP2 server."""

    host: str = "localhost"
    port: int = 6001
    tls: bool = False
    ca_file: str | None = None  # verify the server against this CA (default: system CAs)
    username: str | None = None  # SIP2 login (93); none: no login message
    password: str | None = field(default=None, repr=False)
    password_env: str | None = None
    location_code: str = ""
    institution_id: str = ""
    terminal_password: str | None = field(default=None, repr=False)
    timeout: float = 10.0
    retries: int = 2


@dataclass(frozen=True)
class LibrarySettings:
    id: str
    name: str
    timezone: str | None = None  # defaults to the top-level timezone
    # The month's window opens on this day at this time (library time zone); with
    # window_working_day, on the first working day (no weekend, no Polish public holiday)
    # on or after that day.
    window_day: int = 1
    window_time: str = "00:00"
    window_working_day: bool = False
    # Replies go out only inside this daily window ("HH:MM-HH:MM"), optionally on working
    # days only; order and allocation are still decided on arrival.
    send_window: str | None = None
    send_working_days_only: bool = False
    card_pattern: str = r"[0-9]{5,14}"
    # Verification strictness (SPEC 2.5). Cards are not secrets: the policy decides.
    check_name: bool = True
    check_sender: bool = False
    check_data_updated: bool = False
    check_loans_this_year: bool = False
    active_loan_months: int = 0  # a loan within the last N months (0 = not asked)
    max_balance_due: str = "0"  # refuse as `debt` when the balance is above this (PLN)
    max_overdue_items: int = 0
    penalty_months: int = 3
    min_age_legimi: int = 0  # 0 = no age limit
    min_age_empik_go: int = 0
    one_code_per_month: Literal["across", "per_service"] = "across"
    eligibility_test: bool = False  # answer TEST LEGIMI / TEST EMPIK GO with a verdict
    # SPEC 2.11: this many days before the month ends, remind holders of unactivated codes
    # (0 = no reminders), at this time of day.
    reminder_days: int = 3
    reminder_time: str = "10:00"
    replies_per_sender_per_day: int = 5
    # One address cannot collect codes for many cards: at most this many codes a month go
    # to one sender address (0 = no limit). A parent writing for children needs a few.
    max_codes_per_address_per_month: int = 3
    languages: tuple[str, ...] = ("pl", "en")
    contact: str | None = None
    activation_url_legimi: str | None = "https://www.legimi.pl/"
    activation_url_empik_go: str | None = "https://www.empikgo.com/"
    # Repeat an issued code to a patron who asks again from the address it went to.
    repeat_code_to_same_address: bool = True
    reader_source: Literal["local", "sql", "sip2"] = "local"
    sql: SqlSourceSettings = field(default_factory=SqlSourceSettings)
    sip2: Sip2SourceSettings = field(default_factory=Sip2SourceSettings)

    def min_age(self, service: str) -> int:
        return self.min_age_legimi if service == "legimi" else self.min_age_empik_go


@dataclass(frozen=True)
class MailboxSettings:
    library: str
    address: str
    type: Literal["imap", "maildir"] = "imap"
    host: str = "localhost"
    port: int = 993
    ssl: bool = True
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    password_env: str | None = None
    ca_file: str | None = None  # verify the server against this CA (default: system CAs)
    folder: str = "INBOX"
    manual_folder: str = "mailbot/manual"
    processed_folder: str | None = "mailbot/processed"
    path: str | None = None  # for type = "maildir": the Maildir directory
    timeout: float = 60.0

    @property
    def key(self) -> str:
        """Identifies the mailbox across restarts (its database row)."""
        if self.type == "maildir":
            return f"maildir:{self.path}"
        return f"imap://{self.username}@{self.host}:{self.port}/{self.folder}"


@dataclass(frozen=True)
class Settings:
    timezone: str = "Europe/Warsaw"
    database_url: str = field(default="sqlite:///mailbot.db", repr=False)
    templates_dir: str | None = None
    max_message_bytes: int = 2_000_000
    # SPEC 2.12: raw mail and sent reply bodies are kept this many days; the ledger stays.
    retention_days: int = 30
    # Mail from these addresses is never answered ("*@spam.example" patterns allowed).
    blocked_senders: tuple[str, ...] = ()
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    web: WebSettings = field(default_factory=WebSettings)
    imports: ImportSettings = field(default_factory=ImportSettings)
    libraries: tuple[LibrarySettings, ...] = ()
    mailboxes: tuple[MailboxSettings, ...] = ()
    source: str = field(default="<defaults>", compare=False)

    def library(self, library_id: str) -> LibrarySettings:
        for lib in self.libraries:
            if lib.id == library_id:
                return lib
        known = ", ".join(lib.id for lib in self.libraries) or "none configured"
        raise ConfigError(f"unknown library {library_id!r} (known: {known})", file=self.source)

    def library_tz(self, library_id: str) -> ZoneInfo:
        return ZoneInfo(self.library(library_id).timezone or self.timezone)

    def mailboxes_of(self, library_id: str) -> list[MailboxSettings]:
        return list(self._mailboxes_by_library.get(library_id, ()))

    # Asked per mail and per library: a consortium has hundreds of mailboxes, so both are
    # worked out once (the settings never change).
    @cached_property
    def _mailboxes_by_library(self) -> dict[str, tuple[MailboxSettings, ...]]:
        found: dict[str, list[MailboxSettings]] = {}
        for m in self.mailboxes:
            found.setdefault(m.library, []).append(m)
        return {library: tuple(boxes) for library, boxes in found.items()}

    @cached_property
    def own_addresses(self) -> frozenset[str]:
        return frozenset(m.address.strip().lower() for m in self.mailboxes)


def _shown(value: Any, key: str) -> str:
    """A value for an error message; secrets are never echoed."""
    last = key.rpartition(".")[2]
    if "password" in last or last in ("url", "database_url"):
        return "(hidden)"
    return repr(value)


def _convert(value: Any, typ: Any, key: str, source: str) -> Any:
    """Checks ``value`` against the annotation ``typ``; returns it converted."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None:
            return None
        return _convert(value, args[0], key, source)
    if origin is Literal:
        allowed = typing.get_args(typ)
        if value not in allowed:
            raise ConfigError(f"must be one of {', '.join(map(repr, allowed))}, not {_shown(value, key)}",
                              file=source, column=key)
        return value
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(typ)
        if not isinstance(value, list):
            raise ConfigError(f"must be a list, not {type(value).__name__}", file=source, column=key)
        return tuple(_convert(v, item_type, f"{key}[{i}]", source) for i, v in enumerate(value))
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"must be true or false, not {_shown(value, key)}", file=source, column=key)
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"must be an integer, not {_shown(value, key)}", file=source, column=key)
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"must be a number, not {_shown(value, key)}", file=source, column=key)
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"must be a string, not {_shown(value, key)}", file=source, column=key)
        return value
    raise AssertionError(f"unsupported config type {typ!r}")


def _build(cls: type, data: Any, prefix: str, source: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"must be a table, not {type(data).__name__}", file=source, column=prefix)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name != "source"}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key (known keys: {', '.join(sorted(fields))})",
                          file=source, column=f"{prefix}{unknown[0]}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError("is required", file=source, column=key)
            continue
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            kwargs[name] = _build(typ, data[name], f"{key}.", source)
        else:
            kwargs[name] = _convert(data[name], typ, key, source)
    return cls(**kwargs)


def _secret(explicit: str | None, env_name: str | None, key: str, source: str) -> str | None:
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            raise ConfigError(f"environment variable {env_name} is not set", file=source, column=key)
        return value
    return explicit


def _validate(settings: Settings) -> Settings:
    src = settings.source
    _zone(settings.timezone, "timezone", src)
    if not 1 <= settings.smtp.connections <= 8:
        raise ConfigError("must be between 1 and 8", file=src, column="smtp.connections")
    seen: set[str] = set()
    libraries: list[LibrarySettings] = []
    for i, lib in enumerate(settings.libraries):
        key = f"libraries[{i}]"
        if lib.id in seen:
            raise ConfigError(f"duplicate library id {lib.id!r}", file=src, column=f"{key}.id")
        seen.add(lib.id)
        if lib.timezone:
            _zone(lib.timezone, f"{key}.timezone", src)
        if not 1 <= lib.window_day <= 28:
            raise ConfigError("must be between 1 and 28", file=src, column=f"{key}.window_day")
        parse_hhmm(lib.window_time, f"{key}.window_time", src)
        try:
            re.compile(lib.card_pattern)
        except re.error as exc:
            raise ConfigError(f"not a valid regular expression: {exc}", file=src,
                              column=f"{key}.card_pattern") from None
        for lang in lib.languages:
            if lang not in ("pl", "en"):
                raise ConfigError(f"unsupported language {lang!r} (pl, en)", file=src,
                                  column=f"{key}.languages")
        if not lib.languages:
            raise ConfigError("needs at least one language", file=src, column=f"{key}.languages")
        if lib.send_window is not None:
            parse_window(lib.send_window, f"{key}.send_window", src)
        parse_hhmm(lib.reminder_time, f"{key}.reminder_time", src)
        for name in ("active_loan_months", "penalty_months", "min_age_legimi",
                     "min_age_empik_go", "replies_per_sender_per_day", "max_overdue_items",
                     "reminder_days", "max_codes_per_address_per_month"):
            if getattr(lib, name) < 0:
                raise ConfigError("must not be negative", file=src, column=f"{key}.{name}")
        try:
            Decimal(lib.max_balance_due)
        except InvalidOperation:
            raise ConfigError(f"not an amount: {lib.max_balance_due!r}", file=src,
                              column=f"{key}.max_balance_due") from None
        if lib.reader_source == "sip2":
            # SIP2 patron information carries no loan history and no data-update date.
            for name in ("check_loans_this_year", "active_loan_months", "check_data_updated"):
                if getattr(lib, name):
                    raise ConfigError("cannot be answered by a sip2 reader source", file=src,
                                      column=f"{key}.{name}")
        libraries.append(_resolve_library_secrets(lib, key, src))
    addresses: set[str] = set()
    keys: set[str] = set()
    mailboxes = []
    for i, mb in enumerate(settings.mailboxes):
        key = f"mailboxes[{i}]"
        if mb.library not in seen:
            raise ConfigError(f"no library with id {mb.library!r}", file=src, column=f"{key}.library")
        if "@" not in mb.address:
            raise ConfigError(f"not an e-mail address: {mb.address!r}", file=src,
                              column=f"{key}.address")
        if mb.type == "maildir" and not mb.path:
            raise ConfigError("is required for a maildir mailbox", file=src, column=f"{key}.path")
        if mb.ssl and mb.starttls:
            raise ConfigError("ssl and starttls exclude each other (ssl is on by default: set "
                              "ssl = false to use STARTTLS)", file=src, column=f"{key}.starttls")
        if mb.type == "imap" and not mb.username:
            raise ConfigError("is required for an IMAP mailbox", file=src, column=f"{key}.username")
        if mb.key in keys:
            raise ConfigError("the same mailbox and folder is configured twice", file=src, column=key)
        keys.add(mb.key)
        addresses.add(mb.address.lower())
        password = _secret(mb.password, mb.password_env, f"{key}.password_env", src)
        mailboxes.append(dataclasses.replace(mb, password=password,
                                             processed_folder=mb.processed_folder or None))
    parse_hhmm(settings.daemon.month_close_time, "daemon.month_close_time", src)
    parse_hhmm(settings.daemon.retention_time, "daemon.retention_time", src)
    if settings.retention_days < 1:
        raise ConfigError("must be at least 1", file=src, column="retention_days")
    _validate_web(settings.web, src)
    for name in ("max_rows", "max_bytes"):
        if getattr(settings.imports, name) < 1:
            raise ConfigError("must be at least 1", file=src, column=f"imports.{name}")
    smtp = settings.smtp
    smtp_password = os.environ.get("MAILBOT_SMTP_PASSWORD") or _secret(
        smtp.password, smtp.password_env, "smtp.password_env", src)
    if smtp.ssl and smtp.starttls:
        raise ConfigError("ssl and starttls exclude each other", file=src, column="smtp.starttls")
    return dataclasses.replace(
        settings,
        libraries=tuple(libraries),
        mailboxes=tuple(mailboxes),
        smtp=dataclasses.replace(smtp, password=smtp_password),
        database_url=os.environ.get("MAILBOT_DATABASE_URL") or settings.database_url,
    )


def _validate_web(web: WebSettings, src: str) -> None:
    if not 0 <= web.port <= 65535:
        raise ConfigError("must be a TCP port (0-65535)", file=src, column="web.port")
    if not web.host.strip():
        raise ConfigError("must not be empty", file=src, column="web.host")
    for name in ("session_hours", "lockout_minutes", "live_refresh_seconds"):
        if getattr(web, name) <= 0:
            raise ConfigError("must be positive", file=src, column=f"web.{name}")
    for name in ("lockout_attempts", "login_address_attempts", "login_name_attempts",
                 "max_upload_bytes"):
        if getattr(web, name) < 1:
            raise ConfigError("must be at least 1", file=src, column=f"web.{name}")
    if web.enabled and web.secret_key_env and not os.environ.get(web.secret_key_env):
        raise ConfigError(f"environment variable {web.secret_key_env} is not set", file=src,
                          column="web.secret_key_env")


def _resolve_library_secrets(lib: LibrarySettings, key: str, src: str) -> LibrarySettings:
    if lib.reader_source == "sql":
        url = _secret(lib.sql.url, lib.sql.url_env, f"{key}.sql.url_env", src)
        if not url:
            raise ConfigError("is required for reader_source = \"sql\"", file=src,
                              column=f"{key}.sql.url")
        lib = dataclasses.replace(lib, sql=dataclasses.replace(lib.sql, url=url))
    if lib.reader_source == "sip2":
        pw = _secret(lib.sip2.password, lib.sip2.password_env, f"{key}.sip2.password_env", src)
        lib = dataclasses.replace(lib, sip2=dataclasses.replace(lib.sip2, password=pw))
    return lib


def parse_window(text: str, key: str = "window", source: str | None = None) -> tuple[time, time]:
    start, sep, end = text.partition("-")
    if not sep:
        raise ConfigError(f"must be HH:MM-HH:MM, not {text!r}", file=source, column=key)
    a, b = parse_hhmm(start.strip(), key, source), parse_hhmm(end.strip(), key, source)
    if not a < b:
        raise ConfigError("the window must end after it starts", file=source, column=key)
    return a, b


def _zone(name: str, key: str, source: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {name!r}", file=source, column=key) from None


def parse_hhmm(text: str, key: str = "time", source: str | None = None) -> time:
    m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", text)
    if not m:
        raise ConfigError(f"must be HH:MM, not {text!r}", file=source, column=key)
    return time(int(m.group(1)), int(m.group(2)))


def settings_from_dict(data: dict[str, Any], *, source: str = "<dict>") -> Settings:
    """Builds validated settings from parsed TOML (used by tests and the demo)."""
    raw = dict(data)
    for plural in ("libraries", "mailboxes"):
        if plural in raw and not isinstance(raw[plural], list):
            raise ConfigError("must be an array of tables ([[%s]])" % plural, file=source,
                              column=plural)
    libraries = tuple(
        _build(LibrarySettings, d, f"libraries[{i}].", source)
        for i, d in enumerate(raw.pop("libraries", []))
    )
    mailboxes = tuple(
        _build(MailboxSettings, d, f"mailboxes[{i}].", source)
        for i, d in enumerate(raw.pop("mailboxes", []))
    )
    base = _build(Settings, raw, "", source)
    return _validate(dataclasses.replace(base, libraries=libraries, mailboxes=mailboxes,
                                         source=source))


def load_settings(path: str | os.PathLike[str]) -> Settings:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("config file not found", file=str(p)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(p)) from None
    return settings_from_dict(data, source=str(p))
