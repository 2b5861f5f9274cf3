"""The ``mailbot`` command line: its arguments; what each command does is in
mailbot.commands.

Only the standard library is imported here: ``mailbot --help`` and ``--version`` answer
without loading SQLAlchemy, the models, the web app or the holiday calendars, and each
command imports what it uses when it runs (benchmarks/startup.py measures it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from mailbot import __version__, services, startup
from mailbot.errors import BadInput, MailbotError
from mailbot.logs import configure_logging

log = logging.getLogger("mailbot")

DEFAULT_CONFIG = "mailbot.toml"
SYSTEM_CONFIG = "/etc/mailbot/mailbot.toml"  # where the README's install puts it
# The shipped platforms of --service: mailbot.services (tiny; the config machinery stays
# unloaded). A config's [[services]] add theirs: argparse cannot know them before the
# config is read, so --service is checked once it is (an unknown one: exit 2, naming the
# config's ids), and the help names the shipped ones.
SERVICE_CHOICES = services.IDS
SERVICE_HELP = f"{', '.join(SERVICE_CHOICES)} or the id of one of the config's [[services]]"

DESCRIPTION = ("mailbot hands out Legimi and Empik Go e-book codes to library patrons who "
               "ask by e-mail, in order of arrival, one code a month.")
EPILOG = ("Exit codes: 0 ok; 1 something failed or needs attention (status, check, run "
          "--once); 2 a mistake in the config file, an input file or the command line. "
          "Every command and config key: README.md and config.example.toml.")

def _default_config() -> str:
    """$MAILBOT_CONFIG; else ./mailbot.toml; else, when only it exists, the installed
    /etc/mailbot/mailbot.toml (so `sudo -u mailbot mailbot status` needs no --config)."""
    if os.environ.get("MAILBOT_CONFIG"):
        return os.environ["MAILBOT_CONFIG"]
    if not os.path.exists(DEFAULT_CONFIG) and os.path.exists(SYSTEM_CONFIG):
        return SYSTEM_CONFIG
    return DEFAULT_CONFIG


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mailbot", description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("--version", action="version", version=f"mailbot {__version__}")
    p.add_argument("--config", "-c", default=_default_config(),
                   help="TOML config file (default: $MAILBOT_CONFIG, else ./mailbot.toml, "
                        f"else {SYSTEM_CONFIG})")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="debug logging, the libraries' own INFO lines included")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("import-readers", help="load/refresh the local reader table")
    r.add_argument("file")
    r.add_argument("--library", required=True)
    r.add_argument("--remove-missing", action="store_true",
                   help="the file is a full export: delete readers that are not in it")

    c = sub.add_parser("import-codes", help="add a code pool from XLSX, XLS, CSV or HTML")
    c.add_argument("file")
    c.add_argument("--library", required=True)
    c.add_argument("--service", required=True, metavar="SERVICE", help=SERVICE_HELP)
    c.add_argument("--month", required=True, help="YYYY-MM")
    c.add_argument("--column", help="the code column: header, 1-based index or letter")

    pool = sub.add_parser("pool", help="a month's code pool")
    psub = pool.add_subparsers(dest="pool_command", required=True, metavar="ACTION")
    pw = psub.add_parser("withdraw", help="withdraw the pool's codes not issued yet (audited; "
                                          "issued codes stay)")
    pw.add_argument("--library", required=True)
    pw.add_argument("--service", required=True, metavar="SERVICE", help=SERVICE_HELP)
    pw.add_argument("--month", required=True, help="YYYY-MM")
    pw.add_argument("--dry-run", action="store_true",
                    help="say how many codes would be withdrawn; change nothing")

    a = sub.add_parser("import-activations", help="mark codes activated from the platform's report")
    a.add_argument("file")
    a.add_argument("--library", required=True)
    a.add_argument("--column", help="the code column: header, 1-based index or letter")

    run = sub.add_parser("run", help="the daemon: IMAP IDLE, decide, send, scheduled jobs")
    run.add_argument("--once", action="store_true",
                     help="handle everything waiting, then exit (for cron and tests)")

    rem = sub.add_parser("remind", help="send activation reminders now")
    rem.add_argument("--dry-run", action="store_true",
                     help="list who would get a reminder; send and record nothing")

    st = sub.add_parser("status", help="pools left, queue, outbox, each mailbox and relay "
                                       "(exit 1 if something needs attention)")
    st.add_argument("--json", action="store_true", help="the same facts as JSON, for scripts")

    ini = sub.add_parser("init", help="write a commented starting config (one library, one "
                                      "mailbox) to --config")
    ini.add_argument("--dir", default="/var/lib/mailbot",
                     help="the state directory its paths point into (default /var/lib/mailbot)")

    bk = sub.add_parser("backup", help="a consistent copy of the live SQLite database")
    bk.add_argument("file", help="the copy to write (must not exist)")
    rs = sub.add_parser("restore", help="put a backup back (mailbot must be stopped)")
    rs.add_argument("file", help="a file written by mailbot backup")
    rs.add_argument("--discard-newer", action="store_true",
                    help="restore even though codes were issued after this backup was "
                         "made; those codes are marked expired, never issued again")

    chk = sub.add_parser("check", help="log in to every mailbox and relay; check folders, "
                                       "reader sources, the database (exit 1 if any fails)")
    chk.add_argument("--create-folders", action="store_true",
                     help="create missing manual and processed folders (and Maildirs)")
    chk.add_argument("--send-test", metavar="ADDRESS",
                     help="also send a short test message to ADDRESS through each relay")

    db = sub.add_parser("db", help="the database schema (Alembic migrations)")
    db.add_argument("action", choices=("upgrade", "current"),
                    help="upgrade: bring the schema to this version; current: show it")

    pat = sub.add_parser("patron", help="RODO: export or erase one patron's data")
    pat.add_argument("action", choices=("export", "erase"))
    pat.add_argument("card")
    pat.add_argument("--library", required=True)
    pat.add_argument("-o", "--output", help="export: write the JSON here (default: stdout)")
    pat.add_argument("--yes", action="store_true", help="erase: really erase (else: a list)")

    rep = sub.add_parser("report", help="the monthly XLSX report per library/branch/service")
    rep.add_argument("--month", required=True, help="YYYY-MM")
    rep.add_argument("-o", "--output", required=True, help="the .xlsx file to write")
    rep.add_argument("--library", action="append", help="only this library (repeatable)")
    rep.add_argument("--lang", choices=("pl", "en"), default="pl", help="column titles")

    usr = sub.add_parser("user", help="dashboard staff accounts")
    usub = usr.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    ua = usub.add_parser("add", help="add a staff login (password from a prompt or "
                                     "$MAILBOT_NEW_PASSWORD)")
    ua.add_argument("name")
    ua.add_argument("--library", action="append", default=[],
                    help="a library this user may see and act for (repeatable)")
    ua.add_argument("--admin", action="store_true", help="the whole consortium")
    ua.add_argument("--temporary", action="store_true",
                    help="its owner must choose their own password at the first login")
    up = usub.add_parser("passwd", help="set a new password (logs the user out everywhere)")
    up.add_argument("name")
    up.add_argument("--temporary", action="store_true",
                    help="its owner must choose their own password at the next login")
    ur = usub.add_parser("remove", help="delete a staff login")
    ur.add_argument("name")
    usub.add_parser("list", help="list staff logins and their libraries")

    d = sub.add_parser("demo", help="the embedded default: no servers needed")
    d.add_argument("--dir", default="mailbot-demo", help="where to create the demo")
    d.add_argument("--no-serve", action="store_true",
                   help="exit after processing instead of serving the dashboard")
    d.add_argument("--port", type=int, default=8080,
                   help="dashboard port on 127.0.0.1 (default 8080; 0 = any free port)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    startup.begin()  # on again once the database is open (mailbot.commands._open)
    try:
        return _main(args)
    finally:
        startup.done()


def _main(args: argparse.Namespace) -> int:
    # Their output is their table, lines or JSON: only warnings join it.
    quiet = args.command in ("demo", "check", "init") or getattr(args, "json", False)
    configure_logging(logging.DEBUG if args.verbose else
                      logging.WARNING if quiet else logging.INFO)
    try:
        if args.command == "demo":
            startup.done()  # it serves until Ctrl-C: the collector on, as in a daemon
            from mailbot.demo import run_demo

            return run_demo(args.dir, serve=not args.no_serve, port=args.port)
        if args.command == "init":
            from mailbot.starter import write_starter

            for line in write_starter(args.config, args.dir):
                print(line)
            return 0
        from mailbot.commands import ALL_SECRETS, COMMANDS, RUN_ONCE_SECRETS, SECRETS
        from mailbot.config import load_settings

        kinds = RUN_ONCE_SECRETS if args.command == "run" and args.once else \
            SECRETS.get(args.command, ALL_SECRETS)
        settings = load_settings(args.config, secrets=kinds)
        return COMMANDS[args.command](settings, args)
    except BadInput as exc:
        print(f"mailbot: error: {exc}", file=sys.stderr)
        return 2
    except MailbotError as exc:
        print(f"mailbot: {exc}", file=sys.stderr)
        return 1
