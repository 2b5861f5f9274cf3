"""The Starlette application: middleware (signed session cookie, security headers), the
routes (web.views), the templates and the error pages.

What a page is and what it gets (``page``, ``Ctx``) is web.context.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailbot.clock import utcnow
from mailbot.config import Settings
from mailbot.resources import TEMPLATES
from mailbot.web import health, i18n, metrics, views
from mailbot.web.auth import secret_key
from mailbot.web.context import WebState, lang_of

STATIC_DIR = Path(__file__).resolve().parent / "static"
TEMPLATES_DIR = TEMPLATES / "web"
SESSION_COOKIE = "mailbot_session"
# Paths for monitoring tools: no login, no session (web.health, web.metrics).
MONITORING = frozenset({health.PATH, health.LIVE_PATH, metrics.PATH})

# Pages: only our own files; no inline script; frames only from ourselves (the sandboxed
# view of a mail's HTML). Mail HTML itself gets a far stricter policy
# (views.requests.mail_html).
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "frame-src 'self'; form-action 'self'; frame-ancestors 'self'; base-uri 'none'; "
            "object-src 'none'")


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
    request came over https (directly, or through a trusted proxy). The monitoring
    endpoints (/healthz, /metrics) have no session: they neither read nor set the cookie."""

    def __init__(self, app: ASGIApp, *, secret: str, max_age: int) -> None:
        self.app = app
        common = dict(secret_key=secret, session_cookie=SESSION_COOKIE, max_age=max_age,
                      same_site="lax")
        self.plain = SessionMiddleware(app, https_only=False, **common)
        self.tls = SessionMiddleware(app, https_only=True, **common)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("path") in MONITORING:
            await self.app(scope, receive, send)
            return
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
        lang, _ = lang_of(request)
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
    state = WebState(settings, sessions, _environment(), wake_sender or (lambda: None), clock)
    key = secret if secret is not None else secret_key(settings)
    routes = [*views.routes(), *health.routes(), *metrics.routes(),
              Mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")]
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
