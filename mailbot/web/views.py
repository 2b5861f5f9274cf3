"""The dashboard's pages. Each is a plain function ``(ctx, **path params) -> Response``
run by ``app.page``; every query is limited to the user's libraries and anything outside
them is answered 404 (direct URLs and forms alike)."""

from __future__ import annotations

import logging
import re
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from mailbot.clock import month_end, month_key, month_of, parse_month
from mailbot.config import SERVICES
from mailbot.db.models import AuditLog, Mailbox, Request
from mailbot.errors import BadInput, SourceUnavailable
from mailbot.outcomes import Outcome
from mailbot.web import actions, charts, queries
from mailbot.web.app import Ctx, page
from mailbot.web.auth import authenticate, end_sessions, is_proxy, new_csrf_token
from mailbot.web.mailhtml import inert_html

log = logging.getLogger(__name__)
_warned: set[str | None] = set()  # proxies already named in the log

# -- login -----------------------------------------------------------------------------------


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


@page
def logout(ctx: Ctx) -> Response:
    # The cookie alone proves nothing afterwards: a copy of it (another tab, a stolen
    # one) is refused too, because the user's session version moves on (as with a new
    # password, this ends the user's sessions on every device).
    if ctx.user is not None:
        end_sessions(ctx.sessions, ctx.user.id, ctx.user.session_version, now=ctx.now())
    ctx.request.session.clear()
    return ctx.redirect("/login")


@page
def home(ctx: Ctx) -> Response:
    return ctx.redirect("/queue")


# -- queue -----------------------------------------------------------------------------------


def _queue_data(ctx: Ctx) -> dict[str, Any]:
    wanted = ctx.query("library")
    libs = [ctx.require_library(wanted)] if wanted else ctx.scope
    now = ctx.now()
    with ctx.reading() as session:
        queues = queries.queue_snapshot(session, ctx.settings, libs, now)
        # Load everything the template touches while the session is open.
        return {"queues": queues, "now": now, "library": wanted}


@page
def queue(ctx: Ctx) -> Response:
    return ctx.render("queue.html.j2", nav="queue", **_queue_data(ctx))


@page
def queue_live(ctx: Ctx) -> Response:
    return ctx.render("_queue_live.html.j2", **_queue_data(ctx))


# -- requests --------------------------------------------------------------------------------


def _filter(ctx: Ctx, months: list[str], mailboxes: list[Mailbox]) -> queries.RequestFilter:
    f = queries.RequestFilter()
    month = ctx.query("month")
    if month:
        try:
            parse_month(month)
            f.month = month
        except ValueError:
            pass
    f.service = ctx.query("service") if ctx.query("service") in SERVICES else ""
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
        rows, total = queries.request_list(session, ctx.settings, ctx.scope, f,
                                           per_page=per_page)
        reply_state = _reply_states(session, [r.id for r in rows])
        mailbox_names = {m.id: m.address for m in mailboxes}
    params = {k: v for k, v in vars(f).items() if v and k != "page"}
    pages = max(1, (total + per_page - 1) // per_page)

    def page_url(n: int) -> str:
        return "/requests?" + urlencode({**params, "page": n})

    return ctx.render("requests.html.j2", nav="requests", rows=rows, total=total, f=f,
                      months=months, mailboxes=mailboxes, mailbox_names=mailbox_names,
                      services=SERVICES, outcomes=_outcome_choices(), pages=pages,
                      page_url=page_url, reply_state=reply_state)


def _reply_states(session: Any, ids: list[int]) -> dict[int, str]:
    from mailbot.db.models import Outbox

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
        overridable = (req.outcome not in queries.NOT_OVERRIDABLE and code is None and
                       req.state in ("decided", "manual", "error") and bool(req.from_address))
        return ctx.render("request.html.j2", nav="requests", req=req, mail=mail,
                          replies=replies, audit=audit, handled=handled, mailbox=mailbox,
                          code=code, overridable=overridable, services=SERVICES)


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


# -- pools -----------------------------------------------------------------------------------


@page
def pools(ctx: Ctx) -> Response:
    if not ctx.scope:
        return ctx.render("pools.html.j2", nav="pools", rows=[], chart=None, sel={},
                          months=[], services=SERVICES)
    now = ctx.now()
    lib = ctx.require_library(ctx.query("library") or ctx.scope[0])
    tz = ctx.settings.library_tz(lib)
    month = ctx.query("month") or month_key(*month_of(now, tz))
    try:
        parse_month(month)
    except ValueError:
        month = month_key(*month_of(now, tz))
    service = ctx.query("service") if ctx.query("service") in SERVICES else SERVICES[0]
    minutes = 60
    with ctx.reading() as session:
        rows = queries.pool_rows(session, ctx.settings, ctx.scope, now)
        months = queries.months_seen(session, ctx.settings, ctx.scope, now)
        series = queries.pool_series(session, ctx.settings, library_id=lib, service=service,
                                     month=month, minutes=minutes)
    until = min(now, month_end(*parse_month(month), tz))
    if series.first_empty is not None:
        # An emptied pool: the chart ends soon after the last code, where the story is.
        until = series.first_empty + max((series.first_empty - series.opens) / 10,
                                         timedelta(minutes=1))
    depletion = charts.depletion_chart(
        title=ctx.t("chart_depletion"), opens=series.opens, until=until,
        bought=series.bought, points=series.depletion, tz=tz, y_label=ctx.t("chart_codes_left"))
    per_minute = charts.bars_chart(title=ctx.t("chart_per_minute"), values=series.per_minute,
                                   y_label=ctx.t("chart_requests"))
    return ctx.render("pools.html.j2", nav="pools", rows=rows, months=months,
                      services=SERVICES, sel={"library": lib, "month": month,
                                              "service": service},
                      chart={"depletion": depletion, "per_minute": per_minute,
                             "series": series, "minutes": minutes,
                             "requests": sum(series.per_minute)})


# -- walk-in desk ----------------------------------------------------------------------------


@page
def desk(ctx: Ctx) -> Response:
    from mailbot.desk import desk_check, desk_issue
    from mailbot.readers import make_source

    values = {"library": ctx.field("library") or ctx.query("library") or
              (ctx.scope[0] if ctx.scope else ""),
              "card": ctx.field("card"), "name": ctx.field("name"),
              "service": ctx.field("service") or SERVICES[0]}
    if ctx.request.method == "GET" or not ctx.scope:
        return ctx.render("desk.html.j2", nav="desk", v=values, verdict=None, error=None,
                          services=SERVICES)
    lib = ctx.require_library(values["library"])
    if values["service"] not in SERVICES:
        raise HTTPException(400)
    if not values["card"]:
        return ctx.render("desk.html.j2", nav="desk", v=values, verdict=None,
                          error=ctx.t("err_card_required"), services=SERVICES)
    library = ctx.settings.library(lib)
    source = make_source(library)
    now = ctx.now()
    args = dict(library_id=lib, card=values["card"], name=values["name"],
                service=values["service"], now=now, source=source)
    try:
        if ctx.field("action") == "issue":
            with ctx.sessions.begin() as session:
                verdict, code = desk_issue(session, ctx.settings, **args)
                if code is not None:
                    actions.audit(session, user=ctx.user.name if ctx.user else "?",
                                  action="desk_issue", library_id=lib, now=now,
                                  code_id=code.id,
                                  detail=f"{values['service']}, card {values['card']}")
                    return ctx.redirect(f"/desk/slip/{code.id}")
        else:
            with ctx.reading() as session:
                verdict = desk_check(session, ctx.settings, **args)
    except SourceUnavailable:
        return ctx.render("desk.html.j2", nav="desk", v=values, verdict=None,
                          error=ctx.t("err_source_down"), services=SERVICES)
    except OperationalError:
        return ctx.render("desk.html.j2", nav="desk", v=values, verdict=None,
                          error=ctx.t("err_busy"), services=SERVICES)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
    return ctx.render("desk.html.j2", nav="desk", v=values, verdict=verdict, error=None,
                      services=SERVICES)


@page
def desk_slip(ctx: Ctx, code_id: int) -> Response:
    with ctx.reading() as session:
        found = actions.slip_code(session, code_id)
        if found is None or not ctx.user or not ctx.user.can_see(found[0].library_id):
            raise HTTPException(404)
        code, entry = found
        from mailbot.db.models import Reader

        reader = session.scalar(select(Reader).where(Reader.library_id == code.library_id,
                                                     Reader.card_number == entry.card_number))
    library = ctx.settings.library(code.library_id)
    tz = ctx.settings.library_tz(library.id)
    y, m = parse_month(code.month)
    deadline = month_end(y, m, tz) - timedelta(days=1)
    return ctx.render("slip.html.j2", nav="desk", code=code, entry=entry, library=library,
                      patron=f"{reader.first_name} {reader.last_name}".strip() if reader
                      else "", deadline=deadline,
                      activation_url=getattr(library, f"activation_url_{code.service}", None))


# -- imports ---------------------------------------------------------------------------------


def _save_upload(upload: UploadFile, folder: Path, limit: int) -> Path:
    name = Path(upload.filename or "upload").name
    name = re.sub(r"[^\w.\- ]", "_", name)[:120]
    if not name.strip(". "):  # "", "." or "..": the folder itself or its parent
        name = "upload"
    target = folder / name
    size = 0
    with target.open("wb") as out:
        while chunk := upload.file.read(1024 * 1024):
            size += len(chunk)
            if size > limit:
                raise BadInput(f"the file is larger than {limit / (1024 * 1024):.3g} MB",
                               file=name)
            out.write(chunk)
    return target


@page(upload=True)
def imports(ctx: Ctx) -> Response:
    from mailbot.imports.load import (
        import_activations,
        import_codes,
        import_readers,
        remove_missing_readers,
    )

    now = ctx.now()
    result = error = None
    kind = ctx.field("kind")
    values = {"library": ctx.field("library") or (ctx.scope[0] if ctx.scope else ""),
              "service": ctx.field("service") or SERVICES[0],
              "month": ctx.field("month") or month_key(*month_of(now, ctx.settings.library_tz(
                  ctx.scope[0]))) if ctx.scope else "",
              "column": ctx.field("column"), "kind": kind}
    if ctx.request.method == "POST":
        lib = ctx.require_library(ctx.field("library"))
        upload = ctx.form.get("file") if ctx.form else None
        user = ctx.user.name if ctx.user else "?"
        if not isinstance(upload, UploadFile) or not upload.filename:
            error = ctx.t("err_no_file")
        else:
            with tempfile.TemporaryDirectory(prefix="mailbot-upload-") as tmp:
                try:
                    path = str(_save_upload(upload, Path(tmp),
                                            ctx.settings.web.max_upload_bytes))
                    name = Path(path).name
                    column = ctx.field("column") or None
                    if kind == "readers":
                        r = import_readers(ctx.sessions, ctx.settings, path=path,
                                           library_id=lib, now=now)
                        result = ctx.t("done_readers", file=name, created=r.created,
                                       updated=r.updated, unchanged=r.unchanged)
                        if ctx.field("remove_missing"):
                            gone = remove_missing_readers(ctx.sessions, path=path,
                                                          library_id=lib,
                                                          limits=ctx.settings.imports)
                            result += " " + ctx.t("done_readers_removed", n=gone)
                    elif kind == "codes":
                        r = import_codes(ctx.sessions, ctx.settings, path=path, library_id=lib,
                                         service=ctx.field("service"),
                                         month=ctx.field("month"), column=column, now=now)
                        result = ctx.t("done_codes", file=name, added=r.added,
                                       service=ctx.field("service"), month=ctx.field("month"))
                    elif kind == "activations":
                        r = import_activations(ctx.sessions, ctx.settings, path=path,
                                               library_id=lib, column=column, now=now)
                        result = ctx.t("done_activations", file=name, activated=r.activated,
                                       not_activated=r.not_activated, unknown=r.unknown)
                    else:
                        raise HTTPException(400)
                except BadInput as exc:
                    error = str(exc)
                else:
                    with ctx.sessions.begin() as session:
                        actions.audit(session, user=user, action=f"import_{kind}",
                                      library_id=lib, now=now, detail=result or "")
    with ctx.reading() as session:
        recent = list(session.scalars(select(AuditLog).where(
            AuditLog.library_id.in_(ctx.scope), AuditLog.action.like("import_%"))
            .order_by(AuditLog.at.desc(), AuditLog.id.desc()).limit(10)))
    return ctx.render("imports.html.j2", nav="imports", v=values, result=result, error=error,
                      services=SERVICES, recent=recent, status=400 if error else 200)


# -- reports ---------------------------------------------------------------------------------


def _report_scope(ctx: Ctx) -> tuple[str, list[str]]:
    now = ctx.now()
    month = ctx.query("month")
    try:
        parse_month(month)
    except ValueError:
        month = month_key(*month_of(now, ctx.settings.library_tz(ctx.scope[0]))) \
            if ctx.scope else month_key(now.year, now.month)
    lib = ctx.query("library")
    return month, [ctx.require_library(lib)] if lib else ctx.scope


@page
def reports(ctx: Ctx) -> Response:
    from mailbot.report import REFUSALS, build_rows

    month, libs = _report_scope(ctx)
    with ctx.reading() as session:
        months = queries.months_seen(session, ctx.settings, ctx.scope, ctx.now())
        rows = build_rows(session, ctx.settings, month=month, libraries=libs, now=ctx.now()) \
            if libs else []
    refusals = [o for o in REFUSALS if any(r.refused.get(o) for r in rows)]
    download = "/reports/download?" + urlencode(
        {"month": month, **({"library": ctx.query("library")} if ctx.query("library") else {}),
         "lang": ctx.lang})
    return ctx.render("reports.html.j2", nav="reports", rows=rows, month=month, months=months,
                      refusals=refusals, download=download, sel_library=ctx.query("library"))


@page
def report_download(ctx: Ctx) -> Response:
    from mailbot.report import report_bytes

    month, libs = _report_scope(ctx)
    if not libs:
        raise HTTPException(404)
    data, _ = report_bytes(ctx.sessions, ctx.settings, month=month, libraries=libs,
                           now=ctx.now(), lang=ctx.lang)
    name = f"mailbot-{month}" + (f"-{libs[0]}" if len(libs) == 1 else "") + ".xlsx"
    return Response(data, media_type="application/vnd.openxmlformats-officedocument."
                                     "spreadsheetml.sheet",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# -- audit -----------------------------------------------------------------------------------


@page
def audit_log(ctx: Ctx) -> Response:
    per_page = 100
    page_no = ctx.query("page")
    n = int(page_no) if page_no.isdigit() and int(page_no) > 0 else 1
    lib = ctx.query("library")
    libs = [ctx.require_library(lib)] if lib else ctx.scope
    action = ctx.query("action")
    with ctx.reading() as session:
        stmt = select(AuditLog).where(AuditLog.library_id.in_(libs))
        if action:
            stmt = stmt.where(AuditLog.action == action)
        rows = list(session.scalars(stmt.order_by(AuditLog.at.desc(), AuditLog.id.desc())
                                    .limit(per_page + 1).offset((n - 1) * per_page)))
    more = len(rows) > per_page
    params = {k: v for k, v in (("library", lib), ("action", action)) if v}
    return ctx.render("audit.html.j2", nav="audit", rows=rows[:per_page], page_no=n, more=more,
                      sel_library=lib, sel_action=action,
                      page_url=lambda p: "/audit?" + urlencode({**params, "page": p}),
                      actions=("resend", "override", "handled", "desk_issue", "import_readers",
                               "import_codes", "import_activations"))


def routes() -> list[Route]:
    return [
        Route("/", home),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/queue", queue),
        Route("/queue/live", queue_live),
        Route("/requests", request_list),
        Route("/requests/{request_id:int}", request_detail),
        Route("/requests/{request_id:int}/mail.html", mail_html),
        Route("/requests/{request_id:int}/resend", request_resend, methods=["POST"]),
        Route("/requests/{request_id:int}/override", request_override, methods=["POST"]),
        Route("/requests/{request_id:int}/handled", request_handled, methods=["POST"]),
        Route("/pools", pools),
        Route("/desk", desk, methods=["GET", "POST"]),
        Route("/desk/slip/{code_id:int}", desk_slip),
        Route("/imports", imports, methods=["GET", "POST"]),
        Route("/reports", reports),
        Route("/reports/download", report_download),
        Route("/audit", audit_log),
    ]


__all__ = ["routes", "RedirectResponse"]
