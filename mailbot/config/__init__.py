"""Typed settings loaded from one TOML file, validated at start-up.

Every key is documented in ``config.example.toml``. A wrong key, a wrong type or a missing
required value is a ``ConfigError`` naming the file and the key (exit code 2). Secrets may
stay out of the file: ``password_env = "NAME"`` reads the password from that environment
variable, and ``MAILBOT_SMTP_PASSWORD`` / ``MAILBOT_DATABASE_URL`` override the file.

- ``sections``: the settings classes, one per TOML table, each key with its type, default
  and own rule; ``mail`` holds those of the mail accounts (mailboxes, relays, OAuth2),
  ``sources`` a library's reader sources (``[libraries.sql]``, ``[libraries.sip2]``),
  ``quotas`` its ``[libraries.quotas]``, and ``services`` the ``[[services]]`` tables
  merged with the shipped platforms;
- ``reader_status``: which reader sources can tell an account was never confirmed (a
  rule between keys, kept beside ``load``);
- ``checks``: those rules (``HHMM``, ``TimeZone``, ``NotNegative`` …) and ``parse_hhmm`` /
  ``parse_window``, which the policy rules use too;
- ``load``: reading the file (pydantic checks it against the classes), the rules between
  keys, pydantic's errors in mailbot's words;
- ``paths``: relative paths made relative to the config file's folder;
- ``secrets``: the secrets from the environment, only the kinds a command uses
  (``SECRET_KINDS``).

This package is the public interface: import from ``mailbot.config``.

pydantic replaced a hand-written TOML-to-dataclass type checker. It checks the file only:
the classes are plain dataclasses and pydantic is imported by the first config read, not
by ``import mailbot.config``. Best of 5 on the two-core development machine, which other
work shared, before -> after:
- ``python -X importtime -c "import mailbot.config"``: 30 -> 37 ms (the stdlib's
  dataclasses, tomllib, zoneinfo, pathlib; pydantic not imported);
- the first ``load_settings(config.example.toml)`` in a process: 2.7 -> 96 ms (pydantic's
  import, ~65 ms even after the CLI's own imports, and its schema build, ~30 ms); later
  reads 1.6 -> 0.6 ms.
So a CLI command or a daemon start pays ~95 ms once: accepted as under the ~150 ms set
as the limit for the library the developers' guide names. msgspec (a few ms) would not
do: it cannot refuse unknown keys of dataclasses (msgspec issue #791), and its Structs
would break the ``dataclasses.replace`` and ``dataclasses.fields`` that callers use.
"""

from __future__ import annotations

from mailbot.config.checks import parse_hhmm, parse_window
from mailbot.config.load import SECRET_KINDS, load_settings, settings_from_dict
from mailbot.config.sections import (
    SERVICES,
    DaemonSettings,
    ImportSettings,
    LibrarySettings,
    MailboxSettings,
    OAuthSettings,
    Settings,
    Sip2SourceSettings,
    SmtpSettings,
    SqlSourceSettings,
    WebSettings,
)

__all__ = [
    "SECRET_KINDS", "SERVICES", "DaemonSettings", "ImportSettings", "LibrarySettings",
    "MailboxSettings", "OAuthSettings", "Settings", "Sip2SourceSettings",
    "SmtpSettings", "SqlSourceSettings", "WebSettings", "load_settings", "parse_hhmm",
    "parse_window", "settings_from_dict",
]
