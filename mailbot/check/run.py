"""Puts the checks of one installation together, runs them and prints a line for each.

The order: the database, each library's reader source, each mailbox, each relay, then
(``--send-test``) a test message through each relay. Every line is scrubbed of every
password and secret the settings hold, whatever a server or a driver chose to repeat.
"""

from __future__ import annotations

from collections.abc import Callable

from mailbot.check.deadline import run_all
from mailbot.check.items import FAIL, OK, SKIP, Check, Skipped
from mailbot.check.mail import check_mailbox
from mailbot.check.relays import check_relay, send_test
from mailbot.check.store import Database, check_database, check_reader_source, safe_url
from mailbot.check.texts import ITEM as TEXTS_ITEM
from mailbot.check.texts import check_texts
from mailbot.config import LibrarySettings, OAuthSettings, Settings, SmtpSettings

DATABASE_TIMEOUT = 30.0
MARGIN = 5.0  # seconds beyond the configured timeouts before an item is given up on
TEXTS_TIMEOUT = 60.0


def checks(settings: Settings, db: Database, *, create_folders: bool,
           send_test_to: str | None) -> list[Check]:
    found = [Check(f"database {safe_url(settings.database_url)}",
                   lambda: check_database(db), DATABASE_TIMEOUT)]
    for lib in settings.libraries:
        found.append(Check(f"library {lib.id} reader source {lib.reader_source}",
                           lambda lib=lib: check_reader_source(lib, db),
                           _source_timeout(lib)))
    for lib in settings.libraries:
        if lib.texts_dir:
            found.append(Check(TEXTS_ITEM.format(id=lib.id, dir=lib.texts_dir),
                               lambda lib=lib: check_texts(settings, lib), TEXTS_TIMEOUT))
    for mb in settings.mailboxes:
        found.append(Check(f"mailbox {mb.address} ({mb.key})",
                           lambda mb=mb: check_mailbox(mb, create_folders=create_folders),
                           2 * mb.timeout + _oauth_timeout(mb.oauth) + MARGIN))
    senders = _senders(settings)
    for key, relay in settings.relays.items():
        found.append(Check(f"relay {key}",
                           lambda r=relay, k=key: check_relay(r, senders.get(k, [])),
                           _relay_timeout(relay, len(senders.get(key, [])))))
    if send_test_to is not None:
        for key, relay in settings.relays.items():
            first = senders.get(key, [None])[0]
            found.append(Check(f"test message via relay {key}",
                               lambda r=relay, s=first: _send(r, s, send_test_to),
                               _relay_timeout(relay)))
    return found


def run_check(settings: Settings, *, create_folders: bool = False,
              send_test_to: str | None = None,
              out: Callable[[str], None] = print) -> int:
    """Prints a line per item; 0 when nothing failed, 2 when a library's own reply texts
    are broken (the library's input, as a bad config is), else 1."""
    db = Database(settings.database_url, DATABASE_TIMEOUT)
    counts = {OK: 0, FAIL: 0, SKIP: 0}
    texts = {TEXTS_ITEM.format(id=lib.id, dir=lib.texts_dir) for lib in settings.libraries
             if lib.texts_dir}
    bad_texts = False
    try:
        items = checks(settings, db, create_folders=create_folders, send_test_to=send_test_to)
        for result in run_all(items, scrub=_scrubber(settings)):
            out(result.line)
            counts[result.state] += 1
            bad_texts |= result.state == FAIL and result.item in texts
    finally:
        db.close()
    out(", ".join(f"{n} {state}" for state, n in counts.items()))
    return 2 if bad_texts else 1 if counts[FAIL] else 0


def _send(relay: SmtpSettings, sender: str | None, to: str) -> str:
    if sender is None:
        raise Skipped("no mailbox sends through this relay: no address to send from")
    return send_test(relay, sender=sender, to=to)


def _senders(settings: Settings) -> dict[str, list[str]]:
    """Per relay key, the addresses of the mailboxes whose replies leave through it (in
    configuration order, each once)."""
    found: dict[str, list[str]] = {}
    for mb in settings.mailboxes:
        these = found.setdefault(settings.relay_of(mb).key, [])
        if mb.address.lower() not in (a.lower() for a in these):
            these.append(mb.address)
    return found


def _oauth_timeout(oauth: OAuthSettings | None) -> float:
    return oauth.timeout if oauth is not None else 0.0


def _relay_timeout(relay: SmtpSettings, senders: int = 1) -> float:
    # Connect, greeting, STARTTLS, EHLO, AUTH, then MAIL and RSET per address: each
    # within relay.timeout.
    return (3 + max(0, senders - 1)) * relay.timeout + _oauth_timeout(relay.oauth) + MARGIN


def _source_timeout(lib: LibrarySettings) -> float:
    if lib.reader_source == "sql":
        return 2 * lib.sql.timeout + MARGIN
    if lib.reader_source == "sip2":
        return (1 + max(0, lib.sip2.retries)) * 2 * lib.sip2.timeout + MARGIN
    return DATABASE_TIMEOUT


def _secrets(settings: Settings) -> set[str]:
    found: set[str] = set()
    relays: list[SmtpSettings] = [settings.smtp] + [m.smtp for m in settings.mailboxes
                                                    if m.smtp is not None]
    oauths = [m.oauth for m in settings.mailboxes] + [r.oauth for r in relays]
    found.update(r.password or "" for r in relays)
    found.update(m.password or "" for m in settings.mailboxes)
    found.update(o.client_secret or "" for o in oauths if o is not None)
    for url in [settings.database_url] + [lib.sql.url or "" for lib in settings.libraries]:
        found.add(_url_password(url))
    for lib in settings.libraries:
        found.update((lib.sip2.password or "", lib.sip2.terminal_password or ""))
    return {s for s in found if len(s) >= 3}


def _url_password(url: str) -> str:
    from sqlalchemy import make_url

    try:
        return str(make_url(url).password or "") if url else ""
    except Exception:  # noqa: BLE001 - not a URL: nothing to take from it
        return ""


def _scrubber(settings: Settings) -> Callable[[str], str]:
    secrets = sorted(_secrets(settings), key=len, reverse=True)

    def scrub(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    return scrub

