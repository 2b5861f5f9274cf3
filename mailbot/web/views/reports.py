"""The monthly report on screen, and the same report as an XLSX download
(mailbot.report)."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.responses import Response

from mailbot.clock import month_key, month_of, parse_month
from mailbot.outcomes import REFUSALS
from mailbot.web import queries
from mailbot.web.context import Ctx, page


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
    from mailbot.report import build_rows, generated_at, report_zone

    month, libs = _report_scope(ctx)
    with ctx.reading() as session:
        months = queries.months_seen(session, ctx.settings, ctx.scope, ctx.now())
        rows = build_rows(session, ctx.settings, month=month, libraries=libs, now=ctx.now()) \
            if libs else []
    refusals = [o for o in REFUSALS if any(r.refused.get(o) for r in rows)]
    download = "/reports/download?" + urlencode(
        {"month": month, **({"library": ctx.query("library")} if ctx.query("library") else {}),
         "lang": ctx.lang})
    # As of when, in the libraries' own zone and named (the XLSX says the same).
    generated = generated_at(ctx.now(), report_zone(ctx.settings, libs)) if libs else ""
    return ctx.render("reports.html.j2", nav="reports", rows=rows, month=month, months=months,
                      refusals=refusals, download=download, sel_library=ctx.query("library"),
                      generated=generated)


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
