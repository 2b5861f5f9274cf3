"""What each ``mailbot`` command does: a thin function per command that opens what it
needs, calls the module that does the work and prints the result (mailbot.cli parses the
arguments and calls it). Each imports what it uses when it runs, so the command line
starts without SQLAlchemy and the rest (benchmarks/startup.py)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from mailbot import startup
from mailbot.errors import BadInput

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from mailbot.config import Settings


def _open(settings: Settings, *, create: bool = True) -> sessionmaker[Session]:
    """The database's sessions; ``create=False`` for a command that only reads, which must
    not make an empty database where the config points at none (mailbot.db.files)."""
    from mailbot.db.session import open_database, sync_config

    sessions = open_database(settings.database_url, create=create)
    sync_config(sessions, settings)
    startup.done()  # the imports are behind us: the collector on again (mailbot.startup)
    return sessions


def _writing(settings: Settings) -> Any:
    """For the block that writes: a restore waits for it, and it for a restore
    (mailbot.db.running; nothing on PostgreSQL). The database is open already, so the
    checks of who may create files beside it have passed."""
    from mailbot.db.running import holding_running

    return holding_running(settings.database_url)


def _now() -> Any:
    from mailbot.clock import utcnow

    return utcnow()


def cmd_import_readers(settings: Settings, args: argparse.Namespace) -> int:
    from mailbot.imports.load import import_readers

    settings.library(args.library)
    sessions = _open(settings)
    with _writing(settings):
        result = import_readers(sessions, settings, path=args.file, library_id=args.library,
                                now=_now())
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
    with _writing(settings):
        result = import_codes(sessions, settings, path=args.file, library_id=args.library,
                              service=args.service, month=args.month, column=args.column,
                              now=_now())
    print(f"{args.file}: {result.added} {args.service} codes for {args.month} added "
          f"(pool #{result.pool_id})")
    return 0


def cmd_import_activations(settings: Settings, args: argparse.Namespace) -> int:
    from mailbot.imports.load import import_activations

    settings.library(args.library)
    sessions = _open(settings)
    with _writing(settings):
        r = import_activations(sessions, settings, path=args.file, library_id=args.library,
                               column=args.column, now=_now())
    months = (f"penalties now apply for {', '.join(r.months)}" if r.months else
              "no month in it has ended yet, so no penalty follows from it")
    print(f"{args.file}: {r.activated} activated, {r.not_activated} not activated, "
          f"{r.unknown} unknown to mailbot; {months}")
    return 0


def cmd_pool(settings: Settings, args: argparse.Namespace) -> int:
    import getpass

    from mailbot.imports.withdraw import withdraw_pool

    sessions = _open(settings, create=False)
    with _writing(settings):
        w = withdraw_pool(sessions, settings, library_id=args.library, service=args.service,
                          month=args.month, user=f"{getpass.getuser()} (command line)",
                          now=_now(), dry_run=args.dry_run)
    kept = f"{w.issued} issued and {w.expired} expired code(s) stay"
    if args.dry_run:
        print(f"would withdraw {w.withdrawn} unissued {w.service} code(s) of {w.month} from "
              f"{w.library_id}; {kept}; nothing changed (dry run)")
    else:
        print(f"withdrew {w.withdrawn} unissued {w.service} code(s) of {w.month} from "
              f"{w.library_id}; {kept} (audit log: withdraw_pool)")
    return 0


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from mailbot.db.running import holding_running

    # Held from before the database is opened (its schema checked, an SQLite file
    # upgraded), so a run started during a restore waits for it; taking it refuses root
    # on the service's database before the lock file is made (mailbot.db.running).
    with holding_running(settings.database_url):
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
    # Exit 1 for monitoring (cron mails it) whenever a reply could not be sent: failed for
    # good, deferred (the relay unreachable, a 4xx) or held by a relay's pause (it throttles
    # us or refuses our login). Replies waiting for a relay's own sending limits are the
    # plan working, not a failure.
    unsent = sent.failed + sent.deferred + sent.paused
    if unsent:
        relays = f" (relay {', '.join(sorted(sent.down))} unreachable)" if sent.down else ""
        print(f"{unsent} repl(ies) could not be sent now: {sent.failed} failed, "
              f"{sent.deferred} to be retried, {sent.paused} held by a relay's pause{relays}; "
              f"mailbot status says more", file=sys.stderr)
    return 1 if failed or unsent else 0


def cmd_remind(settings: Settings, args: argparse.Namespace) -> int:
    from mailbot import aio
    from mailbot.housekeeping import queue_reminders
    from mailbot.respond.outbox import send_due

    from mailbot.db.running import holding_running

    sessions = _open(settings, create=False)
    items = queue_reminders(sessions, settings, _now(), dry_run=args.dry_run)
    for item in items:
        print(f"{item.library_id}  {item.service:8}  card {item.card_number}  {item.email}")
    if args.dry_run:
        print(f"{len(items)} reminder(s) would be sent (dry run: nothing sent or recorded)")
        return 0
    with holding_running(settings.database_url):  # it sends: no restore meanwhile
        sent = aio.run(send_due(sessions, settings))
    print(f"{len(items)} reminder(s) queued; sent {sent.sent}, deferred {sent.deferred}, "
          f"failed {sent.failed}")
    return 0


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    from mailbot.db.files import check_database_file
    from mailbot.db.migrate import current_revision, head_revision, refuse_newer, upgrade
    from mailbot.db.session import make_engine

    from mailbot.db.running import holding_running

    # `db current` only reads; `db upgrade` may create the database: as its owner only.
    check_database_file(settings.database_url, create=args.action == "upgrade")
    engine = make_engine(settings.database_url)
    url = engine.url.render_as_string(hide_password=True)
    before = current_revision(engine)
    refuse_newer(engine, before)
    if args.action == "upgrade":
        with holding_running(engine):  # no restore while the schema changes
            upgrade(engine)
        print(f"{url}: schema {before or 'empty'} -> {current_revision(engine)}")
    else:
        print(f"{url}: schema {before or 'empty'} (this mailbot: {head_revision()})")
    return 0


def cmd_patron(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from mailbot.privacy import erase_patron, export_patron

    settings.library(args.library)
    sessions = _open(settings, create=False)
    if args.action == "export":
        data = export_patron(sessions, library_id=args.library, card=args.card, now=_now())
        text = json.dumps(data, ensure_ascii=False, indent=2)
        if args.output:
            from mailbot.private_files import write_private

            write_private(args.output, (text + "\n").encode("utf-8"))
            print(f"exported card {args.card} to {args.output}")
        else:
            print(text)
        return 0
    with _writing(settings):
        counts = erase_patron(sessions, library_id=args.library, card=args.card,
                              dry_run=not args.yes)
    summary = ", ".join(f"{n} {what}" for what, n in counts.items())
    if not args.yes:
        print(f"would erase for card {args.card}: {summary}; nothing erased (add --yes)")
    else:
        print(f"erased for card {args.card}: {summary} (the ledger keeps a pseudonym)")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from mailbot.status import run_status

    # Opened inside: a database that cannot be read is exit 1 with one line, no traceback.
    return run_status(lambda: _open(settings, create=False), settings, as_json=args.json)


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    from mailbot.db.backup import backup_database

    print(backup_database(settings.database_url, args.file))
    return 0


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    from mailbot.db.backup import restore_database

    print(restore_database(settings.database_url, args.file, discard_newer=args.discard_newer))
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
    sessions = _open(settings, create=False)
    rows = write_report(sessions, settings, month=args.month, path=args.output,
                        libraries=args.library, now=_now(), lang=args.lang)
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
    from mailbot.web.staff_accounts import add_user, list_users, remove_user, set_password

    sessions = _open(settings, create=args.user_command == "add")
    if args.user_command == "list":
        for u in list_users(sessions):
            scope = "admin (all libraries)" if u.is_admin else ", ".join(u.libraries)
            print(f"{u.name:24} {scope}")
        return 0
    if args.user_command == "remove":
        with _writing(settings):
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
        password = _new_password()
        with _writing(settings):
            user = add_user(sessions, settings, name=args.name, password=password,
                            libraries=args.library, is_admin=args.admin, now=_now(),
                            must_change=args.temporary)
        scope = "admin (all libraries)" if user.is_admin else ", ".join(user.libraries)
        print(f"user {user.name} added: {scope}")
        return 0
    password = _new_password()
    with _writing(settings):
        set_password(sessions, name=args.name, password=password, now=_now(),
                     must_change=args.temporary)
    print(f"password of {args.name} changed; their open sessions are logged out")
    return 0


# The secrets each command reads (mailbot.config.SECRET_KINDS): `status` runs without the
# mail passwords in its environment. A command not listed reads them all.
ALL_SECRETS = None
_DB = frozenset({"database"})
SECRETS: dict[str, frozenset[str] | None] = {
    "import-readers": _DB, "import-codes": _DB, "import-activations": _DB,
    "patron": _DB, "db": _DB, "status": _DB, "report": _DB, "user": _DB,
    "backup": _DB, "restore": _DB, "pool": _DB,
    "remind": _DB | {"mail"},
    "check": _DB | {"mail", "readers"},
    "run": ALL_SECRETS,  # run --once: all but "web" (mailbot.cli.main)
}
# run --once serves no dashboard: its key's variable may be unset under cron.
RUN_ONCE_SECRETS = _DB | {"mail", "readers"}

COMMANDS = {
    "pool": cmd_pool,
    "import-readers": cmd_import_readers,
    "import-codes": cmd_import_codes,
    "import-activations": cmd_import_activations,
    "run": cmd_run,
    "remind": cmd_remind,
    "patron": cmd_patron,
    "db": cmd_db,
    "status": cmd_status,
    "backup": cmd_backup,
    "restore": cmd_restore,
    "check": cmd_check,
    "report": cmd_report,
    "user": cmd_user,
}
