"""The ``mailbot`` command line (SPEC 4). Exit codes: 0 ok, 2 bad input, 1 other errors."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from sqlalchemy.orm import Session, sessionmaker

from mailbot import aio
from mailbot.clock import utcnow
from mailbot.config import SERVICES, Settings, load_settings
from mailbot.db.session import open_database, sync_config
from mailbot.errors import BadInput, MailbotError
from mailbot.logs import configure_logging

log = logging.getLogger("mailbot")

DEFAULT_CONFIG = "mailbot.toml"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mailbot", description=__doc__)
    p.add_argument("--config", "-c", default=os.environ.get("MAILBOT_CONFIG", DEFAULT_CONFIG),
                   help="TOML config file (default: $MAILBOT_CONFIG or ./mailbot.toml)")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("import-readers", help="load/refresh the local reader table")
    r.add_argument("file")
    r.add_argument("--library", required=True)
    r.add_argument("--remove-missing", action="store_true",
                   help="the file is a full export: delete readers that are not in it")

    c = sub.add_parser("import-codes", help="add a code pool from XLSX, XLS, CSV or HTML")
    c.add_argument("file")
    c.add_argument("--library", required=True)
    c.add_argument("--service", required=True, choices=SERVICES)
    c.add_argument("--month", required=True, help="YYYY-MM")
    c.add_argument("--column", help="the code column: header, 1-based index or letter")

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

    sub.add_parser("status", help="pools left, queue, outbox, last poll per mailbox")

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
    up = usub.add_parser("passwd", help="set a new password (logs the user out everywhere)")
    up.add_argument("name")
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
    quiet = args.command in ("demo", "check")  # their output is their table / lines
    configure_logging(logging.DEBUG if args.verbose else
                      logging.WARNING if quiet else logging.INFO)
    try:
        if args.command == "demo":
            from mailbot.demo import run_demo

            return run_demo(args.dir, serve=not args.no_serve, port=args.port)
        settings = load_settings(args.config)
        return COMMANDS[args.command](settings, args)
    except BadInput as exc:
        print(f"mailbot: error: {exc}", file=sys.stderr)
        return 2
    except MailbotError as exc:
        print(f"mailbot: {exc}", file=sys.stderr)
        return 1


def _open(settings: Settings) -> sessionmaker[Session]:
    sessions = open_database(settings.database_url)
    sync_config(sessions, settings)
    return sessions


def cmd_import_readers(settings: Settings, args: argparse.Namespace) -> int:
    from mailbot.imports.load import import_readers

    settings.library(args.library)
    sessions = _open(settings)
    result = import_readers(sessions, settings, path=args.file, library_id=args.library,
                            now=utcnow())
    removed = ""
    if args.remove_missing:
        from mailbot.imports.load import remove_missing_readers

        gone = remove_missing_readers(sessions, path=args.file, library_id=args.library,
                                      limits=settings.imports)
        removed = f", {gone} removed (not in the file)"
    print(f"{args.file}: {result.created} readers added, {result.updated} updated, "
          f"{result.unchanged} unchanged{removed}")
    return 0


def cmd_import_codes(settings: Settings, args: argparse.Namespace) -> int:
    from mailbot.imports.load import import_codes

    settings.library(args.library)
    sessions = _open(settings)
    result = import_codes(sessions, settings, path=args.file, library_id=args.library,
                          service=args.service, month=args.month, column=args.column,
                          now=utcnow())
    print(f"{args.file}: {result.added} {args.service} codes for {args.month} added "
          f"(pool #{result.pool_id})")
    return 0


def cmd_import_activations(settings: Settings, args: argparse.Namespace) -> int:
    from mailbot.imports.load import import_activations

    settings.library(args.library)
    sessions = _open(settings)
    r = import_activations(sessions, settings, path=args.file, library_id=args.library,
                           column=args.column, now=utcnow())
    months = (f"penalties now apply for {', '.join(r.months)}" if r.months else
              "no month in it has ended yet, so no penalty follows from it")
    print(f"{args.file}: {r.activated} activated, {r.not_activated} not activated, "
          f"{r.unknown} unknown to mailbot; {months}")
    return 0


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    sessions = _open(settings)
    if not args.once:
        from mailbot.daemon import Daemon

        return Daemon(settings, sessions).run_forever()
    from mailbot.runonce import run_once

    result = run_once(sessions, settings)
    failed = [p for p in result["polls"] if p.errors]
    stored = sum(p.stored for p in result["polls"])
    sent = result["sent"]
    print(f"stored {stored} mail(s), decided {len(result['decisions'])}, sent {sent.sent}, "
          f"deferred {sent.deferred}, failed {sent.failed} "
          f"({', '.join(f'{k} {v:.2f} s' for k, v in result['seconds'].items())})")
    if sent.paced or sent.paused:
        # Left pending, in order, untouched: a later run sends them (respond/pacing.py).
        at = f" (a relay may send again at {sent.wake_at:%Y-%m-%d %H:%M:%S} UTC)" \
            if sent.wake_at else ""
        print(f"{sent.paced + sent.paused} repl(ies) wait for a relay's sending limits or "
              f"pause{at}: a later run sends them")
    for p in failed:
        print(f"mailbox {p.mailbox}: {'; '.join(p.errors)}", file=sys.stderr)
    return 1 if failed else 0


def cmd_remind(settings: Settings, args: argparse.Namespace) -> int:
    from mailbot.housekeeping import queue_reminders
    from mailbot.respond.outbox import send_due

    sessions = _open(settings)
    items = queue_reminders(sessions, settings, utcnow(), dry_run=args.dry_run)
    for item in items:
        print(f"{item.library_id}  {item.service:8}  card {item.card_number}  {item.email}")
    if args.dry_run:
        print(f"{len(items)} reminder(s) would be sent (dry run: nothing sent or recorded)")
        return 0
    sent = aio.run(send_due(sessions, settings))
    print(f"{len(items)} reminder(s) queued; sent {sent.sent}, deferred {sent.deferred}, "
          f"failed {sent.failed}")
    return 0


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    from mailbot.db.migrate import current_revision, head_revision, upgrade
    from mailbot.db.session import make_engine

    engine = make_engine(settings.database_url)
    url = engine.url.render_as_string(hide_password=True)
    before = current_revision(engine)
    if args.action == "upgrade":
        upgrade(engine)
        print(f"{url}: schema {before or 'empty'} -> {current_revision(engine)}")
    else:
        print(f"{url}: schema {before or 'empty'} (this mailbot: {head_revision()})")
    return 0


def cmd_patron(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from mailbot.privacy import erase_patron, export_patron

    settings.library(args.library)
    sessions = _open(settings)
    if args.action == "export":
        data = export_patron(sessions, library_id=args.library, card=args.card, now=utcnow())
        text = json.dumps(data, ensure_ascii=False, indent=2)
        if args.output:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text + "\n")
            print(f"exported card {args.card} to {args.output}")
        else:
            print(text)
        return 0
    counts = erase_patron(sessions, library_id=args.library, card=args.card,
                          dry_run=not args.yes)
    summary = ", ".join(f"{n} {what}" for what, n in counts.items())
    if not args.yes:
        print(f"would erase for card {args.card}: {summary}; nothing erased (add --yes)")
    else:
        print(f"erased for card {args.card}: {summary} (the ledger keeps a pseudonym)")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from mailbot.status import status_lines

    sessions = _open(settings)
    print("\n".join(status_lines(sessions, settings)))
    return 0


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    from mailbot.addresses import usable_address
    from mailbot.check.run import run_check

    if args.send_test is not None and usable_address(args.send_test) is None:
        raise BadInput(f"not an e-mail address a relay can take: {args.send_test!r}",
                       column="--send-test")
    return run_check(settings, create_folders=args.create_folders,
                     send_test_to=args.send_test)


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    from mailbot.report import write_report

    for lib in args.library or ():
        settings.library(lib)
    sessions = _open(settings)
    rows = write_report(sessions, settings, month=args.month, path=args.output,
                        libraries=args.library, now=utcnow(), lang=args.lang)
    print(f"{args.output}: report for {args.month}, {rows} row(s)")
    return 0


def _new_password() -> str:
    """From $MAILBOT_NEW_PASSWORD (scripts) or typed twice at a prompt, never echoed."""
    import getpass

    value = os.environ.get("MAILBOT_NEW_PASSWORD")
    if value is not None:
        return value
    if not sys.stdin.isatty():
        raise BadInput("no terminal to ask for the password: set MAILBOT_NEW_PASSWORD",
                       column="password")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Repeat it: ") != first:
        raise BadInput("the two passwords differ", column="password")
    return first


def cmd_user(settings: Settings, args: argparse.Namespace) -> int:
    from mailbot.web.auth import add_user, list_users, remove_user, set_password

    sessions = _open(settings)
    if args.user_command == "list":
        for u in list_users(sessions):
            scope = "admin (all libraries)" if u.is_admin else ", ".join(u.libraries)
            print(f"{u.name:24} {scope}")
        return 0
    if args.user_command == "remove":
        remove_user(sessions, name=args.name)
        print(f"user {args.name} removed")
        return 0
    if args.user_command == "add":
        # Check the name and libraries before asking for a password.
        for lib in args.library:
            settings.library(lib)
        if not args.library and not args.admin:
            raise BadInput("a user needs at least one --library (or --admin)",
                           column="--library")
        user = add_user(sessions, settings, name=args.name, password=_new_password(),
                        libraries=args.library, is_admin=args.admin, now=utcnow())
        scope = "admin (all libraries)" if user.is_admin else ", ".join(user.libraries)
        print(f"user {user.name} added: {scope}")
        return 0
    set_password(sessions, name=args.name, password=_new_password(), now=utcnow())
    print(f"password of {args.name} changed; their open sessions are logged out")
    return 0


COMMANDS = {
    "import-readers": cmd_import_readers,
    "import-codes": cmd_import_codes,
    "import-activations": cmd_import_activations,
    "run": cmd_run,
    "remind": cmd_remind,
    "patron": cmd_patron,
    "db": cmd_db,
    "status": cmd_status,
    "check": cmd_check,
    "report": cmd_report,
    "user": cmd_user,
}
