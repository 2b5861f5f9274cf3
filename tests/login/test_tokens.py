"""OAuth2 tokens from msal and google-auth, fetched from the tests' identity provider over
TLS: fetched once, cached, refreshed before expiry, refusals named with the provider's code
and what to do, an unreachable provider a temporary network error."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from mailbot.config import OAuthSettings
from mailbot.login import tokens
from mailbot.login.failures import AuthFailure, IdentityUnreachable
from tests.identity import IdentityProvider, pem, rsa_key, self_signed, thumbprint

WHO = "imap://ebooki@biblioteka.test@outlook.test:993/INBOX"
MAILBOX = "ebooki@biblioteka.test"


def microsoft(idp: IdentityProvider, tmp_path: Path, *, secret: str = "sekret-1",
              tenant: str = "biblioteka", client_id: str = "app-1") -> OAuthSettings:
    idp.add_app(tenant, client_id, secret=secret, mailbox=MAILBOX)
    secret_file = tmp_path / f"{client_id}.secret"
    secret_file.write_text(secret + "\n", encoding="utf-8")
    return OAuthSettings(tenant=tenant, client_id=client_id,
                         client_secret_file=str(secret_file), authority=idp.url,
                         ca_file=str(idp.ca_file), timeout=5.0)


def google(idp: IdentityProvider, tmp_path: Path, *,
           scopes: tuple[str, ...] = ("https://mail.google.com/",)) -> tuple[OAuthSettings, str]:
    email = "mailbot@biblioteka-test.iam.gserviceaccount.com"
    idp.add_service_account(email, scopes=scopes)
    idp.users.add(MAILBOX)
    key_file = tmp_path / "service-account.json"
    kid = idp.write_key(email, key_file)
    return OAuthSettings(service_account_file=str(key_file), ca_file=str(idp.ca_file),
                         timeout=5.0), kid


def ms_token(oauth: OAuthSettings) -> tokens.Token:
    return tokens.access_token(WHO, "oauth2-microsoft", oauth, MAILBOX)


def google_token(oauth: OAuthSettings) -> tokens.Token:
    return tokens.access_token(WHO, "oauth2-google", oauth, MAILBOX)


# -------------------------------------------------------------------------- Microsoft


def test_a_microsoft_token_is_fetched_once_and_then_taken_from_the_cache(idp, tmp_path):
    # Two logins within the token's hour ask Entra once; the token opens the app's mailbox.
    oauth = microsoft(idp, tmp_path)
    first = ms_token(oauth)
    second = ms_token(oauth)
    assert first.fresh and not second.fresh
    assert first.value == second.value
    assert idp.count("microsoft") == 1
    assert idp.introspect(first.value)["username"] == MAILBOX


def test_a_microsoft_token_is_never_handed_out_with_less_than_five_minutes_left(
        idp, tmp_path):
    # msal counts a cached token with under 5 minutes left as expired: with a lifetime of
    # 5 min + 2 s the token is served from the cache for 2 s, then a new one is fetched.
    idp.lifetime = 302
    oauth = microsoft(idp, tmp_path)
    first = ms_token(oauth)
    assert ms_token(oauth).value == first.value
    time.sleep(2.5)
    renewed = ms_token(oauth)
    assert renewed.fresh and renewed.value != first.value
    assert idp.count("microsoft") == 2
    # A token that lives under 5 minutes from the start is used once, never cached.
    idp.lifetime = 60
    tokens.forget("oauth2-microsoft", oauth, MAILBOX)
    assert ms_token(oauth).fresh and ms_token(oauth).fresh
    assert idp.count("microsoft") == 4


def test_an_expired_client_secret_is_named_with_its_code_and_what_to_do(idp, tmp_path):
    # The most reported failure: the secret passed its expiry date (AADSTS7000222).
    oauth = microsoft(idp, tmp_path, secret="expiring-secret-value")
    idp.expire_secret("biblioteka", "app-1")
    with pytest.raises(AuthFailure) as caught:
        ms_token(oauth)
    failure = caught.value
    assert (failure.who, failure.provider, failure.code) == (
        WHO, "Microsoft Entra ID", "AADSTS7000222")
    assert "expired" in failure.message
    assert "App registrations" in failure.advice and "Certificates & secrets" in failure.advice
    text = str(failure)
    assert WHO in text and "AADSTS7000222" in text and "Trace ID" not in text
    assert "expiring-secret-value" not in text
    assert not isinstance(failure, OSError)


def test_a_renewed_secret_in_the_file_is_used_without_a_restart(idp, tmp_path):
    # IT puts a new secret into client_secret_file: the next token is fetched with it.
    oauth = microsoft(idp, tmp_path)
    idp.expire_secret("biblioteka", "app-1")
    with pytest.raises(AuthFailure):
        ms_token(oauth)
    idp.new_secret("biblioteka", "app-1", "sekret-2")
    Path(oauth.client_secret_file).write_text("sekret-2\n", encoding="utf-8")
    assert ms_token(oauth).fresh
    assert idp.count("microsoft", issued=True) == 1


@pytest.mark.parametrize("break_it, code, advice", [
    (lambda o: replace(o, client_secret_file=None, client_secret="wrong"), "AADSTS7000215",
     "Secret ID"),
    (lambda o: replace(o, client_id="no-such-app"), "AADSTS700016", "client_id"),
    (lambda o: replace(o, tenant="no-such-tenant"), "AADSTS90002", "tenant"),
])
def test_each_entra_refusal_names_its_code_and_advice(idp, tmp_path, break_it, code, advice):
    # A wrong secret, an app unknown in the tenant, a tenant that does not exist.
    oauth = break_it(microsoft(idp, tmp_path))
    with pytest.raises(AuthFailure) as caught:
        ms_token(oauth)
    assert caught.value.code == code
    assert caught.value.provider == "Microsoft Entra ID"
    assert advice in caught.value.advice


def test_a_certificate_credential_gets_a_token(idp, tmp_path):
    # Instead of a secret, a certificate: msal signs an assertion with its private key.
    key = rsa_key()
    cert = self_signed(key)
    idp.add_app("biblioteka", "cert-app", certificate=cert, mailbox=MAILBOX)
    pem_file = tmp_path / "app.pem"
    pem_file.write_text(cert.public_bytes(serialization.Encoding.PEM).decode() + pem(key))
    oauth = OAuthSettings(tenant="biblioteka", client_id="cert-app",
                          certificate_file=str(pem_file),
                          certificate_thumbprint=thumbprint(cert), authority=idp.url,
                          ca_file=str(idp.ca_file), timeout=5.0)
    assert ms_token(oauth).fresh
    # Another certificate under the same thumbprint is refused (AADSTS700027).
    tokens.clear()
    pem_file.write_text(pem(rsa_key()))
    with pytest.raises(AuthFailure) as caught:
        ms_token(oauth)
    assert caught.value.code == "AADSTS700027"


def test_threads_logging_in_at_once_share_one_token_fetch(idp, tmp_path):
    # The daemon logs in from several threads: one token request, one token for all.
    oauth = microsoft(idp, tmp_path)
    got: list[str] = []
    start = threading.Barrier(8)

    def login() -> None:
        start.wait()
        got.append(ms_token(oauth).value)

    threads = [threading.Thread(target=login) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and len(set(got)) == 1
    assert idp.count("microsoft") == 1


def test_forget_drops_the_cached_token(idp, tmp_path):
    # A token the mail server refused is dropped: the next login fetches a new one.
    oauth = microsoft(idp, tmp_path)
    first = ms_token(oauth)
    tokens.forget("oauth2-microsoft", oauth, MAILBOX)
    again = ms_token(oauth)
    assert again.fresh and again.value != first.value


# -------------------------------------------------------------------------- Google


def test_a_google_token_acts_as_the_mailbox_and_is_cached(idp, tmp_path):
    # The service account's token is for the subject, by default the login username.
    oauth, _ = google(idp, tmp_path)
    first = google_token(oauth)
    second = google_token(oauth)
    assert first.fresh and not second.fresh and first.value == second.value
    assert idp.count("google") == 1
    assert idp.introspect(first.value)["username"] == MAILBOX


def test_a_google_token_is_refreshed_before_it_expires(idp, tmp_path):
    # google-auth refreshes 3 min 45 s before expiry: a token living 3 min 47 s is reused
    # for 2 s, then replaced; one living a minute is never reused.
    idp.lifetime = 227
    oauth, _ = google(idp, tmp_path)
    first = google_token(oauth)
    assert not google_token(oauth).fresh
    time.sleep(2.5)
    assert google_token(oauth).value != first.value
    idp.lifetime = 60
    tokens.forget("oauth2-google", oauth, MAILBOX)
    assert google_token(oauth).fresh and google_token(oauth).fresh
    assert idp.count("google") == 4


def test_a_deleted_key_missing_delegation_and_unknown_subject_are_named(idp, tmp_path):
    oauth, kid = google(idp, tmp_path)
    idp.delete_key("mailbot@biblioteka-test.iam.gserviceaccount.com", kid)
    with pytest.raises(AuthFailure) as caught:
        google_token(oauth)
    assert (caught.value.provider, caught.value.code) == ("Google", "invalid_grant")
    assert "Keys" in caught.value.advice

    tokens.clear()
    idp.reset()
    oauth, _ = google(idp, tmp_path, scopes=())  # no domain-wide delegation for the scope
    with pytest.raises(AuthFailure) as caught:
        google_token(oauth)
    assert caught.value.code == "unauthorized_client"
    assert "Domain-wide delegation" in caught.value.advice
    assert "https://mail.google.com/" in caught.value.advice

    tokens.clear()
    with pytest.raises(AuthFailure) as caught:
        tokens.access_token(WHO, "oauth2-google", oauth, "nobody@biblioteka.test")
    assert caught.value.code == "invalid_grant" and "subject" in caught.value.advice


# -------------------------------------------------------------------------- unreachable


def test_an_identity_provider_that_cannot_be_reached_is_a_temporary_network_error(
        idp, tmp_path):
    # Not a refusal: no AuthFailure (no back-off for a bad credential), an OSError that
    # intake and the SMTP lanes retry as any network error.
    ms = microsoft(idp, tmp_path)
    g, _ = google(idp, tmp_path)
    idp.fail_with(503)
    with pytest.raises(IdentityUnreachable) as caught:
        ms_token(ms)
    assert isinstance(caught.value, OSError) and not isinstance(caught.value, AuthFailure)
    idp.stop()
    try:
        tokens.clear()
        for get, oauth in ((ms_token, ms), (google_token, g)):
            started = time.monotonic()
            with pytest.raises(IdentityUnreachable) as caught:
                get(oauth)
            assert time.monotonic() - started < 5
            assert WHO in str(caught.value)
    finally:
        idp.start()


def test_no_token_and_no_secret_reaches_the_log(idp, tmp_path, caplog):
    # Even at DEBUG (msal, google-auth, urllib3 all log then), and on a refusal.
    caplog.set_level("DEBUG")
    ms = microsoft(idp, tmp_path, secret="do-not-log-this-secret")
    g, _ = google(idp, tmp_path)
    issued = [ms_token(ms).value, google_token(g).value]
    idp.expire_secret("biblioteka", "app-1")
    tokens.clear()
    with pytest.raises(AuthFailure):
        ms_token(ms)
    private_key = Path(g.service_account_file).read_text()
    assert caplog.records  # the libraries did log
    for secret in [*issued, "do-not-log-this-secret"]:
        assert secret not in caplog.text
    assert "PRIVATE KEY" not in caplog.text and private_key[100:140] not in caplog.text
    assert "eyJ" not in caplog.text  # no signed assertion (a JWT) either


def test_a_certificate_that_cannot_sign_is_an_auth_failure_naming_the_file(idp, tmp_path):
    # An encrypted private key (cryptography raises TypeError) or a key that is not RSA
    # (PyJWT's InvalidKeyError) is the credential's fault: an AuthFailure naming
    # certificate_file, never an unexpected error that would fail the replies for good.
    from cryptography.hazmat.primitives.asymmetric import ec

    key = rsa_key()
    cert = self_signed(key)
    idp.add_app("biblioteka", "cert-app", certificate=cert, mailbox=MAILBOX)
    pem_file = tmp_path / "app.pem"
    encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"haslo")).decode()
    not_rsa = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    oauth = OAuthSettings(tenant="biblioteka", client_id="cert-app",
                          certificate_file=str(pem_file),
                          certificate_thumbprint=thumbprint(cert), authority=idp.url,
                          ca_file=str(idp.ca_file), timeout=5.0)
    for wrong in (encrypted, not_rsa):
        tokens.clear()
        pem_file.write_text(cert.public_bytes(serialization.Encoding.PEM).decode() + wrong)
        with pytest.raises(AuthFailure) as caught:
            ms_token(oauth)
        assert f"certificate_file {pem_file}" in str(caught.value)
        assert caught.value.code == "" and "Certificates & secrets" in caught.value.advice
