"""Reading an e-mail as a person sees it: the generic part, knowing nothing of libraries,
cards or services.

Pure functions from bytes and strings to values; nothing raises on bad mail (whatever
arrives is someone's real message or someone's attack, and the worst it may earn is an
empty field).

- ``charset``: bytes to text whatever the label says (Polish single-byte guessing).
- ``headers``: the header fields, RFC 2047 encoded-words, Message-ID lists.
- ``senders``: the one mailbox of a From / Reply-To / Sender / Return-Path field.
- ``dates``: the Date field, and which instants a real mail can carry.
- ``mime``: the MIME walk: the text parts a reader would see, decoded.
- ``plaintext``: body text as mailbot compares it (line ends, invisible characters).
- ``html``: HTML parts to plain text with their line structure and quote depth.
- ``quotes``: what the sender wrote now, and what they quoted.

``mailbot.intake.parse`` puts them together into a ``ParsedMail``.
"""
