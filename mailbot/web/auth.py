"""Staff logins: the logged-in user (``StaffView``), passwords (argon2id), the pause after
failed logins (per name and client address, and per address), the session secret and CSRF
tokens.

Passwords are only ever hashed here; they are never logged, echoed or stored. Each account
is scoped to a list of libraries; an admin sees the whole consortium.

Managing the accounts (the accounts page, ``mailbot user``) is web.staff_accounts.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from mailbot.config import Settings
from mailbot.db.models import LoginAttempt, StaffUser
from mailbot.db.session import reading
from mailbot.errors import ConfigError

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verifying against this keeps an unknown name as slow as a wrong password.
_DUMMY_HASH = _hasher.hash("not a password of anybody")

ATTEMPTS_KEPT = timedelta(days=30)


@dataclass(frozen=True)
class StaffView:
    """The logged-in user as the pages see it (detached from any database session)."""

    id: int
    name: str
    is_admin: bool
    libraries: tuple[str, ...]
    session_version: int
    # An administrator set the password: no page but choosing one's own opens (password.py).
    must_change_password: bool = False

    def can_see(self, library_id: str | None) -> bool:
        return library_id is not None and (self.is_admin or library_id in self.libraries)

    def scope(self, settings: Settings) -> list[str]:
        """The library ids this user may see, in config order."""
        return [lib.id for lib in settings.libraries if self.can_see(lib.id)]


def view_of(user: StaffUser) -> StaffView:
    return StaffView(user.id, user.name, bool(user.is_admin), tuple(user.libraries or ()),
                     user.session_version, bool(user.must_change_password))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def load_user(sessions: sessionmaker[Session], user_id: int,
              version: int) -> StaffView | None:
    """The user of a session, if the account still exists and the password is unchanged."""
    with reading(sessions) as session:
        user = session.get(StaffUser, user_id)
        if user is None or user.session_version != version:
            return None
        return view_of(user)


def end_sessions(sessions: sessionmaker[Session], user_id: int, version: int, *,
                 now: datetime) -> None:
    """Logs the user out: every cookie carrying ``version`` stops working (load_user)."""
    with sessions.begin() as session:
        user = session.get(StaffUser, user_id)
        if user is not None and user.session_version == version:
            user.session_version += 1
            user.updated_at = now


@dataclass(frozen=True)
class LoginResult:
    user: StaffView | None
    locked_until: datetime | None = None
    # Why logins are paused: "name" (this name from this address) or "address" (this
    # address, whatever the name).
    reason: str | None = None


def _last_failure_until(session: Session, stmt: Any, now: datetime, window: timedelta,
                        attempts: int) -> datetime | None:
    failures = sorted(session.scalars(stmt))
    if len(failures) < attempts:
        return None
    until = failures[-1] + window
    return until if until > now else None


def locked_until(session: Session, name: str, now: datetime, *, attempts: int,
                 minutes: float, remote: str = "") -> datetime | None:
    """When logins of ``name`` from ``remote`` resume, if ``attempts`` of them failed
    within ``minutes`` (counting only failures since that name's last successful login
    from there). Failures from other addresses do not count: a stranger's guesses never
    lock the owner out of her own desk."""
    window = timedelta(minutes=minutes)
    last_ok = session.scalar(select(func.max(LoginAttempt.at)).where(
        LoginAttempt.name == name, LoginAttempt.remote == remote, LoginAttempt.ok.is_(True)))
    stmt = select(LoginAttempt.at).where(LoginAttempt.name == name,
                                         LoginAttempt.remote == remote,
                                         LoginAttempt.ok.is_(False),
                                         LoginAttempt.at > now - window)
    if last_ok is not None:
        stmt = stmt.where(LoginAttempt.at > last_ok)
    return _last_failure_until(session, stmt, now, window, attempts)


def address_paused_until(session: Session, remote: str, now: datetime, *, attempts: int,
                         minutes: float) -> datetime | None:
    """When logins from ``remote`` resume, if ``attempts`` failed from there within
    ``minutes`` whatever the names. A success does not reset it (an attacker's own
    account must not buy more guesses at others')."""
    window = timedelta(minutes=minutes)
    stmt = select(LoginAttempt.at).where(LoginAttempt.remote == remote,
                                         LoginAttempt.ok.is_(False),
                                         LoginAttempt.at > now - window)
    return _last_failure_until(session, stmt, now, window, attempts)


def name_paused_elsewhere_until(session: Session, name: str, remote: str, now: datetime, *,
                                attempts: int, minutes: float) -> datetime | None:
    """When logins of ``name`` resume from ``remote``, if ``attempts`` of them failed within
    ``minutes`` from all addresses together: a guesser spread over many addresses gets no
    more than that. An address the name logged in from successfully in the last month (the
    owner's own desk) is not paused, so such a guesser cannot lock her out either."""
    known = session.scalar(select(LoginAttempt.id).where(
        LoginAttempt.name == name, LoginAttempt.remote == remote,
        LoginAttempt.ok.is_(True), LoginAttempt.at > now - ATTEMPTS_KEPT).limit(1))
    if known is not None:
        return None
    window = timedelta(minutes=minutes)
    stmt = select(LoginAttempt.at).where(LoginAttempt.name == name,
                                         LoginAttempt.ok.is_(False),
                                         LoginAttempt.at > now - window)
    return _last_failure_until(session, stmt, now, window, attempts)


def is_proxy(address: str | None, forwarded_allow_ips: str) -> bool:
    """Whether ``address`` is one of the proxies named in ``web.forwarded_allow_ips``
    (addresses or networks; "*" names no one in particular). A request that still comes
    from a proxy carried no X-Forwarded-For: its address is everybody's."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for item in forwarded_allow_ips.split(","):
        item = item.strip()
        if not item or item == "*":
            continue
        try:
            if ip in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            continue
    return False


def _paused(session: Session, settings: Settings, name: str, remote: str,
            now: datetime, per_address: bool = True) -> tuple[datetime | None, str | None]:
    web = settings.web
    if per_address:
        until = address_paused_until(session, remote, now,
                                     attempts=web.login_address_attempts,
                                     minutes=web.lockout_minutes)
        if until is not None:
            return until, "address"
    until = locked_until(session, name, now, attempts=web.lockout_attempts,
                         minutes=web.lockout_minutes, remote=remote)
    if until is None:
        until = name_paused_elsewhere_until(session, name, remote, now,
                                            attempts=web.login_name_attempts,
                                            minutes=web.lockout_minutes)
    return (until, "name") if until is not None else (None, None)


# argon2id takes 64 MiB and both cores of a small machine per verification: a flood from
# many addresses queues here instead of exhausting memory.
_verifying = threading.BoundedSemaphore(2)


def verify_password(password_hash: str | None, password: str) -> bool:
    """The password matches the hash (argon2id; at most two verifications at a time). No
    hash (no such account) still costs one verification, against a dummy hash."""
    with _verifying:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and \
                password_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def authenticate(sessions: sessionmaker[Session], settings: Settings, *, name: str,
                 password: str, now: datetime, remote: str | None,
                 per_address: bool = True) -> LoginResult:
    """Checks a login. The slow password verification runs outside any transaction: on
    SQLite a login flood must never hold the one write lock the bot needs for intake and
    sending. The try is recorded as a failure before it is verified (in one short
    transaction with the check that logins are not paused), so concurrent guesses cannot
    exceed the limits; a success then marks it. ``per_address=False``: ``remote`` is not
    one client's (a proxy's), so only its names are paused, never the whole address."""
    name = name.strip()[:100]
    remote = (remote or "")[:100]
    with sessions.begin() as session:
        until, reason = _paused(session, settings, name, remote, now, per_address)
        if until is not None:
            # Paused: the password is not even checked, and the try is not recorded.
            return LoginResult(None, until, reason)
        user = session.scalar(select(StaffUser).where(StaffUser.name == name))
        user_id, password_hash = (user.id, user.password_hash) if user else (None, None)
        attempt = LoginAttempt(name=name, at=now, ok=False, remote=remote)
        session.add(attempt)
        # Kept a month (who tried to log in, from where), then dropped.
        session.execute(delete(LoginAttempt).where(LoginAttempt.at < now - ATTEMPTS_KEPT))
        session.flush()
        attempt_id = attempt.id
    if verify_password(password_hash, password):
        # A hash made with older parameters is renewed, also outside the transaction.
        renewed = hash_password(password) if password_hash and \
            _hasher.check_needs_rehash(password_hash) else None
        with sessions.begin() as session:
            user = session.get(StaffUser, user_id)
            if user is not None and user.password_hash == password_hash:
                row = session.get(LoginAttempt, attempt_id)
                if row is not None:
                    row.ok = True
                user.last_login_at = now  # kept for good: the attempts only a month
                if renewed is not None:
                    user.password_hash = renewed
                return LoginResult(view_of(user))
        # The password was changed, or the user removed, while it was being checked.
    with reading(sessions) as session:
        until, reason = _paused(session, settings, name, remote, now, per_address)
    return LoginResult(None, until, reason)


# -- secrets ------------------------------------------------------------------------------


def secret_key(settings: Settings) -> str:
    """The key that signs session cookies: from the environment, or a key file made on
    first start (never a built-in default). ConfigError (exit 2) naming the config key
    (web.secret_key_env, or web.secret_key_file for the file, set or default) when it is
    too short, cannot be read or cannot be made; never the key itself."""
    web = settings.web
    if web.secret_key_env:
        value = os.environ.get(web.secret_key_env, "")
        if len(value) < 32:
            state = "is not set" if not value else "holds fewer than 32 characters"
            raise ConfigError(f"the environment variable {web.secret_key_env} {state}: it "
                              "must hold the web secret key, at least 32 characters",
                              file=settings.source, column="web.secret_key_env")
        return value
    path = Path(web.secret_key_file) if web.secret_key_file else default_key_file(settings)

    def bad(why: str) -> ConfigError:
        return ConfigError(f"web secret key file {path}: {why}", file=settings.source,
                           column="web.secret_key_file")

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            value = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeError) as exc:
            raise bad(f"cannot be read ({getattr(exc, 'strerror', None) or exc}); let mailbot's "
                      "user read it, or delete it and restart to make a new one") from None
        if len(value) < 32:
            raise bad("too short (under 32 characters); delete it and restart to make a "
                      "new one") from None
        return value
    except OSError as exc:
        raise bad(f"cannot be made ({exc.strerror or exc}); mailbot's user must be able to "
                  "write its folder, or set web.secret_key_file or web.secret_key_env") from None
    value = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(value + "\n")
    return value


def default_key_file(settings: Settings) -> Path:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).resolve().parent / "web-secret.key"
    if settings.source and not settings.source.startswith("<"):
        return Path(settings.source).resolve().parent / "web-secret.key"
    return Path.cwd() / "web-secret.key"


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))
