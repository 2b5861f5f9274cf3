"""Replies are byte-identical across refactors: the demo's outbox and every outcome composed.

The digests in ``tests/data/golden_replies.json`` were taken before the codebase was
reorganised into one concept per module (issue 16) and must not change unless a reply is
meant to change. When one is meant to, run ``UPDATE_GOLDEN=1 pytest
tests/test_golden_replies.py``, read the written files in the failure message's folder and
commit the new digests with the reason.

Each outcome is composed three times: the reply renderer builds a cached shape of a reply
the second time it sees one and fills it in from then on; all three must be the same bytes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mailbot.demo import run_demo
from mailbot.respond.compose import compose_reply
from mailbot.respond.render import NOTICES, REPLY_OUTCOMES
from mailbot.rules.offered import offer

GOLDEN = Path(__file__).parent / "data" / "golden_replies.json"
WARSAW = ZoneInfo("Europe/Warsaw")
# The demo's "now": its window opens on a working day, so every sample gets its outcome.
DEMO_NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
DECIDED_AT = datetime(2026, 11, 3, 9, 15, 30, tzinfo=UTC)


def _context(service: str) -> dict[str, Any]:
    """Every variable any template reads, with Polish letters and a multi-line contact."""
    return {
        "library_name": "Biblioteka Publiczna im. Z. Łazarskiego",
        "service": service,
        "service_name": {"legimi": "Legimi", "empik_go": "Empik Go"}[service],
        "subject": "LEGIMI",
        "received_at": datetime(2026, 11, 1, 0, 3, tzinfo=WARSAW),
        "month": date(2026, 11, 1),
        "card_number": "0012345",
        "patron_name": "Zofia Żółkiewska",
        "library_contact": "tel. 22 123 45 67\npn–pt 10:00–16:00",
        "next_window": datetime(2026, 12, 1, tzinfo=WARSAW),
        "window_opens": datetime(2026, 11, 1, tzinfo=WARSAW),
        "code": "ZQX7-CODE-4242",
        "activation_url": "https://www.legimi.pl/mazowieckie/",
        "deadline": date(2026, 11, 30),
        "penalty_months": 3,
        "previous_service_name": "Empik Go",
        "previous_issued_at": datetime(2026, 11, 1, 10, 5, tzinfo=WARSAW),
        "balance_due": Decimal("12.50"),
        "overdue_items": 2,
        "valid_until": date(2026, 3, 31),
        "blocked_until": date(2027, 2, 1),
        "candidates": ["0012345", "0098765"],
        "min_age": 16,
        "year": 2026,
        "verdict": "debt",
        "max_codes": 3,
        "before_window": True,
        # service_not_offered: what the library offers; pool_exhausted: the other service.
        "offered": (offer("legimi"),),
        "other_services": (offer("empik_go" if service == "legimi" else "legimi"),),
        "staff_told": True,  # pool_not_ready: a staff address was sent the alert
    }


def _composed(outcome: str, service: str) -> bytes:
    notice = outcome in NOTICES
    return compose_reply(
        outcome=outcome, context=_context(service), languages=("pl", "en"),
        library_name="Biblioteka Publiczna im. Z. Łazarskiego",
        mailbox_address="ebooki@biblioteka.example.org", to="zofia.z@example.org",
        original_subject="Legimi – prośba o kod", original_message_id="<abc.123@example.org>",
        original_references=("<older@example.org>",), request_key=f"golden/{outcome}",
        now=DECIDED_AT, subject="Przypomnienie: aktywuj kod" if notice else None,
    ).message


# A reply's Message-ID (and the boundary made from it) hashes the request's key, which
# names the demo's Maildir folder: a new folder each run. The composed test pins the hash.
_REPLY_TOKEN = re.compile(rb"(=_mailbot_|<mailbot\.)[0-9a-f]{20}")


def _without_reply_token(message: bytes) -> bytes:
    return _REPLY_TOKEN.sub(rb"\1" + b"T" * 20, message)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _compare(actual: dict[str, bytes], section: str, tmp_path: Path) -> None:
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    digests = {name: _digest(data) for name, data in sorted(actual.items())}
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden[section] = digests
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    wanted = golden.get(section, {})
    changed = sorted(name for name in digests.keys() | wanted.keys()
                     if digests.get(name) != wanted.get(name))
    if changed:
        out = tmp_path / "replies"
        out.mkdir()
        for name, data in actual.items():
            (out / name).write_bytes(data)
        pytest.fail(f"{len(changed)} {section} replies differ from the golden digests: "
                    f"{', '.join(changed)}; the replies written now are in {out}")


def test_every_outcome_is_composed_to_the_same_bytes_as_before(tmp_path: Path) -> None:
    actual: dict[str, bytes] = {}
    for outcome, service in itertools.product(REPLY_OUTCOMES + NOTICES, ("legimi", "empik_go")):
        first, second, third = (_composed(outcome, service) for _ in range(3))
        assert first == second == third, f"{outcome}/{service} changes once its shape is cached"
        actual[f"{outcome}-{service}.eml"] = first
    _compare(actual, "composed", tmp_path)


def test_the_demo_writes_the_same_replies_as_before(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # The sample mails' Message-IDs are the only random part of the demo; replies quote them.
    counter = itertools.count(1)
    monkeypatch.setattr("mailbot.demo.make_msgid",
                        lambda domain: f"<sample.{next(counter)}@{domain}>")
    assert run_demo(str(tmp_path / "demo"), now=DEMO_NOW) == 0
    capsys.readouterr()
    outbox = tmp_path / "demo" / "outbox"
    actual = {path.name: _without_reply_token(path.read_bytes())
              for path in sorted(outbox.iterdir())}
    assert len(actual) == 17  # one reply per sample mail that gets one
    _compare(actual, "demo", tmp_path)
