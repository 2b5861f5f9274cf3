"""A decided reply kept as its recipe and composed when sent (respond/recipes.py, issue 21):
the context comes back exactly, every outcome composes to the bytes composing at once
gives, a template changed after the decision changes nothing already decided, and what
the relay took is what the row composes to, again and again (a resend)."""

from __future__ import annotations

import hashlib
import itertools
import shutil
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pytest
from markupsafe import Markup
from sqlalchemy import select

from mailbot.db.models import Outbox, ReplyTexts
from mailbot.db.session import open_database
from mailbot.outcomes import Outcome
from mailbot.penalty import Missed
from mailbot.respond import context_codec, recipes, shapes, text_sets
from mailbot.respond.compose import compose_reply
from mailbot.respond.render import NOTICES, REPLY_OUTCOMES, OutsideTexts
from mailbot.resources import TEMPLATES
from mailbot.rules.offered import offer
from mailbot.services import Steps
from mailbot.validity import Sentence
from tests.botenv import make_bot, request_mail
from tests.test_golden_replies import DECIDED_AT, _context

WARSAW = ZoneInfo("Europe/Warsaw")


def _kinds(value: Any) -> Any:
    """The value's types all the way down (== alone would take 1 for True, a list for a
    tuple, and any zone for another at the same instant)."""
    if isinstance(value, dict):
        return {k: _kinds(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_kinds(v) for v in value])
    if isinstance(value, datetime):
        return ("datetime", value.isoformat(), str(value.tzinfo), value.fold)
    return (type(value).__name__, value)


def test_a_context_comes_back_equal_and_of_the_same_kinds() -> None:
    context = {
        "library_name": "Biblioteka im. Łazarskiego", "card_number": None, "year": 2026,
        "staff_told": True, "share": 0.5,
        "balance_due": Decimal("12.50"), "month": date(2026, 11, 1),
        "received_at": datetime(2026, 11, 1, 0, 3, 59, 123456, tzinfo=WARSAW),
        # The hour the clocks go back happens twice: the second one (fold=1) is kept.
        "window_opens": datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=WARSAW),
        "now": datetime(2026, 11, 3, 9, 15, tzinfo=UTC),
        "fixed": datetime(2026, 11, 3, 9, 15, tzinfo=timezone(timedelta(hours=2))),
        "offered": (offer("legimi"), offer("empik_go")),
        "unactivated": (Missed(date(2026, 9, 1), "legimi", "Legimi"),),
        "validity": Sentence("Dostęp do końca miesiąca.", "Access until the month's end."),
        "service_steps": Steps(("Wejdź na stronę", "Wpisz kod"), None),
        "candidates": ["0012345", "0098765"], "quota_kept": ("desk", "first_time"),
        "nested": {"a": (1, [2, (3,)])},
    }
    back = context_codec.decode(context_codec.encode(context))
    assert back == context
    assert _kinds(back) == _kinds(context)
    assert back["window_opens"].utcoffset() == timedelta(hours=1)
    assert back["received_at"].tzinfo is WARSAW


def test_an_outcome_is_kept_as_its_text() -> None:
    back = context_codec.decode(context_codec.encode({"outcome": Outcome.ISSUED}))
    assert back == {"outcome": "issued"} and type(back["outcome"]) is str


class _Other(NamedTuple):
    a: int


class _Colour(StrEnum):
    RED = "red"


@pytest.mark.parametrize("value", [
    datetime(2026, 11, 1, 0, 3),                    # naive: which hour would it print?
    {"a", "b"},                                     # no order to keep
    Markup("<b>x</b>"),                             # a str that is not escaped again
    b"bytes",
    _Other(1),                                      # a NamedTuple nobody registered
    datetime(2026, 11, 1, tzinfo=timezone(timedelta(hours=1), "CET")),  # a named offset
], ids=["naive", "set", "markup", "bytes", "namedtuple", "named-offset"])
def test_what_could_come_back_different_is_refused(value: Any) -> None:
    with pytest.raises(TypeError):
        context_codec.encode({"value": value})


def test_a_key_that_looks_like_a_kind_is_refused() -> None:
    with pytest.raises(TypeError):
        context_codec.encode({"$t": 1})
    assert context_codec.decode(context_codec.encode({"colour": _Colour.RED})) == {
        "colour": "red"}


def _forget_this_process() -> None:
    """As another process would start: no text set taken or written out, no shape."""
    text_sets._current.clear()
    text_sets._written.clear()
    shapes.clear()


def _job(outcome: str, service: str) -> dict[str, Any]:
    return dict(
        outcome=outcome, context=_context(service), languages=("pl", "en"),
        library_name="Biblioteka Publiczna im. Z. Łazarskiego",
        mailbox_address="ebooki@biblioteka.example.org", to="zofia.z@example.org",
        original_subject="Legimi – prośba o kod", original_message_id="<abc.123@example.org>",
        original_references=("<older@example.org>",), request_key=f"recipe/{outcome}",
        now=DECIDED_AT)


def test_every_outcome_composed_from_its_recipe_is_the_reply_composed_at_once(
        tmp_path: Path) -> None:
    sessions = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    kept: dict[tuple[str, str], str] = {}
    with sessions.begin() as session:
        text_set = text_sets.current(None, None)
        text_sets.store(session, text_set, DECIDED_AT)
        for outcome, service in itertools.product(REPLY_OUTCOMES, ("legimi", "empik_go")):
            kept[outcome, service] = recipes.recipe(**_job(outcome, service))
    _forget_this_process()
    with sessions() as session:
        for (outcome, service), recipe in kept.items():
            at_once = compose_reply(**_job(outcome, service)).message
            assert recipes.compose(session, recipe, text_set.digest) == at_once, outcome
            # Again, now from the cached shape: still the same bytes.
            assert recipes.compose(session, recipe, text_set.digest) == at_once, outcome
    assert NOTICES  # the reminder is composed in place (housekeeping), kept as bytes


def _templates_copy(tmp_path: Path) -> Path:
    root = tmp_path / "templates"
    shutil.copytree(TEMPLATES, root)
    return root


def test_a_template_changed_after_the_decision_does_not_change_the_decided_reply(
        tmp_path: Path) -> None:
    root = _templates_copy(tmp_path)
    sessions = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    job = _job("issued", "legimi")
    with sessions.begin() as session:
        decided_with = text_sets.current(root, None)
        text_sets.store(session, decided_with, DECIDED_AT)
        recipe = recipes.recipe(**job)
    before = compose_reply(**job, templates_dir=root).message
    issued = root / "email" / "pl" / "issued.txt.j2"
    issued.write_text(issued.read_text(encoding="utf-8").replace(
        "{{ code }}", "{{ code }} (NOWY TEKST)", 1), encoding="utf-8")
    # A restarted daemon, or the sending process: the row composes from the texts it was
    # decided with, read back from the database.
    _forget_this_process()
    with sessions() as session:
        assert recipes.compose(session, recipe, decided_with.digest) == before
    # A decision from now on takes the new texts.
    now_set = text_sets.current(root, None)
    assert now_set.digest != decided_with.digest
    with sessions.begin() as session:
        text_sets.store(session, now_set, DECIDED_AT)
        assert b"NOWY TEKST" in recipes.compose(session, recipe, now_set.digest)
        assert len(session.scalars(select(ReplyTexts.digest)).all()) == 2


def test_a_damaged_text_set_is_never_rendered(tmp_path: Path) -> None:
    sessions = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with sessions.begin() as session:
        text_set = text_sets.current(_templates_copy(tmp_path), None)
        text_sets.store(session, text_set, DECIDED_AT)
        recipe = recipes.recipe(**_job("issued", "legimi"))
    _forget_this_process()
    with sessions.begin() as session:
        row = session.get(ReplyTexts, text_set.digest)
        files = text_sets._Files.unpacked(row.files)
        name = "root/email/pl/issued.txt.j2"
        row.files = text_sets._Files(files.has_texts, {**files.files, name: b"{{ code }}"},
                                     files.links).packed()
    with sessions() as session, pytest.raises(text_sets.UnknownTexts, match="damaged"):
        recipes.compose(session, recipe, text_set.digest)
    with sessions() as session, pytest.raises(text_sets.UnknownTexts, match="not in"):
        recipes.compose(session, recipe, "0" * 64)


def test_a_library_file_pointing_outside_its_folder_stays_refused(tmp_path: Path) -> None:
    texts = tmp_path / "texts"
    (texts / "pl").mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("hasło serwera", encoding="utf-8")
    (texts / "pl" / "issued.txt.j2").symlink_to(secret)
    sessions = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    text_set = text_sets.current(None, texts)
    with pytest.raises(OutsideTexts):
        recipes.check(text_set, outcome="issued", context=_context("legimi"),
                      languages=("pl", "en"))
    with sessions.begin() as session:
        text_sets.store(session, text_set, DECIDED_AT)
    _forget_this_process()
    with sessions() as session:
        packed = session.get(ReplyTexts, text_set.digest).files
        assert b"has\\u0142o" not in packed and "hasło".encode() not in packed
        written = text_sets.load(session, text_set.digest)
    with pytest.raises(OutsideTexts):
        recipes.check(written, outcome="issued", context=_context("legimi"),
                      languages=("pl", "en"))


def test_what_the_relay_took_is_what_the_row_composes_to_and_a_resend_sends_it_again(
        tmp_path, imap_user, smtp_sink) -> None:
    from mailbot.web import actions

    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = bot.window()
    ok = f"{w.year + 1}-12-31;0;0;{w.year}-01-15;{w.year}-02-01"
    assert bot.import_readers([f"0210{i:03d};Ala;Przepis{i};r{i}@patron.test;{ok}"
                               for i in range(3)]) == 0
    assert bot.import_codes([f"RECIPE-{i}" for i in range(2)]) == 0
    for i in range(3):
        raw, _ = request_mail(f"r{i}@patron.test", "LEGIMI", f"Ala Przepis{i} 0210{i:03d}")
        imap_user.append(raw, internaldate=w + timedelta(seconds=i))
    assert bot.run_once() == 0
    first = {m.rcpt_tos[0]: m.raw.replace(b"\r\n", b"\n") for m in smtp_sink.wait_for(3)}
    sessions = open_database(bot.settings().database_url)
    _forget_this_process()
    with sessions() as session:
        rows = session.scalars(select(Outbox).order_by(Outbox.id)).all()
        assert [r.outcome for r in rows] == ["issued", "issued", "pool_exhausted"]
        for row in rows:
            assert row.message is None and row.recipe and len(row.recipe) < 3000
            sent = first[row.to_address]
            assert recipes.message_of(session, row) == sent
            assert row.sent_digest == hashlib.sha256(sent).hexdigest()
            assert b"RECIPE-" in sent if row.outcome == "issued" else b"RECIPE-" not in sent
    issued = rows[0]
    smtp_sink.clear()
    with sessions.begin() as session:
        request = bot.requests()[0]
        assert request.id == issued.request_id
        actions.resend(session, outbox_id=issued.id, request=session.get(type(request),
                       request.id), user="admin", now=datetime.now(UTC))
    assert bot.run_once() == 0
    (again,) = smtp_sink.wait_for(1)
    assert again.raw.replace(b"\r\n", b"\n") == first[issued.to_address]
