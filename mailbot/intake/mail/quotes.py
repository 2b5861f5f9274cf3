"""What the sender wrote now, and what they quoted: lines starting with ">" and
everything from the first reply header on (an attribution "W dniu … napisał(a):", a
separator "-----Original Message-----", a quoted message's header block "Od: / Wysłane:").

Hand-written on purpose (issue 16 measured the reply-parsing libraries as wrong on
Polish mail or slower): this knows the forms the clients Polish patrons use write, in
Polish, English and the neighbours' languages, wrapped or flattened onto one line, and it
looks only at the first QUOTE_SEARCH_CHARS of a text, so crafted mail costs no more than
a real one.
"""

from __future__ import annotations

import re

from mailbot.intake.mail.plaintext import squeeze_blank_lines

_DASHED_SEPARATOR = re.compile(
    r"-{2,}\s*(?:original message|oryginalna wiadomo\S*|wiadomo\S* oryginalna|"
    r"forwarded message|przekazana wiadomo\S*|wiadomo\S* przekazana(?: dalej)?|"
    r"ursprüngliche nachricht|message d'origine|reply message)\s*-{2,}"
    r"|-{3,}[^-]{3,60}-{3,}",
    re.IGNORECASE,
)
_FORWARD_INTRO = re.compile(
    r"(?:begin forwarded message|pocz\S+ przekazywanej wiadomo\S*|"
    r"wiadomo\S* napisana przez .{0,200})\s*:",
    re.IGNORECASE,
)
# The verb that ends an attribution line, just before its colon.
_ATTRIBUTION_VERBS = (
    "wrote", "napisał(a)", "napisał", "napisała", "napisal(a)", "napisal", "napisala",
    "pisze", "schrieb", "a écrit", "escribió", "ha scritto", "skrev",
    "написал(а)", "написал", "написала",
)  # fmt: skip
_ATTRIBUTION_START = re.compile(
    r"(?:w dniu|dnia|on|am|le|el|il|em|op|den|użytkownik|uzytkownik)\b", re.IGNORECASE
)
# The fields of a quoted message's header block as mail clients write them, in any order:
# Outlook desktop, web and mobile ("From: Sent: To: Subject:", in Polish "Od: Wysłane:" or
# "Wysłano:" "Do: Temat:"), Apple Mail's "Od: Temat: Data: Do:", Thunderbird's forward
# "Temat: Data: Nadawca: Adresat:", webmails' "Temat: Od: Data: Do:". text/plain made from
# HTML may bold the names ("*Od:*"), and a block may be flattened onto one line.
_FIELD_SENDER = r"from|od|nadawca|von|de|da"
_FIELD_SENT = (
    r"sent|wysłane|wysłano|wyslane|wyslano|date|data|gesendet|datum|envoyé|enviado|inviato"
)
_FIELD_OTHER = (
    r"to|do|adresat|adresaci|temat|subject|cc|dw|kopia|odpowiedź do|reply-to|an|betreff"
    r"|objet|asunto|oggetto"
)
_FIELD = (
    rf"\*{{0,2}}(?:(?P<sender>{_FIELD_SENDER})|(?P<sent>{_FIELD_SENT})|{_FIELD_OTHER})"
    r"[ \t]*:\*{0,2}(?P<value>[ \t]*[^\s*])?"
)
_HEADER_FIELD = re.compile(_FIELD, re.IGNORECASE)
_HEADER_FIELD_INLINE = re.compile(rf"(?<=\s){_FIELD}", re.IGNORECASE)
_HEADER_BLOCK_LINES = 8  # how far below its first field a block's sender and date may be
_RULE_LINE = re.compile(r"[_\-=]{8,}")


def _is_attribution(text: str) -> bool:
    """ "On <date>, <who> wrote:" and its translations: ends in a verb and a colon, and has
    an opening word, an address or a date in it."""
    if not text.endswith(":"):
        return False
    head = text[:-1].rstrip().lower()
    verb = next((v for v in _ATTRIBUTION_VERBS if head.endswith(v)), None)
    if verb is None or head[-len(verb) - 1 : -len(verb)].isalpha():
        return False
    return bool(
        _ATTRIBUTION_START.match(text) or "@" in text or any(ch.isdigit() for ch in text)
    )


def _field_kind(match: re.Match[str]) -> str:
    if match.group("sender") is not None:
        return "sender" if match.group("value") else "other"  # a bare "Od:" names no one
    return "sent" if match.group("sent") is not None else "other"


def _header_fields(line: str) -> set[str]:
    """The kinds of the header fields on a line that starts with one: "sender", "sent",
    "other"; empty when the line does not start with a field."""
    first = _HEADER_FIELD.match(line) if 0 <= line.find(":", 0, 24) else None
    if first is None:
        return set()
    kinds = {_field_kind(first)}
    if line.count(":") > 1:  # flattened onto one line: "Od: … Wysłane: … Temat: …"
        kinds.update(_field_kind(m) for m in _HEADER_FIELD_INLINE.finditer(line, first.end()))
    return kinds


def _header_block_at(lines: list[str], i: int) -> int | None:
    """If a quoted message's header block starts at line i, where it starts (the rule line
    above it, when there is one): a sender and a date among the header fields from line i
    on. One line that is not a field may come between two (a long address wrapped)."""
    kinds = _header_fields(lines[i].strip())
    if not kinds:
        return None
    wrapped = False
    for j in range(i + 1, min(i + _HEADER_BLOCK_LINES, len(lines))):
        if "sender" in kinds and "sent" in kinds:
            break
        text = lines[j].strip()
        if not text:
            continue
        found = _header_fields(text)
        if not found:
            if wrapped:
                break
            wrapped = True
            continue
        wrapped = False
        kinds |= found
    if "sender" not in kinds or "sent" not in kinds:
        return None
    before = i - 1
    while before >= 0 and not lines[before].strip():
        before -= 1
    return before if before >= 0 and _RULE_LINE.fullmatch(lines[before].strip()) else i


def _is_intro(text: str) -> bool:
    return bool(text.endswith(":") and (_FORWARD_INTRO.fullmatch(text) or _is_attribution(text)))


def _attribution_at(lines: list[str], i: int) -> int | None:
    """Where an attribution on line i starts, when it is one. Clients wrap long ones onto
    two or three lines: Gmail after the address's "<", Apple Mail inside "w dniu 21 lis /
    2025, o godz. 03:55:", Evolution before "napisał:"; so the lines below i (when i has
    the start) and above it (when i ends in the colon) are joined to it."""
    parts = [lines[i].strip()]
    for j in range(i, min(i + 3, len(lines))):
        if j > i:
            nxt = lines[j].strip()
            if not nxt or nxt.startswith(">"):
                break
            parts.append(nxt)
        if parts[-1].endswith(":") and _is_intro(" ".join(parts)):
            return i
    if not parts[0].endswith(":"):
        return None
    parts = parts[:1]
    for k in range(i - 1, max(i - 3, -1), -1):
        above = lines[k].strip()
        if not above or above.startswith(">"):
            break
        parts.insert(0, above)
        joined = " ".join(parts)
        # the start must say it is one: a verb and a colon alone ("napisał:") are not enough
        if _is_intro(joined) and (
            _FORWARD_INTRO.fullmatch(joined) or _ATTRIBUTION_START.match(joined) or "@" in joined
        ):
            return k
    return None


def reply_header_at(lines: list[str], i: int) -> int | None:
    """If a reply header (attribution, separator, header block) is at line i, where it
    starts (an attribution or a header block may start a line or two above)."""
    line = lines[i].strip()
    if line.startswith("-") and line.endswith("-") and _DASHED_SEPARATOR.fullmatch(line):
        return i
    found = _header_block_at(lines, i)
    return found if found is not None else _attribution_at(lines, i)


# Reply headers are looked for only in a mail's first 64 KB of text: each line looked at
# reads the few lines after it, which made 2 MB of crafted header-like lines cost seconds.
QUOTE_SEARCH_CHARS = 65_536


def split_quotes(text: str) -> tuple[str, str]:
    """(what the sender wrote, what they quoted).

    Quoted are lines starting with ">" and everything from the first reply header on:
    "W dniu ... napisał(a):", "On ... wrote:", "-----Original Message-----",
    "----- Wiadomość oryginalna -----", a header block of a sender and a date ("From:/Sent:",
    "Od:/Wysłane:", "Temat:/Od:/Data:/Do:"), in the forms real clients write them.
    """
    lines = text.split("\n")
    cut = len(lines)
    budget = QUOTE_SEARCH_CHARS
    for i, line in enumerate(lines):
        budget -= len(line) + 1
        if budget < 0:
            break  # nobody writes this much above a quote: a hostile mail's lines
        stripped = line.lstrip()
        if not stripped or stripped[0] == ">":
            continue
        if ":" not in stripped and "--" not in stripped:
            continue
        found = reply_header_at(lines, i)
        if found is not None:
            cut = found
            break
    unquoted: list[str] = []
    quoted: list[str] = []
    for line in lines[:cut]:
        (quoted if line.lstrip().startswith(">") else unquoted).append(line)
    quoted.extend(lines[cut:])
    return squeeze_blank_lines("\n".join(unquoted)).strip(), "\n".join(quoted).strip()
