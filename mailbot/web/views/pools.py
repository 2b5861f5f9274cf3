"""The code pools: what is left of each, one pool's month as charts (codes left over
time, requests a minute), and withdrawing a pool's unissued codes (a confirmation page
first; mailbot.imports.withdraw does it)."""

from __future__ import annotations

from datetime import timedelta

from starlette.responses import Response

from mailbot.clock import month_end, month_key, month_of, parse_month
from mailbot.web import charts, i18n, queries
from mailbot.errors import BadInput
from mailbot.web.context import Ctx, page


@page
def pools(ctx: Ctx) -> Response:
    if not ctx.scope:
        return ctx.render("pools.html.j2", nav="pools", rows=[], chart=None, sel={},
                          months=[], services=ctx.settings.catalogue.ids)
    now = ctx.now()
    lib = ctx.require_library(ctx.query("library") or ctx.scope[0])
    tz = ctx.settings.library_tz(lib)
    month = ctx.query("month") or month_key(*month_of(now, tz))
    try:
        parse_month(month)
    except ValueError:
        month = month_key(*month_of(now, tz))
    known = ctx.settings.catalogue.ids
    service = ctx.query("service") if ctx.query("service") in known else known[0]
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
                      services=known, sel={"library": lib, "month": month,
                                           "service": service},
                      chart={"depletion": depletion, "per_minute": per_minute,
                             "series": series, "minutes": minutes,
                             "requests": sum(series.per_minute)})


@page
def pool_withdraw(ctx: Ctx) -> Response:
    """GET: what withdrawing the pool would take and keep, and the button; POST: does it."""
    from mailbot.imports.withdraw import withdraw_pool

    post = ctx.request.method == "POST"
    get = ctx.field if post else ctx.query
    lib = ctx.require_library(get("library"))
    service, month = get("service"), get("month")
    back = f"/pools?library={lib}&service={service}&month={month}"
    if service not in ctx.settings.catalogue.ids:
        return ctx.redirect("/pools")
    name = ctx.user.name if ctx.user else "?"
    try:
        result = withdraw_pool(ctx.sessions, ctx.settings, library_id=lib, service=service,
                               month=month, user=name, now=ctx.now(), dry_run=not post)
    except BadInput:
        ctx.flash("err_no_pool", "error",
                  service=i18n.service_label(service, ctx.settings.catalogue), month=month)
        return ctx.redirect("/pools")
    if post:
        ctx.flash("done_withdrawn", n=result.withdrawn, issued=result.issued)
        return ctx.redirect(back)
    return ctx.render("pool_withdraw.html.j2", nav="pools", w=result, back=back)
