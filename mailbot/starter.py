"""``mailbot init``: a commented starting config, and the next three commands to run.

One library and one IMAP mailbox replying through one relay, every path absolute under the
state directory (``/var/lib/mailbot``), passwords named by ``password_env`` (never in the
file). The host names are placeholders under ``.invalid`` (RFC 2606: never resolves), so
that a config nobody has edited yet fails ``mailbot check`` plainly instead of reaching
someone's server. The lines IT must change are marked ``>>> CHANGE``.

Nothing is overwritten: an existing config is refused. The config holds no secret and is
0640; when root writes it for a state directory another user owns (``install -d -o
mailbot /var/lib/mailbot``, as the README's deployment does), its group is that user's, so
the service reads it and only root changes it. The state directory, made when missing,
is 0700: the database and the dashboard's key go there.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
from pathlib import Path
from urllib.parse import quote

from mailbot.errors import BadInput
from mailbot.resources import shared_file

DEFAULT_STATE_DIR = "/var/lib/mailbot"
SECRETS_FILE = "/etc/mailbot/secrets.env"
CONFIG_MODE = 0o640
STATE_MODE = 0o700

TEMPLATE = """\
# mailbot configuration, written by `mailbot init`.
# Keys not set here have their defaults; every key, with its meaning, is in
# config.example.toml (mailbot init printed where) and the README, "Configuration".
# Lines marked ">>> CHANGE" must be filled in (>>> ZMIEŃ: uzupełnij) before
# `mailbot check` can pass: the mail servers below do not exist (".invalid").
# Paths are absolute; a relative path would count from this file's folder.

# Time zone of the library: the month's window, "today", month ends.
timezone = "Europe/Warsaw"

# mailbot's state: patrons' data and the codes (mode 0600, the service user's only).
# PostgreSQL instead (a consortium): "postgresql+psycopg://mailbot@db-host/mailbot", or
# MAILBOT_DATABASE_URL in the environment, which wins over this key.
database_url = {database_url}

# RODO: raw mail and the bodies of sent replies are kept this many days.
retention_days = 30

# The staff dashboard, served by `mailbot run` on loopback (a TLS proxy in front for the
# branches). Logins: mailbot user add NAME --library biblioteka
[web]
enabled = true
host = "127.0.0.1"
port = 8080
secret_key_file = {key_file}   # made on first start, mode 0600

# The relay replies leave through (Microsoft 365, Google: docs/providers.md).
[smtp]
host = "smtp.biblioteka.invalid"          # >>> CHANGE: the SMTP server (poczta wychodząca)
port = 587
starttls = true                           # STARTTLS (587); port 465: ssl = true, no starttls
username = "ebooki@biblioteka.invalid"    # >>> CHANGE: the account replies are sent from
password_env = "MAILBOT_SMTP_PASSWORD"    # its password: in {secrets_file}, never here
# file_outbox = {outbox}   # a dry run: replies written here as .eml, not sent
# max_per_hour = 1000                     # the provider's sending limits, if it has them

# The library: its policy keys (window, checks, limits) keep their defaults until set.
[[libraries]]
id = "biblioteka"                         # short and stable: --library biblioteka in commands
name = "Biblioteka Publiczna"             # >>> CHANGE: the library's name, it signs the replies
# >>> CHANGE: how patrons reach the library, shown in the replies
contact = "tel. 00 000 00 00, wypozyczalnia@biblioteka.invalid"
window_day = 1                            # a month's requests count from this day ...
window_time = "00:00"                     # ... at this time (library time zone)
check_name = true                         # the surname on file must appear in the mail
penalty_months = 3                        # months blocked after an unactivated code (0 = off)
languages = ["pl", "en"]                  # reply languages, Polish first
reader_source = "local"                   # mailbot import-readers FILE --library biblioteka

# The mailbox patrons write to (skrzynka, na którą piszą czytelnicy).
[[mailboxes]]
library = "biblioteka"
address = "ebooki@biblioteka.invalid"     # >>> CHANGE: the patrons' address, the From of replies
host = "imap.biblioteka.invalid"          # >>> CHANGE: the IMAP server (poczta przychodząca)
port = 993
ssl = true                                # IMAPS; certificates are verified
username = "ebooki@biblioteka.invalid"    # >>> CHANGE: its login
password_env = "MAILBOT_IMAP_PASSWORD"    # its password: in {secrets_file}, never here
folder = "INBOX"
manual_folder = "mailbot/manual"          # mail that is not a request, for staff
processed_folder = "mailbot/processed"    # handled mail (`check --create-folders` makes both)
"""


def starter_config(state_dir: str) -> str:
    """The starting config's text for the absolute ``state_dir``."""
    state = Path(state_dir)
    database = "sqlite:///" + quote(str(state / "mailbot.db"), safe="/")
    return TEMPLATE.format(database_url=_toml(database),
                           key_file=_toml(str(state / "web-secret.key")),
                           outbox=_toml(str(state / "outbox")),
                           secrets_file=SECRETS_FILE)


def write_starter(config_path: str, state_dir: str) -> list[str]:
    """Writes the starting config to ``config_path`` (never over an existing file), makes
    ``state_dir`` (0700) when missing; returns the lines to print: what was written
    where, and the next three commands."""
    config = Path(os.path.abspath(config_path))
    state = Path(os.path.abspath(state_dir))
    if config.exists() or config.is_symlink():
        raise BadInput("exists: mailbot init never overwrites a config (move it away, or "
                       "give another --config)", file=str(config))
    if state.exists() and not state.is_dir():
        raise BadInput("exists and is not a folder (--dir)", file=str(state))
    text = starter_config(str(state))
    lines = []
    try:
        made_state = _make_folder(state, STATE_MODE)
        config.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, CONFIG_MODE)
    except FileExistsError:
        raise BadInput("exists: mailbot init never overwrites a config", file=str(config)) \
            from None
    except OSError as exc:
        raise BadInput(f"cannot write the starting config: {exc.strerror}",
                       file=exc.filename or str(config)) from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(config, CONFIG_MODE)  # the umask may have taken the group's read away
    group = _share_with_service(config, state)
    readable = f", group {group}: the service reads it, only root changes it" if group else ""
    lines.append(f"wrote {config} (mode {CONFIG_MODE:04o}{readable}): one library, one "
                 "mailbox, state under " + str(state))
    st = state.stat()
    lines.append(f"state directory {state} ({'made' if made_state else 'exists'}, mode "
                 f"{stat.S_IMODE(st.st_mode):04o}, owner {_user(st.st_uid)})")
    if os.geteuid() == 0 and st.st_uid == 0:
        lines.append(f"  both belong to root; for the service user mailbot: chown mailbot: "
                     f"{shlex.quote(str(state))}; chgrp mailbot {shlex.quote(str(config))}; "
                     "and run mailbot's commands as that user (sudo -u mailbot mailbot ...)")
    service = _sudo_user(st.st_uid) if os.geteuid() == 0 and st.st_uid != 0 else None
    lines += [
        "next:",
        f"  1. edit {config}: the lines marked \">>> CHANGE\" (the mail servers, the "
        "addresses, the library's name and contact);",
        f"     put the passwords in {SECRETS_FILE} (mode 0600, read by the systemd unit):",
        "       MAILBOT_IMAP_PASSWORD=...",
        "       MAILBOT_SMTP_PASSWORD=...",
    ]
    if service is None:
        lines.append(f"     and, for the commands below, in the environment: set -a; . "
                     f"{SECRETS_FILE}; set +a")
    else:
        lines.append(f"     the commands below run as {service}, who owns the state "
                     "directory, with those passwords:")
    month = _this_month()
    lines += [
        "  2. import the readers (an export of the library system) and this month's codes:",
        f"     {_command(config, 'import-readers czytelnicy.csv --library biblioteka', service, secrets=False)}",
        f"     {_command(config, f'import-codes kody.xlsx --library biblioteka --service legimi --month {month}', service, secrets=False)}",
        f"  3. {_command(config, 'check --create-folders', service)}",
        f"  4. {_command(config, 'run --once', service)}",
        f"     then start the service (cp {shared_file('mailbot.service')} "
        "/etc/systemd/system/; systemctl enable --now mailbot) or cron's run --once "
        "(README, \"Deployment\")",
        f"every key, with its default and meaning: {shared_file('config.example.toml')}"]
    return lines


def _this_month() -> str:
    from mailbot.clock import month_key, month_of, utcnow
    from zoneinfo import ZoneInfo

    return month_key(*month_of(utcnow(), ZoneInfo("Europe/Warsaw")))


def _command(config: Path, args: str, user: str | None, *, secrets: bool = True) -> str:
    """A command line to run on ``config``: as it is, or as the service ``user`` with the
    secrets file read into its environment (sudo passes no environment on) when the
    command uses them (an import needs none)."""
    cmd = f"mailbot --config {shlex.quote(str(config))} {args}"
    if user is None:
        return cmd
    if not secrets:
        return f"sudo -u {shlex.quote(user)} {cmd}"
    inner = f"set -a; . {shlex.quote(SECRETS_FILE)}; set +a; exec {cmd}"
    return f"sudo -u {shlex.quote(user)} sh -c {shlex.quote(inner)}"


def _make_folder(path: Path, mode: int) -> bool:
    """Makes ``path`` (and its parents) with ``mode``; False if it was there."""
    if path.is_dir():
        return False
    path.mkdir(parents=True, mode=mode)
    os.chmod(path, mode)  # mkdir's mode is cut by the umask; this sets it exactly
    return True


def _share_with_service(config: Path, state: Path) -> str | None:
    """Root writing the config for a state directory another user owns: the config's
    group becomes that directory's, so the service can read it. The group's name, or None."""
    if os.geteuid() != 0:
        return None
    st = state.stat()
    if st.st_uid == 0:
        return None
    os.chown(config, 0, st.st_gid)
    import grp

    try:
        return grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        return str(st.st_gid)


def _user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _sudo_user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"  # sudo -u '#1234'


def _toml(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(value, ensure_ascii=False)
