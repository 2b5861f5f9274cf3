"""``GET /healthz``: whether anything needs attention, for a monitoring check or a
script; ``GET /livez``: whether this process serves and can read its database, for a load
balancer, a container's health check or systemd's watchdog.

``/healthz`` answers 200 ``{"ok": true, …}`` when nothing needs attention; 503 with the
list of what does (mailbot.health: the same judgement as ``mailbot status``, whose exit
code it matches: a mailbox down, a pool out, a failed reply…); 503 too when the database
cannot be read. Those are business conditions: a balancer that took the process out of
service for them would stop the dashboard staff need to fix them.

``/livez`` answers 200 ``{"ok": true, "database": true, …}`` whenever the process is up
and one small query of its database goes through, whatever needs attention; 503 with
``"database": false`` when the database cannot be read. It reads one row, so a balancer
may ask it every second.

No login and no session (web.app lets both past the session cookie: they set none); they
only read, without SQLite's write lock (db.session.reading), so they answer during a
burst. They say what ``status`` says: never a password, code or token, and the database's
own error stays in the log.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mailbot import __version__
from mailbot.db.models import Library
from mailbot.db.session import reading
from mailbot.health import problems
from mailbot.status import gather, iso

if TYPE_CHECKING:
    from mailbot.web.context import WebState

log = logging.getLogger(__name__)

PATH = "/healthz"
LIVE_PATH = "/livez"


def routes() -> list[Route]:
    return [Route(PATH, healthz, methods=["GET"]), Route(LIVE_PATH, livez, methods=["GET"])]


async def livez(request: Request) -> Response:
    state: WebState = request.app.state.web
    body = await run_in_threadpool(liveness, state)
    return JSONResponse(body, status_code=200 if body["ok"] else 503)


def liveness(state: WebState) -> dict[str, Any]:
    """The answer of ``/livez``: up, and whether one row of the database could be read."""
    body: dict[str, Any] = {"ok": True, "database": True, "generated_at": iso(state.clock()),
                            "version": __version__}
    try:
        with reading(state.sessions) as session:
            session.execute(select(Library.id).limit(1)).all()
    except SQLAlchemyError as exc:
        log.warning("%s: the database cannot be read: %s", LIVE_PATH, exc)
        body["ok"] = body["database"] = False
    return body


async def healthz(request: Request) -> Response:
    state: WebState = request.app.state.web
    body = await run_in_threadpool(verdict, state)
    return JSONResponse(body, status_code=200 if body["ok"] else 503)


def verdict(state: WebState) -> dict[str, Any]:
    """The answer's body: ``ok``, whether the database could be read, when, which
    version, and what needs attention (each as in ``mailbot status --json``)."""
    now = state.clock()
    body: dict[str, Any] = {"ok": False, "database": True, "generated_at": iso(now),
                            "version": __version__}
    try:
        found = problems(gather(state.sessions, state.settings, now))
    except SQLAlchemyError as exc:
        log.warning("%s: the database cannot be read: %s", PATH, exc)
        body["database"] = False
        body["attention"] = [{"what": "database", "key": "database", "library": None,
                              "message": "the database cannot be read "
                                         f"({type(exc).__name__}; the log says why)"}]
        return body
    body["ok"] = not found
    body["attention"] = [p.as_dict() for p in found]
    return body
