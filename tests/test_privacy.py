"""RODO (issue 5): a patron's data exported and erased on request; the purge keeps the
ledger."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from mailbot.db.models import Code, LedgerEntry, Outbox, Reader
from mailbot.db.session import open_database
from tests.botenv import make_bot, request_mail


def _ok(year: int) -> str:
    return f"{year + 1}-12-31;0;0;{year}-01-15;{year}-02-01"


def test_export_then_erase_a_patron(tmp_path, imap_user, smtp_sink, capsys):
    # Export holds the reader, their mail, their code and the replies; erase removes the
    # personal data, leaves the other patron alone, and the ledger keeps only a pseudonym.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = bot.window()
    bot.import_readers([f"0900001;Anna;Prywatna;anna@patron.test;{_ok(w.year)}",
                        f"0900002;Jan;Inny;jan@patron.test;{_ok(w.year)}"])
    bot.import_codes(["PRIV-CODE-01", "PRIV-CODE-02"])
    for i, (who, body) in enumerate((("anna", "Anna Prywatna 0900001"),
                                     ("jan", "Jan Inny 0900002"),
                                     ("anna", "Anna Prywatna, zgubiłam kod 0900001"))):
        raw, _ = request_mail(f"{who}@patron.test", "LEGIMI", body)
        imap_user.append(raw, internaldate=w + timedelta(seconds=i + 1))
    assert bot.run_once() == 0

    out = tmp_path / "anna.json"
    assert bot.cli("patron", "export", "0900001", "--library", "lib", "-o", str(out)) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["reader"]["last_name"] == "Prywatna"
    assert [r["outcome"] for r in data["requests"]] == ["issued", "already_received"]
    assert "zgubiłam kod" in data["requests"][1]["mail"]
    assert data["codes"][0]["code"] == "PRIV-CODE-01"
    assert len(data["messages_sent"]) == 2
    assert "Jan" not in out.read_text(encoding="utf-8")

    capsys.readouterr()
    assert bot.cli("patron", "erase", "0900001", "--library", "lib") == 0
    assert "nothing erased" in capsys.readouterr().out
    assert bot.cli("patron", "erase", "0900001", "--library", "lib", "--yes") == 0
    sessions = open_database(bot.settings().database_url)
    with sessions() as s:
        assert [r.card_number for r in s.scalars(select(Reader))] == ["0900002"]
        ledger = {x.card_number: x for x in s.scalars(select(LedgerEntry))}
        assert "0900001" not in ledger and "0900002" in ledger
        erased = next(x for k, x in ledger.items() if k.startswith("erased:"))
        assert erased.email is None
        assert s.get(Code, erased.code_id).code == "PRIV-CODE-01"  # never issued again
        outbox = s.scalars(select(Outbox).order_by(Outbox.id)).all()
        assert [o.to_address for o in outbox] == ["[erased]", "jan@patron.test", "[erased]"]
    reqs = bot.requests()
    anna = [r for r in reqs if r.subject == "[erased]"]
    assert len(anna) == 2 and all(r.raw is None and r.from_address is None for r in anna)
    assert any(r.from_address == "jan@patron.test" and r.raw for r in reqs)
    data = json.loads(_export(bot, capsys))
    assert data["reader"] is None and data["requests"] == [] and data["codes"] == []


def _export(bot, capsys) -> str:
    capsys.readouterr()
    bot.cli("patron", "export", "0900001", "--library", "lib")
    return capsys.readouterr().out


def test_the_ledger_refuses_any_other_change(tmp_path):
    # Outside an erasure, updating or deleting a ledger entry fails.
    from types import SimpleNamespace

    import pytest

    from mailbot.clock import utcnow
    from mailbot.db.models import CodePool

    bot = make_bot(tmp_path, smtp=SimpleNamespace(host="127.0.0.1", port=1), mailboxes=[])
    sessions = open_database(bot.settings().database_url)
    bot.cli("status")
    with sessions.begin() as s:
        pool = CodePool(library_id="lib", service="legimi", month="2026-11", source_file="x",
                        imported_at=utcnow(), size=1)
        s.add(pool)
        s.flush()
        code = Code(code="LEDGER-TEST-1", pool_id=pool.id, library_id="lib", service="legimi",
                    month="2026-11", issued_at=utcnow())
        s.add(code)
        s.flush()
        s.add(LedgerEntry(code_id=code.id, library_id="lib", service="legimi", month="2026-11",
                          card_number="1", email="a@b.pl", issued_at=utcnow()))
    for change in ("update", "delete"):
        with pytest.raises(RuntimeError, match="append-only"):
            with sessions.begin() as s:
                entry = s.scalar(select(LedgerEntry))
                if change == "update":
                    entry.email = "x@y.pl"
                else:
                    s.delete(entry)
