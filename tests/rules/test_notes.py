"""Each refusal's trail note is a catalogue key with JSON values, worded for staff in Polish
and English, its instants on the library's clock (issue 19)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

from mailbot.rules.base import IssuedThisMonth
from mailbot.rules.chains import evaluate
from mailbot.web.notes import note_text
from tests.rules.test_rules import LIB, READER, WAW, facts

STRICT = replace(LIB, check_sender=True, check_data_updated=True, check_loans_this_year=True,
                 penalty_months=3, max_codes_per_address_per_month=1, min_age_legimi=16)
PREV = IssuedThisMonth(service="empik_go", code="EGO-1", email="anna@example.org",
                       issued_at=datetime(2026, 11, 1, 21, 45, tzinfo=UTC))

# One request per refusal: the facts that trigger it, and what staff read, in Polish.
CASES = [
    (dict(received_at=datetime(2026, 10, 31, 23, 59, 50, tzinfo=WAW)), "too_early",
     "Wpłynęło 2026-10-31 23:59:50 CET, a okno zgłoszeń otwiera się 2026-11-01 00:00 CET."),
    (dict(date_header=datetime(2026, 10, 31, 22, 59, 58, tzinfo=UTC)), "too_early_date_header",
     "Data w nagłówku (2026-10-31 23:59:58 CET) jest wcześniejsza niż otwarcie okna zgłoszeń "
     "(2026-11-01 00:00 CET)."),
    (dict(card_candidates=(), card=None), "no_card", "W wiadomości nie ma numeru karty."),
    (dict(card_candidates=("0012345", "0054321"), card=None), "ambiguous_card",
     "Kilka możliwych numerów karty: 0012345, 0054321."),
    (dict(reader=None), "unknown_card", "Karty 0012345 nie ma w danych czytelników."),
    (dict(name_text="Jan Nowak 0012345"), "name_mismatch",
     "Nazwiska zapisanego w karcie nie ma w wiadomości."),
    (dict(from_address="inny@example.org"), "sender_mismatch",
     "Adres nadawcy jest inny niż adres zapisany w karcie."),
    # Issued at 21:45 UTC: 22:45 on the library's clock, as the reply and the page say.
    (dict(issued_this_month=PREV), "already_received_repeated",
     "Kod Empik Go wydany 2026-11-01 22:45 CET; odpowiedź powtarza ten kod."),
    (dict(codes_to_address=1), "address_limit",
     "Na ten adres wysłano już w tym miesiącu 1 kod (limit: 1)."),
    (dict(reader=replace(READER, valid_until=date(2026, 10, 31))), "inactive_account",
     "Karta ważna do 2026-10-31."),
    (dict(reader=replace(READER, birth_date=date(2016, 5, 1))), "age_restricted",
     "Wiek: 10; serwis wymaga co najmniej: 16."),
    (dict(reader=replace(READER, balance_due=Decimal("12.50"))), "debt",
     "Zadłużenie: 12,50 zł."),
    (dict(reader=replace(READER, overdue_items=12)), "overdue", "12 przetrzymanych pozycji."),
    (dict(reader=replace(READER, overdue_items=22)), "overdue", "22 przetrzymane pozycje."),
    (dict(reader=replace(READER, data_updated_on=date(2025, 3, 1))), "data_not_updated",
     "Dane osobowe ostatnio aktualizowano 2025-03-01."),
    (dict(reader=replace(READER, data_updated_on=None)), "data_never_updated",
     "Dane osobowe nie były nigdy aktualizowane."),
    (dict(reader=replace(READER, last_loan_on=date(2025, 12, 1))), "no_loans_this_year",
     "Ostatnie wypożyczenie: 2025-12-01."),
    (dict(reader=replace(READER, last_loan_on=None)), "no_loans_ever",
     "Brak jakiegokolwiek wypożyczenia."),
    (dict(unactivated_months=("2026-09",)), "blocked",
     "Kod za wrzesień 2026 nie został aktywowany; blokada do 2027-01-01."),
]


def test_every_refusal_leaves_a_key_with_json_values_worded_in_both_languages():
    for changes, note, polish in CASES:
        hit, trail = evaluate(facts(library=STRICT, **changes))
        assert hit is not None and hit.note == note, (note, hit)
        step = trail[-1]
        # Stored as JSON with the request: the values must survive the round trip.
        stored = json.loads(json.dumps(step))
        assert stored == {"rule": hit.outcome, "result": "refused", "note": note,
                          "args": hit.args}
        assert note_text("pl", stored, zone=WAW) == polish
        english = note_text("en", stored, zone=WAW)
        assert english and english != polish and english != note


def test_a_rule_with_months_of_no_loans_names_the_date_since():
    lib = replace(LIB, active_loan_months=6)
    hit, trail = evaluate(facts(library=lib, reader=replace(READER, last_loan_on=date(2026, 1, 2))))
    assert hit is not None and hit.note == "no_loans_since"
    assert note_text("pl", trail[-1], zone=WAW) == \
        "Ostatnie wypożyczenie: 2026-01-02; od 2026-05-01 żadnego."

