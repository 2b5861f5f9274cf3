"""The walk-in desk: check a patron at the counter, issue a code there, issue one anyway
with a reason over a refusal staff may overrule, reprint the slip of the code the card
already has this month (mailbot.desk decides all of it), and print a slip.

A slip shows a code whole, so it opens only right after the issue or the (audited) reprint
that made it: the session remembers that one code for ``SLIP_SECONDS``; any other slip is
"not found", whatever its id. ``GET /desk?library=…&card=…&service=…`` checks a card, as
the requests list's desk rows link to it (the way to a reprint)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from mailbot.clock import month_end, month_key, month_of, parse_month
from mailbot.db.models import LedgerEntry, Reader
from mailbot.errors import SourceUnavailable
from mailbot.web import actions, i18n
from mailbot.web.context import Ctx, page

# How long the slip of a code just issued or reprinted may be opened (and printed again).
SLIP_SECONDS = 10 * 60


def _allow_slip(ctx: Ctx, code_id: int, *, reprint: bool = False) -> None:
    """This session (one staff member's login) may open this code's slip for a while."""
    ctx.request.session["slip"] = {"id": code_id, "reprint": reprint,
                                   "until": ctx.now().timestamp() + SLIP_SECONDS}


def _slip_allowed(ctx: Ctx, code_id: int, now: datetime) -> dict[str, Any] | None:
    marker = ctx.request.session.get("slip")
    if not isinstance(marker, dict) or marker.get("id") != code_id:
        return None
    if float(marker.get("until", 0)) < now.timestamp():
        ctx.request.session.pop("slip", None)
        return None
    return marker


@page
def desk(ctx: Ctx) -> Response:
    from mailbot.desk import desk_check, desk_issue, desk_override
    from mailbot.readers import make_source

    # Only the services the staff's libraries offer (the desk chain refuses the others).
    offered = [s for s in ctx.settings.catalogue.ids
               if any(s in ctx.settings.library(lib).services for lib in ctx.scope)]
    # A GET may name a card to check (the requests list's desk rows link so).
    get = ctx.request.method == "GET"
    values = {"library": ctx.field("library") or ctx.query("library") or
              (ctx.scope[0] if ctx.scope else ""),
              "card": ctx.query("card").strip() if get else ctx.field("card"),
              "name": ctx.field("name"),
              "service": (ctx.query("service") if get else ctx.field("service")) or
              (offered or list(ctx.settings.catalogue.ids))[0],
              "reason": ctx.field("reason")[:500]}

    def show(verdict: Any = None, error: str | None = None) -> Response:
        # A verdict's times are read in its library's zone.
        zone = ctx.settings.library_tz(values["library"]).key if verdict else None
        return ctx.render("desk.html.j2", nav="desk", v=values, verdict=verdict,
                          error=error, services=offered, zone=zone)

    if (get and not values["card"]) or not ctx.scope:
        return show()
    lib = ctx.require_library(values["library"])
    if values["service"] not in ctx.settings.catalogue.ids:
        raise HTTPException(400)
    if not values["card"]:
        return show(error=ctx.t("err_card_required"))
    action = "check" if get else ctx.field("action")
    if action == "reprint":
        return _reprint(ctx, lib, values["card"])
    library = ctx.settings.library(lib)
    source = make_source(library)
    now = ctx.now()
    user = ctx.user.name if ctx.user else "?"
    args = dict(library_id=lib, card=values["card"], name=values["name"],
                service=values["service"], now=now, source=source)
    audited = {"service": values["service"], "card": values["card"]}
    error = None
    try:
        if action == "issue":
            with ctx.sessions.begin() as session:
                verdict, code = desk_issue(session, ctx.settings, **args)
                if code is not None:
                    actions.audit(session, user=user, action="desk_issue", library_id=lib,
                                  now=now, code_id=code.id, args=audited,
                                  detail=f"{values['service']}, card {values['card']}")
                    _allow_slip(ctx, code.id)
                    return ctx.redirect(f"/desk/slip/{code.id}")
            error = ctx.t("err_desk_changed")
        elif action == "override" and not values["reason"]:
            with ctx.reading() as session:
                verdict = desk_check(session, ctx.settings, **args)
            error = ctx.t("err_reason_required")
        elif action == "override":
            # The refusals the staff were shown and confirmed: a refusal added since
            # (a reader import meanwhile) is not overruled unseen.
            shown = [o for o in ctx.field("overruled").split(",") if o]
            with ctx.sessions.begin() as session:
                verdict, code = desk_override(session, ctx.settings, reason=values["reason"],
                                              shown=shown, **args)
                if code is not None:
                    overruled = verdict.override.overruled if verdict.override else ()
                    if overruled:
                        # The refusal the desk showed, and all it overrules (the first
                        # refusal hides the later ones on the trail).
                        actions.audit(
                            session, user=user, action="desk_override", library_id=lib,
                            now=now, code_id=code.id,
                            args={**audited, "outcome": verdict.outcome,
                                  "overruled": ",".join(overruled),
                                  "reason": values["reason"]},
                            detail=f"{', '.join(overruled)} -> issued at the desk "
                                   f"({values['service']}, card {values['card']}): "
                                   f"{values['reason']}")
                    else:  # eligible by now: a desk issue, with the reason staff gave
                        actions.audit(session, user=user, action="desk_issue",
                                      library_id=lib, now=now, code_id=code.id,
                                      args={**audited, "reason": values["reason"],
                                            "variant": "reason"},
                                      detail=f"{values['service']}, card {values['card']} "
                                             f"(issued anyway, eligible by then): "
                                             f"{values['reason']}")
                    _allow_slip(ctx, code.id)
                    return ctx.redirect(f"/desk/slip/{code.id}")
            error = ctx.t("err_desk_changed")
        else:
            with ctx.reading() as session:
                verdict = desk_check(session, ctx.settings, **args)
    except SourceUnavailable:
        return show(error=ctx.t("err_source_down"))
    except OperationalError:
        return show(error=ctx.t("err_busy"))
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
    return show(verdict, error)


def _reprint(ctx: Ctx, library_id: str, card: str) -> Response:
    """The slip of a code this card received this month in this library, again; audited.
    Any other code is "not found", whatever its id."""
    code_id = ctx.field("code_id")
    if not code_id.isdigit():
        raise HTTPException(404)
    now = ctx.now()
    month = month_key(*month_of(now, ctx.settings.library_tz(library_id)))
    with ctx.sessions.begin() as session:
        entry = session.scalar(select(LedgerEntry).where(
            LedgerEntry.code_id == int(code_id), LedgerEntry.library_id == library_id,
            LedgerEntry.card_number == card, LedgerEntry.month == month))
        if entry is None:
            raise HTTPException(404)
        actions.audit(session, user=ctx.user.name if ctx.user else "?",
                      action="desk_reprint", library_id=library_id, now=now,
                      code_id=entry.code_id, request_id=entry.request_id,
                      args={"service": entry.service, "card": card, "month": entry.month},
                      detail=f"slip reprinted ({entry.service} {entry.month}, card {card})")
    _allow_slip(ctx, entry.code_id, reprint=True)
    return ctx.redirect(f"/desk/slip/{entry.code_id}?reprint=1")


@page
def desk_slip(ctx: Ctx, code_id: int) -> Response:
    """The slip of the code this session just issued or reprinted (``_allow_slip``)."""
    marker = _slip_allowed(ctx, code_id, ctx.now())
    if marker is None:
        raise HTTPException(404)
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
    url = library.activation_url(code.service, ctx.settings.catalogue)
    return ctx.render("slip.html.j2", nav="desk", code=code, entry=entry, library=library,
                      patron=f"{reader.first_name} {reader.last_name}".strip() if reader
                      else "", deadline=deadline, reprint=bool(marker.get("reprint")),
                      zone=tz.key, now=ctx.now(), activation_url=url,
                      steps=_slip_steps(ctx, code.service, url))


def _slip_steps(ctx: Ctx, service: str, url: str | None) -> list[str]:
    """The slip's activation steps: the service's own ([[services]] instructions, in the
    page's language), else the catalogue's for a shipped one (``steps_<id>``), else the
    generic ones naming the service."""
    known = ctx.settings.catalogue.get(service)
    own = known.steps(ctx.lang) if known else None
    if own:
        return [step.replace("{activation_url}", url or "") for step in own]
    key = f"steps_{service}"
    if i18n.has(ctx.lang, key):
        return ctx.t(key).split("\n")
    return ctx.t("steps_other", service=i18n.service_label(service, ctx.settings.catalogue)
                 ).split("\n")
