"""Staff accounts, passwords (argon2id), the pause after failed logins (per name and
client address, and per address), the session secret and CSRF tokens.

Passwords are only ever hashed here; they are never logged, echoed or stored. Each account
is scoped to a list of libraries; an admin sees the whole consortium.

Still one concept over 400 lines: staff accounts and their logins; the accounts page's functions should move to their own module next.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
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
from mailbot.errors import BadInput, ConfigError

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verifying against this keeps an unknown name as slow as a wrong password.
_DUMMY_HASH = _hasher.hash("not a password of anybody")

NAME_RE = re.compile(r"^[A-Za-z0-9._@-]{2,100}$")
MIN_PASSWORD = 10
ATTEMPTS_KEPT = timedelta(days=30)


class AccountError(BadInput):
    """A refused account change (exit 2 on the CLI); ``key`` and ``params`` word it in the
    dashboard's catalogue (``err_<key>``), the message is the CLI's English."""

    def __init__(self, message: str, *, key: str, column: str, **params: Any) -> None:
        super().__init__(message, column=column)
        self.key = key
        self.params = params


@dataclass(frozen=True)
class StaffView:
    """The logged-in user as the pages see it (detached from any database session)."""

    id: int
    name: str
    is_admin: bool
    libraries: tuple[str, ...]
    session_version: int

    def can_see(self, library_id: str | None) -> bool:
        return library_id is not None and (self.is_admin or library_id in self.libraries)

    def scope(self, settings: Settings) -> list[str]:
        """The library ids this user may see, in config order."""
        return [lib.id for lib in settings.libraries if self.can_see(lib.id)]


def view_of(user: StaffUser) -> StaffView:
    return StaffView(user.id, user.name, bool(user.is_admin), tuple(user.libraries or ()),
                     user.session_version)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must have at least {MIN_PASSWORD} characters",
                           column="password", key="password_short", n=MIN_PASSWORD)
    if password.strip() != password:
        raise AccountError("the password must not start or end with a space",
                           column="password", key="password_space")


def _check_libraries(settings: Settings, libraries: list[str], is_admin: bool) -> list[str]:
    if not libraries and not is_admin:
        raise AccountError("a user needs at least one --library (or --admin)",
                           column="--library", key="account_libraries")
    for lib in libraries:
        settings.library(lib)  # ConfigError naming the known ids
    return list(dict.fromkeys(libraries))


def add_user(sessions: sessionmaker[Session], settings: Settings, *, name: str,
             password: str, libraries: list[str], is_admin: bool, now: datetime) -> StaffView:
    if not NAME_RE.match(name):
        raise AccountError("a user name is 2-100 letters, digits or . _ @ -", column="NAME",
                           key="account_name")
    libs = _check_libraries(settings, libraries, is_admin)
    check_password_strength(password)
    with sessions.begin() as session:
        if session.scalar(select(StaffUser).where(StaffUser.name == name)) is not None:
            raise AccountError(f"user {name!r} exists already (use `user passwd`)",
                               column="NAME", key="account_exists", name=name)
        user = StaffUser(name=name, password_hash=hash_password(password), is_admin=is_admin,
                         libraries=libs, session_version=1, created_at=now, updated_at=now)
        session.add(user)
        session.flush()
        return view_of(user)


def set_password(sessions: sessionmaker[Session], *, name: str, password: str,
                 now: datetime) -> StaffView:
    """A new password: every open session of the user ends, a lock-out is lifted. The
    account as it is now (its new session version)."""
    check_password_strength(password)
    with sessions.begin() as session:
        user = session.scalar(select(StaffUser).where(StaffUser.name == name))
        if user is None:
            raise AccountError(f"no user {name!r}", column="NAME", key="account_missing",
                               name=name)
        user.password_hash = hash_password(password)
        user.session_version += 1  # logs out every open session of this user
        user.updated_at = now
        # A new password lifts a lock-out.
        session.execute(delete(LoginAttempt).where(LoginAttempt.name == name,
                                                   LoginAttempt.ok.is_(False)))
        return view_of(user)


def remove_user(sessions: sessionmaker[Session], *, name: str) -> None:
    """``mailbot user remove``: the same rule as the dashboard, never the last admin."""
    remove_account(sessions, name=name)


def generate_password() -> str:
    """A password for an admin to hand over (an ordinary, lasting one; shown once): 4
    groups of 4 letters and digits without look-alikes (0/O, 1/l/I), 31^16 ≈ 2^79 (about
    79 bits), easy to read out over the phone."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(4))


def _other_admins(session: Session, name: str) -> int:
    """The admins besides ``name``, with every admin row locked (FOR UPDATE, in id order)
    until the transaction ends: on PostgreSQL two admins demoting or removing each other
    at once would otherwise each count the other and leave none. The second waits, then
    sees the first's change. (SQLite ignores FOR UPDATE: its writes are serialised by
    BEGIN IMMEDIATE already.)"""
    admins = session.scalars(admin_rows()).all()
    return sum(1 for admin in admins if admin != name)


def admin_rows() -> Any:
    """The statement locking the admin accounts' rows (their names)."""
    return select(StaffUser.name).where(StaffUser.is_admin.is_(True)).order_by(
        StaffUser.id).with_for_update()


def remove_account(sessions: sessionmaker[Session], *, name: str) -> StaffView:
    """Removes an account (the dashboard; the CLI through remove_user), never the last
    admin (nobody could manage the accounts any more). The removed account, as it was."""
    with sessions.begin() as session:
        user = session.scalar(select(StaffUser).where(StaffUser.name == name))
        if user is None:
            raise AccountError(f"no user {name!r}", column="NAME", key="account_missing",
                               name=name)
        if user.is_admin and _other_admins(session, name) == 0:
            raise AccountError(f"{name!r} is the last admin", column="NAME", key="last_admin",
                               name=name)
        gone = view_of(user)
        session.delete(user)
        return gone


def set_scope(sessions: sessionmaker[Session], settings: Settings, *, name: str,
              libraries: list[str], is_admin: bool,
              now: datetime) -> tuple[StaffView, StaffView]:
    """Changes an account's libraries and admin flag (the same rules as add_user); the
    last admin stays an admin. The account as it was before, and as it is now."""
    libs = _check_libraries(settings, libraries, is_admin)
    with sessions.begin() as session:
        user = session.scalar(select(StaffUser).where(StaffUser.name == name))
        if user is None:
            raise AccountError(f"no user {name!r}", column="NAME", key="account_missing",
                               name=name)
        if user.is_admin and not is_admin and _other_admins(session, name) == 0:
            raise AccountError(f"{name!r} is the last admin", column="--admin",
                               key="last_admin", name=name)
        before = view_of(user)
        user.libraries, user.is_admin, user.updated_at = libs, is_admin, now
        if before.is_admin != is_admin or set(before.libraries) - set(libs):
            # Less to see: open sessions must not keep the old scope (load_user re-reads
            # it anyway; this also ends pages left open with forms of the old scope).
            user.session_version += 1
        return before, view_of(user)


@dataclass(frozen=True)
class Account:
    """A staff account as the accounts page lists it."""

    name: str
    is_admin: bool
    libraries: tuple[str, ...]
    created_at: datetime
    last_login_at: datetime | None
    # Until when its logins are paused (from at least one address), if they are now.
    locked_until: datetime | None


def list_accounts(sessions: sessionmaker[Session], settings: Settings, *,
                  now: datetime) -> list[Account]:
    """Every account, by name, with its last successful login and whether failed logins
    pause it now (from some address, or from every address it has not used)."""
    web = settings.web
    since = now - timedelta(minutes=web.lockout_minutes)
    with reading(sessions) as session:
        users = list(session.scalars(select(StaffUser).order_by(StaffUser.name)))
        failing = {(name, remote) for name, remote in session.execute(
            select(LoginAttempt.name, LoginAttempt.remote).where(
                LoginAttempt.ok.is_(False), LoginAttempt.at > since).group_by(
                LoginAttempt.name, LoginAttempt.remote).having(
                func.count() >= min(web.lockout_attempts, web.login_name_attempts)))}
        found = []
        for user in users:
            untils = [locked_until(session, user.name, now, attempts=web.lockout_attempts,
                                   minutes=web.lockout_minutes, remote=remote or "")
                      for name, remote in failing if name == user.name]
            # Paused for all addresses together: asked for an address no login came from.
            untils.append(name_paused_elsewhere_until(
                session, user.name, "\0nowhere", now, attempts=web.login_name_attempts,
                minutes=web.lockout_minutes))
            paused = [u for u in untils if u is not None]
            found.append(Account(user.name, bool(user.is_admin), tuple(user.libraries or ()),
                                 user.created_at, user.last_login_at,
                                 max(paused) if paused else None))
        return found


def list_users(sessions: sessionmaker[Session]) -> list[StaffView]:
    with reading(sessions) as session:
        return [view_of(u) for u in session.scalars(select(StaffUser).order_by(StaffUser.name))]


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


def _verify(password_hash: str | None, password: str) -> bool:
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
    if _verify(password_hash, password):
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
