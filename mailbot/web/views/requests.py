"""The requests: the filtered list (with the codes issued at the desk, and the search by
card, name and address), one request in detail (its mail, replies, trail and audit), the
mail's own HTML in a sandboxed frame, and what staff may do to a request (resend a reply,
issue a code anyway, mark it handled: web.actions)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response

from mailbot.clock import parse_month
from mailbot.db.models import Mailbox, Outbox, Request
from mailbot.outcomes import Outcome
from mailbot.web import actions, queries, requests_list
from mailbot.web.context import Ctx, page
from mailbot.web.mailhtml import inert_html

def _filter(ctx: Ctx, months: list[str], mailboxes: list[Mailbox]) -> requests_list.RequestFilter:
    f = requests_list.RequestFilter()
    month = ctx.query("month")
    if month:
        try:
            parse_month(month)
            f.month = month
        except ValueError:
            pass
    f.service = ctx.query("service") if ctx.query("service") in ctx.settings.catalogue else ""
    f.outcome = ctx.query("outcome") if re.fullmatch(r"[a-z_]{1,32}", ctx.query("outcome")) \
        else ""
    mb = ctx.query("mailbox")
    if mb.isdigit() and int(mb) in {m.id for m in mailboxes}:
        f.mailbox = mb
    lib = ctx.query("library")
    if lib:
        f.library = ctx.require_library(lib)
    f.card = ctx.query("card")[:64]
    f.address = ctx.query("address")[:320]
    f.q = ctx.query("q")[:200]
    f.channel = ctx.query("channel") if ctx.query("channel") in requests_list.CHANNELS else ""
    page_no = ctx.query("page")
    f.page = int(page_no) if page_no.isdigit() and int(page_no) > 0 else 1
    return f


@page
def request_list(ctx: Ctx) -> Response:
    per_page = 50
    with ctx.reading() as session:
        months = queries.months_seen(session, ctx.settings, ctx.scope, ctx.now())
        mailboxes = queries.mailboxes_in(session, ctx.scope)
        f = _filter(ctx, months, mailboxes)
        rows, total = requests_list.request_list(session, ctx.settings, ctx.scope, f,
                                                 per_page=per_page)
        reply_state = _reply_states(session, [r.request.id for r in rows if r.request])
        mailbox_names = {m.id: m.address for m in mailboxes}
    params = {k: v for k, v in vars(f).items() if v and k != "page"}
    pages = max(1, (total + per_page - 1) // per_page)

    def page_url(n: int) -> str:
        return "/requests?" + urlencode({**params, "page": n})

    return ctx.render("requests.html.j2", nav="requests", rows=rows, total=total, f=f,
                      months=months, mailboxes=mailboxes, mailbox_names=mailbox_names,
                      services=ctx.settings.catalogue.ids, outcomes=_outcome_choices(),
                      pages=pages,
                      channels=requests_list.CHANNELS,
                      page_url=page_url, reply_state=reply_state)


def _reply_states(session: Any, ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(session.execute(select(Outbox.request_id, Outbox.state)
                                .where(Outbox.request_id.in_(ids))).all())


def _outcome_choices() -> list[str]:
    # Every outcome, in catalogue order, after the two states a request waits in.
    return ["waiting", "set_aside", *Outcome]


def _load_request(ctx: Ctx, session: Any, request_id: int) -> Request:
    req = session.get(Request, request_id)
    if req is None or ctx.user is None or not ctx.user.can_see(req.library_id):
        raise HTTPException(404)
    return req


@page
def request_detail(ctx: Ctx, request_id: int) -> Response:
    max_bytes = ctx.settings.max_message_bytes
    with ctx.reading() as session:
        req = _load_request(ctx, session, request_id)
        mail = queries.show_mail(req.raw, max_bytes) if req.raw else None
        replies = [(row, queries.reply_text(row.message)) for row in
                   queries.replies_of(session, req)]
        audit = queries.audit_of(session, req.id)
        handled = queries.is_handled(session, req.id)
        mailbox = session.get(Mailbox, req.mailbox_id)
        code = req.code
        overridable = actions.overridable(req)
        return ctx.render("request.html.j2", nav="requests", req=req, mail=mail,
                          replies=replies, audit=audit, handled=handled, mailbox=mailbox,
                          code=code, overridable=overridable,
                          services=ctx.settings.catalogue.ids)


@page
def mail_html(ctx: Ctx, request_id: int) -> Response:
    """The mail's own HTML, only for a sandboxed frame: no script, no network, no forms.
    Made inert first (mailhtml): the CSP alone does not stop every connection (Chromium
    preconnects to hosts a page names)."""
    with ctx.reading() as session:
        req = _load_request(ctx, session, request_id)
        html = queries.html_part(req.raw, ctx.settings.max_message_bytes) if req.raw else None
    if html is None:
        raise HTTPException(404)
    return HTMLResponse(inert_html(html), headers={
        "Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'; "
                                   "img-src data:; form-action 'none'; base-uri 'none'; "
                                   "frame-ancestors 'self'",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "SAMEORIGIN"})


def _request_action(ctx: Ctx, request_id: int, do: Any) -> Response:
    now = ctx.now()
    name = ctx.user.name if ctx.user else "?"
    try:
        with ctx.sessions.begin() as session:
            req = _load_request(ctx, session, request_id)
            done = do(session, req, name, now)
    except actions.ActionRefused as exc:
        ctx.flash(exc.key, "error", **exc.params)
    except OperationalError:
        ctx.flash("err_busy", "error")
    else:
        ctx.flash(done)
        if done in ("done_resend", "done_override"):
            ctx.state.wake_sender()
    return ctx.redirect(f"/requests/{request_id}")


@page
def request_resend(ctx: Ctx, request_id: int) -> Response:
    outbox_id = ctx.field("outbox_id")

    def do(session: Any, req: Request, user: str, now: Any) -> str:
        if not outbox_id.isdigit():
            raise actions.ActionRefused("err_no_such_reply")
        actions.resend(session, outbox_id=int(outbox_id), request=req, user=user, now=now)
        return "done_resend"

    return _request_action(ctx, request_id, do)


@page
def request_override(ctx: Ctx, request_id: int) -> Response:
    def do(session: Any, req: Request, user: str, now: Any) -> str:
        actions.override(session, ctx.settings, request=req, service=ctx.field("service"),
                         card=ctx.field("card"), reason=ctx.field("reason"), user=user,
                         now=now)
        return "done_override"

    return _request_action(ctx, request_id, do)


@page
def request_handled(ctx: Ctx, request_id: int) -> Response:
    def do(session: Any, req: Request, user: str, now: Any) -> str:
        actions.mark_handled(session, request=req, user=user, note=ctx.field("note"),
                             now=now)
        return "done_handled"

    return _request_action(ctx, request_id, do)
