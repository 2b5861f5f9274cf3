"""Logging in and out of the dashboard (the accounts and the lock-out are web.auth)."""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

from starlette.responses import Response

from mailbot.web.auth import authenticate, end_sessions, is_proxy, new_csrf_token
from mailbot.web.context import Ctx, page

log = logging.getLogger(__name__)
_warned: set[str | None] = set()  # proxies already named in the log


def _safe_next(target: str) -> str:
    # Only a path on this site: never an absolute or scheme-relative URL.
    return target if target.startswith("/") and not target.startswith("//") and \
        "\\" not in target else "/queue"


@page(login=False)
def login(ctx: Ctx) -> Response:
    nxt = _safe_next(ctx.query("next") or ctx.field("next") or "/queue")
    if ctx.request.method == "GET":
        if ctx.user is not None:
            return ctx.redirect(nxt)
        return ctx.render("login.html.j2", next=nxt, error=None, name="")
    name = ctx.field("name")
    password = ctx.form.get("password") if ctx.form else ""
    client = ctx.request.client
    remote = client.host if client else None
    # Behind a proxy that does not say whose request it passes on, every login comes from
    # the proxy: pausing that address would pause everybody's, so only names are paused.
    per_address = not is_proxy(remote, ctx.settings.web.forwarded_allow_ips)
    if not per_address and "x-forwarded-proto" in ctx.request.headers and remote not in _warned:
        _warned.add(remote)
        log.warning("dashboard: logins arrive from the proxy %s without X-Forwarded-For: "
                    "failed logins are counted per name only; set it in the proxy", remote)
    result = authenticate(ctx.sessions, ctx.settings, name=name,
                          password=password if isinstance(password, str) else "",
                          now=ctx.now(), remote=remote, per_address=per_address)
    if result.user is None:
        if result.locked_until is not None:
            until = result.locked_until.astimezone(ZoneInfo(ctx.settings.timezone))
            key = "login_paused_address" if result.reason == "address" else "login_locked"
            error = ctx.t(key, until=until.strftime("%H:%M"))
            response = ctx.render("login.html.j2", status=429, next=nxt, error=error,
                                  name=name)
            wait = (result.locked_until - ctx.now()).total_seconds()
            response.headers["Retry-After"] = str(max(1, int(wait) + 1))
            return response
        return ctx.render("login.html.j2", status=401, next=nxt,
                          error=ctx.t("login_failed"), name=name)
    session = ctx.request.session
    session.clear()  # a fresh session (and CSRF token) at every login
    session.update(uid=result.user.id, ver=result.user.session_version,
                   csrf=new_csrf_token())
    return ctx.redirect(nxt)


@page(before_new_password=True)
def logout(ctx: Ctx) -> Response:
    # The cookie alone proves nothing afterwards: a copy of it (another tab, a stolen
    # one) is refused too, because the user's session version moves on (as with a new
    # password, this ends the user's sessions on every device).
    if ctx.user is not None:
        end_sessions(ctx.sessions, ctx.user.id, ctx.user.session_version, now=ctx.now())
    ctx.request.session.clear()
    return ctx.redirect("/login")
