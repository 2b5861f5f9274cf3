"""What a subject asks for: "LEGIMI" / "EMPIK GO" (``match_service``), their "TEST …"
forms (``match_test_service``; SPEC §2.3), and whether it is an answering machine's
("[Auto-Reply] Re: LEGIMI", ``auto_subject``). Reply and forward prefixes, tags, case,
accents, invisible characters and Cyrillic lookalikes do not matter (``subject_key``).

The keywords are the config's services' ``subjects`` (mailbot.services.Catalogue: the
shipped LEGIMI and EMPIK GO unless ``[[services]]`` adds "EBOOKPOINT", "EBOOKPOINT
BIBLIO" …), each reduced the way a subject is (``keyword_key``).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from mailbot.services import SHIPPED_CATALOGUE, Catalogue
from mailbot.intake.mail.plaintext import INVISIBLE
from mailbot.text import LOOKALIKES, fold

_SUBJECT_PREFIX = re.compile(
    r"\s*(?:(?:re|odp|odpowied[zź]|fwd?|pd|wg|aw|sv|vs|tr|rif|antw|res|enc|doorst|wtd)"
    r"\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*:|\[([^\]]*)\]|\(([^)]*)\))\s*",
    re.IGNORECASE,
)
_NOT_ALNUM = re.compile(r"[\W_]+")


_MAX_SUBJECT = 1000  # no request subject is longer; longer ones are not read at all


# Auto-reply and bounce phrases as subject tags, folded (lowercase, no accents): "[Auto-
# Reply]", "(Automatic reply)", "[Out of Office]", "[Automatyczna odpowiedź]", "Automatic
# reply:", "Odpowiedź automatyczna:", "Undeliverable:", "(delivery failed)". Only as a tag:
# a word in a person's sentence is not one.
_SEP = r"[\s_.\-]*"
_AUTO_PHRASE = (
    r"(?:auto(?:matic(?:ally)?|mated|matische[rn]?|matisch|matyczn[aey]|matique|matica|matico"
    r"|maattinen)?" + _SEP
    + r"(?:repl(?:y|ies|ied)|respon[sd]\w*|answer|antwort|antwoord|odpowiedz\w*|reponse"
    r"|risposta|respuesta|resposta|svar|vastaus|message|wiadomosc|mail|notice)"
    r"|(?:odpowiedz|wiadomosc|reponse|risposta|respuesta|resposta|antwort|antwoord|svar"
    r"|vastaus|odpoved)" + _SEP + r"automat\w*"
    r"|out" + _SEP + r"of" + _SEP + r"(?:the" + _SEP + r")?office|abwesen\w*"
    r"|poza" + _SEP + r"biurem|nieobecn\w*|vacation|vacances"  # not "ferie": Polish holidays
    r"|undeliver\w*|non" + _SEP + r"remis|niedostarcz\w*|unzustellbar|non" + _SEP
    + r"recapitabile|delivery" + _SEP + r"(?:has" + _SEP + r")?(?:failed|failure|status"
    r"|notification)|returned" + _SEP + r"mail|failure" + _SEP + r"notice"
    r"|mail" + _SEP + r"delivery" + _SEP + r"failed)"
)
_AUTO_TAG = re.compile(r"\s*" + _AUTO_PHRASE + r"\b")  # the inside of "[...]" or "(...)"
# A tag at the head, after the "Re:"s an auto-responder puts before it ("Re: [Auto-Reply]
# ..."), in brackets or followed by a colon; or one in brackets at the very end.
_AUTO_SUBJECT_HEAD = re.compile(
    r"(?:\s*(?:re|odp|odpowiedz|aw|sv|vs|antw|res|rif)\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*:)*\s*"
    r"(?:[\[(]\s*" + _AUTO_PHRASE + r"\b[^\[\]()]{0,80}[\])]|" + _AUTO_PHRASE + r"\s*:)"
)
_AUTO_SUBJECT_TAIL = re.compile(r"[\[(]\s*" + _AUTO_PHRASE + r"\b[^\[\]()]{0,80}[\])]\s*\Z")
# Someone forwarding an auto-reply to us wrote that mail themselves.
_FORWARD_HEAD = re.compile(r"\s*(?:fwd?|pd|wg|tr|doorst|enc|wtd|rv)\s*:")


def subject_key(subject: str) -> str:
    """Subject reduced to lowercase letters and digits, reply/forward/tag prefixes removed."""
    if len(subject) > _MAX_SUBJECT:
        return ""
    text = _folded(subject)
    while True:
        match = _SUBJECT_PREFIX.match(text)
        if not match or not text[match.end() :].strip():
            break  # a lone "[LEGIMI]" is the subject itself, not a tag
        tag = match.group(1) or match.group(2)
        if tag and _AUTO_TAG.match(tag):
            return ""  # "[Auto-Reply] Re: LEGIMI" is an answering machine's, never a request
        text = text[match.end() :]
    return _NOT_ALNUM.sub("", text)


def keyword_key(keyword: str) -> str:
    """A service's subject keyword as ``subject_key`` reduces a subject: "EBOOKPOINT
    BIBLIO" -> "ebookpointbiblio", "Empik-Go" -> "empikgo" ("" for one of no letters)."""
    return _NOT_ALNUM.sub("", _folded(keyword))


def _folded(text: str) -> str:
    """Lookalike letters, invisible characters, case and accents undone (NFKC first)."""
    return fold(unicodedata.normalize("NFKC", text).translate(LOOKALIKES).translate(INVISIBLE))


@lru_cache(maxsize=32)
def _keywords(catalogue: Catalogue) -> dict[str, str]:
    """A subject's key -> the service it asks for ("empikgo" -> "empik_go"). Cached per
    catalogue (immutable, so two configs in one process each have their own)."""
    found: dict[str, str] = {}
    for service in catalogue.services:
        for keyword in service.subjects:
            found.setdefault(keyword_key(keyword), service.id)
    return found


def match_service(subject: str, catalogue: Catalogue = SHIPPED_CATALOGUE) -> str | None:
    """The service ("legimi", "empik_go", a configured one's id) if the subject asks for
    it and nothing else."""
    return _keywords(catalogue).get(subject_key(subject or ""))


def match_test_service(subject: str, catalogue: Catalogue = SHIPPED_CATALOGUE) -> str | None:
    """The service of a "TEST LEGIMI" / "TEST EMPIK GO" subject, same tolerance."""
    key = subject_key(subject or "")
    return _keywords(catalogue).get(key[4:]) if key.startswith("test") else None


def auto_subject(subject: str) -> bool:
    """The subject carries an auto-reply or bounce tag of its own software ("[Automatyczna
    odpowiedź] Re: LEGIMI", "Automatic reply: Re: LEGIMI", "Re: LEGIMI (Automatic
    Response)", Lotus Notes' "AUTO: …"), and is not someone's forward of such a mail."""
    if not subject or len(subject) > _MAX_SUBJECT:
        return False
    if subject.startswith("AUTO:"):  # Lotus Notes, always in capitals
        return True
    if "[" not in subject and "(" not in subject and ":" not in subject:
        return False  # no tag can be there ("LEGIMI"): asked of every mail, so say so fast
    text = fold(subject if subject.isascii() else subject.translate(INVISIBLE))
    if _FORWARD_HEAD.match(text):
        return False
    return bool(_AUTO_SUBJECT_HEAD.match(text) or _AUTO_SUBJECT_TAIL.search(text))
