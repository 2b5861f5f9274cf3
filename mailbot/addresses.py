"""E-mail addresses a relay can take: the one grammar intake checks a sender's address
with, and the forms the sender writes it in (envelope, To header).

A usable address is an addr-spec ``local@domain`` as intake stores it (lowercased):

- the local part is a dot-atom (RFC 5321 4.1.2) of ASCII atext or a quoted string
  (``"Ala Nowak"``) and, for internationalised mail (EAI, RFC 6531/6532), UTF-8 text too;
  at most 64 octets. Refused: outside quotes anything a relay reads as syntax
  (``, ; : < > ( ) [ ] " \\ @``, spaces); anywhere control, format, private-use and
  unassigned characters, lone surrogates (8-bit bytes Python kept as escapes) and U+FFFD
  (what is left of bytes that could not be decoded);
- the domain is a host name of at least two labels, each letters, digits and hyphens, or
  Unicode labels that IDNA 2008 (UTS 46) turns into A-labels; at most 253 octets as
  A-labels; no address literals (``[192.0.2.1]``) and no all-numeric top-level label.

An RFC 2047 word left undecoded in an address (``=?utf-8?b?…?=@…``) is refused too.

An ASCII local part at a Unicode domain goes out as plain ASCII (the domain as A-labels,
``xn--…``); a non-ASCII local part needs a relay offering SMTPUTF8.
"""

from __future__ import annotations

import re
import unicodedata

_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# The usual address, checked by one regular expression (intake meets thousands in a burst).
_ASCII_ADDRESS = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@(?:{_LABEL}\.)+{_LABEL}")
_DOT_ATOM = re.compile(r"[^.]+(?:\.[^.]+)*")
# RFC 5321 Quoted-string: qtextSMTP or a quoted pair, and UTF-8 text (RFC 6531).
_QUOTED = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e]|[^\x00-\x7f])+"')
# An RFC 2047 word left undecoded: atext, yet no mailbox is called that; sending there
# would reach nobody.
_ENCODED_WORD = re.compile(r"=\?[^?]*\?[bBqQ]\?[^?]*\?=")
_ASCII_DOMAIN = re.compile(rf"(?:{_LABEL}\.)+{_LABEL}")
_ASCII_ATEXT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                         "!#$%&'*+/=?^_`{|}~-")
# Unicode categories no address may hold: controls, format characters (zero-width joiners,
# bidirectional overrides: spoofing), surrogates, private use, unassigned, separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
MAX_LOCAL_OCTETS = 64  # RFC 5321 4.5.3.1.1
MAX_DOMAIN_OCTETS = 253  # a host name in DNS, without the root's dot
MAX_ADDRESS = 320  # the database columns (String(320))


def usable_address(address: str | None) -> str | None:
    """``address`` when a relay can take it (see the module docstring), else None."""
    if not address or len(address) > MAX_ADDRESS:
        return None
    if address.isascii() and _ASCII_ADDRESS.fullmatch(address):
        local, _, domain = address.rpartition("@")
        ok = len(local) <= MAX_LOCAL_OCTETS and _domain_rules_ok(domain) and \
            ("=?" not in local or not _ENCODED_WORD.search(local))
        return address if ok else None
    return address if _split(address) is not None else None


def smtp_form(address: str) -> tuple[bytes, bool] | None:
    """The addr-spec as MAIL FROM / RCPT TO carry it (without the angle brackets) and
    whether that needs SMTPUTF8; None when no relay can take the address."""
    parts = _split(address)
    if parts is None:
        return None
    local, a_domain = parts
    if local.isascii():
        return f"{local}@{a_domain}".encode("ascii"), False
    return f"{local}@{a_domain}".encode("utf-8"), True


def header_form(address: str) -> str | None:
    """The address for a To header: ASCII where it can be (an ASCII local part at a
    Unicode domain gets the A-labels), else as is (RFC 6532: it goes out with SMTPUTF8);
    None when no relay can take the address."""
    parts = _split(address)
    if parts is None:
        return None
    return f"{parts[0]}@{parts[1]}" if parts[0].isascii() else address


def _split(address: str) -> tuple[str, str] | None:
    """(local part, domain as A-labels) of a usable address, else None."""
    if len(address) > MAX_ADDRESS or _ENCODED_WORD.search(address):
        return None
    local, at, domain = address.rpartition("@")  # a quoted local part may hold an @
    if not at:
        return None
    if not _local_ok(local):
        return None
    a_domain = _a_labels(domain)
    if a_domain is None:
        return None
    return local, a_domain


def _local_ok(local: str) -> bool:
    try:
        if not local or len(local.encode("utf-8")) > MAX_LOCAL_OCTETS:
            return False
    except UnicodeEncodeError:  # a lone surrogate
        return False
    if local.startswith('"'):
        if not _QUOTED.fullmatch(local):
            return False
        return all(char.isascii() or _text_char(char) for char in local)
    if not _DOT_ATOM.fullmatch(local):
        return False
    return all(char in _ASCII_ATEXT or char == "." or (not char.isascii() and _text_char(char))
               for char in local)


def _text_char(char: str) -> bool:
    """A non-ASCII character an address may hold."""
    return char != "\ufffd" and unicodedata.category(char) not in _REFUSED_CATEGORIES


def _a_labels(domain: str) -> str | None:
    """The domain as ASCII (A-labels), or None when it is not a usable host name."""
    if domain.isascii():
        return domain if _ascii_domain_ok(domain) else None
    if any(unicodedata.category(c) in _REFUSED_CATEGORIES or c == "\ufffd" for c in domain):
        return None
    import idna  # only for Unicode domains: its tables take a while to load

    try:
        a_domain = idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return None
    return a_domain if _ascii_domain_ok(a_domain) else None


def _ascii_domain_ok(domain: str) -> bool:
    return bool(_ASCII_DOMAIN.fullmatch(domain)) and _domain_rules_ok(domain)


def _domain_rules_ok(domain: str) -> bool:
    """What the LDH pattern does not say about a host name."""
    if len(domain) > MAX_DOMAIN_OCTETS:
        return False
    if domain.rpartition(".")[2].isdigit():  # 192.0.2.1 is no host name
        return False
    if "xn--" in domain.lower():
        import idna

        try:  # an A-label must decode to a valid U-label
            idna.decode(domain)
        except (idna.IDNAError, UnicodeError, ValueError):
            return False
    return True
