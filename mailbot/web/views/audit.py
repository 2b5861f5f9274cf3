"""The audit log: what staff did (resends, overrides, desk issues, imports, accounts),
newest first, each entry worded in the reader's language from its values
(web.notes.audit_text; an entry written without values shows its stored English line)."""

from __future__ import annotations

from urllib.parse import urlencode

from sqlalchemy import or_, select
from starlette.responses import Response

from mailbot.db.models import AuditLog
from mailbot.web import i18n
from mailbot.web.context import Ctx, page

# The actions staff can filter by, in the order the catalogue names them: an action that
# has a label (``action_<name>``) is offered, so a new one needs no change here.
ACTIONS = tuple(key.removeprefix("action_") for key in i18n.keys("pl")
                if key.startswith("action_"))


@page
def audit_log(ctx: Ctx) -> Response:
    per_page = 100
    page_no = ctx.query("page")
    n = int(page_no) if page_no.isdigit() and int(page_no) > 0 else 1
    lib = ctx.query("library")
    libs = [ctx.require_library(lib)] if lib else ctx.scope
    action = ctx.query("action")
    with ctx.reading() as session:
        where = AuditLog.library_id.in_(libs)
        if not lib and ctx.user is not None and ctx.user.is_admin:
            # Entries of no library (an administrator's account changed) are an
            # administrator's to read: nobody else's scope holds them.
            where = or_(where, AuditLog.library_id.is_(None))
        stmt = select(AuditLog).where(where)
        if action:
            stmt = stmt.where(AuditLog.action == action)
        rows = list(session.scalars(stmt.order_by(AuditLog.at.desc(), AuditLog.id.desc())
                                    .limit(per_page + 1).offset((n - 1) * per_page)))
    more = len(rows) > per_page
    params = {k: v for k, v in (("library", lib), ("action", action)) if v}
    return ctx.render("audit.html.j2", nav="audit", rows=rows[:per_page], page_no=n, more=more,
                      sel_library=lib, sel_action=action,
                      page_url=lambda p: "/audit?" + urlencode({**params, "page": p}),
                      actions=ACTIONS)
