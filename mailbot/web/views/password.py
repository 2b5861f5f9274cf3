"""Choosing one's own password (the header's "Zmień hasło"), and the first page after a
login with a password an administrator set (``must_change_password``): until its owner
has chosen one, no other page opens (web.context.page).

The current password is asked even then: a session left open on a library PC must not be
enough to take over the account. Success ends the user's other sessions and keeps this
one; the audit log records that it happened, never the password.
"""

from __future__ import annotations

from starlette.responses import Response

from mailbot.web.actions import audit
from mailbot.web.context import Ctx, page
from mailbot.web.staff_accounts import MIN_PASSWORD, AccountError, change_own_password


def _form_value(ctx: Ctx, name: str) -> str:
    value = ctx.form.get(name) if ctx.form is not None else ""
    return value if isinstance(value, str) else ""


@page(before_new_password=True)
def password(ctx: Ctx) -> Response:
    assert ctx.user is not None
    forced = ctx.user.must_change_password
    if ctx.request.method == "GET":
        return ctx.render("password.html.j2", nav="password", forced=forced, error=None,
                          min_password=MIN_PASSWORD)
    now = ctx.now()
    try:
        view = change_own_password(
            ctx.sessions, user_id=ctx.user.id, version=ctx.user.session_version,
            current=_form_value(ctx, "current"), new=_form_value(ctx, "new"),
            repeated=_form_value(ctx, "repeat"), now=now)
    except AccountError as exc:
        return ctx.render("password.html.j2", nav="password", status=400, forced=forced,
                          error=ctx.t("err_" + exc.key, **exc.params),
                          min_password=MIN_PASSWORD)
    with ctx.sessions.begin() as session:
        audit(session, user=view.name, action="password_change", library_id=None, now=now,
              args={"name": view.name}, detail=f"account {view.name}: own password changed, "
                                               "other sessions ended")
    ctx.request.session["ver"] = view.session_version  # this session goes on
    ctx.flash("done_password_changed")
    return ctx.redirect("/queue")
