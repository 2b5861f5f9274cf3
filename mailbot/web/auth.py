"""Staff accounts, passwords (argon2id), the lock-out after failed logins, the session
secret and CSRF tokens.

Passwords are only ever hashed here; they are never logged, echoed or stored. Each account
is scoped to a list of libraries; an admin sees the whole consortium.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from mailbot.config import Settings
from mailbot.db.models import LoginAttempt, StaffUser
from mailbot.db.session import reading
from mailbot.errors import BadInput, MailbotError

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verifying against this keeps an unknown name as slow as a wrong password.
_DUMMY_HASH = _hasher.hash("not a password of anybody")

NAME_RE = re.compile(r"^[A-Za-z0-9._@-]{2,100}$")
MIN_PASSWORD = 10
ATTEMPTS_KEPT = timedelta(days=30)


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
        raise BadInput(f"the password must have at least {MIN_PASSWORD} characters",
                       column="password")
    if password.strip() != password:
        raise BadInput("the password must not start or end with a space", column="password")


def _check_libraries(settings: Settings, libraries: list[str], is_admin: bool) -> list[str]:
    if not libraries and not is_admin:
        raise BadInput("a user needs at least one --library (or --admin)", column="--library")
    for lib in libraries:
        settings.library(lib)  # ConfigError naming the known ids
    return list(dict.fromkeys(libraries))


def add_user(sessions: sessionmaker[Session], settings: Settings, *, name: str,
             password: str, libraries: list[str], is_admin: bool, now: datetime) -> StaffView:
    if not NAME_RE.match(name):
        raise BadInput("a user name is 2-100 letters, digits or . _ @ -", column="NAME")
    libs = _check_libraries(settings, libraries, is_admin)
    check_password_strength(password)
    with sessions.begin() as session:
        if session.scalar(select(StaffUser).where(StaffUser.name == name)) is not None:
            raise BadInput(f"user {name!r} exists already (use `user passwd`)", column="NAME")
        user = StaffUser(name=name, password_hash=hash_password(password), is_admin=is_admin,
                         libraries=libs, session_version=1, created_at=now, updated_at=now)
        session.add(user)
        session.flush()
        return view_of(user)


def set_password(sessions: sessionmaker[Session], *, name: str, password: str,
                 now: datetime) -> None:
    check_password_strength(password)
    with sessions.begin() as session:
        user = session.scalar(select(StaffUser).where(StaffUser.name == name))
        if user is None:
            raise BadInput(f"no user {name!r}", column="NAME")
        user.password_hash = hash_password(password)
        user.session_version += 1  # logs out every open session of this user
        user.updated_at = now
        # A new password lifts a lock-out.
        session.execute(delete(LoginAttempt).where(LoginAttempt.name == name,
                                                   LoginAttempt.ok.is_(False)))


def remove_user(sessions: sessionmaker[Session], *, name: str) -> None:
    with sessions.begin() as session:
        user = session.scalar(select(StaffUser).where(StaffUser.name == name))
        if user is None:
            raise BadInput(f"no user {name!r}", column="NAME")
        session.delete(user)


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


@dataclass(frozen=True)
class LoginResult:
    user: StaffView | None
    locked_until: datetime | None = None


def locked_until(session: Session, name: str, now: datetime, *, attempts: int,
                 minutes: float) -> datetime | None:
    """When the name's lock-out ends, if ``attempts`` logins failed within ``minutes``
    (counting only failures since the last successful login)."""
    window = timedelta(minutes=minutes)
    last_ok = session.scalar(select(func.max(LoginAttempt.at)).where(
        LoginAttempt.name == name, LoginAttempt.ok.is_(True)))
    stmt = select(LoginAttempt.at).where(LoginAttempt.name == name,
                                         LoginAttempt.ok.is_(False),
                                         LoginAttempt.at > now - window)
    if last_ok is not None:
        stmt = stmt.where(LoginAttempt.at > last_ok)
    failures = sorted(session.scalars(stmt))
    if len(failures) < attempts:
        return None
    until = failures[-1] + window
    return until if until > now else None


def authenticate(sessions: sessionmaker[Session], settings: Settings, *, name: str,
                 password: str, now: datetime, remote: str | None) -> LoginResult:
    web = settings.web
    name = name.strip()[:100]
    with sessions.begin() as session:
        until = locked_until(session, name, now, attempts=web.lockout_attempts,
                             minutes=web.lockout_minutes)
        if until is not None:
            # Locked: the password is not even checked, and the try does not extend it.
            return LoginResult(None, until)
        user = session.scalar(select(StaffUser).where(StaffUser.name == name))
        ok = False
        try:
            ok = _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        ok = ok and user is not None
        session.add(LoginAttempt(name=name, at=now, ok=ok, remote=(remote or "")[:100]))
        # Kept a month (who tried to log in, from where), then dropped.
        session.execute(delete(LoginAttempt).where(LoginAttempt.at < now - ATTEMPTS_KEPT))
        if ok and user is not None:
            if _hasher.check_needs_rehash(user.password_hash):
                user.password_hash = hash_password(password)
            return LoginResult(view_of(user))
        session.flush()
        until = locked_until(session, name, now, attempts=web.lockout_attempts,
                             minutes=web.lockout_minutes)
        return LoginResult(None, until)


# -- secrets ------------------------------------------------------------------------------


def secret_key(settings: Settings) -> str:
    """The key that signs session cookies: from the environment, or a key file made on
    first start (never a built-in default)."""
    web = settings.web
    if web.secret_key_env:
        value = os.environ.get(web.secret_key_env, "")
        if len(value) < 32:
            raise MailbotError(f"web.secret_key_env: {web.secret_key_env} must hold at least "
                               "32 characters")
        return value
    path = Path(web.secret_key_file) if web.secret_key_file else default_key_file(settings)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text(encoding="ascii").strip()
        if len(value) < 32:
            raise MailbotError(f"web secret key file {path} is too short; delete it and "
                               "restart to make a new one") from None
        return value
    except OSError as exc:
        raise MailbotError(f"cannot create the web secret key file {path}: {exc}") from None
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
