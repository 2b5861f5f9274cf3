"""Bounces of our own replies (delivery status notifications), recognised without guessing.

A bounce is a ``multipart/report; report-type=delivery-status`` mail, or one from
MAILER-DAEMON/postmaster, or one with an empty return path. It names the reply it is about
by quoting its headers; our Message-IDs have a fixed shape, so they are found exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailbot.intake.parse import ParsedMail

_OUR_ID = re.compile(rb"<mailbot\.[0-9a-f]{20}@[^>\s]{1,255}>")
_STATUS = re.compile(rb"^Status:\s*([245]\.\d{1,3}\.\d{1,3})", re.IGNORECASE | re.MULTILINE)
_DIAGNOSTIC = re.compile(rb"^Diagnostic-Code:\s*(?:[a-z0-9-]+;\s*)?(.{1,300})",
                         re.IGNORECASE | re.MULTILINE)
_DAEMONS = ("mailer-daemon", "postmaster")


@dataclass(frozen=True)
class Bounce:
    message_ids: tuple[str, ...]  # our replies this bounce is about
    reason: str  # "5.1.1 user unknown", as far as the report says


def _is_bounce(parsed: ParsedMail) -> bool:
    if parsed.content_type == "multipart/report":
        return True
    if parsed.return_path == "":
        return True
    for address in (parsed.from_address, parsed.return_path):
        if address and address.split("@")[0].lower() in _DAEMONS:
            return True
    return False


def find_bounce(parsed: ParsedMail, raw: bytes) -> Bounce | None:
    """The replies of ours a delivery failure report is about, or None."""
    if not _is_bounce(parsed):
        return None
    ids = tuple(dict.fromkeys(m.decode("ascii", "replace") for m in _OUR_ID.findall(raw)))
    if not ids:
        return None
    status = _STATUS.search(raw)
    diagnostic = _DIAGNOSTIC.search(raw)
    parts = [m.group(1).decode("utf-8", "replace").strip() for m in (status, diagnostic) if m]
    return Bounce(ids, " ".join(parts) or "delivery failed")
