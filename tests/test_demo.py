"""`mailbot demo`: the embedded default runs with no servers and shows every outcome."""

from __future__ import annotations

import email
import email.policy

from mailbot.cli import main
from mailbot.decide.decision import NO_REPLY
from mailbot.respond.render import REPLY_OUTCOMES

SPEC_OUTCOMES = {"issued", "already_received", "too_early", "no_card", "ambiguous_card",
                 "unknown_card", "name_mismatch", "sender_mismatch", "inactive_account", "debt",
                 "overdue", "data_not_updated", "no_loans_this_year", "blocked",
                 "pool_exhausted", "ignored_loop", "not_a_request", "rate_limited"}


def test_the_demo_processes_a_mail_for_every_outcome(tmp_path, capsys):
    # The demo exits 0 (it checks its own expected outcomes), prints each outcome of SPEC 3
    # and writes one reply per answered mail; refusals carry no code.
    assert main(["demo", "--dir", str(tmp_path / "demo"), "--no-serve"]) == 0
    out = capsys.readouterr().out
    for outcome in SPEC_OUTCOMES:
        assert outcome in out
    replies = sorted((tmp_path / "demo" / "outbox").glob("*.eml"))
    assert len(replies) == 17
    for path in replies:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        outcome = msg["X-Mailbot-Outcome"]
        assert outcome in REPLY_OUTCOMES and outcome not in NO_REPLY
        body = msg.get_body(("plain",)).get_content()
        if outcome not in ("issued", "already_received"):
            assert "-DEMO" not in body and "EGO-DEMO" not in body


def test_the_demo_can_run_again_in_the_same_folder(tmp_path):
    # A second run starts afresh rather than failing on the first run's files.
    target = str(tmp_path / "demo")
    assert main(["demo", "--dir", target, "--no-serve"]) == 0
    assert main(["demo", "--dir", target, "--no-serve"]) == 0


def test_the_demo_refuses_to_wipe_a_folder_it_did_not_create(tmp_path, capsys):
    # An existing folder without the demo marker is left alone.
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.txt").write_text("do not delete")
    assert main(["demo", "--dir", str(tmp_path / "precious"), "--no-serve"]) == 2
    assert "not a demo folder" in capsys.readouterr().err
    assert (tmp_path / "precious" / "thesis.txt").exists()
