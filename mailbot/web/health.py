"""``GET /healthz``: whether anything needs attention, for a monitoring check, a load
balancer or a script.

200 ``{"ok": true, …}`` when nothing does; 503 with the list of what does (mailbot.health:
the same judgement as ``mailbot status``, whose exit code it matches); 503 too when the
database cannot be read. No login and no session (web.app lets it past the session
cookie: it sets none); it only reads, without SQLite's write lock (db.session.reading),
so it answers during a burst. It says what ``status`` says: never a password, code or
token, and the database's own error stays in the log.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mailbot import __version__
from mailbot.health import problems
from mailbot.status import gather, iso

if TYPE_CHECKING:
    from mailbot.web.context import WebState

log = logging.getLogger(__name__)

PATH = "/healthz"


def routes() -> list[Route]:
    return [Route(PATH, healthz, methods=["GET"])]


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
