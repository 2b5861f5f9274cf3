"""Servers for the OAuth2 login tests: a local identity provider over TLS (tests.identity),
a Dovecot that checks XOAUTH2 tokens with it, and an SMTP relay that takes XOAUTH2 only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailbot.login import tokens
from tests.identity import IdentityProvider, XOAuth2Sink
from tests.pki import make_test_pki
from tests.servers import Dovecot


@pytest.fixture(scope="session")
def _identity_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityProvider]:
    server = IdentityProvider(make_test_pki(tmp_path_factory.mktemp("identity-pki")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def idp(_identity_server: IdentityProvider) -> Iterator[IdentityProvider]:
    """The identity provider with no apps, accounts or tokens, and mailbot's token cache
    empty, at the start of each test."""
    _identity_server.start()  # no-op unless a test stopped it
    _identity_server.reset()
    tokens.clear()
    yield _identity_server
    tokens.clear()


@pytest.fixture(scope="session")
def oauth_dovecot(_identity_server: IdentityProvider) -> Iterator[Dovecot]:
    """A Dovecot taking passwords and XOAUTH2 tokens (checked at the identity provider)."""
    server = Dovecot(oauth2=_identity_server)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def _oauth_relay(_identity_server: IdentityProvider) -> Iterator[XOAuth2Sink]:
    relay = XOAuth2Sink(_identity_server, hostname="relay.mailbot.test")
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()


@pytest.fixture
def oauth_relay(_oauth_relay: XOAuth2Sink, idp: IdentityProvider) -> Iterator[XOAuth2Sink]:
    """An SMTP relay taking AUTH XOAUTH2 only, emptied at the start of each test."""
    _oauth_relay.clear()
    yield _oauth_relay
    _oauth_relay.clear()
