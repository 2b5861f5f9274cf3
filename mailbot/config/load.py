"""Reading the config file: TOML, checked by pydantic against the settings classes, then the
rules between keys, then the secrets from the environment.

Every mistake is one ``ConfigError`` (exit code 2) naming the file, the key's path
(``libraries[0].penalty_months``) and what is wrong, in mailbot's words: pydantic's own
messages are not shown (they echo values, and a value may be a password). When the file
has several mistakes, the first is named. A key in a ``[[libraries]]`` or ``[[mailboxes]]``
table also names the table by what its IT knows it by, the library's ``id`` or the
mailbox's ``address`` (``... (in [[libraries]] id = "wbp-poznan")``): a consortium's file
has dozens of these tables, and nobody counts them to find ``libraries[17]``.

Relative paths are then made relative to the file's folder (mailbot.config.paths), and
the secrets the command uses read from the environment (mailbot.config.secrets).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
import typing
from functools import cache
from pathlib import Path
from typing import Any

from mailbot.config.sections import (
    OAuthSettings,
    Settings,
    SmtpSettings,
)
from mailbot.config.paths import absolute_paths, folder_of, left_behind
from mailbot.config.reader_status import check_confirmed_accounts
from mailbot.config.secrets import SECRET_KINDS, resolve_secrets
from mailbot.config.services import check_services, offering_every_service
from mailbot.errors import ConfigError

__all__ = ["SECRET_KINDS", "load_settings", "settings_from_dict"]




def load_settings(path: str | os.PathLike[str], *,
                  secrets: frozenset[str] | None = None) -> Settings:
    """The settings of the config file at ``path``. ``secrets``: the kinds of secret
    (``SECRET_KINDS``) the command uses; None: all of them. A kind not asked for is not
    read from the environment, and its variable missing is no error (the value stays as
    the file has it: none, for a ``*_env`` key)."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("config file not found", file=str(p)) from None
    except IsADirectoryError:
        raise ConfigError("is a folder, not a config file", file=str(p)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(p)) from None
    return settings_from_dict(data, source=str(p), secrets=secrets)


def settings_from_dict(data: dict[str, Any], *, source: str = "<dict>",
                       secrets: frozenset[str] | None = None) -> Settings:
    """Builds validated settings from parsed TOML (used by tests and the demo). A
    ``source`` naming a file (not ``<...>``) makes relative paths relative to its folder."""
    try:
        return _settings(data, source, secrets)
    except ConfigError as exc:
        raise _in_table(exc, data) from None


def _settings(data: dict[str, Any], source: str, secrets: frozenset[str] | None) -> Settings:
    from pydantic import ValidationError

    kinds = SECRET_KINDS if secrets is None else frozenset(secrets)
    if kinds - SECRET_KINDS:
        raise ValueError(f"unknown kinds of secret: {sorted(kinds - SECRET_KINDS)}")
    if "source" in data:  # a field of Settings, but not a key of the file
        raise ConfigError(_unknown_key(Settings), file=source, column="source")
    try:
        settings = _reader().validate_python({**data, "source": source})
    except ValidationError as exc:
        raise _config_error(exc.errors(include_url=False)[0], source) from None
    settings = offering_every_service(settings, data)
    base = folder_of(source)
    if base is not None:
        written = settings.database_url
        settings = absolute_paths(settings, base)
        old = left_behind(written, settings.database_url)
        if old is not None:
            raise ConfigError(
                f"is relative ({written!r}): it now counts from the config file's folder, "
                f"where there is no database, but there is one at {old} (counted from the "
                "working directory, as mailbot 0.1 did): write its absolute path, "
                f"sqlite:///{old}", file=source, column="database_url")
    _check_combinations(settings, kinds)
    return resolve_secrets(settings, kinds, base)


@cache
def _reader() -> Any:
    # Built on the first config read, not at import (pydantic's import and the schema
    # build are most of a config read's time; see mailbot/config/__init__.py).
    # mailbot uses no pydantic plugin: looking for them reads every installed
    # distribution's entry points (10-15 ms of each start). An explicit setting wins.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from pydantic import TypeAdapter

    return TypeAdapter(Settings)


def _config_error(error: Any, source: str) -> ConfigError:
    """pydantic's first error, in mailbot's words."""
    loc, kind, value = error["loc"], error["type"], error.get("input")
    key = _key_path(loc)
    shown = _shown(value, key)
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        message = _unknown_key(_type_at(loc[:-1]))
    elif kind in ("missing", "missing_argument"):
        message = "is required"
    elif kind == "value_error":  # a rule of mailbot.config.checks
        message = str(error["ctx"]["error"])
    elif kind == "literal_error":
        allowed = ", ".join(map(repr, typing.get_args(_type_at(loc))))
        message = f"must be one of {allowed}, not {shown}"
    elif kind == "tuple_type" and loc in (("libraries",), ("mailboxes",), ("services",)):
        message = f"must be an array of tables ([[{loc[0]}]])"
    elif kind == "tuple_type":
        message = f"must be a list, not {type(value).__name__}"
    elif kind == "dataclass_type":
        message = f"must be a table, not {type(value).__name__}"
    elif kind in _TYPE_NAMES:
        message = f"must be {_TYPE_NAMES[kind]}, not {shown}"
    else:
        message = error["msg"]  # pydantic's messages name types and bounds, not values
    return ConfigError(message, file=source, column=key)


_TYPE_NAMES = {"int_type": "an integer", "float_type": "a number", "string_type": "a string",
               "bool_type": "true or false"}


def _key_path(loc: tuple[str | int, ...]) -> str:
    """``("libraries", 0, "sql", "url")`` -> ``libraries[0].sql.url``"""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


_TABLE = re.compile(r"(libraries|mailboxes|services)\[(\d+)\]")
# What names a table, as the file has it; a mailbox's folder only when it is not the
# default (one address may be read in several folders).
_NAMED_BY = {"libraries": ("id",), "mailboxes": ("address", "folder"), "services": ("id",)}


def _table_name(array: str, table: Any) -> str:
    """``id = "wbp-poznan"``, ``address = "ebooki@wbp.pl", folder = "Filia"``: the keys
    of the table (parsed TOML, or its settings) that identify it; "" when it has none
    (not given, or not a string)."""
    def value(name: str) -> Any:
        return table.get(name) if isinstance(table, dict) else getattr(table, name, None)

    shown = [f"{name} = {json.dumps(v, ensure_ascii=False)}" for name in _NAMED_BY[array]
             if isinstance(v := value(name), str) and v and (name, v) != ("folder", "INBOX")]
    return ", ".join(shown)


def _in_table(error: ConfigError, data: dict[str, Any]) -> ConfigError:
    """``error`` with the table its key is in named, from the file as parsed (pydantic's
    errors come before there are settings); unchanged outside a table, and when the key
    at fault is the one that names the table (a duplicate id, a wrong address)."""
    column = error.column or ""
    m = _TABLE.match(column)
    if not m:
        return error
    array, index = m.group(1), int(m.group(2))
    tables = data.get(array)
    if not isinstance(tables, (list, tuple)) or index >= len(tables):
        return error
    table = tables[index]
    key = column[m.end():].lstrip(".").split(".")[0]
    name = _table_name(array, table) if isinstance(table, dict) else ""
    if not name or key == _NAMED_BY[array][0]:
        return error
    return ConfigError(f"{error.message} (in [[{array}]] {name})", file=error.file,
                       row=error.row, column=column)


def _type_at(loc: tuple[str | int, ...]) -> Any:
    """The annotated type of the key at ``loc`` (a settings class for a table)."""
    typ: Any = Settings
    for part in loc:
        if isinstance(part, int):
            typ = typing.get_args(typ)[0]  # an array of tables: tuple[Section, ...]
        else:
            typ = typing.get_type_hints(typ)[part]
        # An optional table (``oauth``, a mailbox's ``smtp``, ``instructions``): its class.
        tables = [t for t in typing.get_args(typ) if dataclasses.is_dataclass(t)]
        if type(None) in typing.get_args(typ) and len(tables) == 1:
            typ = tables[0]
    return typ


def _unknown_key(section: type) -> str:
    known = sorted(f.name for f in dataclasses.fields(section) if f.name != "source")
    return f"unknown key (known keys: {', '.join(known)})"


def _shown(value: Any, key: str) -> str:
    """A value for an error message; secrets are never echoed."""
    last = key.rpartition(".")[2]
    if "password" in last or "secret" in last or last in ("url", "database_url"):
        return "(hidden)"
    return repr(value)


def _check_combinations(settings: Settings, kinds: frozenset[str]) -> None:
    """The rules between keys (a key's own rule is beside it, in mailbot.config.sections).
    The key and secret files a login reads are checked readable only when the command
    uses the mail secrets (``kinds``)."""
    src = settings.source
    files = "mail" in kinds
    ids: set[str] = set()
    for i, lib in enumerate(settings.libraries):
        key = f"libraries[{i}]"
        if lib.id in ids:
            raise ConfigError(f"duplicate library id {lib.id!r}", file=src, column=f"{key}.id")
        ids.add(lib.id)
        if lib.reader_source == "sip2":
            # SIP2 patron information carries no loan history and no data-update date.
            for name in ("check_loans_this_year", "active_loan_months", "check_data_updated"):
                if getattr(lib, name):
                    raise ConfigError("cannot be answered by a sip2 reader source", file=src,
                                      column=f"{key}.{name}")
        check_confirmed_accounts(lib, src, key)
    keys: set[str] = set()
    for i, mb in enumerate(settings.mailboxes):
        key = f"mailboxes[{i}]"
        if mb.library not in ids:
            raise ConfigError(f"no library with id {mb.library!r}", file=src, column=f"{key}.library")
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
        if mb.type == "imap":
            _check_auth(mb.auth, mb.oauth, src, key, files=files)
        elif mb.auth != "password" or mb.oauth is not None:
            raise ConfigError("a maildir mailbox is read from disk: it has no login (remove "
                              "auth and oauth)", file=src,
                              column=f"{key}.{'auth' if mb.auth != 'password' else 'oauth'}")
        if mb.smtp is not None:
            _check_relay(mb.smtp, src, f"{key}.smtp", fallback=mb.oauth, files=files)
    _check_relay(settings.smtp, src, "smtp", fallback=None, files=files)
    _check_shared_relays(settings)
    check_services(settings)
    if settings.daemon.auth_retry_max < settings.daemon.auth_retry:
        raise ConfigError("must not be below daemon.auth_retry", file=src,
                          column="daemon.auth_retry_max")


def _check_relay(relay: SmtpSettings, src: str, key: str, *,
                 fallback: OAuthSettings | None, files: bool) -> None:
    if relay.ssl and relay.starttls:
        raise ConfigError("ssl and starttls exclude each other", file=src, column=f"{key}.starttls")
    if relay.file_outbox:
        return
    _check_auth(relay.auth, relay.oauth or fallback, src, key, own=relay.oauth is not None,
                inherits=key != "smtp", files=files)
    if relay.auth != "password" and not relay.username:
        raise ConfigError(f"is required for auth = {relay.auth!r} (the account the token is "
                          "for)", file=src, column=f"{key}.username")


def _check_auth(auth: str, oauth: OAuthSettings | None, src: str, key: str, *,
                own: bool = True, inherits: bool = False, files: bool = True) -> None:
    """``auth`` and its ``oauth`` table agree: each provider's keys are there."""
    if auth == "password":
        if oauth is not None and own:
            raise ConfigError('is set, but auth = "password" (set auth = "oauth2-microsoft" '
                              'or "oauth2-google", or remove the table)', file=src,
                              column=f"{key}.oauth")
        return
    if oauth is None:
        also = " (or in the mailbox's own oauth table)" if inherits else ""
        raise ConfigError(f"is required for auth = {auth!r}{also}", file=src,
                          column=f"{key}.oauth")
    where = f"{key}.oauth" if own else f"{key}.oauth (or the mailbox's oauth)"
    if auth == "oauth2-microsoft":
        for name in ("tenant", "client_id"):
            if not getattr(oauth, name):
                raise ConfigError(f"is required for auth = {auth!r}", file=src,
                                  column=f"{where}.{name}")
        ways = [oauth.client_secret or oauth.client_secret_env, oauth.client_secret_file,
                oauth.certificate_file]
        if sum(1 for w in ways if w) != 1:
            raise ConfigError("give exactly one of client_secret_env, client_secret_file or "
                              "certificate_file (with certificate_thumbprint)", file=src,
                              column=where)
        if oauth.certificate_file and not oauth.certificate_thumbprint:
            raise ConfigError("is required with certificate_file", file=src,
                              column=f"{where}.certificate_thumbprint")
        if oauth.certificate_thumbprint and not _THUMBPRINT.fullmatch(
                re.sub(r"[\s:]", "", oauth.certificate_thumbprint)):
            raise ConfigError("must be the certificate's SHA-1 thumbprint, 40 hexadecimal "
                              "digits (Entra admin center: Certificates & secrets, column "
                              "Thumbprint)", file=src, column=f"{where}.certificate_thumbprint")
        if oauth.authority and not oauth.authority.startswith("https://"):
            raise ConfigError("must be an https:// address (default "
                              "https://login.microsoftonline.com)", file=src,
                              column=f"{where}.authority")
        names: tuple[str, ...] = ("client_secret_file", "certificate_file", "ca_file")
    else:
        if not oauth.service_account_file:
            raise ConfigError(f"is required for auth = {auth!r}", file=src,
                              column=f"{where}.service_account_file")
        names = ("service_account_file", "ca_file")
    for name in names if files else ():
        _readable(getattr(oauth, name), src, f"{where}.{name}")


def _readable(path: str | None, src: str, key: str) -> None:
    # Read when a token is fetched (so a renewed secret needs no restart); here only
    # checked, so that a typo is named at start-up, not at the first login.
    if path and not (os.path.isfile(path) and os.access(path, os.R_OK)):
        raise ConfigError(f"cannot read {path} (not a readable file)", file=src, column=key)


_THUMBPRINT = re.compile(r"[0-9A-Fa-f]{40}")


def _effective(relay: SmtpSettings, mailbox_oauth: OAuthSettings | None) -> SmtpSettings:
    """A mailbox's relay as it will log in: with the mailbox's oauth when it has none."""
    if relay.oauth is None and relay.auth != "password":
        return dataclasses.replace(relay, oauth=mailbox_oauth)
    return relay


def _check_shared_relays(settings: Settings) -> None:
    """One sending account (host, port, username) is configured one way: one set of
    limits, one password, one way of logging in (its sent count, pauses and health are
    kept under its key, and ``mailbot check`` logs in with the first of them); and one
    address leaves through one account."""
    src = settings.source
    first: dict[str, tuple[str, SmtpSettings]] = {}
    relays = [("smtp", settings.smtp)] + [
        (f"mailboxes[{i}].smtp", _effective(mb.smtp, mb.oauth))
        for i, mb in enumerate(settings.mailboxes) if mb.smtp is not None]
    # The relay met first is named by its mailbox too (the one at fault is, as every
    # mailbox key is: _in_table).
    mailbox_of = {f"mailboxes[{i}].smtp": mb for i, mb in enumerate(settings.mailboxes)}
    for key, relay in relays:
        seen_key, seen = first.setdefault(relay.key, (key, relay))
        if seen == relay:
            continue
        if seen_key in mailbox_of:
            seen_key += f" ({_table_name('mailboxes', mailbox_of[seen_key])})"
        limits = ("max_per_minute", "max_per_hour", "max_per_day")
        other = [f.name for f in dataclasses.fields(SmtpSettings)
                 if getattr(seen, f.name) != getattr(relay, f.name)]
        if any(name in limits for name in other):
            raise ConfigError(f"the same account as {seen_key} with other limits "
                              "(max_per_minute, max_per_hour, max_per_day): one account "
                              "has one set of limits", file=src, column=key)
        raise ConfigError(f"the same account ({relay.key}) as {seen_key}, configured "
                          f"otherwise ({', '.join(other)}): give it the same settings",
                          file=src, column=key)
    by_address: dict[tuple[str, str], tuple[int, str]] = {}
    for i, mb in enumerate(settings.mailboxes):
        relay = (mb.smtp or settings.smtp).key
        seen_at = by_address.setdefault((mb.library, mb.address.strip().lower()), (i, relay))
        if seen_at[1] != relay:
            raise ConfigError(f"has the address of mailboxes[{seen_at[0]}] but another relay: "
                              "replies from one address leave through one account", file=src,
                              column=f"mailboxes[{i}].smtp")
