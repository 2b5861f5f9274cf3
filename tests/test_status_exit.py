"""`mailbot status` exits 0 when all is well and 1 when something needs attention, and
`--json` says the same for scripts (issue 18), against a real Dovecot, real relays
(aiosmtpd), a real SIP2 server and the real database: a mailbox with a wrong password, a
relay that cannot be reached or refuses a reply, a reader source that is down, a pool
that is out while requests wait, mail set aside for staff."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

from sqlalchemy import create_engine, select, text

from mailbot.clock import add_months, month_key, utcnow
from mailbot.db.models import Code, CodePool, Outbox
from mailbot.db.session import open_database
from mailbot.intake.poll import poll_mailbox
from mailbot.web.app import create_app
from tests.botenv import Bot, make_bot, request_mail, sip2_policy, valid_reader
from tests.readers.sip2server import Patron, Sip2TestServer
from tests.servers import SmtpSink, free_port
from tests.web.webenv import TestClient, csrf_of, login

PASSWORD = "correct horse battery"


def status(bot: Bot, capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = bot.cli("status", *args)
    return code, capsys.readouterr().out


def status_json(bot: Bot, capsys) -> tuple[int, dict]:
    code, out = status(bot, capsys, "--json")
    data = json.loads(out)
    assert data["ok"] is (code == 0) and data["format"] == 1
    return code, data


def attention(data: dict) -> list[tuple[str, str]]:
    return [(p["what"], p["key"]) for p in data["attention"]]


def aware(value: str) -> datetime:
    when = datetime.fromisoformat(value)
    assert when.utcoffset() is not None, value
    return when


def _readers(bot: Bot, *names: str) -> datetime:
    w = bot.window()
    assert bot.import_readers([f"0140{i:03d};Ala;{name};{name.lower()}@patron.test;"
                               f"{valid_reader(w.year)}"
                               for i, name in enumerate(names, start=1)]) == 0
    return w


def _ask(user, w: datetime, name: str, i: int, subject: str = "LEGIMI") -> None:
    raw, _ = request_mail(f"{name.lower()}@patron.test", subject, f"Ala {name} 0140{i:03d}")
    user.append(raw, internaldate=w + timedelta(seconds=i))


def _staff(bot: Bot) -> TestClient:
    """A librarian logged in to the dashboard of ``bot``."""
    bot.add_user("kierowniczka", PASSWORD)
    settings = bot.settings()
    client = TestClient(create_app(settings, open_database(settings.database_url),
                                   secret="t" * 32), base_url="http://127.0.0.1")
    login(client, "kierowniczka", PASSWORD)
    return client


def _mark_handled(client: TestClient, request_id: int) -> None:
    token = csrf_of(client.get(f"/requests/{request_id}").text)
    assert client.post(f"/requests/{request_id}/handled", data={"csrf": token, "note": "ok"},
                       follow_redirects=True).status_code == 200


def test_a_healthy_install_exits_0_with_a_line_per_relay_and_the_same_in_json(
        tmp_path, imap_user, smtp_sink, capsys):
    # Everyone answered: exit 0; the relay in use has its line (ok, nothing waiting); the
    # JSON carries the same facts, every time with its offset, and no password.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = _readers(bot, "Zdrowa")
    assert bot.import_codes(["OK-0001", "OK-0002"]) == 0
    _ask(imap_user, w, "Zdrowa", 1)
    assert bot.run_once() == 0
    code, out = status(bot, capsys)
    assert code == 0, out
    relay = f"smtp://@{smtp_sink.host}:{smtp_sink.port}"
    assert f"  relay {relay}: 0 waiting; ok" in out.splitlines()
    assert out.splitlines()[-1] == "ok: nothing needs attention"

    code, data = status_json(bot, capsys)
    assert code == 0 and data["attention"] == []
    [lib] = data["libraries"]
    assert lib["id"] == "lib" and lib["month"] == bot.month
    assert lib["reader_source"] == {"kind": "local", "ok": True, "error": None,
                                    "down_since": None}
    assert lib["queue"] == {"waiting": 0, "set_aside": 0, "manual": 0}
    assert lib["outbox"] == {"pending": 0, "failed": 0, "sent": 1, "reminders_failed": 0,
                             "staff_alerts_failed": 0}
    assert data["database"] is True
    assert {"service": "legimi", "month": bot.month, "imported": 2, "left": 1, "waiting": 0,
            "refused_this_month": 0} in lib["pools"]
    [mb] = data["mailboxes"]
    assert mb["ok"] and mb["key"] == bot.settings().mailboxes[0].key and mb["library"] == "lib"
    assert aware(mb["last_poll_at"]) <= aware(data["generated_at"])
    [r] = data["relays"]
    assert (r["key"], r["ok"], r["waiting"], r["retrying"]) == (relay, True, 0, 0)
    assert aware(r["last_ok_at"])
    assert imap_user.password not in out


def test_a_mailbox_with_a_wrong_password_needs_attention_until_it_is_fixed(
        tmp_path, imap_user, smtp_sink, capsys):
    # Dovecot refuses the login: exit 1, the mailbox named with the server's words, never
    # the password; the right password again, and one run later all is well.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    right = bot.config.read_text()
    bot.config.write_text(right.replace(f'password = "{imap_user.password}"',
                                        'password = "wrong-Pa55"'))
    assert bot.run_once() == 1
    code, out = status(bot, capsys)
    assert code == 1
    lines = out.splitlines()
    key = bot.settings().mailboxes[0].key
    assert lines[lines.index("NEEDS ATTENTION (1)") + 1].startswith(
        f"  [mailbox] {key}: failing since 20"), out
    assert "AUTHENTICATIONFAILED" in lines[-1] and "next login 20" in lines[-1]
    code, data = status_json(bot, capsys)
    assert data["attention"][0]["message"].startswith(
        "mailbox ebooki0@biblioteka.test failing since 20")
    assert code == 1 and attention(data) == [("mailbox", key)]
    assert data["attention"][0]["library"] == "lib"
    [mb] = data["mailboxes"]
    assert not mb["ok"] and "login refused" in mb["error"] and aware(mb["next_login_at"])
    assert mb["refused_logins"] == 1 and aware(mb["down_since"])
    assert "wrong-Pa55" not in out and "wrong-Pa55" not in json.dumps(data)

    bot.config.write_text(right)
    assert bot.run_once() == 0
    assert status(bot, capsys)[0] == 0


def test_an_unreachable_relay_and_a_refused_reply_need_attention(
        tmp_path, imap_user, capsys):
    # The relay cannot be reached: the reply is retried, the relay is failing (exit 1).
    # Reached again, it takes the reply: exit 0. A reply it refuses for good is a failed
    # reply (exit 1) until staff mark it handled on the dashboard.
    with SmtpSink() as relay:
        port = relay.port
        relay.stop()
        bot = make_bot(tmp_path, smtp=relay, mailboxes=[imap_user])
        w = _readers(bot, "Pierwsza", "Druga")
        assert bot.import_codes(["RELAY-0001", "RELAY-0002"]) == 0
        _ask(imap_user, w, "Pierwsza", 1)
        bot.run_once()
        key = bot.settings().smtp.key
        code, data = status_json(bot, capsys)
        assert code == 1 and attention(data) == [("relay", key)], data["attention"]
        assert "failing since 20" in data["attention"][0]["message"]
        [r] = data["relays"]
        assert (r["ok"], r["waiting"], r["retrying"]) == (False, 1, 1) and r["error"]
        assert aware(r["down_since"])
        code, out = status(bot, capsys)
        [line] = [x for x in out.splitlines() if x.startswith("  relay ")]
        assert line.startswith(f"  relay {key}: 1 waiting;") and "1 being retried" in line
        assert "ERROR since 20" in line, line

        relay.port = port
        relay.start()
        bot.run_once()
        assert len(relay.wait_for(1)) == 1
        code, out = status(bot, capsys)
        assert code == 0, out
        assert f"  relay {key}: 0 waiting; ok" in out.splitlines()

        relay.fail_with(550, "5.7.1 Recipient refused", stage="RCPT")
        _ask(imap_user, w, "Druga", 2)
        bot.run_once()
        relay.stop_failing()
        code, data = status_json(bot, capsys)
        assert code == 1 and attention(data) == [("replies", "lib")], data["attention"]
        assert data["libraries"][0]["outbox"]["failed"] == 1
        assert "druga@patron.test" not in json.dumps(data["attention"])
        [failed] = [r for r in bot.requests() if r.from_address == "druga@patron.test"]
        _mark_handled(_staff(bot), failed.id)
        assert status(bot, capsys)[0] == 0


def test_a_reader_source_that_is_down_needs_attention(tmp_path, imap_user, smtp_sink, capsys):
    # SIP2 does not answer: the requests wait, exit 1 naming the library's source (never
    # its password); it answers again, the requests are decided, exit 0.
    server = Sip2TestServer([Patron("0140001", "Czytelnik, Jan", email="c@patron.test",
                                    expires="20991231")],
                            username="mailbot", password="sip-secret").start()
    port = server.port
    server.stop()
    try:
        bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], policy=sip2_policy(port))
        w = bot.window()
        assert bot.import_codes(["SIP-0001"]) == 0
        raw, _ = request_mail("c@patron.test", "LEGIMI", "Jan Czytelnik 0140001")
        imap_user.append(raw, internaldate=w + timedelta(seconds=1))
        bot.run_once()
        code, data = status_json(bot, capsys)
        assert code == 1 and attention(data) == [("reader_source", "lib")]
        assert "sip2 down since 20" in data["attention"][0]["message"]
        assert "1 request waits" in data["attention"][0]["message"]
        assert data["libraries"][0]["reader_source"]["ok"] is False
        code, out = status(bot, capsys)
        assert code == 1 and "sip-secret" not in out + json.dumps(data)

        server.start()
        assert bot.run_once() == 0
        assert [r.outcome for r in bot.requests()] == ["issued"]
        assert status(bot, capsys)[0] == 0
    finally:
        server.stop()


def test_a_pool_out_of_codes_needs_attention_while_requests_wait_for_it(
        tmp_path, imap_user, smtp_sink, capsys):
    # The month's one code is issued: no problem while nobody waits ("no reservations").
    # A request read and not yet decided waits for the empty pool: exit 1. Decided (refused
    # pool_exhausted), nobody waits: exit 0. A service the library had last month but
    # not this month, and answered pool_not_ready this month: exit 1.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = _readers(bot, "Pierwsza", "Druga", "Trzecia")
    assert bot.import_codes(["POOL-0001"]) == 0
    _ask(imap_user, w, "Pierwsza", 1)
    assert bot.run_once() == 0
    assert status(bot, capsys)[0] == 0

    _ask(imap_user, w, "Druga", 2)
    settings = bot.settings()
    poll_mailbox(open_database(settings.database_url), settings, settings.mailboxes[0])
    code, data = status_json(bot, capsys)
    pool = f"lib/legimi/{bot.month}"
    assert code == 1 and attention(data) == [("pool", pool)], data["attention"]
    assert "no code left (1 imported) and 1 request waits" in data["attention"][0]["message"]
    legimi = next(p for p in data["libraries"][0]["pools"] if p["service"] == "legimi")
    assert (legimi["left"], legimi["waiting"]) == (0, 1)
    code, out = status(bot, capsys)
    assert "legimi         0 left of 1; 1 waiting" in out

    assert bot.run_once() == 0
    assert status(bot, capsys)[0] == 0

    # Last month's Empik Go pool, as its import left it (a past month cannot be imported).
    y, m = (int(x) for x in bot.month.split("-"))
    last = month_key(*add_months(y, m, -1))
    with open_database(settings.database_url).begin() as s:
        pool = CodePool(library_id="lib", service="empik_go", month=last, source_file="x.csv",
                        imported_at=utcnow() - timedelta(days=31), size=1)
        s.add(pool)
        s.flush()
        s.add(Code(code="EGO-OLD-0001", pool_id=pool.id, library_id="lib",
                   service="empik_go", month=last))
    _ask(imap_user, w, "Trzecia", 3, subject="EMPIK GO")
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()][-1] == "pool_not_ready"
    code, data = status_json(bot, capsys)
    assert code == 1 and attention(data) == [("pool", f"lib/empik_go/{bot.month}")]
    assert "was not imported: 1 request answered pool_not_ready" in \
        data["attention"][0]["message"]


def test_mail_set_aside_for_staff_needs_attention_until_marked_handled(
        tmp_path, imap_user, smtp_sink, capsys):
    # The database refuses a mail's row: it is set aside for staff (state error), exit 1;
    # once staff mark it handled on the dashboard, exit 0.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = _readers(bot, "Pierwsza")
    engine = create_engine(bot.settings().database_url)
    open_database(bot.settings().database_url)  # the schema, for the trigger
    with engine.begin() as conn:
        conn.execute(text(
            "CREATE TRIGGER refuse_rows BEFORE INSERT ON requests "
            f"WHEN instr(NEW.raw, X'{b'X-Refused: yes'.hex()}') > 0 "
            "BEGIN SELECT RAISE(ABORT, 'row refused by the database'); END"))
    engine.dispose()
    raw, _ = request_mail("pierwsza@patron.test", "LEGIMI", "Ala Pierwsza 0140001",
                          headers={"X-Refused": "yes"})
    imap_user.append(raw, internaldate=w + timedelta(seconds=1))
    bot.run_once()
    [aside] = [r for r in bot.requests() if r.state == "error"]
    code, data = status_json(bot, capsys)
    assert code == 1 and attention(data) == [("set_aside", "lib")], data["attention"]
    assert data["libraries"][0]["queue"]["set_aside"] == 1
    _mark_handled(_staff(bot), aside.id)
    code, data = status_json(bot, capsys)
    assert code == 0 and data["libraries"][0]["queue"]["set_aside"] == 0


def test_a_failed_reminder_is_shown_but_needs_no_attention(tmp_path, imap_user, capsys,
                                                           database_url):
    # The relay refuses the activation reminder for good: the patron has the code, and no
    # request stands behind a reminder that staff could mark handled. status shows it
    # (line, JSON, /metrics' own gauge) and exits 0; it is not a failed reply.
    with SmtpSink() as relay:
        bot = make_bot(tmp_path, smtp=relay, mailboxes=[imap_user],
                       policy="reminder_days = 31", database_url=database_url)
        w = _readers(bot, "Pamietna")
        assert bot.import_codes(["REMIND-0001"]) == 0
        _ask(imap_user, w, "Pamietna", 1)
        assert bot.run_once() == 0
        relay.fail_with(550, "5.1.1 Mailbox unavailable", stage="RCPT")
        bot.cli("remind")
    with open_database(bot.settings().database_url)() as s:
        assert s.scalars(select(Outbox.state).where(Outbox.kind == "reminder")).all() == [
            "failed"]
    code, out = status(bot, capsys)
    assert code == 0, out
    assert "  outbox: 0 pending, 0 failed, 1 sent, 1 reminder failed" in out.splitlines()
    code, data = status_json(bot, capsys)
    assert code == 0 and data["attention"] == []
    assert data["libraries"][0]["outbox"] == {"pending": 0, "failed": 0, "sent": 1,
                                              "reminders_failed": 1,
                                              "staff_alerts_failed": 0}
    settings = bot.settings()
    client = TestClient(create_app(settings, open_database(settings.database_url),
                                   secret="t" * 32), base_url="http://127.0.0.1")
    assert client.get("/healthz").status_code == 200
    metrics = client.get("/metrics").text.splitlines()
    assert 'mailbot_reminders_failed{library="lib"} 1.0' in metrics
    assert 'mailbot_outbox_failed{library="lib"} 0.0' in metrics
    assert "mailbot_attention 0.0" in metrics


def test_a_failed_code_issued_by_staff_needs_attention_until_its_request_is_handled(
        tmp_path, imap_user, capsys, database_url):
    # Staff issue a code anyway for a refused request ("override": its reply carries no
    # request of its own); the relay refuses it: a failed reply (exit 1) until staff mark
    # that request handled.
    with SmtpSink() as relay:
        bot = make_bot(tmp_path, smtp=relay, mailboxes=[imap_user], database_url=database_url)
        w = _readers(bot, "Pomylona")
        assert bot.import_codes(["STAFF-0001"]) == 0
        raw, _ = request_mail("pomylona@patron.test", "LEGIMI", "Ala Pomylona 0999999")
        imap_user.append(raw, internaldate=w + timedelta(seconds=1))
        assert bot.run_once() == 0
        [refused] = bot.requests()
        assert refused.outcome == "unknown_card"
        client = _staff(bot)
        token = csrf_of(client.get(f"/requests/{refused.id}").text)
        assert client.post(f"/requests/{refused.id}/override", follow_redirects=True, data={
            "csrf": token, "service": "legimi", "card": "0140001",
            "reason": "numer karty sprawdzony telefonicznie"}).status_code == 200
        relay.fail_with(550, "5.7.1 Recipient refused", stage="RCPT")
        bot.run_once()
    with open_database(bot.settings().database_url)() as s:
        assert s.scalars(select(Outbox.state).where(Outbox.kind == "override")).all() == [
            "failed"]
    code, data = status_json(bot, capsys)
    assert code == 1 and attention(data) == [("replies", "lib")], data["attention"]
    _mark_handled(client, refused.id)
    code, data = status_json(bot, capsys)
    assert code == 0, data["attention"]
    assert data["libraries"][0]["outbox"]["failed"] == 0


def _no_traceback(err: str) -> None:
    assert "Traceback" not in err, err


def test_a_database_that_cannot_be_read_is_one_line_and_exit_1(
        tmp_path, imap_user, smtp_sink, capsys):
    # A damaged SQLite file, then PostgreSQL not answering: status prints one line naming
    # the database (never its password) and why, exits 1; --json says "ok": false,
    # "database": false with one attention entry. No traceback.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    assert bot.cli("db", "upgrade") == 0
    db = tmp_path / "mailbot.db"
    for extra in tmp_path.glob("mailbot.db-*"):
        extra.unlink()
    db.write_bytes(b"not a database, a disk gone wrong\n" * 200)
    capsys.readouterr()
    assert bot.cli("status") == 1
    out, err = capsys.readouterr()
    _no_traceback(err)
    assert out.splitlines() == [f"NEEDS ATTENTION: the database sqlite:///{db} cannot be "
                                "read: DatabaseError: file is not a database"]
    code, data = status_json(bot, capsys)
    assert code == 1 and data["ok"] is False and data["database"] is False
    assert attention(data) == [("database", "database")]
    assert "file is not a database" in data["attention"][0]["message"]

    down = f"postgresql://mailbot:pg-Secret-9@127.0.0.1:{free_port()}/mailbot"
    bot.config.write_text(bot.config.read_text().replace(f"sqlite:///{db}", down))
    capsys.readouterr()
    assert bot.cli("status") == 1
    out, err = capsys.readouterr()
    _no_traceback(err)
    [line] = out.splitlines()
    assert line.startswith("NEEDS ATTENTION: the database postgresql://mailbot:***@"
                           "127.0.0.1:") and "OperationalError" in line, line
    assert "pg-Secret-9" not in out + err
    code, data = status_json(bot, capsys)
    assert code == 1 and data["database"] is False and "pg-Secret-9" not in json.dumps(data)


def test_a_failed_staff_alert_needs_attention_only_until_the_pool_is_imported(
        tmp_path, imap_user, capsys):
    # staff_email with a typo: the relay refuses it (550) as it refuses the patron's reply
    # here. The patron's reply is a failed reply until marked handled; the alert has no
    # request to resend or mark handled, so it is its own item, which clears once the
    # Empik Go codes are imported; it never counts as a failed send on the queue page.
    with SmtpSink() as relay:
        bot = make_bot(tmp_path, smtp=relay, mailboxes=[imap_user],
                       policy='staff_email = "it@biblitoeka.test"')
        w = _readers(bot, "Pierwsza")
        assert bot.import_codes(["ALERT-LEG-0001"]) == 0
        relay.fail_with(550, "5.1.1 No such user", stage="RCPT")
        _ask(imap_user, w, "Pierwsza", 1, subject="EMPIK GO")
        bot.run_once()
        relay.stop_failing()
        settings = bot.settings()
        with open_database(settings.database_url)() as s:
            assert sorted(s.execute(select(Outbox.kind, Outbox.state)).all()) == [
                ("reply", "failed"), ("staff_alert", "failed")]
        [req] = bot.requests()
        client = _staff(bot)
        _mark_handled(client, req.id)
        code, data = status_json(bot, capsys)
        pool = f"lib/empik_go/{bot.month}"
        assert code == 1 and attention(data) == [("pool", pool), ("staff_alert", pool)], \
            data["attention"]
        assert data["libraries"][0]["outbox"]["failed"] == 0
        assert data["libraries"][0]["outbox"]["staff_alerts_failed"] == 1
        live = client.get("/queue/live?lang=pl").text
        failed_tile = re.search(r'data-count="lib-failed"[^>]*>(\d+)<', live)
        assert failed_tile and failed_tile.group(1) == "0"  # the alert is no failed send
        assert 'data-testid="staff-alert-failed-lib-empik_go"' in live
        assert "Nie udało się wysłać powiadomienia e-mail do pracowników" in live
        assert bot.import_codes(["ALERT-EGO-0001"], service="empik_go") == 0
        code, out = status(bot, capsys)
        assert code == 0, out
        assert "1 staff alert failed" in out
        live = client.get("/queue/live?lang=pl").text
        assert "staff-alert-failed" not in live
