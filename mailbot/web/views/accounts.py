"""Staff accounts, for admins: list them (role, libraries, last login, paused or not), add
one, set a new password, change its libraries and role, remove it — the same functions
as ``mailbot user …`` (web.staff_accounts), each audited.

Anybody else gets "not found", as for a library outside their scope. A generated
password is shown once: the form's POST keeps it in this process's memory for a few
minutes under a random id bound to the admin's session and redirects to
``/accounts?shown=<id>``, whose GET takes it out (POST-redirect-GET: reloading neither
resets the password again nor shows it again). It is never stored in the database,
logged or put in the session cookie (signed, not encrypted). The dashboard is one
process (web.server), so the GET finds what the POST kept.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import Response

from mailbot.web import staff_accounts
from mailbot.web.actions import audit
from mailbot.web.auth import StaffView
from mailbot.web.staff_accounts import AccountError
from mailbot.web.context import Ctx, csrf_token, page

NO = "—"  # the audit entries' values are words of no language: ✓ / — and library ids
YES = "✓"


SHOWN_FOR = timedelta(minutes=5)  # a generated password waits this long to be shown


@dataclass(frozen=True)
class _Shown:
    owner: tuple[int, str]  # the admin's account and her session's (random) CSRF token
    name: str
    password: str
    until: datetime


_SHOWN: dict[str, _Shown] = {}
_SHOWN_LOCK = threading.Lock()


def _owner(ctx: Ctx) -> tuple[int, str]:
    assert ctx.user is not None
    return ctx.user.id, csrf_token(ctx.request)


def _keep(ctx: Ctx, name: str, password: str) -> str:
    """Keeps a generated password to be shown once; the id to show it by."""
    key, now = secrets.token_urlsafe(18), ctx.now()
    with _SHOWN_LOCK:
        for old in [k for k, v in _SHOWN.items() if v.until <= now]:
            del _SHOWN[old]
        _SHOWN[key] = _Shown(_owner(ctx), name, password, now + SHOWN_FOR)
    return key


def _take(ctx: Ctx, key: str) -> tuple[str, str] | None:
    """The password kept under ``key`` for this admin's session, taken out (once)."""
    with _SHOWN_LOCK:
        shown = _SHOWN.get(key) if key else None
        if shown is None or shown.owner != _owner(ctx):
            return None  # another session's id (or none) neither shows nor spends it
        del _SHOWN[key]
    return (shown.name, shown.password) if shown.until > ctx.now() else None


def _admin_only(ctx: Ctx) -> StaffView:
    if ctx.user is None or not ctx.user.is_admin:
        raise HTTPException(404)
    return ctx.user


def _libs(view: StaffView) -> str:
    return ", ".join(view.libraries) or NO


def _audit(ctx: Ctx, action: str, libraries: set[str], detail: str,
           args: dict[str, Any]) -> None:
    """One entry per library the account sees (saw) — so each library's staff find it in
    their own log — or one without a library for an account of no library (an admin)."""
    assert ctx.user is not None
    with ctx.sessions.begin() as session:
        for lib in sorted(libraries) or [None]:
            audit(session, user=ctx.user.name, action=action, library_id=lib, now=ctx.now(),
                  detail=detail, args=args)


def _chosen_libraries(ctx: Ctx) -> list[str]:
    known = {lib.id for lib in ctx.settings.libraries}
    chosen = ctx.form.getlist("libraries") if ctx.form is not None else []
    return [str(lib) for lib in chosen if str(lib) in known]


def _page(ctx: Ctx, *, status: int = 200, error: str | None = None,
          shown: tuple[str, str] | None = None, v: dict[str, Any] | None = None) -> Response:
    accounts = staff_accounts.list_accounts(ctx.sessions, ctx.settings, now=ctx.now())
    return ctx.render("accounts.html.j2", status=status, nav="accounts", accounts=accounts,
                      error=error, shown=shown, v=v or {},
                      min_password=staff_accounts.MIN_PASSWORD, confirm=None, zones=_zones(ctx))


def _zones(ctx: Ctx) -> dict[str, str]:
    # An account's times are shown in its (first) library's zone.
    return {lib.id: lib.timezone or ctx.settings.timezone for lib in ctx.settings.libraries}


@page
def accounts(ctx: Ctx) -> Response:
    _admin_only(ctx)
    return _page(ctx, shown=_take(ctx, ctx.query("shown")))


@page
def account_action(ctx: Ctx) -> Response:
    """POST: ``do`` = add | password | scope | remove, for the account ``name``."""
    me = _admin_only(ctx)
    do, name = ctx.field("do"), ctx.field("name")
    admin = ctx.field("admin") == "1"
    libraries = _chosen_libraries(ctx)
    password = ctx.form.get("password") if ctx.form is not None else ""
    password = password if isinstance(password, str) else ""
    generated = not password and do in ("add", "password")
    if generated:
        password = staff_accounts.generate_password()
    now = ctx.now()
    try:
        if do == "add":
            view = staff_accounts.add_user(ctx.sessions, ctx.settings, name=name,
                                           password=password, libraries=libraries,
                                           is_admin=admin, now=now, must_change=True)
            args = {"name": name, "libraries": _libs(view), "admin": YES if admin else NO}
            _audit(ctx, "account_add", set(view.libraries),
                   f"account {name} added ({'admin, ' if admin else ''}libraries: "
                   f"{_libs(view)})", args)
            ctx.flash("done_account_added", name=name)
        elif do == "password":
            # Somebody else's: its owner chooses their own at the next login.
            view = staff_accounts.set_password(ctx.sessions, name=name, password=password,
                                               now=now, must_change=name != me.name)
            _audit(ctx, "account_password", set(view.libraries),
                   f"account {name}: new password, sessions ended", {"name": name})
            if view.id == me.id:
                # Her own new password: this session goes on, all her others end.
                ctx.request.session["ver"] = view.session_version
            ctx.flash("done_account_password", name=name)
        elif do == "scope":
            before, after_view = staff_accounts.set_scope(
                ctx.sessions, ctx.settings, name=name, libraries=libraries, is_admin=admin,
                now=now)
            after = ", ".join(dict.fromkeys(libraries)) or NO
            args = {"name": name, "before": _libs(before), "libraries": after,
                    "admin_before": YES if before.is_admin else NO,
                    "admin": YES if admin else NO}
            _audit(ctx, "account_scope", set(before.libraries) | set(libraries),
                   f"account {name}: libraries {_libs(before)} -> {after}, admin "
                   f"{before.is_admin} -> {admin}", args)
            if before.id == me.id:
                ctx.request.session["ver"] = after_view.session_version
                if not after_view.is_admin:
                    ctx.flash("done_account_scope", name=name)
                    return ctx.redirect("/queue")  # no accounts page for her any more
            ctx.flash("done_account_scope", name=name)
        elif do == "remove":
            gone = staff_accounts.remove_account(ctx.sessions, name=name)
            args = {"name": name, "libraries": _libs(gone),
                    "admin": YES if gone.is_admin else NO}
            _audit(ctx, "account_remove", set(gone.libraries),
                   f"account {name} removed (libraries: {_libs(gone)})", args)
            ctx.flash("done_account_removed", name=name)
            return ctx.redirect("/accounts")
        else:
            return ctx.redirect("/accounts")
    except AccountError as exc:
        return _page(ctx, status=400, error=ctx.t("err_" + exc.key, **exc.params),
                     v={"do": do, "name": name, "admin": admin, "libraries": libraries})
    if generated:
        # Redirected to a GET that shows it once: reloading it resets nothing.
        return ctx.redirect(f"/accounts?shown={_keep(ctx, name, password)}")
    return ctx.redirect("/accounts")


@page
def account_remove(ctx: Ctx) -> Response:
    """GET: the confirmation page of removing an account (the form posts to /accounts)."""
    _admin_only(ctx)
    name = ctx.query("name")
    found = [a for a in staff_accounts.list_accounts(ctx.sessions, ctx.settings,
                                                     now=ctx.now())
             if a.name == name]
    if not found:
        raise HTTPException(404)
    return ctx.render("accounts.html.j2", nav="accounts", confirm=found[0], accounts=[],
                      error=None, shown=None, v={},
                      min_password=staff_accounts.MIN_PASSWORD, zones=_zones(ctx))
