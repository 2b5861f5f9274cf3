"""The Starlette application: middleware (signed session cookie, security headers),
routes, templates and the error pages.

Every page goes through ``page``: it loads the logged-in user (or sends them to the login
page, and refuses a POST unread), reads the form of a POST up to a size cap and rejects it
with 403 unless it carries the session's CSRF token, then runs the page's plain function
in a worker thread (the database calls are synchronous) with a ``Ctx`` holding the
request, the user, the form and the language.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailbot.clock import utcnow
from mailbot.config import Settings
from mailbot.db.session import reading
from mailbot.web import i18n
from mailbot.web.auth import StaffView, csrf_ok, load_user, new_csrf_token, secret_key

STATIC_DIR = Path(__file__).resolve().parent / "static"
TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates" / "web"
SESSION_COOKIE = "mailbot_session"
LANG_COOKIE = "lang"
# The body of any form but an upload (web.max_upload_bytes caps those): a login, a note.
FORM_CAP = 1024 * 1024

# Pages: only our own files; no inline script; frames only from ourselves (the sandboxed
# view of a mail's HTML). Mail HTML itself gets a far stricter policy (views.mail_html).
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "frame-src 'self'; form-action 'self'; frame-ancestors 'self'; base-uri 'none'; "
            "object-src 'none'")


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

    def local(dt: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
        return dt.astimezone(tz).strftime(fmt) if dt is not None else "—"

    base = {
        "t": ctx.t, "lang": ctx.lang, "user": ctx.user, "csrf": csrf_token(ctx.request),
        "path": ctx.request.url.path, "lang_url": lang_url, "local": local,
        "libraries": libraries, "library_names": dict(libraries), "flash": flash,
        "outcome_label": lambda o: i18n.outcome_label(ctx.lang, o),
        "rule_label": lambda r: i18n.rule_label(ctx.lang, r),
        "service_label": i18n.service_label, "refresh": ctx.settings.web.live_refresh_seconds,
        "why_keys": i18n.why_keys(ctx.lang),
    }
    base.update(data)
    return ctx.state.env.get_template(template).render(**base)


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = new_csrf_token()
    return token


def _lang_of(request: Request) -> tuple[str, bool]:
    asked = request.query_params.get("lang")
    if asked in i18n.LANGUAGES:
        return asked, True
    cookie = request.cookies.get(LANG_COOKIE)
    return (cookie if cookie in i18n.LANGUAGES else "pl"), False


class _BodyTooLarge(MultiPartException):
    """Raised from ``receive`` once a body passes its cap (a MultiPartException, so that
    Starlette's parser closes the files it had begun)."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"the request body is larger than {cap} bytes")
        self.cap = cap


def _capped(receive: Receive, cap: int) -> Receive:
    """``receive`` that counts the body as it streams (chunked or not) and stops it at
    ``cap`` bytes."""
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > cap:
                raise _BodyTooLarge(cap)
        return message

    return capped


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    return int(value) if value.isdigit() else -1


async def _read_form(request: Request, cap: int) -> tuple[Request, FormData]:
    """The POST's form, read only up to ``cap`` bytes: 413 for a larger declared
    Content-Length without reading a byte, and for a longer stream as soon as it passes
    the cap; 400 for a malformed one."""
    declared = _declared_length(request)
    if declared is not None and (declared < 0 or declared > cap):
        raise HTTPException(413, str(cap)) if declared > cap else HTTPException(400)
    request = Request(request.scope, _capped(request.receive, cap))
    try:
        form = await request.form(max_files=4, max_fields=100, max_part_size=1024 * 1024)
    except _BodyTooLarge:
        raise HTTPException(413, str(cap)) from None
    except HTTPException as exc:
        if isinstance(exc.__context__, _BodyTooLarge):
            raise HTTPException(413, str(cap)) from None
        raise HTTPException(400) from None
    except Exception:
        raise HTTPException(400) from None
    return request, form


def page(fn: Callable[..., Response] | None = None, *, login: bool = True,
         upload: bool = False) -> Any:
    """Wraps a page function ``fn(ctx, **path_params) -> Response`` as an endpoint.

    Everything that can be checked without a POST's body is checked before it is read:
    the session (a page behind the login refuses a stranger's POST unread), a cross-site
    origin (Sec-Fetch-Site), and the body's size (``upload`` pages take up to
    ``web.max_upload_bytes``, the others FORM_CAP). Then the CSRF token in the form."""

    def wrap(fn: Callable[..., Response]) -> Callable[[Request], Any]:
        @functools.wraps(fn)
        async def endpoint(request: Request) -> Response:
            state: WebState = request.app.state.web
            lang, set_lang = _lang_of(request)
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
            form = None
            if request.method == "POST":
                # A browser says where a form came from; another site's is refused unread.
                if request.headers.get("sec-fetch-site") in ("cross-site", "same-site"):
                    raise HTTPException(403, "csrf")
                cap = state.settings.web.max_upload_bytes if upload else FORM_CAP
                request, form = await _read_form(request, cap)
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


class SecurityHeaders:
    """Headers every response carries; a page may set a stricter CSP of its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = {
                    b"content-security-policy": PAGE_CSP.encode(),
                    b"x-content-type-options": b"nosniff",
                    b"x-frame-options": b"SAMEORIGIN",
                    b"referrer-policy": b"same-origin",
                    b"cache-control": b"no-store",
                }
                if scope["path"].startswith("/static/"):
                    extra[b"cache-control"] = b"public, max-age=3600"
                headers.extend((k, v) for k, v in extra.items() if k not in names)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Sessions:
    """The signed session cookie (HttpOnly, SameSite=Lax), marked Secure whenever the
    request came over https (directly, or through a trusted proxy)."""

    def __init__(self, app: ASGIApp, *, secret: str, max_age: int) -> None:
        common = dict(secret_key=secret, session_cookie=SESSION_COOKIE, max_age=max_age,
                      same_site="lax")
        self.plain = SessionMiddleware(app, https_only=False, **common)
        self.tls = SessionMiddleware(app, https_only=True, **common)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        secure = scope.get("scheme") in ("https", "wss")
        await (self.tls if secure else self.plain)(scope, receive, send)


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)),
                      autoescape=select_autoescape(["html", "j2"], default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["nl2br"] = lambda s: Markup("<br>").join(str(s).splitlines())
    return env


def _error_page(status: int) -> Callable[..., Any]:
    async def handler(request: Request, exc: Exception) -> Response:
        lang, _ = _lang_of(request)
        state: WebState = request.app.state.web
        detail = getattr(exc, "detail", "")
        key = {403: "error_403_csrf" if detail == "csrf" else "error_403",
               404: "error_404", 400: "error_400", 413: "error_413"}.get(status, "error_500")
        params = {}
        if status == 413:  # the detail is the cap that applied, in bytes
            cap = int(detail) if str(detail).isdigit() else state.settings.web.max_upload_bytes
            params["mb"] = f"{cap / (1024 * 1024):.3g}"
        html = state.env.get_template("error.html.j2").render(
            t=lambda k, **p: i18n.t(lang, k, **p), lang=lang, status=status,
            message=i18n.t(lang, key, **params))
        # A refused body is not read: the connection cannot carry another request.
        headers = {"Connection": "close"} if status == 413 else None
        return HTMLResponse(html, status_code=status, headers=headers)

    return handler


def create_app(settings: Settings, sessions: sessionmaker[Session], *,
               secret: str | None = None, wake_sender: Callable[[], None] | None = None,
               clock: Callable[[], datetime] = utcnow) -> Starlette:
    """The dashboard. ``secret`` signs session cookies (default: from the config's key
    env or key file); ``wake_sender`` is called when staff queue a reply."""
    from mailbot.web import views

    state = WebState(settings, sessions, _environment(), wake_sender or (lambda: None), clock)
    key = secret if secret is not None else secret_key(settings)
    routes = [*views.routes(), Mount("/static", StaticFiles(directory=str(STATIC_DIR)),
                                     name="static")]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders),
                    Middleware(Sessions, secret=key,
                               max_age=int(settings.web.session_hours * 3600))],
        exception_handlers={400: _error_page(400), 403: _error_page(403),
                            404: _error_page(404), 405: _error_page(404),
                            413: _error_page(413)},
    )
    app.state.web = state
    return app


def random_secret() -> str:
    return secrets.token_urlsafe(48)
