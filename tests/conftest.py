"""Fixtures shared by the whole test suite: real IMAP (Dovecot) and SMTP (aiosmtpd) servers.

The servers come from ``tests/servers.py``; import its helpers as ``tests.servers``.
A missing or broken Dovecot makes the tests that need it error out; they never skip.
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Make ``tests.servers`` importable however pytest was started (rootdir-relative
# imports put tests/ itself on sys.path when it has no __init__.py).
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from tests.servers import Dovecot, ImapUser, SmtpSink  # noqa: E402

_user_numbers = itertools.count(1)


@pytest.fixture(autouse=True)
def _libraries_log_as_pytest_says() -> Iterator[None]:
    """A test that runs ``mailbot.cli.main`` quiets the libraries' loggers (mailbot.logs);
    the levels are process-wide, so the next test gets them back as they were."""
    from mailbot.logs import QUIET_LIBRARIES

    levels = {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def pytest_configure(config: pytest.Config) -> None:
    # SmtpSink(auth=...) offers AUTH without TLS on purpose: it is a local test server.
    config.addinivalue_line(
        "filterwarnings", "ignore:Requiring AUTH while not requiring TLS:UserWarning"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    # A failing test that used Dovecot shows the server's recent log next to the traceback.
    outcome = yield
    report = outcome.get_result()
    server = getattr(item, "funcargs", {}).get("dovecot")
    if report.failed and isinstance(server, Dovecot):
        report.sections.append(("dovecot log", server.log_tail(30)))


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """One private Dovecot for the session, on 127.0.0.1:<free port>, folder separator '/'."""
    server = Dovecot()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def imap_user_factory(dovecot: Dovecot) -> Callable[..., ImapUser]:
    """Make fresh users with empty mailboxes: ``imap_user_factory(name=None, password=None)``."""
    if not dovecot.running:  # a test may have stopped the shared server
        dovecot.start()

    def make(name: str | None = None, password: str | None = None) -> ImapUser:
        number = next(_user_numbers)
        user = ImapUser(
            name=name or f"user{number}",
            password=password or f"secret-{number}",
            server=dovecot,
        )
        if user.name in dovecot.users:
            raise ValueError(f"IMAP user {user.name!r} already exists on the test Dovecot")
        dovecot.add_user(user.name, user.password)
        return user

    return make


@pytest.fixture
def imap_user(imap_user_factory: Callable[..., ImapUser]) -> ImapUser:
    """A new IMAP user, only INBOX, no mail: ``.name .password .host .port .append() .list()``."""
    return imap_user_factory()


@pytest.fixture(scope="session")
def _smtp_sink_server() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def smtp_sink(_smtp_sink_server: SmtpSink) -> Iterator[SmtpSink]:
    """The session's SMTP sink, emptied and accepting everything at the start of each test."""
    sink = _smtp_sink_server
    sink.start()  # no-op unless a test stopped it
    sink.clear()
    yield sink
    sink.clear()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on the embedded SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/mailbot-param.db"
        return
    from tests.databases import fresh_postgres

    with fresh_postgres() as url:
        yield url
