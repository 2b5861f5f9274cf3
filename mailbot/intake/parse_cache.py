"""The parse cache: parsing a mail once, however many stages read it.

Speed machinery behind a plain interface; the domain code does not know the cache is
there. Intake hands its parse over (``remember_parse``) and deciding asks for the mail
again (``parse_mail_again``), getting exactly what ``parse_mail`` would return for those
bytes. In a burst the worker processes (mailbot/offload.py) parse whole chunks at once
(``parse_messages``), and with the library's card pattern also read the card and the name
deciding needs (``reading.read_mail``), so the deciding process does neither again.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import replace

import mailbot.intake.parse as parsing
from mailbot.intake.parse import DEFAULT_MAX_BYTES, ParsedMail
from mailbot.intake.reading import read_mail


class RecentParses:
    """Parses made at intake, kept for the decide stage of the same process.

    A request is parsed when it is read (to sort it) and again when it is decided; in one
    process the second parse of the very same bytes can be skipped. Entries are keyed by a
    digest of the raw mail and max_bytes, so what is taken is exactly what parse_mail would
    return for those bytes; each is taken once. At most ``limit`` are kept (the oldest go
    first): another process, a restart or a very large burst simply parses again."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._parsed: dict[tuple[bytes, int], ParsedMail] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(raw: bytes, max_bytes: int) -> tuple[bytes, int]:
        return hashlib.blake2b(raw, digest_size=20).digest(), max_bytes

    def keep(self, raw: bytes, max_bytes: int, parsed: ParsedMail) -> None:
        key = self._key(raw, max_bytes)
        with self._lock:
            while len(self._parsed) >= self.limit:
                del self._parsed[next(iter(self._parsed))]
            self._parsed[key] = parsed

    def take(self, raw: bytes, max_bytes: int) -> ParsedMail | None:
        key = self._key(raw, max_bytes)
        with self._lock:
            return self._parsed.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._parsed.clear()


RECENT = RecentParses(limit=20_000)  # ~4 KB each; a 10,000-mail opening burst fits


def parse_messages(raws: list[bytes], max_bytes: int,
                   card_pattern: str | None = None) -> list[ParsedMail | None]:
    """Each mail parsed, or None where parsing raised (run by worker processes in a
    burst, see intake/burst.py ParsedAhead). With ``card_pattern`` each parse also carries
    read_mail's answer for it, so that deciding does not search the text again."""
    out: list[ParsedMail | None] = []
    for raw in raws:
        try:
            parsed = parsing.parse_mail(raw, max_bytes=max_bytes)
        except Exception:
            out.append(None)
            continue
        if card_pattern is not None:
            try:
                parsed = replace(parsed, reading=read_mail(parsed, card_pattern))
            except Exception:  # noqa: BLE001 - deciding reads it again and sets it aside
                pass
        out.append(parsed)
    return out


def remember_parse(raw: bytes, parsed: ParsedMail, *,
                   max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Keeps ``parsed`` (of ``raw``) for parse_mail_again in this process."""
    RECENT.keep(raw, max_bytes, parsed)


def parse_mail_again(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ParsedMail:
    """parse_mail, or the parse intake kept of these very bytes (taken once)."""
    return RECENT.take(raw, max_bytes) or parsing.parse_mail(raw, max_bytes=max_bytes)
