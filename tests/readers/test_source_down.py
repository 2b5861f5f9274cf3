"""A reader source that is down never refuses a patron: requests wait, in order, and staff
see the source as down (issue 3)."""

from __future__ import annotations

from datetime import timedelta

from tests.botenv import make_bot, request_mail, sip2_policy
from tests.readers.sip2server import Patron, Sip2TestServer


def test_requests_wait_while_sip2_is_down_and_are_decided_in_order_once_it_answers(
        tmp_path, imap_user, smtp_sink, capsys):
    # SIP2 down: nothing decided, nothing sent, status says DOWN. Back up: all three are
    # decided in arrival order (two codes → the latest is pool_exhausted), status says ok.
    patrons = [Patron(f"05000{i}", f"Czytelnik{i}, Jan", email=f"c{i}@patron.test",
                      expires="20991231") for i in (1, 2, 3)]
    server = Sip2TestServer(patrons, username="mailbot", password="sip-secret").start()
    port = server.port
    server.stop()
    try:
        bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], policy=sip2_policy(port))
        w = bot.window()
        assert bot.import_codes(["SIP-0001", "SIP-0002"]) == 0
        for i in (3, 1, 2):  # UID order differs from arrival order
            raw, _ = request_mail(f"c{i}@patron.test", "LEGIMI", f"Jan Czytelnik{i} 05000{i}")
            imap_user.append(raw, internaldate=w + timedelta(seconds=i))
        assert bot.run_once() == 0
        assert [r.state for r in bot.requests()] == ["new", "new", "new"]
        assert smtp_sink.messages == []
        capsys.readouterr()
        bot.cli("status")
        out = capsys.readouterr().out
        assert "reader source sip2: DOWN" in out and "3 waiting" in out
        assert "sip-secret" not in out

        server.start()
        assert server.port == port
        assert bot.run_once() == 0
        assert [(r.card_number, r.outcome) for r in bot.requests()] == [
            ("050001", "issued"), ("050002", "issued"), ("050003", "pool_exhausted")]
        assert len(smtp_sink.messages) == 3
        capsys.readouterr()
        bot.cli("status")
        assert "reader source sip2: ok" in capsys.readouterr().out
    finally:
        server.stop()
