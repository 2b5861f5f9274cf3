"""The walk-in desk: check a patron at the counter, issue a code there (mailbot.desk), and
print its slip."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from mailbot.clock import month_end, parse_month
from mailbot.config import SERVICES
from mailbot.db.models import Reader
from mailbot.errors import SourceUnavailable
from mailbot.web import actions
from mailbot.web.context import Ctx, page


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
