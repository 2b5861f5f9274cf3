"""The `sip2` reader source: ask the library system over SIP2 (3M Standard Interchange Protocol).

Three concepts, one module each:

- ``wire``: SIP2 frames -- encoding with sequence number and checksum, decoding and
  verifying them, and masking secrets and personal data for the log.
- ``patron``: what a Patron Information response (64) says about the reader, as the
  :class:`~mailbot.rules.base.ReaderFacts` the rules see.
- ``client``: ``Sip2Readers``, the source itself -- one TCP (or TLS) connection kept open,
  login, one exchange per lookup, and the failure policy (retries, then
  :class:`~mailbot.errors.SourceUnavailable`, never a refusal).
"""
