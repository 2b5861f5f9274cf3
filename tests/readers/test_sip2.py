"""The `sip2` reader source against a real SIP2 server on 127.0.0.1 (tests/readers/sip2server.py).

A source that cannot answer must raise SourceUnavailable (the request waits), never return
None (which would refuse the patron as unknown_card).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from pysip2 import LoginRequest, PatronInformationRequest

from mailbot.config import Sip2SourceSettings
from mailbot.errors import SourceUnavailable
from mailbot.readers.sip2.client import Sip2Readers
from mailbot.readers.sip2.patron import (
    extension_date,
    facts_from_patron_information,
    fee_amount,
    split_name,
)
from mailbot.readers.sip2.wire import decode, encode, redact
from tests.readers.sip2server import Patron, Pki, Sip2TestServer, make_test_pki

PASSWORD = "Tajne-Haslo-42"
TERMINAL_PASSWORD = "Terminal-Sekret-7"
TODAY = date(2026, 11, 15)

PATRONS = [
    Patron("0012345", "Kowalska, Anna Maria", email="anna@example.org", fee="12,50",
           overdue=2, expires="20271231", birth_date="20010203"),
    Patron("0099999", "Łucja Brzęczyszczykiewicz", fee="0.00", expires="20270101    235959"),
    Patron("0055555", "Jan Nowak", status="Y" + " " * 13, expires="20271231"),
    Patron("0066666", "Ewa Lis", status="Y" + " " * 13, fee="3.00", expires="20271231"),
    Patron("0077777", "Piotr Zieliński", status="    Y" + " " * 9),
]


@pytest.fixture
def server() -> Iterator[Sip2TestServer]:
    with Sip2TestServer(PATRONS, username="mailbot", password=PASSWORD,
                        institution_id="BPMW") as srv:
        yield srv


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


def settings(server: Sip2TestServer | None = None, **changes: object) -> Sip2SourceSettings:
    base = Sip2SourceSettings(
        host="127.0.0.1", port=server.port if server else 6001, username="mailbot",
        password=PASSWORD, institution_id="BPMW", location_code="FILIA1",
        terminal_password=TERMINAL_PASSWORD, timeout=0.5, retries=2,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def readers(server: Sip2TestServer | None = None, **changes: object) -> Sip2Readers:
    return Sip2Readers(settings(server, **changes), today=lambda: TODAY)


def lookup(source: Sip2Readers, card: str):
    return source.lookup(None, library_id="bpmw", card=card)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# What a known card answers --------------------------------------------------------------------


def test_a_known_card_gives_the_readers_facts(server: Sip2TestServer) -> None:
    # A known card: name split at the comma, fee "12,50" as 12.50, overdue count, email, PA, PB.
    with readers(server) as source:
        facts = lookup(source, "0012345")
    assert facts is not None
    assert facts.card_number == "0012345"
    assert (facts.first_name, facts.last_name) == ("Anna Maria", "Kowalska")
    assert facts.balance_due == Decimal("12.50")
    assert facts.overdue_items == 2
    assert facts.email == "anna@example.org"
    assert facts.valid_until == date(2027, 12, 31)
    assert facts.birth_date == date(2001, 2, 3)
    assert facts.data_updated_on is None and facts.last_loan_on is None


def test_login_and_patron_request_carry_what_the_settings_say(server: Sip2TestServer) -> None:
    # The server (pysip2's codec) sees a valid login, the institution, card and terminal password.
    with readers(server) as source:
        lookup(source, "0012345")
    assert server.logins == [("mailbot", PASSWORD, "FILIA1")]
    (request,) = server.requests_of(PatronInformationRequest)
    assert request.institution_id == "BPMW"
    assert request.patron_identifier == "0012345"
    assert request.terminal_password == TERMINAL_PASSWORD
    assert all(server.checksummed)


def test_a_first_name_first_name_in_utf8_is_split_at_the_last_word(server: Sip2TestServer) -> None:
    # "Łucja Brzęczyszczykiewicz" in UTF-8: surname is the last word, expiry with a time part.
    with readers(server) as source:
        facts = lookup(source, "0099999")
    assert facts is not None
    assert (facts.first_name, facts.last_name) == ("Łucja", "Brzęczyszczykiewicz")
    assert facts.balance_due == Decimal("0")
    assert facts.email is None
    assert facts.valid_until == date(2027, 1, 1)
    assert facts.birth_date is None


def test_an_unknown_card_is_none(server: Sip2TestServer) -> None:
    # BL=N (not a valid patron) means the card does not exist: None, not an error.
    with readers(server) as source:
        assert lookup(source, "0000001") is None


def test_charge_privileges_denied_without_a_reason_makes_the_account_inactive(
    server: Sip2TestServer,
) -> None:
    # Charge privileges denied, no fee, no overdue: valid_until lies before this month.
    with readers(server) as source:
        facts = lookup(source, "0055555")
    assert facts is not None
    assert facts.valid_until == date(2026, 10, 31)


def test_charge_privileges_denied_explained_by_a_fee_keeps_the_expiry(
    server: Sip2TestServer,
) -> None:
    # Denied but owing 3.00: the debt rule explains it, the real expiry date is kept.
    with readers(server) as source:
        facts = lookup(source, "0066666")
    assert facts is not None
    assert facts.valid_until == date(2027, 12, 31)
    assert facts.balance_due == Decimal("3.00")


def test_a_card_reported_lost_makes_the_account_inactive(server: Sip2TestServer) -> None:
    # Card reported lost (status position 4): not valid for service.
    with readers(server) as source:
        facts = lookup(source, "0077777")
    assert facts is not None and facts.valid_until == date(2026, 10, 31)


def test_one_connection_serves_many_lookups(server: Sip2TestServer) -> None:
    # Three lookups and a status check share one connection and one login.
    with readers(server) as source:
        for card in ("0012345", "0000001", "0099999"):
            lookup(source, card)
        assert source.ping() is True
    assert server.connections == 1
    assert len(server.logins) == 1


# When the server cannot answer ---------------------------------------------------------------


def test_a_refused_login_is_source_unavailable(server: Sip2TestServer) -> None:
    # A wrong password (94 with ok=0): SourceUnavailable at once, no retries.
    with readers(server, password="wrong") as source:
        with pytest.raises(SourceUnavailable, match="login refused"):
            lookup(source, "0012345")
    assert len(server.logins) == 1


def test_refuse_login_mode_is_source_unavailable(server: Sip2TestServer) -> None:
    # A server refusing every login: SourceUnavailable, never None.
    server.mode = "refuse_login"
    with readers(server) as source, pytest.raises(SourceUnavailable):
        lookup(source, "0012345")


def test_nothing_listening_is_source_unavailable_fast() -> None:
    # Connection refused on every attempt: SourceUnavailable well within one timeout.
    source = Sip2Readers(replace(settings(), port=free_port(), timeout=2.0))
    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match="did not answer"):
        lookup(source, "0012345")
    assert time.monotonic() - started < 1.0


def test_a_hanging_server_is_source_unavailable_after_the_timeout(
    server: Sip2TestServer,
) -> None:
    # A server that reads and never answers: SourceUnavailable after timeout x attempts.
    server.mode = "hang"
    with readers(server, retries=1) as source:
        started = time.monotonic()
        with pytest.raises(SourceUnavailable, match="timed out"):
            lookup(source, "0012345")
        elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 2.0
    assert server.connections == 2


def test_a_server_that_always_drops_is_source_unavailable_after_the_retries(
    server: Sip2TestServer,
) -> None:
    # Every request dropped: 1 + retries attempts on fresh connections, then SourceUnavailable.
    server.mode = "drop"
    with readers(server, retries=2) as source, pytest.raises(SourceUnavailable):
        lookup(source, "0012345")
    assert server.connections == 3


def test_a_dropped_request_is_retried_on_a_new_connection(server: Sip2TestServer) -> None:
    # The server drops one request: the client reconnects, logs in again and gets the answer.
    server.mode = "drop_once"
    with readers(server) as source:
        facts = lookup(source, "0012345")
    assert facts is not None and facts.last_name == "Kowalska"
    assert server.connections == 2
    assert len(server.requests_of(LoginRequest)) == 2


def test_a_restarted_server_is_reconnected_to_without_using_a_retry(
    server: Sip2TestServer,
) -> None:
    # The server restarts between two lookups: the stale connection is noticed and replaced.
    with readers(server, retries=0) as source:
        assert lookup(source, "0012345") is not None
        server.restart()
        assert lookup(source, "0099999") is not None
    assert server.connections == 2


def test_a_server_down_then_back_recovers(server: Sip2TestServer) -> None:
    # Down: SourceUnavailable; back up on the same port: the next lookup answers.
    with readers(server) as source:
        server.stop()
        with pytest.raises(SourceUnavailable):
            lookup(source, "0012345")
        server.start()
        assert lookup(source, "0012345") is not None


def test_a_bad_checksum_is_retried_then_source_unavailable(server: Sip2TestServer) -> None:
    # Every response has a wrong checksum: retried, then SourceUnavailable (never trusted).
    server.mode = "bad_checksum"
    server.username = None  # no login: the patron request itself is retried
    with readers(server, username=None, retries=2) as source:
        with pytest.raises(SourceUnavailable, match="checksum"):
            lookup(source, "0012345")
    assert len(server.requests_of(PatronInformationRequest)) == 3


def test_a_garbled_response_is_source_unavailable(server: Sip2TestServer) -> None:
    # Something that is not SIP2 answers: SourceUnavailable, not None.
    server.mode = "garbage"
    server.username = None
    with readers(server, username=None) as source, pytest.raises(SourceUnavailable):
        lookup(source, "0012345")


def test_a_server_asking_for_a_resend_gets_the_request_again(server: Sip2TestServer) -> None:
    # A 96 (request SC resend) answer makes the client send the same request again.
    server.username = None
    server.mode = "resend_once"
    with readers(server, username=None, retries=0) as source:
        assert lookup(source, "0012345") is not None
    first, second = server.requests_of(PatronInformationRequest)
    assert first == second
    assert server.connections == 1


# TLS -----------------------------------------------------------------------------------------


def test_tls_with_the_servers_ca_works(pki: Pki) -> None:
    # TLS, certificate verified against the test CA and host name 127.0.0.1 checked.
    with Sip2TestServer(PATRONS, username="mailbot", password=PASSWORD,
                        tls=pki.server_context()) as srv:
        with readers(srv, tls=True, ca_file=str(pki.ca_file)) as source:
            facts = lookup(source, "0012345")
            assert facts is not None and facts.last_name == "Kowalska"
            assert lookup(source, "0099999") is not None
        assert srv.connections == 1


def test_tls_with_a_wrong_ca_is_source_unavailable(pki: Pki, tmp_path: Path) -> None:
    # A server certificate not signed by the configured CA: refused, SourceUnavailable.
    other = make_test_pki(tmp_path, name="other")
    with Sip2TestServer(PATRONS, username="mailbot", password=PASSWORD,
                        tls=pki.server_context()) as srv:
        with readers(srv, tls=True, ca_file=str(other.ca_file)) as source:
            with pytest.raises(SourceUnavailable, match="certificate"):
                lookup(source, "0012345")
        assert srv.requests == []


def test_tls_with_the_wrong_host_name_is_source_unavailable(pki: Pki) -> None:
    # The certificate is for 127.0.0.1/localhost; any other name for the server fails.
    with Sip2TestServer(PATRONS, tls=pki.server_context()) as srv:
        source = readers(srv, host="127.0.0.2", tls=True, ca_file=str(pki.ca_file),
                         username=None)
        with pytest.raises(SourceUnavailable):
            lookup(source, "0012345")


# Secrets --------------------------------------------------------------------------------------


def test_passwords_never_reach_the_log(
    server: Sip2TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    # DEBUG logs of a good login, a refused one and a failure hold neither password.
    caplog.set_level(logging.DEBUG)
    errors = []
    with readers(server) as source:
        lookup(source, "0012345")
    with readers(server, password=PASSWORD + "x") as source:
        with pytest.raises(SourceUnavailable) as refused:
            lookup(source, "0012345")
        errors.append(str(refused.value))
    server.mode = "hang"
    with readers(server, retries=0) as source:
        with pytest.raises(SourceUnavailable) as hung:
            lookup(source, "0012345")
        errors.append(str(hung.value))
    assert "CO***" in caplog.text
    for text in (caplog.text, *errors):
        assert PASSWORD not in text
        assert TERMINAL_PASSWORD not in text


# The codec and the mapping, without a socket ---------------------------------------------------


@pytest.mark.parametrize(
    ("personal_name", "first", "last"),
    [
        ("Kowalska, Anna", "Anna", "Kowalska"),
        ("Nowak-Kowalska,Anna Maria", "Anna Maria", "Nowak-Kowalska"),
        ("Anna Maria Kowalska", "Anna Maria", "Kowalska"),
        ("  Jan   Nowak ", "Jan", "Nowak"),
        ("Kowalski", "", "Kowalski"),
        ("", "", ""),
    ],
)
def test_personal_names_are_split_sensibly(personal_name: str, first: str, last: str) -> None:
    # "Surname, First" splits at the comma; "First Surname" at the last space.
    assert split_name(personal_name) == (first, last)


@pytest.mark.parametrize(
    ("text", "amount"),
    [("12.50", "12.50"), ("12,50", "12.50"), ("1 234,50 zł", "1234.50"), ("1,234.50", "1234.50"),
     ("$3.00", "3.00"), ("", "0"), (None, "0"), ("-4.00", "-4.00"),
     ("1.234.567", "1234567"), ("(3.00)", "-3.00")],
)
def test_fee_amounts_are_read_with_either_decimal_separator(text: str | None, amount: str) -> None:
    # A fee written with "." or "," (and thousands or a currency) is read exactly.
    assert fee_amount(text) == Decimal(amount)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("20271231", date(2027, 12, 31)), ("20271231    235959", date(2027, 12, 31)),
     ("2027-12-31", date(2027, 12, 31)), ("31.12.2027", date(2027, 12, 31)),
     ("12/31/2027", date(2027, 12, 31)), ("", None), ("Y", None), ("20271340", None)],
)
def test_extension_dates_in_known_formats(text: str, expected: date | None) -> None:
    # Expiry/birth dates in the formats ILSs send; anything else is no date.
    assert extension_date(text) == expected


def test_a_credit_is_no_debt_and_an_unreadable_fee_is_garbled() -> None:
    # A negative balance is a credit (0 due); a fee that is not a number cannot be trusted.
    fixed = "64" + " " * 14 + "000" + "20261115    120000" + "0000" * 6
    credit = decode(encode(fixed + "AO|AA1|AEAnna Nowak|BLY|BV-5.00|", 1))
    facts = facts_from_patron_information(credit, card="1", today=TODAY)
    assert facts is not None and facts.balance_due == Decimal("0")
    garbled = decode(encode(fixed + "AO|AA1|AEAnna Nowak|BLY|BVabc|", 1))
    with pytest.raises(Exception, match="fee amount"):
        facts_from_patron_information(garbled, card="1", today=TODAY)
    # "1.234" may be 1234 or 1.234 (it was read as 1.234): garbled too, never a guess.
    ambiguous = decode(encode(fixed + "AO|AA1|AEAnna Nowak|BLY|BV1.234|", 1))
    with pytest.raises(Exception, match="fee amount '1.234'"):
        facts_from_patron_information(ambiguous, card="1", today=TODAY)


def test_polaris_expiry_fields_are_understood() -> None:
    # Polaris: PX is the expiry date, PY=Y an expired card (valid_until in the past).
    fixed = "64" + " " * 14 + "000" + "20261115    120000" + "0000" * 6
    px = decode(encode(fixed + "AO|AA1|AEAnna Nowak|BLY|PX20280115|", 2))
    facts = facts_from_patron_information(px, card="1", today=TODAY)
    assert facts is not None and facts.valid_until == date(2028, 1, 15)
    py = decode(encode(fixed + "AO|AA1|AEAnna Nowak|BLY|PYY|", 3))
    expired = facts_from_patron_information(py, card="1", today=TODAY)
    assert expired is not None and expired.valid_until == date(2026, 10, 31)


def test_a_response_without_bl_exists_only_with_a_name() -> None:
    # No BL field: a name means the card exists; no name means it does not.
    fixed = "64" + " " * 14 + "000" + "20261115    120000" + "0000" * 6
    named = decode(encode(fixed + "AO|AA1|AEAnna Nowak|", None))
    assert facts_from_patron_information(named, card="1", today=TODAY) is not None
    nameless = decode(encode(fixed + "AO|AA1|AE|", None))
    assert facts_from_patron_information(nameless, card="1", today=TODAY) is None


def test_redact_masks_passwords_and_personal_data() -> None:
    # Log lines keep the shape of a frame but not its secrets or personal data.
    line = redact(encode(f"9300CNmailbot|CO{PASSWORD}|CPFILIA1|", 0))
    assert PASSWORD not in line and "CNmailbot" in line
    line = redact("64...AO|AA1|AEAnna Nowak|BEanna@example.org|ACx|BV1.00|")
    assert "Anna" not in line and "anna@" not in line and "AA1" in line and "BV1.00" in line
