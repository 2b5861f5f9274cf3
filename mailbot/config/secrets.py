"""The secrets a command uses, read from the environment.

Secrets may stay out of the file: ``password_env = "NAME"`` (``url_env`` for a SQL reader
source, ``client_secret_env`` for OAuth2, ``secret_key_env`` for the dashboard) reads the
value from that environment variable, and ``MAILBOT_SMTP_PASSWORD`` /
``MAILBOT_DATABASE_URL`` override the file. A command reads only the kinds of secret it
uses (``SECRET_KINDS``): ``mailbot status`` needs no mail password, so an unset
``MAILBOT_IMAP_PASSWORD`` is no error there.
"""

from __future__ import annotations

import dataclasses
import os

from mailbot.config.paths import absolute_sqlite_url
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


def resolve_secrets(settings: Settings, kinds: frozenset[str], base: str | None) -> Settings:
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
