"""The IMAP edge of intake (imapclient): connect, open the folder, find new UIDs, fetch mail
and its arrival times (INTERNALDATE), move handled mail (MOVE, or COPY + EXPUNGE).

No database here: intake/poll.py reads a mailbox with these functions, intake/store.py
stores what they fetched. Mail another process (or staff) moved or expunged meanwhile is
simply not there any more: a command that meets it is done again for what is left.
"""

from __future__ import annotations

import logging
import ssl
from datetime import UTC, datetime
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from mailbot.clock import utcnow
from mailbot.config import MailboxSettings
from mailbot.db.batches import chunks
from mailbot.intake.mail.dates import plausible_date
from mailbot.intake.store import SEEN_ONLY
from mailbot.login.imap import imap_login

log = logging.getLogger(__name__)

DATES_CHUNK = 2000  # UIDs a FETCH of arrival times names (under Dovecot's 64 KB line)


def connect(mb: MailboxSettings) -> IMAPClient:
    # Certificates and host names are verified; ca_file only changes whom we trust.
    context = ssl.create_default_context(cafile=mb.ca_file) if (mb.ssl or mb.starttls) \
        else None
    client = IMAPClient(mb.host, port=mb.port, ssl=mb.ssl, ssl_context=context,
                        timeout=mb.timeout)
    try:
        if mb.starttls:
            # Raises (before any LOGIN) when the server offers no STARTTLS: no plaintext.
            client.starttls(context)
        imap_login(client, mb)
    except BaseException:
        # Otherwise the socket stays open until the garbage collector finds it.
        try:
            client.shutdown()
        except OSError:
            pass
        raise
    # Aware datetimes for INTERNALDATE, never the machine's local time.
    client.normalise_times = False
    return client


def open_folder(client: IMAPClient, folder: str) -> int:
    """Selects the folder; its UIDVALIDITY."""
    info = client.select_folder(folder)
    return int(info[b"UIDVALIDITY"])


def new_uids(client: IMAPClient, last_uid: int) -> list[int]:
    """The UIDs above ``last_uid``, in order."""
    # "n:*" always matches the highest UID, even one below n: filter.
    return sorted(u for u in client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid)


def _aware(dt: datetime) -> datetime:
    """An INTERNALDATE as an aware instant (a zone-less one is UTC). One no mail can have
    (Dovecot takes an APPEND dated 1969 and reports a file's mtime of year 1 as 2105) is
    taken as arriving now, when the poll saw it: stored as year 1 it would come first in
    the queue, or fail to store; as 2105 it would wait for its turn until 2105."""
    when = dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
    now = utcnow()
    if plausible_date(when, now=now):
        return when
    log.warning("INTERNALDATE %s is no mail's arrival; taken as arriving now", when)
    return now


class Folders:
    """Server folder names (configured with '/', the server may use another delimiter)."""

    def __init__(self, client: IMAPClient) -> None:
        self.client = client
        listing = client.list_folders(pattern="")
        delim = listing[0][1] if listing and listing[0][1] else b"/"
        self.delimiter = delim.decode() if isinstance(delim, bytes) else delim
        self.known: set[str] = set()

    def server_name(self, name: str) -> str:
        """A configured manual/processed folder's name on this server."""
        return name.replace("/", self.delimiter)

    def ensure(self, name: str) -> str:
        server_name = self.server_name(name)
        if server_name not in self.known:
            if not self.client.folder_exists(server_name):
                try:
                    self.client.create_folder(server_name)
                except IMAPClientError as exc:
                    # Another process (reading the same mailbox) created it just now.
                    if "ALREADYEXISTS" not in str(exc):
                        raise
                try:
                    self.client.subscribe_folder(server_name)
                except Exception:  # subscriptions are a convenience for staff only
                    pass
            self.known.add(server_name)
        return server_name


def _gone_already(exc: Exception) -> bool:
    """Another process (or staff) already moved or expunged these messages."""
    return "EXPUNGEISSUED" in str(exc) or "NONEXISTENT" in str(exc)


def move(client: IMAPClient, folders: Folders, uids: list[int], target: str) -> None:
    """Moves the mails to the folder ``target`` (SEEN_ONLY: flags them \\Seen in place)."""
    try:
        _move_now(client, folders, uids, target)
    except IMAPClientError as exc:
        if not _gone_already(exc):
            raise
        client.noop()  # learn about the expunges, then move whatever is still here
        _move_now(client, folders, uids, target)


def _move_now(client: IMAPClient, folders: Folders, uids: list[int], target: str) -> None:
    if not uids:
        return
    if target == SEEN_ONLY:
        client.add_flags(uids, [b"\\Seen"], silent=True)
        return
    server_name = folders.ensure(target)
    if client.has_capability("MOVE"):
        client.move(uids, server_name)
        return
    client.copy(uids, server_name)
    client.add_flags(uids, [b"\\Deleted"], silent=True)
    if client.has_capability("UIDPLUS"):
        client.uid_expunge(uids)
    else:
        # A plain EXPUNGE would also remove mail staff marked deleted: leave ours flagged.
        log.warning("server has neither MOVE nor UIDPLUS: %d handled mail(s) copied and "
                    "flagged \\Deleted, not expunged", len(uids))


def arrivals(client: IMAPClient, uids: list[int]) -> dict[int, datetime]:
    """Every UID's arrival (INTERNALDATE), asked for first in a burst; {} if they cannot be
    had. Mail gone meanwhile (another process moved it) has none."""
    found: dict[int, Any] = {}
    try:
        # A few thousand UIDs a command: a longer list passes servers' line limits.
        for part in chunks(uids, DATES_CHUNK):
            found.update(client.fetch(part, ["INTERNALDATE"]))
    except IMAPClientError as exc:
        log.warning("arrival times of the burst not read (%s); deciding waits for the "
                    "whole poll", exc)
        return {}
    return {uid: _aware(data[b"INTERNALDATE"]) for uid, data in found.items()
            if b"INTERNALDATE" in data}


def fetch(client: IMAPClient, uids: list[int], max_bytes: int,
          arrived: dict[int, datetime] | None = None) -> dict[int, tuple[datetime, bytes]]:
    """INTERNALDATE and the raw mail; oversized mail only up to ``max_bytes`` (flat memory).
    The INTERNALDATEs a burst asked for first (``arrived``) are not asked for again (a
    message's INTERNALDATE never changes).

    Mail another process moved away meanwhile is simply not there any more."""
    known = {uid: arrived[uid] for uid in uids} \
        if arrived and all(uid in arrived for uid in uids) else None
    try:
        return _fetch_now(client, uids, max_bytes, known)
    except IMAPClientError as exc:
        if not _gone_already(exc):
            raise
        client.noop()
        return _fetch_now(client, uids, max_bytes, known)


def _fetch_now(client: IMAPClient, uids: list[int], max_bytes: int,
               known: dict[int, datetime] | None) -> dict[int, tuple[datetime, bytes]]:
    # One FETCH for the chunk: a partial fetch returns a small mail whole and a large one
    # only up to max_bytes, so no separate size query is needed.
    part = f"BODY.PEEK[]<0.{max_bytes}>"
    out: dict[int, tuple[datetime, bytes]] = {}
    for uid, data in client.fetch(uids, [part] if known else ["INTERNALDATE", part]).items():
        key = next((k for k in data if k.startswith(b"BODY[]")), None)
        if known is not None and (uid not in known or key is None):
            continue  # an unasked-for FETCH (another session's flag change, say)
        arrived = known[uid] if known is not None else _aware(data[b"INTERNALDATE"])
        out[uid] = (arrived, data.get(key) or b"")
    return out
