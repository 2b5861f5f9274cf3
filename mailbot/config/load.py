"""Reading the config file: TOML, checked by pydantic against the settings classes, then the
rules between keys, then the secrets from the environment.

Every mistake is one ``ConfigError`` (exit code 2) naming the file, the key's path
(``libraries[0].penalty_months``) and what is wrong, in mailbot's words: pydantic's own
messages are not shown (they echo values, and a value may be a password). When the file
has several mistakes, the first is named.

Secrets may stay out of the file: ``password_env = "NAME"`` (``url_env`` for a SQL reader
source) reads the value from that environment variable, and ``MAILBOT_SMTP_PASSWORD`` /
``MAILBOT_DATABASE_URL`` override the file. A command reads only the kinds of secret it
uses (``SECRET_KINDS``): ``mailbot status`` needs no mail password, so an unset
``MAILBOT_IMAP_PASSWORD`` is no error there.

A relative path in the file (a SQLite ``database_url``, a Maildir, the file outbox,
``templates_dir``, a CA, key or secret file) is relative to the file's folder, not to
where mailbot was started: ``mailbot status`` run from another folder finds the same
database. ``MAILBOT_DATABASE_URL`` and a SQL source's ``url_env`` have no file of their
own and count from the config file's folder too. Settings made from a dict with no file
(tests) keep relative paths as given, relative to the working directory.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
from functools import cache
from pathlib import Path
from typing import Any

from mailbot.config.sections import (
    LibrarySettings,
    MailboxSettings,
    OAuthSettings,
    Settings,
    SmtpSettings,
)
from mailbot.errors import ConfigError


# The kinds of secret a command may ask for (``load_settings(path, secrets=...)``):
# "database": MAILBOT_DATABASE_URL; "mail": the mailboxes' and relays' passwords
# (password_env, MAILBOT_SMTP_PASSWORD), OAuth2 client secrets and the key and secret
# files (checked readable); "readers": a SQL source's url_env, a SIP2 password_env;
# "web": the dashboard's secret_key_env.
SECRET_KINDS = frozenset({"database", "mail", "readers", "web"})


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
    base = _folder_of(source)
    if base is not None:
        settings = _absolute_paths(settings, base)
    _check_combinations(settings, kinds)
    return _resolve_secrets(settings, kinds, base)


# -- relative paths ------------------------------------------------------------------------

# The keys that name a file or folder (in any table); a test checks that every key whose
# name says it is a path is here. ``database_url`` and a SQL source's ``url`` are URLs: a
# SQLite one's path is made absolute the same way.
PATH_KEYS = frozenset({"templates_dir", "path", "file_outbox", "ca_file", "client_secret_file",
                       "certificate_file", "service_account_file", "secret_key_file"})
URL_KEYS = frozenset({"database_url", "url"})


def _folder_of(source: str) -> str | None:
    """The absolute folder of the config file; None for settings made without a file."""
    if not source or source.startswith("<"):
        return None
    return os.path.dirname(os.path.abspath(source))


def _absolute_paths(section: Any, base: str) -> Any:
    """``section`` (a settings dataclass) with every relative path in it, at any depth,
    joined to ``base``."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if isinstance(value, str) and f.name in PATH_KEYS:
            new: Any = _absolute(value, base)
        elif isinstance(value, str) and f.name in URL_KEYS:
            new = absolute_sqlite_url(value, base)
        elif dataclasses.is_dataclass(value):
            new = _absolute_paths(value, base)
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            new = tuple(_absolute_paths(item, base) for item in value)
        else:
            continue
        if new != value:
            changes[f.name] = new
    return dataclasses.replace(section, **changes) if changes else section


def _absolute(path: str, base: str) -> str:
    return os.path.join(base, path) if path and not os.path.isabs(path) else path


_SQLITE_URL = re.compile(r"(sqlite(?:\+\w+)?:///)([^?]*)(\?.*)?", re.DOTALL)


def absolute_sqlite_url(url: str, base: str) -> str:
    """``url`` with a relative SQLite file path joined to ``base``; any other URL (an
    absolute path, ``:memory:``, a ``file:`` URI, another database) as it is.

    Done on the text, without SQLAlchemy (a third of a second to import, which a config
    read does not otherwise need): SQLAlchemy percent-decodes the path, so ``base`` goes
    in percent-encoded and the path's own text is kept as written."""
    from urllib.parse import quote, unquote

    m = _SQLITE_URL.fullmatch(url)
    if m is None:
        return url
    scheme, path, query = m.group(1), m.group(2), m.group(3) or ""
    plain = unquote(path)
    if not plain or plain.startswith(("/", ":memory:", "file:")):
        return url
    return f"{scheme}{quote(base, safe='/')}/{path}{query}"


@cache
def _reader() -> Any:
    # Built on the first config read, not at import (pydantic's import and the schema
    # build are most of a config read's time; see mailbot/config/__init__.py).
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
    elif kind == "tuple_type" and loc in (("libraries",), ("mailboxes",)):
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


def _type_at(loc: tuple[str | int, ...]) -> Any:
    """The annotated type of the key at ``loc`` (a settings class for a table)."""
    typ: Any = Settings
    for part in loc:
        if isinstance(part, int):
            typ = typing.get_args(typ)[0]  # an array of tables: tuple[Section, ...]
        else:
            typ = typing.get_type_hints(typ)[part]
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
    for key, relay in relays:
        seen_key, seen = first.setdefault(relay.key, (key, relay))
        if seen == relay:
            continue
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


def _resolve_secrets(settings: Settings, kinds: frozenset[str], base: str | None) -> Settings:
    """The settings with the ``*_env`` secrets of ``kinds`` read from the environment."""
    src = settings.source
    web = settings.web
    if "web" in kinds and web.enabled and web.secret_key_env and \
            not os.environ.get(web.secret_key_env):
        raise ConfigError(f"environment variable {web.secret_key_env} is not set", file=src,
                          column="web.secret_key_env")
    mail, readers = "mail" in kinds, "readers" in kinds
    libraries = tuple(_library_secrets(lib, f"libraries[{i}]", src, read=readers, base=base)
                      for i, lib in enumerate(settings.libraries))
    mailboxes = tuple(_mailbox_secrets(mb, f"mailboxes[{i}]", src, read=mail)
                      for i, mb in enumerate(settings.mailboxes))
    smtp = _relay_secrets(settings.smtp, "smtp", src, fallback=None, read=mail)
    if mail and os.environ.get("MAILBOT_SMTP_PASSWORD"):
        smtp = dataclasses.replace(smtp, password=os.environ["MAILBOT_SMTP_PASSWORD"])
    database_url = settings.database_url
    if "database" in kinds and os.environ.get("MAILBOT_DATABASE_URL"):
        database_url = os.environ["MAILBOT_DATABASE_URL"]
        if base is not None:  # no file of its own: relative to the config's, as the key
            database_url = absolute_sqlite_url(database_url, base)
    return dataclasses.replace(
        settings,
        libraries=libraries,
        mailboxes=mailboxes,
        smtp=smtp,
        database_url=database_url,
    )


def _mailbox_secrets(mb: MailboxSettings, key: str, src: str, *, read: bool) -> MailboxSettings:
    oauth = _oauth_secrets(mb.oauth, f"{key}.oauth", src, read=read)
    relay = None if mb.smtp is None else _relay_secrets(mb.smtp, f"{key}.smtp", src,
                                                        fallback=oauth, read=read)
    return dataclasses.replace(
        mb, password=_secret(mb.password, mb.password_env, f"{key}.password_env", src, read),
        oauth=oauth, smtp=relay)


def _relay_secrets(relay: SmtpSettings, key: str, src: str, *,
                   fallback: OAuthSettings | None, read: bool) -> SmtpSettings:
    """The relay with its password read, and its OAuth2 settings: its own, or (a mailbox's
    relay with auth = oauth2-… and no table of its own) the mailbox's."""
    oauth = _oauth_secrets(relay.oauth, f"{key}.oauth", src, read=read) if relay.oauth else None
    if oauth is None and relay.auth != "password":
        oauth = fallback
    return dataclasses.replace(
        relay, password=_secret(relay.password, relay.password_env, f"{key}.password_env",
                                src, read),
        oauth=oauth)


def _oauth_secrets(oauth: OAuthSettings | None, key: str, src: str, *,
                   read: bool) -> OAuthSettings | None:
    if oauth is None or not oauth.client_secret_env:
        return oauth
    return dataclasses.replace(oauth, client_secret=_secret(
        oauth.client_secret, oauth.client_secret_env, f"{key}.client_secret_env", src, read))


def _library_secrets(lib: LibrarySettings, key: str, src: str, *, read: bool,
                     base: str | None) -> LibrarySettings:
    if lib.reader_source == "sql":
        url = _secret(lib.sql.url, lib.sql.url_env, f"{key}.sql.url_env", src, read)
        if not url and (read or not lib.sql.url_env):
            raise ConfigError("is required for reader_source = \"sql\"", file=src,
                              column=f"{key}.sql.url")
        if url and lib.sql.url_env and base is not None:
            url = absolute_sqlite_url(url, base)  # as MAILBOT_DATABASE_URL
        lib = dataclasses.replace(lib, sql=dataclasses.replace(lib.sql, url=url))
    if lib.reader_source == "sip2":
        pw = _secret(lib.sip2.password, lib.sip2.password_env, f"{key}.sip2.password_env",
                     src, read)
        lib = dataclasses.replace(lib, sip2=dataclasses.replace(lib.sip2, password=pw))
    return lib


def _secret(explicit: str | None, env_name: str | None, key: str, source: str,
            read: bool) -> str | None:
    """The secret from ``env_name``, when given and ``read`` (the command uses it);
    else the one written in the file (usually none)."""
    if env_name and read:
        value = os.environ.get(env_name)
        if value is None:
            raise ConfigError(f"environment variable {env_name} is not set", file=source, column=key)
        return value
    return explicit
