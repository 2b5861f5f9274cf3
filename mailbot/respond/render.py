"""Render a patron reply (plain text + HTML) from an outcome and its context.

Templates live in ``templates/email/<lang>/<outcome>.{txt,html}.j2``; each renders one
language section, and ``templates/email/layout.{txt,html}.j2`` wraps the sections, Polish
first by default, the next language under a divider. Environments (one per templates
directory and language, so the ``date``/``month``/... filters speak that language) and
compiled templates are cached: only the first reply pays for parsing.

What each outcome's templates may use, and the check of a context against it:
variables.py. The text sections are wrapped by wrap.py. In a burst most replies come from
the shape cache (shapes.py), which renders these templates once per reply shape and is
held to give exactly what rendering them for the one reply gives (``render_plainly``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, NamedTuple

from jinja2 import Environment, FileSystemLoader, StrictUndefined, meta
from markupsafe import Markup, escape

from mailbot import outcomes
from mailbot.resources import TEMPLATES
from mailbot.respond import i18n, shapes
from mailbot.respond.variables import prepare_context
from mailbot.respond.wrap import finish, tidy_text

__all__ = [
    "DEFAULT_TEMPLATES_DIR",
    "NOTICES",
    "NO_REPLY_OUTCOMES",
    "REPLY_OUTCOMES",
    "RenderedReply",
    "Section",
    "TemplateNames",
    "environment",
    "render_plainly",
    "render_reply",
    "template_names",
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


def environment(lang: str, templates_dir: Path | None = None) -> Environment:
    """The cached Jinja environment for ``lang`` (filters speak that language)."""
    _check_lang(lang)
    root = DEFAULT_TEMPLATES_DIR if templates_dir is None else _resolve(Path(templates_dir))
    return _environment(root, lang)


def render_reply(
    outcome: str,
    context: Mapping[str, Any],
    *,
    languages: Sequence[str] = ("pl", "en"),
    templates_dir: Path | None = None,
) -> RenderedReply:
    """Render the reply for ``outcome``: one section per language, in the order given."""
    templates = _templates(outcome, languages, templates_dir)
    text, html = shapes.render(templates, prepare_context(outcome, context))
    return RenderedReply(text=text, html=html)


def render_plainly(
    outcome: str,
    context: Mapping[str, Any],
    *,
    languages: Sequence[str] = ("pl", "en"),
    templates_dir: Path | None = None,
) -> RenderedReply:
    """render_reply without the shape cache: the templates rendered for this reply alone,
    which the cache must match byte for byte (tests/respond/test_render_cache.py)."""
    templates = _templates(outcome, languages, templates_dir)
    text, html = templates.render(prepare_context(outcome, context))
    return RenderedReply(text=text, html=html)


def variables_used(outcome: str, languages: Sequence[str] = ("pl", "en"),
                   templates_dir: Path | None = None) -> frozenset[str]:
    """The context variables the reply's templates and the layouts refer to; every
    variable when one of them includes another template that sees the whole context."""
    return _templates(outcome, languages, templates_dir).variables()


class _Templates(NamedTuple):
    """One reply's templates, rendered by Jinja (shapes.Templates)."""

    root: Path
    outcome: str
    languages: tuple[str, ...]

    def variables(self) -> frozenset[str]:
        return _referenced(self.root, self.outcome, self.languages)

    def render(self, ctx: dict[str, Any]) -> tuple[str, str]:
        texts, htmls = self.sections(ctx)
        text, html = self.layouts(
            ctx, [tidy_text(text, lang) for lang, text in zip(self.languages, texts)], htmls)
        return finish(text, html)

    def sections(self, ctx: dict[str, Any]) -> tuple[list[str], list[str]]:
        texts: list[str] = []
        htmls: list[str] = []
        for lang in self.languages:
            env = _environment(self.root, lang)
            names = template_names(self.outcome, lang)
            texts.append(env.get_template(names.text).render(ctx))
            htmls.append(env.get_template(names.html).render(ctx).strip())
        return texts, htmls

    def layouts(self, ctx: dict[str, Any], texts: list[str],
                htmls: list[str]) -> tuple[str, str]:
        layout_env = _environment(self.root, self.languages[0])
        return (layout_env.get_template(LAYOUT_TEXT).render(
                    ctx, sections=[Section(lang, text)
                                   for lang, text in zip(self.languages, texts)]),
                layout_env.get_template(LAYOUT_HTML).render(
                    # Already escaped by autoescape: marked so the layout does not escape
                    # it again.
                    ctx, sections=[Section(lang, Markup(html))
                                   for lang, html in zip(self.languages, htmls)]))


def _templates(outcome: str, languages: Sequence[str],
               templates_dir: Path | None) -> _Templates:
    _check_outcome(outcome)
    if isinstance(languages, str) or not languages:
        raise ValueError(f"languages must be a non-empty sequence of codes, got {languages!r}")
    for lang in languages:
        _check_lang(lang)
    root = DEFAULT_TEMPLATES_DIR if templates_dir is None else _resolve(Path(templates_dir))
    return _Templates(root, outcome, tuple(languages))


@lru_cache(maxsize=256)
def _referenced(root: Path, outcome: str, languages: tuple[str, ...]) -> frozenset[str]:
    names: set[str] = set()
    for lang in languages:
        env = _environment(root, lang)
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


@lru_cache(maxsize=None)
def _environment(root: Path, lang: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(root)),
        undefined=StrictUndefined,
        autoescape=_autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # Templates are compiled once per process; editing one needs a restart.
        auto_reload=False,
        cache_size=-1,
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
