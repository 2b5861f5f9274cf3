"""What a dashboard page is: a plain function ``(ctx, **path params) -> Response`` wrapped
by ``page``, and the ``Ctx`` it gets.

``page`` loads the logged-in user (or sends them to the login page, and refuses a POST
unread), reads the form of a POST up to a size cap (web.forms) and rejects it with 403
unless it carries the session's CSRF token, then runs the page's function in a worker
thread (the database calls are synchronous) with a ``Ctx`` holding the request, the user,
the form and the language. ``render`` gives every template what the layout needs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from mailbot.clock import as_aware, utcnow
from mailbot.config import Settings
from mailbot.db.session import reading
from mailbot.web import i18n, notes
from mailbot.web.problems import problem_kind
from mailbot.web.auth import StaffView, csrf_ok, load_user, new_csrf_token
from mailbot.web.forms import FORM_CAP, read_form

LANG_COOKIE = "lang"


@dataclass
class WebState:
    settings: Settings
    sessions: sessionmaker[Session]
    env: Environment
    wake_sender: Callable[[], None]
    clock: Callable[[], datetime] = utcnow


@dataclass
class Ctx:
    """What a page function gets."""

    request: Request
    state: WebState
    user: StaffView | None
    lang: str
    form: FormData | None
    path_params: dict[str, Any] = field(default_factory=dict)
    set_lang: bool = False

    @property
    def settings(self) -> Settings:
        return self.state.settings

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self.state.sessions

    def reading(self) -> Session:
        """A session for a page that only reads: on SQLite it takes no write lock, so a
        librarian watching the dashboard during the midnight burst neither waits for the
        bot's writes nor holds them up (db.session.reading)."""
        return reading(self.state.sessions)

    def now(self) -> datetime:
        return self.state.clock()

    def t(self, key: str, **params: Any) -> str:
        return i18n.t(self.lang, key, **params)

    @property
    def scope(self) -> list[str]:
        return self.user.scope(self.settings) if self.user else []

    def require_library(self, library_id: str | None) -> str:
        """404 for a library outside the user's scope: its existence is not revealed."""
        if not library_id or self.user is None or not self.user.can_see(library_id) or \
                library_id not in {lib.id for lib in self.settings.libraries}:
            raise HTTPException(404)
        return library_id

    def field(self, name: str, default: str = "") -> str:
        value = self.form.get(name) if self.form is not None else None
        return value.strip() if isinstance(value, str) else default

    def query(self, name: str, default: str = "") -> str:
        return self.request.query_params.get(name, default).strip()

    def flash(self, key: str, kind: str = "ok", **params: Any) -> None:
        self.request.session["flash"] = [kind, key, {k: str(v) for k, v in params.items()}]

    def render(self, template: str, *, status: int = 200, **data: Any) -> HTMLResponse:
        return HTMLResponse(render(self, template, **data), status_code=status)

    def redirect(self, url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303)


def render(ctx: Ctx, template: str, **data: Any) -> str:
    session = ctx.request.session
    flash = session.pop("flash", None)
    tz = ZoneInfo(ctx.settings.timezone)
    libraries = [(lib.id, lib.name) for lib in ctx.settings.libraries if lib.id in ctx.scope]

    def lang_url(code: str) -> str:
        params = dict(ctx.request.query_params)
        params["lang"] = code
        return f"{ctx.request.url.path}?{urlencode(params)}"

    def local(dt: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S",
              zone: str | None = None) -> str:
        """``dt`` in the installation's time zone, or in ``zone`` (a library's)."""
        if dt is None:
            return "—"
        return as_aware(dt).astimezone(ZoneInfo(zone) if zone else tz).strftime(fmt)

    def zone_of(library_id: str | None) -> ZoneInfo:
        """A library's zone (what its staff read times in); the installation's for none."""
        if library_id and any(lib.id == library_id for lib in ctx.settings.libraries):
            return ctx.settings.library_tz(library_id)
        return tz  # none, or a library no longer configured: its old rows still show

    def note_text(note: Any, args: dict[str, Any] | None = None,
                  library_id: str | None = None) -> str:
        """A trail step (or a note key and its values) in the page's language, its times
        in the library's zone (web.notes)."""
        return notes.note_text(ctx.lang, note, args, zone=zone_of(library_id),
                               catalogue=ctx.settings.catalogue)

    def audit_text(entry: Any) -> str:
        return notes.audit_text(ctx.lang, entry.action, entry.args, entry.detail,
                                catalogue=ctx.settings.catalogue,
                                zone=zone_of(entry.library_id))

    base = {
        "t": ctx.t, "lang": ctx.lang, "user": ctx.user, "csrf": csrf_token(ctx.request),
        "path": ctx.request.url.path, "lang_url": lang_url, "local": local,
        "libraries": libraries, "library_names": dict(libraries), "flash": flash,
        "tn": lambda key, n, **params: i18n.tn(ctx.lang, key, n, **params),
        "outcome_label": lambda o: i18n.outcome_label(ctx.lang, o),
        "rule_label": lambda r: i18n.rule_label(ctx.lang, r),
        # A service's name as the config has it (its [[services]] too).
        "service_label": lambda s: i18n.service_label(s, ctx.settings.catalogue),
        "refresh": ctx.settings.web.live_refresh_seconds,
        "why_keys": i18n.why_keys(ctx.lang),
        "note_text": note_text, "audit_text": audit_text, "problem_kind": problem_kind,
        "zone_name": lambda library_id=None: zone_of(library_id).key,
    }
    base.update(data)
    return ctx.state.env.get_template(template).render(**base)


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = new_csrf_token()
    return token


def lang_of(request: Request) -> tuple[str, bool]:
    """The page's language, and whether the request asked for it (``?lang=``: then it is
    remembered in a cookie)."""
    asked = request.query_params.get("lang")
    if asked in i18n.LANGUAGES:
        return asked, True
    cookie = request.cookies.get(LANG_COOKIE)
    return (cookie if cookie in i18n.LANGUAGES else "pl"), False


def page(fn: Callable[..., Response] | None = None, *, login: bool = True,
         upload: bool = False, before_new_password: bool = False) -> Any:
    """Wraps a page function ``fn(ctx, **path_params) -> Response`` as an endpoint.

    Everything that can be checked without a POST's body is checked before it is read:
    the session (a page behind the login refuses a stranger's POST unread), a cross-site
    origin (Sec-Fetch-Site), and the body's size (``upload`` pages take up to
    ``web.max_upload_bytes``, the others FORM_CAP). Then the CSRF token in the form.

    A user whose password an administrator set (``must_change_password``) sees only the
    pages marked ``before_new_password`` (choosing a password, logging out) until they
    have chosen their own: a GET elsewhere goes to /password, a POST is refused."""

    def wrap(fn: Callable[..., Response]) -> Callable[[Request], Any]:
        @functools.wraps(fn)
        async def endpoint(request: Request) -> Response:
            state: WebState = request.app.state.web
            lang, set_lang = lang_of(request)
            user = None
            uid, version = request.session.get("uid"), request.session.get("ver")
            if isinstance(uid, int) and isinstance(version, int):
                user = await run_in_threadpool(load_user, state.sessions, uid, version)
                if user is None:
                    request.session.clear()  # logged out, removed, or a new password
            if login and user is None:
                if request.method == "GET":
                    target = request.url.path + (f"?{request.url.query}"
                                                 if request.url.query else "")
                    return RedirectResponse("/login?" + urlencode({"next": target}), 303)
                raise HTTPException(403, "login")
            if login and user is not None and user.must_change_password and \
                    not before_new_password:
                if request.method == "GET":
                    return RedirectResponse("/password", 303)
                raise HTTPException(403, "password")
            form = None
            if request.method == "POST":
                # A browser says where a form came from; another site's is refused unread.
                if request.headers.get("sec-fetch-site") in ("cross-site", "same-site"):
                    raise HTTPException(403, "csrf")
                cap = state.settings.web.max_upload_bytes if upload else FORM_CAP
                request, form = await read_form(request, cap)
                if not csrf_ok(request.session.get("csrf"), form.get("csrf")):
                    await form.close()
                    raise HTTPException(403, "csrf")
            ctx = Ctx(request, state, user, lang, form, dict(request.path_params), set_lang)
            try:
                response = await run_in_threadpool(fn, ctx, **request.path_params)
            finally:
                if form is not None:
                    await form.close()
            if set_lang:
                response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax",
                                    httponly=True,
                                    secure=request.url.scheme == "https")
            return response

        return endpoint

    return wrap(fn) if fn is not None else wrap
