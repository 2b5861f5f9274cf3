"""Staff accounts as the accounts page (Konta, web/views/accounts.py) and ``mailbot user``
manage them: adding one, a new password, its libraries and admin flag, removing one, the
list with each account's last login and lock-out, and the rule that the last admin stays.

Logging in, sessions, the lock-out itself and CSRF are web.auth, and so is the password
hasher (``hash_password``): a password is hashed in that one place.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from mailbot.config import Settings
from mailbot.db.models import LoginAttempt, StaffUser
from mailbot.db.session import reading
from mailbot.errors import BadInput
from mailbot.web.auth import (StaffView, hash_password, locked_until, verify_password,
                              name_paused_elsewhere_until, view_of)

NAME_RE = re.compile(r"^[A-Za-z0-9._@-]{2,100}$")
MIN_PASSWORD = 10


class AccountError(BadInput):
    """A refused account change (exit 2 on the CLI); ``key`` and ``params`` word it in the
    dashboard's catalogue (``err_<key>``), the message is the CLI's English."""

    def __init__(self, message: str, *, key: str, column: str, **params: Any) -> None:
        super().__init__(message, column=column)
        self.key = key
        self.params = params


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
             password: str, libraries: list[str], is_admin: bool, now: datetime,
             must_change: bool = False) -> StaffView:
    """A new account; ``must_change``: its owner chooses their own password at the first
    login (the accounts page sets it: the administrator knows this one)."""
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
                         libraries=libs, session_version=1, created_at=now, updated_at=now,
                         must_change_password=must_change)
        session.add(user)
        session.flush()
        return view_of(user)


def set_password(sessions: sessionmaker[Session], *, name: str, password: str,
                 now: datetime, must_change: bool = False) -> StaffView:
    """A new password: every open session of the user ends, a lock-out is lifted. The
    account as it is now (its new session version). ``must_change``: set by somebody else
    (an administrator), so its owner is asked for their own at the next login."""
    check_password_strength(password)
    with sessions.begin() as session:
        user = session.scalar(select(StaffUser).where(StaffUser.name == name))
        if user is None:
            raise AccountError(f"no user {name!r}", column="NAME", key="account_missing",
                               name=name)
        user.password_hash = hash_password(password)
        user.session_version += 1  # logs out every open session of this user
        user.updated_at = now
        user.must_change_password = must_change
        # A new password lifts a lock-out.
        session.execute(delete(LoginAttempt).where(LoginAttempt.name == name,
                                                   LoginAttempt.ok.is_(False)))
        return view_of(user)


def change_own_password(sessions: sessionmaker[Session], *, user_id: int, version: int,
                        current: str, new: str, repeated: str, now: datetime) -> StaffView:
    """The logged-in user replaces their password (the dashboard's "Zmień hasło"): the
    current one must be right, the new one strong, different and typed twice alike. Their
    other sessions end; the caller keeps this one (the returned session version)."""
    with reading(sessions) as session:
        user = session.get(StaffUser, user_id)
        if user is None or user.session_version != version:
            raise AccountError("the session has ended", column="SESSION", key="account_missing",
                               name="")
        name, password_hash = user.name, user.password_hash
    # Verified outside any transaction, as a login is (web.auth.authenticate).
    if not verify_password(password_hash, current):
        raise AccountError("the current password is wrong", column="CURRENT",
                           key="password_current_wrong")
    if new != repeated:
        raise AccountError("the two new passwords differ", column="NEW",
                           key="password_repeat_differs")
    if new == current:
        raise AccountError("the new password is the current one", column="NEW",
                           key="password_same")
    return set_password(sessions, name=name, password=new, now=now)


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
    must_change_password: bool = False  # an administrator set it: changed at next login


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
                                 max(paused) if paused else None,
                                 bool(user.must_change_password)))
        return found


def list_users(sessions: sessionmaker[Session]) -> list[StaffView]:
    with reading(sessions) as session:
        return [view_of(u) for u in session.scalars(select(StaffUser).order_by(StaffUser.name))]
