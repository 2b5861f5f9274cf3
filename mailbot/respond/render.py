"""Render a patron reply (plain text + HTML) from an outcome and its context.

Templates live in ``templates/email/<lang>/<outcome>.{txt,html}.j2``; each renders one
language section, and ``templates/email/layout.{txt,html}.j2`` wraps the sections, Polish
first by default, the next language under a divider. Environments (one per templates
directory and language, so the ``date``/``month``/... filters speak that language) and
compiled templates are cached: only the first reply pays for parsing.

A library may keep its own reply texts (``texts_dir`` in its ``[[libraries]]`` table): a
folder laid out like ``templates/email`` (``pl/issued.txt.j2``, ``en/_macros.html.j2``,
``layout.txt.j2`` …). A file there replaces the shipped one of that name for that library
only; every other name falls back to the templates directory. Each (templates directory,
texts folder, language) has its own cached environment, and the shape cache keys on the
same, so one library's texts never reach another's replies and none pays for parsing twice.

A library's texts are the library's input, not the program's: an environment that reads a
texts folder is sandboxed (ImmutableSandboxedEnvironment: no ``__globals__``, no
attributes starting with ``_``, nothing modified), and a file there that resolves outside
the folder (a symlink to ``/etc/...``) is refused (``OutsideTexts``). The shipped
templates keep the plain environment, as fast as before. The cached environments keep
what they compiled for the life of the process: the daemon reads changed texts after a
restart, each cron run (``mailbot run --once``) reads them anew, and the dashboard's preview
renders with ``fresh=True`` (an environment of its own, nothing cached) so it shows the
files as they are now.

What each outcome's templates may use, and the check of a context against it:
variables.py. The text sections are wrapped by wrap.py. In a burst most replies come from
the shape cache (shapes.py), which renders these templates once per reply shape and is
held to give exactly what rendering them for the one reply gives (``render_plainly``).

The check of a library's texts folder before any reply needs it (``mailbot check``, the
dashboard's texts page): texts_check.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, NamedTuple

from jinja2 import (BaseLoader, ChoiceLoader, Environment, FileSystemLoader, PrefixLoader,
                    StrictUndefined, TemplateError, meta)
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape

from mailbot import outcomes
from mailbot.resources import TEMPLATES
from mailbot.respond import i18n, shapes
from mailbot.respond.variables import prepare_context
from mailbot.respond.wrap import finish, soft_breaks, tidy_text

__all__ = [
    "DEFAULT_TEMPLATES_DIR",
    "NOTICES",
    "NO_REPLY_OUTCOMES",
    "REPLY_OUTCOMES",
    "RenderedReply",
    "Section",
    "TemplateNames",
    "OutsideTexts",
    "TemplateSource",
    "environment",
    "render_plainly",
    "render_reply",
    "template_names",
    "template_sources",
    "templates_root",
    "variables_used",
]

DEFAULT_TEMPLATES_DIR = TEMPLATES  # the shipped templates (mailbot/resources.py)

REPLY_OUTCOMES = outcomes.REPLY_OUTCOMES
NO_REPLY_OUTCOMES = outcomes.NO_REPLY_OUTCOMES
# Mail that is not a reply to a request: the activation reminder (SPEC 2.11).
NOTICES: tuple[str, ...] = tuple(outcomes.Notice)

LAYOUT_TEXT = "email/layout.txt.j2"
LAYOUT_HTML = "email/layout.html.j2"


@dataclass(frozen=True)
class RenderedReply:
    """The two bodies of one reply, ready for a multipart/alternative message."""

    text: str
    html: str


@dataclass(frozen=True)
class Section:
    """One language's rendered part of a reply, as the layouts see it."""

    lang: str
    body: str


class TemplateNames(NamedTuple):
    text: str
    html: str


def template_names(outcome: str, lang: str) -> TemplateNames:
    """The loader names of the text and HTML templates for ``outcome`` in ``lang``."""
    _check_outcome(outcome)
    _check_lang(lang)
    base = f"email/{lang}/{outcome}"
    return TemplateNames(text=f"{base}.txt.j2", html=f"{base}.html.j2")


def environment(lang: str, templates_dir: Path | None = None,
                texts_dir: Path | str | None = None) -> Environment:
    """The cached Jinja environment for ``lang`` (filters speak that language), reading a
    library's ``texts_dir`` first when it has one (then sandboxed)."""
    _check_lang(lang)
    return _environment(templates_root(templates_dir), _texts(texts_dir), lang)


class OutsideTexts(TemplateError):
    """A file of a library's texts folder that resolves outside it (a symlink): never
    read, so the folder cannot show or send a file of the server."""

    def __init__(self, path: Path, target: Path) -> None:
        super().__init__(f"{path} points outside the texts folder (to {target}); "
                         "such a file is not read")
        self.path = path
        self.target = target


class TemplateSource(NamedTuple):
    """Where one template of a reply is read from."""

    name: str  # the loader name, e.g. "email/pl/issued.txt.j2"
    path: Path
    own: bool  # from the library's texts folder (else shipped / templates_dir)


def template_sources(outcome: str, languages: Sequence[str] = ("pl", "en"), *,
                     templates_dir: Path | None = None,
                     texts_dir: Path | str | None = None) -> list[TemplateSource]:
    """The files a reply for ``outcome`` is rendered from (each language's text and HTML,
    their macros, the layouts), and which of them the library's folder provides."""
    templates = _templates(outcome, languages, templates_dir, texts_dir)
    names: list[str] = []
    for lang in templates.languages:
        tn = template_names(outcome, lang)
        names += [tn.text, tn.html, f"email/{lang}/_macros.txt.j2",
                  f"email/{lang}/_macros.html.j2"]
    names += [LAYOUT_TEXT, LAYOUT_HTML]
    found = []
    for name in names:
        own = templates.texts is not None and (templates.texts / _own_name(name)).is_file()
        path = templates.texts / _own_name(name) if own and templates.texts else \
            templates.root / name
        if own or path.is_file():
            found.append(TemplateSource(name, path, own))
    return found


def _own_name(name: str) -> str:
    # The texts folder is laid out like templates/email: "email/pl/x.j2" is "pl/x.j2" there.
    return name.removeprefix("email/")


def render_reply(
    outcome: str,
    context: Mapping[str, Any],
    *,
    languages: Sequence[str] = ("pl", "en"),
    templates_dir: Path | None = None,
    texts_dir: Path | str | None = None,
) -> RenderedReply:
    """Render the reply for ``outcome``: one section per language, in the order given;
    ``texts_dir``: the library's own texts, read before the templates directory."""
    templates = _templates(outcome, languages, templates_dir, texts_dir)
    text, html = shapes.render(templates, prepare_context(outcome, context))
    # The soft line breaks of the flowed text part (wrap.py) as RFC 3676 writes them.
    return RenderedReply(text=soft_breaks(text), html=html)


def render_plainly(
    outcome: str,
    context: Mapping[str, Any],
    *,
    languages: Sequence[str] = ("pl", "en"),
    templates_dir: Path | None = None,
    texts_dir: Path | str | None = None,
    fresh: bool = False,
) -> RenderedReply:
    """render_reply without the shape cache: the templates rendered for this reply alone,
    which the cache must match byte for byte (tests/respond/test_render_cache.py).
    ``fresh``: read and compile the files as they are now, in environments of this render
    alone (the dashboard's preview), instead of the process's cached ones."""
    templates = _templates(outcome, languages, templates_dir, texts_dir)._replace(fresh=fresh)
    text, html = templates.render(prepare_context(outcome, context))
    return RenderedReply(text=soft_breaks(text), html=html)


def variables_used(outcome: str, languages: Sequence[str] = ("pl", "en"),
                   templates_dir: Path | None = None,
                   texts_dir: Path | str | None = None) -> frozenset[str]:
    """The context variables the reply's templates and the layouts refer to; every
    variable when one of them includes another template that sees the whole context."""
    return _templates(outcome, languages, templates_dir, texts_dir).variables()


class _Templates(NamedTuple):
    """One reply's templates, rendered by Jinja (shapes.Templates)."""

    root: Path
    outcome: str
    languages: tuple[str, ...]
    texts: Path | None = None  # the library's own texts folder, read first
    fresh: bool = False  # uncached environments (render_plainly(fresh=True))

    def environment(self, lang: str) -> Environment:
        if self.fresh:
            return _make_environment(self.root, self.texts, lang, cached=False)
        return _environment(self.root, self.texts, lang)

    def variables(self) -> frozenset[str]:
        return _referenced(self.root, self.texts, self.outcome, self.languages)

    def render(self, ctx: dict[str, Any]) -> tuple[str, str]:
        texts, htmls = self.sections(ctx)
        text, html = self.layouts(
            ctx, [tidy_text(text, lang) for lang, text in zip(self.languages, texts)], htmls)
        return finish(text, html)

    def sections(self, ctx: dict[str, Any]) -> tuple[list[str], list[str]]:
        texts: list[str] = []
        htmls: list[str] = []
        for lang in self.languages:
            env = self.environment(lang)
            names = template_names(self.outcome, lang)
            texts.append(env.get_template(names.text).render(ctx))
            htmls.append(env.get_template(names.html).render(ctx).strip())
        return texts, htmls

    def layouts(self, ctx: dict[str, Any], texts: list[str],
                htmls: list[str]) -> tuple[str, str]:
        layout_env = self.environment(self.languages[0])
        return (layout_env.get_template(LAYOUT_TEXT).render(
                    ctx, sections=[Section(lang, text)
                                   for lang, text in zip(self.languages, texts)]),
                layout_env.get_template(LAYOUT_HTML).render(
                    # Already escaped by autoescape: marked so the layout does not escape
                    # it again.
                    ctx, sections=[Section(lang, Markup(html))
                                   for lang, html in zip(self.languages, htmls)]))


def _templates(outcome: str, languages: Sequence[str], templates_dir: Path | None,
               texts_dir: Path | str | None = None) -> _Templates:
    _check_outcome(outcome)
    if isinstance(languages, str) or not languages:
        raise ValueError(f"languages must be a non-empty sequence of codes, got {languages!r}")
    for lang in languages:
        _check_lang(lang)
    return _Templates(templates_root(templates_dir), outcome, tuple(languages),
                      _texts(texts_dir))


def templates_root(templates_dir: Path | None = None) -> Path:
    """The templates directory replies are read from: ``templates_dir`` (resolved), else
    the shipped one."""
    return DEFAULT_TEMPLATES_DIR if templates_dir is None else _resolve(Path(templates_dir))


def _texts(texts_dir: Path | str | None) -> Path | None:
    return None if not texts_dir else _resolve(Path(texts_dir))


@lru_cache(maxsize=256)
def _referenced(root: Path, texts: Path | None, outcome: str,
                languages: tuple[str, ...]) -> frozenset[str]:
    names: set[str] = set()
    for lang in languages:
        env = _environment(root, texts, lang)
        tn = template_names(outcome, lang)
        for name in (tn.text, tn.html, LAYOUT_TEXT, LAYOUT_HTML):
            source = env.loader.get_source(env, name)[0]  # type: ignore[union-attr]
            ast = env.parse(source)
            if any(True for _ in meta.find_referenced_templates(ast)) and \
                    re.search(r"{%-?\s*(include|extends)\b|with\s+context", source):
                return _EVERYTHING  # another template sees the whole context
            names |= meta.find_undeclared_variables(ast)
    return frozenset(names)


class _Everything(frozenset[str]):
    def __contains__(self, item: object) -> bool:
        return True


_EVERYTHING = _Everything()


def _check_outcome(outcome: str) -> None:
    if outcome not in REPLY_OUTCOMES and outcome not in NOTICES:
        if outcome in NO_REPLY_OUTCOMES:
            raise ValueError(f"outcome {outcome!r} gets no reply")
        raise ValueError(f"unknown reply outcome {outcome!r}")


def _check_lang(lang: str) -> None:
    if lang not in i18n.LANGUAGES:
        raise ValueError(f"unsupported language {lang!r}; expected one of {i18n.LANGUAGES}")


@lru_cache(maxsize=64)
def _resolve(path: Path) -> Path:
    return path.resolve()


def _autoescape(template_name: str | None) -> bool:
    return template_name is not None and template_name.endswith((".html.j2", ".html"))


def _nl2br(value: Any) -> Markup:
    """Escape, then turn line breaks into ``<br>``: multi-line contact text in HTML."""
    lines = str(value).strip().splitlines()
    return Markup("<br>\n").join(escape(line) for line in lines)


class _TextsLoader(FileSystemLoader):
    """A library's texts folder: a file that resolves outside it (a symlink, ``..``) is
    refused with OutsideTexts, never read, and never falls back silently."""

    def __init__(self, texts: Path) -> None:
        super().__init__(str(texts))
        self.texts = texts  # resolved (_texts)

    def get_source(self, environment: Environment, template: str) -> Any:
        source, filename, uptodate = super().get_source(environment, template)
        target = Path(filename).resolve()
        if not target.is_relative_to(self.texts):
            raise OutsideTexts(Path(filename), target)
        return source, filename, uptodate


def _loader(root: Path, texts: Path | None) -> BaseLoader:
    shipped = FileSystemLoader(str(root))
    if texts is None:
        return shipped
    # "email/pl/issued.txt.j2" is looked up as texts/pl/issued.txt.j2 first; a name the
    # folder does not have (TemplateNotFound) comes from the templates directory.
    return ChoiceLoader([PrefixLoader({"email": _TextsLoader(texts)}), shipped])


@lru_cache(maxsize=None)
def _environment(root: Path, texts: Path | None, lang: str) -> Environment:
    return _make_environment(root, texts, lang)


def _make_environment(root: Path, texts: Path | None, lang: str, *,
                      cached: bool = True) -> Environment:
    # A library's own texts are the library's input: sandboxed. The shipped templates
    # (and a global templates_dir, IT's own) keep the plain, faster environment.
    kind = Environment if texts is None else ImmutableSandboxedEnvironment
    env = kind(
        loader=_loader(root, texts),
        undefined=StrictUndefined,
        autoescape=_autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # Templates are compiled once per process; editing one needs a restart of the
        # daemon (a cached environment); a fresh one (the preview) compiles each time.
        auto_reload=False,
        cache_size=-1 if cached else 0,
    )
    env.filters.update(
        date=partial(i18n.format_date, lang=lang),
        datetime=partial(i18n.format_datetime, lang=lang),
        month=partial(i18n.format_month, lang=lang),
        money=partial(i18n.format_money, lang=lang),
        plural=partial(i18n.plural, lang=lang),
        nl2br=_nl2br,
    )
    env.globals["lang"] = lang
    return env
