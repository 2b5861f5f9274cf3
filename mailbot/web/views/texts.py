"""The reply texts of a library, previewed (read-only): for each outcome that gets a reply
(and the activation reminder), the mail a patron would get — text and HTML, in the
library's reply languages — rendered with that library's settings, its own texts folder
(``texts_dir``) and a sample patron (respond.samples), with the files each part came from
marked as the library's own or shipped, and the library's activation pages.

The HTML is shown in a sandboxed frame of its own (``text_html``), made inert first
(web.mailhtml, as a mail's HTML is on a request's page): the frame's CSP alone does not
stop Chromium's preconnects, and a library's own text may name any host.

The preview renders the files as they are now (render_plainly(fresh=True), no cached
environment): the running daemon sends changed texts only after a restart. Problems are
catalogue keys with their file and line (texts_check.TextProblem); Jinja's own (English)
message is only a folded detail.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response

from mailbot.config import LibrarySettings
from mailbot.respond.render import (NOTICES, REPLY_OUTCOMES, OutsideTexts, render_plainly,
                                    template_sources)
from mailbot.respond.samples import SAMPLE_CARD, SAMPLE_CODE, SAMPLE_NAME, sample_context
from mailbot.respond.texts_check import texts_problems
from mailbot.web.context import Ctx, page
from mailbot.web.mailhtml import inert_html

OUTCOMES: tuple[str, ...] = (*(str(o) for o in REPLY_OUTCOMES), *(str(n) for n in NOTICES))
FRAME_CSP = ("sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
             "form-action 'none'; base-uri 'none'; frame-ancestors 'self'")


def _templates_dir(ctx: Ctx) -> Path | None:
    return Path(ctx.settings.templates_dir) if ctx.settings.templates_dir else None


def _render(ctx: Ctx, lib: LibrarySettings, outcome: str, service: str) -> Any:
    tz = ctx.settings.library_tz(lib.id)
    # fresh: the files as they are now, not what this process compiled earlier.
    return render_plainly(outcome, sample_context(lib, tz, outcome, now=ctx.now(),
                                                  settings=ctx.settings, service=service),
                          languages=lib.languages, templates_dir=_templates_dir(ctx),
                          texts_dir=lib.texts_dir, fresh=True)


class RenderError(NamedTuple):
    """Why a previewed reply cannot be put together: the template file and line it
    failed in, when known, and Jinja's own message (English, shown folded)."""

    file: str | None
    line: int | None
    detail: str


def _render_error(exc: Exception) -> RenderError:
    if isinstance(exc, OutsideTexts):
        return RenderError(str(exc.path), None, str(exc))
    file, line = getattr(exc, "filename", None), getattr(exc, "lineno", None)
    if file is None:
        # Jinja rewrites a rendering error's traceback so its frames are the template
        # files' own lines: the innermost one is where it failed.
        tb: TracebackType | None = exc.__traceback__
        while tb is not None:
            name = tb.tb_frame.f_code.co_filename
            if name.endswith(".j2"):
                file, line = name, tb.tb_lineno
            tb = tb.tb_next
    return RenderError(file, line, str(getattr(exc, "message", None) or exc))


def _chosen(ctx: Ctx) -> tuple[LibrarySettings, str, str]:
    if not ctx.scope:
        raise HTTPException(404)
    lib = ctx.settings.library(ctx.require_library(ctx.query("library") or ctx.scope[0]))
    outcome = ctx.query("outcome") or "issued"
    if outcome not in OUTCOMES:
        raise HTTPException(404)
    return lib, outcome, _service(ctx, lib, outcome)


def _service(ctx: Ctx, lib: LibrarySettings, outcome: str) -> str:
    """The service of the sample request: as asked, else the library's first; for
    service_not_offered always one the library does not offer, when there is one."""
    if outcome == "service_not_offered":
        return next((s for s in ctx.settings.catalogue.ids if s not in lib.services),
                    lib.services[0])
    if ctx.query("service") in ctx.settings.catalogue:
        return ctx.query("service")
    return lib.services[0] if lib.services else ctx.settings.catalogue.ids[0]


def _own_files(texts_dir: str | None) -> list[str]:
    if not texts_dir or not Path(texts_dir).is_dir():
        return []
    root = Path(texts_dir)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@page
def texts(ctx: Ctx) -> Response:
    lib, outcome, service = _chosen(ctx)
    templates_dir = _templates_dir(ctx)
    own_outcomes = {o for o in OUTCOMES if any(
        s.own for s in template_sources(o, lib.languages, templates_dir=templates_dir,
                                        texts_dir=lib.texts_dir))}
    sources = template_sources(outcome, lib.languages, templates_dir=templates_dir,
                               texts_dir=lib.texts_dir)
    error = None
    reply = None
    try:
        reply = _render(ctx, lib, outcome, service)
    except Exception as exc:  # a library's own text may be broken: say so, name it
        error = _render_error(exc)
    tz = ctx.settings.library_tz(lib.id)
    sample = sample_context(lib, tz, outcome, now=ctx.now(), settings=ctx.settings,
                            service=service)
    return ctx.render(
        "texts.html.j2", nav="texts", lib=lib, outcome=outcome, service=service,
        services=ctx.settings.catalogue.ids, outcomes=OUTCOMES,
        notices=tuple(str(n) for n in NOTICES),
        # Each service's page as the replies give it: the library's own, else the service's.
        activation_urls={s: lib.activation_url(s, ctx.settings.catalogue)
                         for s in ctx.settings.catalogue.ids},
        own_outcomes=own_outcomes, sources=sources, reply=reply, error=error,
        own_files=_own_files(lib.texts_dir),
        # The same findings as `mailbot check`, worded by the catalogue (file and line;
        # Jinja's words only as a folded detail).
        problems=texts_problems(lib.texts_dir, templates_dir) if lib.texts_dir else [],
        sample={"name": SAMPLE_NAME, "card": SAMPLE_CARD, "code": SAMPLE_CODE,
                "at": sample["received_at"].strftime("%Y-%m-%d %H:%M")},
        frame_url=f"/texts/{lib.id}/{outcome}.html?service={service}")


@page
def text_html(ctx: Ctx, library: str, outcome: str) -> Response:
    """The HTML of one previewed reply, for the sandboxed frame only."""
    lib = ctx.settings.library(ctx.require_library(library))
    if outcome not in OUTCOMES:
        raise HTTPException(404)
    try:
        html = _render(ctx, lib, outcome, _service(ctx, lib, outcome)).html
    except Exception:  # the page itself names the error
        raise HTTPException(404) from None
    # Inert, as a patron's mail: nothing in it may fetch or preconnect anywhere.
    return HTMLResponse(inert_html(html), headers={"Content-Security-Policy": FRAME_CSP,
                                       "Referrer-Policy": "no-referrer",
                                       "X-Frame-Options": "SAMEORIGIN"})
