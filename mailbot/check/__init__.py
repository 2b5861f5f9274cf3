"""``mailbot check``: is this installation able to work? It logs in to every mailbox and
every relay (as intake and the sender do, OAuth2 included), looks at the folders, each
library's reader source and the database, and prints one line per item: ``OK``, ``FAIL``
with the reason, or ``SKIP``. Exit 0 only when nothing failed (for monitoring).

``run`` puts the items together and prints them; ``deadline`` runs them, each with its own
time limit; ``mail`` (mailboxes), ``relays`` (SMTP, file outboxes, the test message),
``store`` (database, reader sources) are the checks themselves; ``testmail`` is the
bilingual test message of ``--send-test``. A check changes nothing, except the folders
``--create-folders`` asks for and the message ``--send-test`` sends.
"""
