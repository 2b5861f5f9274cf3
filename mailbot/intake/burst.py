"""The opening burst's speed machinery: a poll that finds thousands of mails keeps the mail
server, the worker processes and the database busy at once.

Three plain pieces, used by intake/poll.py:

- ``poll_chunks``: the chunks a poll fetches and stores, in order. A burst's first chunk
  is small (FIRST_CHUNK) and stored as soon as it is read, parsed here (the workers are
  still starting): a start stores mail within a second of the poll beginning, however
  often the process is killed (a crash loop, cron with a timeout). The rest go
  FETCH_CHUNK at a time.
- ``fetched_ahead``: the chunks fetched in order and, in a burst, each but the first parsed
  by the worker processes (mailbot/offload.py) while the next one is fetched, then handed
  over to be stored.
- ``Mover``: in a burst, the stored chunks' mail moved on a second connection while this
  one fetches the next chunk (the server does the moving meanwhile).

A poll of one chunk goes through the same calls, which then only fetch it (no workers, no
second connection): the mail is parsed, stored and moved in place. Either way the same
rows are stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from sqlalchemy.orm import Session, sessionmaker

from mailbot import offload
from mailbot.config import MailboxSettings
from mailbot.db.batches import chunks
from mailbot.intake import imap, store
from mailbot.intake.parse import ParsedMail
from mailbot.intake.parse_cache import parse_messages
from mailbot.intake.store import Fetched

log = logging.getLogger(__name__)

FETCH_CHUNK = 200
# A burst's first chunk is at most this big and is stored as soon as it is read (parsed
# here: the workers are still starting), so a start stores mail within a second of the
# poll beginning, however often the process is killed (a crash loop, cron with a timeout).
FIRST_CHUNK = 50


def poll_chunks(uids: list[int], size: int | None = None) -> list[list[int]]:
    """The chunks a poll fetches and stores, in order (a burst's first one small);
    ``size`` is FETCH_CHUNK unless given. More than one chunk is a burst."""
    size = size or FETCH_CHUNK
    if len(uids) <= size:
        return [uids] if uids else []
    first = min(FIRST_CHUNK, size)
    return [uids[:first], *chunks(uids[first:], size)]


# A chunk handed over to be stored: its UIDs, its mails, their parses by UID (or None).
ChunkToStore = tuple[list[int], list[Fetched], dict[int, ParsedMail | None] | None]


def fetched_ahead(planned: list[list[int]],
                  fetch: Callable[[int, list[int]], list[Fetched]], *, max_bytes: int,
                  card_pattern: str | None) -> Iterator[ChunkToStore]:
    """Each planned chunk (its UIDs, its mails as ``fetch(n, chunk)`` read them, their
    parses by UID or None: parsed at storing), in order, to be stored.

    The first chunk comes as soon as it is fetched; in a burst each later one is parsed
    by the worker processes while the next is fetched, and comes after that fetch."""
    waiting: tuple[list[int], list[Fetched], ParsedAhead] | None = None
    for n, chunk in enumerate(planned):
        mails = fetch(n, chunk)
        if n == 0:  # (so a single chunk too)
            yield chunk, mails, None
            continue
        ahead = ParsedAhead(mails, max_bytes, card_pattern)
        if waiting is not None:
            yield waiting[0], waiting[1], waiting[2].result()
        waiting = (chunk, mails, ahead)
    if waiting is not None:
        yield waiting[0], waiting[1], waiting[2].result()


class ParsedAhead:
    """A chunk's mails parsed by the worker processes (mailbot/offload.py) meanwhile;
    ``result`` is {uid: parse}, with no entry where that was not possible (the mail is
    then parsed at storing, as without workers)."""

    def __init__(self, mails: list[Fetched], max_bytes: int,
                 card_pattern: str | None = None) -> None:
        self.uids = [uid for uid, _d, _r in mails]
        # With the library's card pattern, the workers also find the card and the name,
        # which deciding needs (reading.read_mail).
        self.future = offload.submit(parse_messages, [raw for _u, _d, raw in mails],
                                     max_bytes, card_pattern)

    def result(self) -> dict[int, ParsedMail | None]:
        # Not started yet (the workers are still starting up): parsed here instead.
        if self.future is None or self.future.cancel():
            return {}
        try:
            return dict(zip(self.uids, self.future.result()))
        except Exception as exc:  # lost workers: parsed here instead
            log.warning("parsing workers failed (%s); parsing in place", type(exc).__name__)
            return {}


class Mover:
    """Moves stored mail on its own connection, chunk after chunk, in order.

    Moving is the server's work (~0.1 ms a mail for Dovecot); on a second connection it
    runs while the poll fetches and stores the next chunk. Mail not moved yet keeps its
    ``pending_move``, so a failure or a crash leaves it to the next poll, as before."""

    def __init__(self, sessions: sessionmaker[Session], mb: MailboxSettings,
                 mailbox_id: int, uidvalidity: int) -> None:
        self.sessions, self.mb = sessions, mb
        self.mailbox_id, self.uidvalidity = mailbox_id, uidvalidity
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"move-{mb.key}")
        self.client: IMAPClient | None = None
        self.folders: imap.Folders | None = None
        self.done: list[Future[int]] = []

    def submit(self, to_move: dict[str, list[int]]) -> None:
        """Moves ``to_move`` (UIDs with no row, by folder), then every stored mail of the
        mailbox still to be moved."""
        self.done.append(self.pool.submit(self._move, to_move))

    def _move(self, to_move: dict[str, list[int]]) -> int:
        if self.client is None:
            self.client = imap.connect(self.mb)
            if imap.open_folder(self.client, self.mb.folder) != self.uidvalidity:
                raise IMAPClientError(f"{self.mb.key}: UIDVALIDITY changed during the poll")
            self.folders = imap.Folders(self.client)
        client, folders = self.client, self.folders
        assert folders is not None

        def move(uids: list[int], target: str) -> None:
            imap.move(client, folders, uids, target)

        for target, uids in to_move.items():
            move(uids, target)
        return store.finish_moves(self.sessions, self.mailbox_id, self.uidvalidity, move)

    def close(self) -> int:
        """Waits for every move; the number moved, or the first error."""
        try:
            return sum(future.result() for future in self.done)
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
            if self.client is not None:
                try:
                    self.client.logout()
                except Exception:
                    pass
