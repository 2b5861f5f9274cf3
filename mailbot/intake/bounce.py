"""Bounces of our own replies and other automatic reports, recognised without guessing.

A bounce is a delivery status notification: a ``multipart/report`` mail, or one with a
``message/delivery-status`` part deeper in its MIME tree (gateways wrap the report in a
``multipart/mixed``), or one from MAILER-DAEMON/postmaster, or one with an empty return
path. It names the reply it is about by quoting its headers; our Message-IDs have a fixed
shape, so they are found exactly.

``report_reason`` finds the reports nested below the top level (delivery status, ARF
complaint, read receipt) in the raw bytes, where ``loops.loop_reason`` sees only the top
level. A report inside a forwarded message (``message/rfc822``) is someone's forward, not
a report to us.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailbot.intake.parse import ParsedMail

_OUR_ID = re.compile(rb"<mailbot\.[0-9a-f]{20}@[^>\s]{1,255}>")
_STATUS = re.compile(rb"^Status:\s*([245]\.\d{1,3}\.\d{1,3})", re.IGNORECASE | re.MULTILINE)
_DIAGNOSTIC = re.compile(rb"^Diagnostic-Code:\s*(?:[a-z0-9-]+;\s*)?(.{1,300})",
                         re.IGNORECASE | re.MULTILINE)
_DAEMONS = frozenset({"mailer-daemon", "mailer_daemon", "mailerdaemon", "postmaster",
                      "post_master", "post-master"})
# The first message/* part header in the mail: a report type, or the forwarded message
# everything after it belongs to. One search, so a burst pays little for it.
_MESSAGE_PART = re.compile(
    rb"^content-type:[ \t]*(?:\r?\n[ \t]+)?\"?message/(rfc822|global|delivery-status"
    rb"|global-delivery-status|feedback-report|disposition-notification"
    rb"|global-disposition-notification)\b",
    re.IGNORECASE | re.MULTILINE,
)
# Hotmail's complaint reports (JMRP) enclose the mail complained of with this field added.
_HOTMAIL_COMPLAINT = re.compile(rb"^x-hmxmroriginalrecipient:", re.IGNORECASE | re.MULTILINE)
# A report is a part of a mixed (or report) multipart, never one of the alternatives or
# related parts of a single text: those are a typical patron's mail, not scanned at all.
_ONE_TEXT = frozenset({"multipart/alternative", "multipart/related"})
_REPORT_REACH = 256 * 1024  # reports come first; the returned original may be large
_REPORT_REASONS = {
    b"delivery-status": "delivery-report", b"global-delivery-status": "delivery-report",
    b"feedback-report": "feedback-report", b"disposition-notification": "read-receipt",
    b"global-disposition-notification": "read-receipt",
}


@dataclass(frozen=True)
class Bounce:
    message_ids: tuple[str, ...]  # our replies this bounce is about
    reason: str  # "5.1.1 user unknown", as far as the report says


def report_reason(parsed: ParsedMail, raw: bytes) -> str | None:
    """"delivery-report", "feedback-report" or "read-receipt" when the mail carries such a
    part below its top level (not inside a forwarded message), else None."""
    ctype = parsed.content_type
    if not ctype.startswith("multipart/") or ctype in _ONE_TEXT:
        return None  # nothing below the top level, or the forms of one text (most requests)
    # Plain substring tests first (no copy, no regex): nearly every request has neither.
    if raw.find(b"essage/", 0, _REPORT_REACH) < 0 and raw.find(b"ESSAGE/", 0, _REPORT_REACH) < 0:
        return _hotmail_complaint(raw)
    match = _MESSAGE_PART.search(raw, 0, _REPORT_REACH)
    if match is not None:
        found = _REPORT_REASONS.get(match.group(1).lower())
        if found is not None:
            return found
    return _hotmail_complaint(raw)


def _hotmail_complaint(raw: bytes) -> str | None:
    if raw.find(b"HmXmr", 0, _REPORT_REACH) < 0 and raw.find(b"hmxmr", 0, _REPORT_REACH) < 0:
        return None
    return "feedback-report" if _HOTMAIL_COMPLAINT.search(raw, 0, _REPORT_REACH) else None


def _is_bounce(parsed: ParsedMail, raw: bytes) -> bool:
    if parsed.content_type == "multipart/report":
        return True
    if parsed.return_path == "":
        return True
    for address in (parsed.from_address, parsed.return_path):
        if address and address.split("@")[0].lower() in _DAEMONS:
            return True
    return report_reason(parsed, raw) == "delivery-report"


def find_bounce(parsed: ParsedMail, raw: bytes) -> Bounce | None:
    """The replies of ours a delivery failure report is about, or None."""
    if not _is_bounce(parsed, raw):
        return None
    ids = tuple(dict.fromkeys(m.decode("ascii", "replace") for m in _OUR_ID.findall(raw)))
    if not ids:
        return None
    status = _STATUS.search(raw)
    diagnostic = _DIAGNOSTIC.search(raw)
    parts = [m.group(1).decode("utf-8", "replace").strip() for m in (status, diagnostic) if m]
    return Bounce(ids, " ".join(parts) or "delivery failed")
