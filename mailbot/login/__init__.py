"""Logging in to mail servers: IMAP (``login.imap``) and SMTP (``login.smtp``), with a
password or an OAuth2 access token (SASL XOAUTH2). A login that the server or the identity
provider refuses is an ``AuthFailure`` (``login.failures``) naming the mailbox or relay,
the provider's error and what to do about it (``login.advice``); an identity provider that
cannot be reached is ``IdentityUnreachable``, a temporary ``OSError``.

Tokens: ``login.tokens`` caches one source per account, ``login.microsoft`` (msal, client
credentials) or ``login.google`` (google-auth, a service account with domain-wide
delegation); ``login.http`` is the HTTP session both fetch with."""
