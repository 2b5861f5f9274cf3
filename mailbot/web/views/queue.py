"""The queue: what waits per library, and why — its mailboxes' health (a mailbox down in
red, with the reason and what it means for the library) and its relays' queues (the home
page; ``/queue/live`` is the part that refreshes itself)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from mailbot.respond.relays import queue_by_relay
from mailbot.web import queries
from mailbot.web.context import Ctx, page


@page
def home(ctx: Ctx) -> Response:
    return ctx.redirect("/queue")


def _queue_data(ctx: Ctx) -> dict[str, Any]:
    wanted = ctx.query("library")
    libs = [ctx.require_library(wanted)] if wanted else ctx.scope
    now = ctx.now()
    relays = queue_by_relay(ctx.sessions, ctx.settings, now)
    with ctx.reading() as session:
        queues = queries.queue_snapshot(session, ctx.settings, libs, now, relays=relays)
        # Load everything the template touches while the session is open.
        return {"queues": queues, "now": now, "library": wanted}


@page
def queue(ctx: Ctx) -> Response:
    return ctx.render("queue.html.j2", nav="queue", **_queue_data(ctx))


@page
def queue_live(ctx: Ctx) -> Response:
    return ctx.render("_queue_live.html.j2", **_queue_data(ctx))
