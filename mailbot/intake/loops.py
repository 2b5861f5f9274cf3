"""Whether a mail is a program's, not a person's: ``loop_reason`` (the headers say so:
no automatic reply may go, SPEC §2.10, RFC 3834) and ``looks_automatic`` (only the body
or a spam filter says so: left for staff, never answered, never silenced). Bounces whose
report sits deeper in the MIME tree are ``bounce.py``'s.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from functools import lru_cache

from mailbot.intake.mail.senders import parse_address
from mailbot.intake.parse import OWN_MESSAGE_ID_PREFIX, ParsedMail
from mailbot.intake.subjects import auto_subject

_LOOP_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply", "auto-reply"})
_LOOP_HEADERS = ("x-autoreply", "x-autorespond", "x-auto-response-suppress")
# Fields only software writes, each its own reason: list managers (RFC 2369 and older
# ones: ezmlm, fml, Mailman), MTAs' bounce and loop markers, challenge-response systems,
# issue trackers, Hotmail's complaint reports. No mail client puts any of them on a
# person's mail. (Looked up as one set intersection: a burst asks for every mail.)
_MACHINE_HEADERS = frozenset({
    "list-subscribe", "list-help", "list-post", "list-owner", "mailing-list", "x-mlserver",
    "x-ml-name", "x-mailman-version", "x-list-administrivia", "x-beenthere", "x-loop",
    "x-failed-recipients", "x-bluebottle-request", "x-jira-fingerprint", "x-github-reason",
    "x-gitlab-project", "x-redmine-host", "x-bugzilla-reason", "x-hmxmroriginalrecipient",
})
_APPLE_AUTO = frozenset({"vacation", "autoreply", "auto-reply", "autorespond"})
_REPORT_TYPES = frozenset({
    "multipart/report", "message/delivery-status", "message/global-delivery-status",
    "message/feedback-report", "message/disposition-notification",
})
# Spelled with or without "-", "_" or ".": post_master, mailer_daemon, no.reply ...
_SEP_CHAR = r"[-_.]?"
_DAEMON_LOCAL_PART = re.compile(
    rf"(?:mailer{_SEP_CHAR}daemon|mail{_SEP_CHAR}daemon|post{_SEP_CHAR}master)\Z")
_NO_REPLY = re.compile(
    rf"no{_SEP_CHAR}reply|do{_SEP_CHAR}not{_SEP_CHAR}(?:reply|respond)"
    rf"|nie{_SEP_CHAR}odpowiadaj|nie{_SEP_CHAR}odpisuj")
# Accounts of programs, not people: cron and database jobs mail as these.
_SYSTEM_LOCAL_PARTS = frozenset({
    "root", "cron", "daemon", "nobody", "www-data", "www_data", "wwwrun", "apache", "nginx",
    "httpd", "oracle", "postgres", "mysql", "nagios", "icinga", "zabbix", "jenkins",
    "logwatch",
})


# What the dashboard calls each reason: a catalogue key (``note_loop_<key>``), so staff
# read it in their language. Reasons not listed are header names only software writes
# (``_MACHINE_HEADERS``, the RFC 3834 ones): "loop_header", naming the header.
_REASON_KEYS = {
    "auto-submitted": "auto_submitted", "empty-return-path": "empty_return_path",
    "mailer-daemon": "mailer_daemon", "delivery-report": "delivery_report",
    "feedback-report": "feedback_report", "read-receipt": "read_receipt",
    "no-reply-address": "no_reply_address", "auto-reply-subject": "auto_reply_subject",
    "own-address": "own_address", "own-message-id": "own_message_id",
    "reply-to-own-message": "reply_to_own_message", "x-apple-action": "apple_vacation",
    "list-id": "mailing_list", "list-unsubscribe": "mailing_list",
}


def reason_note(reason: str) -> tuple[str, dict[str, str]]:
    """The trail note (catalogue key and values) for a reason of ``loop_reason`` or
    ``bounce.report_reason``."""
    if reason.startswith("precedence:"):
        return "loop_precedence", {"value": reason.partition(":")[2]}
    key = _REASON_KEYS.get(reason)
    if key is not None:
        return "loop_" + key, {}
    # A header's name as mail clients write it: X-Mailman-Version, List-Post.
    return "loop_header", {"header": "-".join(p.capitalize() for p in reason.split("-"))}


def _local_part(address: str | None) -> str:
    return (address or "").rsplit("@", 1)[0].strip().lower()


def _first_token(value: str) -> str:
    return re.split(r"[;(\s]", value.strip(), maxsplit=1)[0].lower()


@lru_cache(maxsize=16)
def _own(addresses: frozenset[str]) -> frozenset[str]:
    """The bot's own addresses as loop_reason compares them: asked for every mail, and a
    consortium's settings have hundreds (the same set each time: worked out once)."""
    return frozenset(a.strip().lower() for a in addresses)


def loop_reason(
    parsed: ParsedMail,
    *,
    own_addresses: Collection[str] = (),
    own_message_id_prefix: str = OWN_MESSAGE_ID_PREFIX,
    replies_to_own_are_loops: bool = False,
) -> str | None:
    """Why this mail must get no automatic reply (RFC 3834 and common practice), or None.

    Reasons: "auto-submitted", "precedence:<value>", "x-autoreply", "x-autorespond",
    "x-auto-response-suppress", "list-id", "list-unsubscribe", the name of a field only
    software writes (``_MACHINE_HEADERS``: "list-subscribe", "mailing-list", "x-mlserver",
    "x-loop", "x-failed-recipients", "x-jira-fingerprint" …), "x-apple-action" (iCloud's
    vacation reply), "empty-return-path", "mailer-daemon" (also postmaster, post_master),
    "delivery-report" (any report type: DSN, ARF complaint, read receipt),
    "no-reply-address" (noreply, gmail-noreply, do-not-reply …), "auto-reply-subject"
    (``auto_subject``), "own-address" (From, Reply-To or Sender is one of ours),
    "own-message-id", "reply-to-own-message".

    Replies *to* our own messages (In-Reply-To one of ours) are patrons answering us
    ("here is my card number") and are let through unless ``replies_to_own_are_loops``:
    an auto-responder that answers us is caught by its own headers and by the per-sender
    daily cap. Return-Path is not compared with our addresses: mail redirected between
    the library's own mailboxes carries one of them there. A report nested deeper in the
    MIME tree is found in the raw mail (``bounce.report_reason``); what only the body
    gives away is ``looks_automatic``'s (weaker: for staff).
    """
    headers = parsed.headers
    auto = headers.get("auto-submitted")
    if auto is not None and _first_token(auto) != "no":
        return "auto-submitted"
    precedence = _first_token(headers.get("precedence", ""))
    if precedence in _LOOP_PRECEDENCE:
        return f"precedence:{precedence}"
    for name in _LOOP_HEADERS:
        if name in headers:
            return name
    if "list-id" in headers:
        return "list-id"
    if "list-unsubscribe" in headers:
        return "list-unsubscribe"
    if not _MACHINE_HEADERS.isdisjoint(headers):
        return next(name for name in headers if name in _MACHINE_HEADERS)
    if "x-apple-action" in headers and _first_token(headers["x-apple-action"]) in _APPLE_AUTO:
        return "x-apple-action"  # (``in`` first: a missing field's .get raises inside)
    if parsed.return_path == "":
        return "empty-return-path"
    senders = (_local_part(parsed.from_address), _local_part(parsed.return_path))
    if any(_DAEMON_LOCAL_PART.match(local) for local in senders):
        return "mailer-daemon"
    if parsed.content_type in _REPORT_TYPES:
        return "delivery-report"
    if any(_NO_REPLY.search(local) for local in senders):
        return "no-reply-address"
    if auto_subject(parsed.subject):
        return "auto-reply-subject"
    own = _own(frozenset(own_addresses))  # a frozenset is passed through as it is
    sender_header = parse_address(headers.get("sender"))
    addresses = (parsed.from_address, parsed.reply_to, sender_header[1] if sender_header else None)
    if own and any(a in own for a in addresses if a):
        return "own-address"
    prefix = own_message_id_prefix.lower()
    if (parsed.message_id or "").lower().startswith(prefix):
        return "own-message-id"
    if replies_to_own_are_loops and (parsed.in_reply_to or "").lower().startswith(prefix):
        return "reply-to-own-message"
    return None


# What programs write in a body: bounces of gateways that send plain text, out-of-office
# notes, challenge-response, notifications. Weaker evidence than a header (a patron may
# paste a bounce they got, or write that they are out of the office), so a request that
# reads like this is left for staff: never answered, never silenced. Our own replies
# ("This is an automatic reply to your request", "Wiadomość wysłana automatycznie…")
# match none of it: patrons answer them with the card below.
_BOUNCE_TEXT = re.compile(
    r"(?:could ?n[o']?t|can ?not|was ?n[o']?t|has not been|will not) be delivered"
    r"|undeliverable|delivery (?:to the following recipients? )?(?:has )?failed"
    r"|permanent(?:ly)? (?:fatal )?error|failed recipients?|returned mail"
    r"|delivery status notification|mail delivery (?:failed|subsystem|system)"
    r"|user unknown|mailbox (?:unavailable|is full|not found)"
)
_MACHINE_TEXT = re.compile(
    r"automat\w* (?:response|reply|answer) to your (?:message|e-?mail|mail|letter)"
    r"|(?:i am|i'm|i will be) (?:currently )?(?:out of (?:the )?office|away from)"
    r"|only notification you will receive"
    r"|jestem (?:obecnie )?(?:poza biurem|nieobecn|na urlopie)"
    r"|(?:odpowied[zź]|wiadomo[sś][cć]) (?:automatyczn|wygenerowan\w* automatycznie)"
    r"|automatyczn\w+ odpowied[zź]|wygenerowan\w+ automatycznie"
    r"|please do not reply|do not reply to this|nie odpowiadaj na t"
    r"|(?:allowed|approved|white) ?list|unsubscribe|wypisa[cć] si[eę]"
    r"|^<\?xml\b",  # a program's data, not a letter
    re.MULTILINE,
)
# Each phrase above holds one of these words: a text without any (nearly every request)
# is not searched at all. A big alternation costs ~50 us a mail; these tests ~2.
_BOUNCE_WORDS = ("deliver", "permanent", "recipient", "returned mail", "user unknown",
                 "mailbox")
_MACHINE_WORDS = ("automat", "wygenerowan", "out of", "away from", "only notification",
                  "jestem", "not reply", "odpowiadaj", "allowed", "approved", "white",
                  "unsubscribe", "wypisa", "<?xml")  # not "list": Polish "listopad"
_MACHINE_TEXT_REACH = 4000  # programs say it at the top; a long mail is not read further
# The receiving spam filter's verdict: spam, or a sender address the mail's own route
# does not back (a web form or a spammer writing in someone's name). Answering either
# sends mail to someone who did not write (backscatter).
_FORGED = re.compile(r"\bFORGED_[A-Z0-9_]+")


def looks_automatic(parsed: ParsedMail) -> str | None:
    """Why this mail reads as a program's although no header says so, or None.

    A system account as sender (root, cron, oracle …: scripts and cron jobs); a spam
    filter's "spam" or "forged sender" verdict; an auto-reply or notification phrase in
    what the sender wrote (``unquoted``); a delivery failure phrase in the text outside
    "> " quotes (plain-text bounces put the report under a dashed rule, which reads as a
    quote; a patron's reply quoting a bounce with "> " is the patron's)."""
    if _local_part(parsed.from_address) in _SYSTEM_LOCAL_PARTS:
        return "system account"
    headers = parsed.headers
    if "x-spam-flag" in headers and _first_token(headers["x-spam-flag"]) == "yes":
        return "spam filter: spam"
    if "x-spam-status" in headers:
        status = headers["x-spam-status"]
        if _first_token(status).rstrip(",") == "yes":
            return "spam filter: spam"
        if _FORGED.search(status):
            return "spam filter: forged sender"
    own = parsed.unquoted[:_MACHINE_TEXT_REACH].lower()
    if any(word in own for word in _MACHINE_WORDS):
        match = _MACHINE_TEXT.search(own)
        if match:
            return " ".join(match.group().split())
    text = parsed.text[:_MACHINE_TEXT_REACH].lower()
    if any(word in text for word in _BOUNCE_WORDS):
        for match in _BOUNCE_TEXT.finditer(text):
            if text[text.rfind("\n", 0, match.start()) + 1 : match.start() + 1][:1] != ">":
                return " ".join(match.group().split())
    return None
