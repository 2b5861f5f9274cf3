"""Render a patron reply (plain text + HTML) from an outcome and its context.

Templates live in ``templates/email/<lang>/<outcome>.{txt,html}.j2``; each renders one
language section, and ``templates/email/layout.{txt,html}.j2`` wraps the sections, Polish
first by default, the next language under a divider. Environments (one per templates
directory and language, so the ``date``/``month``/... filters speak that language) and
compiled templates are cached: only the first reply pays for parsing.

Context variables (the compose code passes these; a *required* one that is missing is a
bug and raises ``jinja2.UndefinedError`` naming it, an *optional* one may be missing or
``None``):

always, required
    ``library_name`` (str), ``service`` ("legimi" | "empik_go"), ``service_name`` (str),
    ``subject`` (the patron's subject, decoded), ``received_at`` (aware datetime, library
    tz), ``month`` (date: first day of the request's month), ``next_window`` (aware
    datetime: when next month's requests open), ``window_opens`` (aware datetime: when
    this month's requests start to count).
always, optional
    ``card_number`` (str), ``patron_name`` (str), ``library_contact`` (str, may span
    lines: phone, e-mail, opening hours).
issued
    ``code``, ``deadline`` (date: last day to activate), ``penalty_months`` (int, 0 = no
    penalty); optional ``activation_url``.
already_received
    ``previous_service_name`` (str), ``previous_issued_at`` (aware datetime), ``deadline``
    (date); optional ``code`` (only when the code may be repeated to this sender),
    ``activation_url``, ``previous_service`` (key; derived from the name when absent).
debt: ``balance_due`` (Decimal). overdue: ``overdue_items`` (int).
inactive_account: optional ``valid_until`` (date). blocked: ``blocked_until`` (date: first
day a code can be asked for again), ``penalty_months`` (int). ambiguous_card:
``candidates`` (list[str]). age_restricted: ``min_age`` (int). data_not_updated,
no_loans_this_year: ``year`` (int); no_loans_this_year also ``since`` (date|None:
the policy's "a loan within N months" variant).

``code`` is removed from the context of every outcome except ``issued`` and
``already_received``, so a refusal can never show one, whatever the caller passes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, NamedTuple

from jinja2 import Environment, FileSystemLoader, StrictUndefined, UndefinedError, meta
from markupsafe import Markup, escape

from mailbot import outcomes
from mailbot.respond import i18n

__all__ = [
    "CODE_OUTCOMES",
    "CONTEXT_VARIABLES",
    "DEFAULT_TEMPLATES_DIR",
    "NO_REPLY_OUTCOMES",
    "REPLY_OUTCOMES",
    "RenderedReply",
    "Section",
    "TemplateNames",
    "environment",
    "render_reply",
    "template_names",
]

DEFAULT_TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"

REPLY_OUTCOMES = outcomes.REPLY_OUTCOMES
NO_REPLY_OUTCOMES = outcomes.NO_REPLY_OUTCOMES
# Mail that is not a reply to a request: the activation reminder (SPEC 2.11).
NOTICES: tuple[str, ...] = tuple(outcomes.Notice)

# The only outcomes whose templates may show a code.
CODE_OUTCOMES: frozenset[str] = outcomes.CODE_OUTCOMES | {outcomes.Notice.REMINDER}


class _Vars(NamedTuple):
    required: frozenset[str]
    optional: frozenset[str]


_COMMON_REQUIRED = frozenset(
    {
        "library_name",
        "service",
        "service_name",
        "subject",
        "received_at",
        "month",
        "next_window",
        "window_opens",
    }
)
_COMMON_OPTIONAL = frozenset({"card_number", "patron_name", "library_contact"})


def _vars(required: Sequence[str] = (), optional: Sequence[str] = ()) -> _Vars:
    return _Vars(_COMMON_REQUIRED | set(required), _COMMON_OPTIONAL | set(optional))


# outcome -> the variables its templates may use (tests hold the templates to this).
CONTEXT_VARIABLES: Mapping[str, _Vars] = {
    "issued": _vars(["code", "deadline", "penalty_months"], ["activation_url"]),
    "already_received": _vars(
        ["previous_service_name", "previous_issued_at", "deadline"],
        ["code", "activation_url", "previous_service"],
    ),
    "too_early": _vars(),
    "no_card": _vars(),
    "ambiguous_card": _vars(["candidates"]),
    "unknown_card": _vars(),
    "name_mismatch": _vars(),
    "sender_mismatch": _vars(),
    "inactive_account": _vars([], ["valid_until"]),
    "debt": _vars(["balance_due"]),
    "overdue": _vars(["overdue_items"]),
    "data_not_updated": _vars(["year"]),
    "no_loans_this_year": _vars(["year"], ["since"]),
    "blocked": _vars(["blocked_until", "penalty_months"]),
    "pool_exhausted": _vars(),
    "age_restricted": _vars(["min_age"]),
    # The verdict of a TEST LEGIMI / TEST EMPIK GO mail: "eligible" or a refusal outcome,
    # with that refusal's own variables when it has them.
    "eligibility_test": _vars(["verdict"], [
        "before_window", "candidates", "valid_until", "min_age", "balance_due",
        "overdue_items", "year", "since", "blocked_until", "penalty_months",
        "previous_service_name", "max_codes"]),
    "reminder": _vars(["code", "deadline", "penalty_months"], ["activation_url"]),
    "address_limit": _vars(["max_codes"]),
}

LAYOUT_TEXT = "email/layout.txt.j2"
LAYOUT_HTML = "email/layout.html.j2"
TEXT_WIDTH = 78


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
    _check_outcome(outcome)
    if isinstance(languages, str) or not languages:
        raise ValueError(f"languages must be a non-empty sequence of codes, got {languages!r}")
    for lang in languages:
        _check_lang(lang)
    root = DEFAULT_TEMPLATES_DIR if templates_dir is None else _resolve(Path(templates_dir))
    ctx = _prepare_context(outcome, context)
    key = _cache_key(root, outcome, tuple(languages), ctx)
    if key is None:
        return _render(root, outcome, languages, ctx)
    marked = _MARKED.get(key)
    if marked is None:
        if len(_MARKED) >= _MARKED_MAX:
            _MARKED.clear()
            _SEEN.clear()
        if key not in _SEEN:  # a shape is built when it comes a second time
            _SEEN.add(key)
            return _render(root, outcome, languages, ctx)
        slow = _render(root, outcome, languages, ctx)
        marked = _render_marked(root, outcome, languages, ctx)
        # The shape must give this very reply exactly, both ways of filling it in, or it
        # is never used.
        if marked is not _UNCACHEABLE and (_fill_marked(marked, ctx) != slow or (
                marked.plan is not None and _fill_planned(marked.plan, ctx) != slow)):
            marked = _UNCACHEABLE
        _MARKED[key] = marked
        return slow
    if marked is _UNCACHEABLE:
        return _render(root, outcome, languages, ctx)
    if marked.plan is not None:
        planned = _fill_planned(marked.plan, ctx)
        if planned is not None:
            return planned
    return _fill_marked(marked, ctx)


def _render(root: Path, outcome: str, languages: Sequence[str],
            ctx: dict[str, Any]) -> RenderedReply:
    texts, htmls = _sections(root, outcome, languages, ctx)
    text, html = _layouts(
        root, languages, ctx,
        [Section(lang, _tidy_text(text, lang)) for lang, text in zip(languages, texts)],
        # Already escaped by autoescape: mark it so the layout does not escape it again.
        [Section(lang, Markup(html)) for lang, html in zip(languages, htmls)])
    return _finished(text, html)


def _sections(root: Path, outcome: str, languages: Sequence[str],
              ctx: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Each language's text (not wrapped yet) and HTML (stripped), in order."""
    texts: list[str] = []
    htmls: list[str] = []
    for lang in languages:
        env = _environment(root, lang)
        names = template_names(outcome, lang)
        texts.append(env.get_template(names.text).render(ctx))
        htmls.append(env.get_template(names.html).render(ctx).strip())
    return texts, htmls


def _layouts(root: Path, languages: Sequence[str], ctx: Mapping[str, Any],
             text_sections: list[Section], html_sections: list[Section]) -> tuple[str, str]:
    layout_env = _environment(root, languages[0])
    return (layout_env.get_template(LAYOUT_TEXT).render(ctx, sections=text_sections),
            layout_env.get_template(LAYOUT_HTML).render(ctx, sections=html_sections))


def _finished(text: str, html: str) -> RenderedReply:
    # Sections are already wrapped; this only tidies the blank lines around dividers.
    return RenderedReply(text=_tidy_text(text), html=html.strip() + "\n")


# -- Rendering once per reply shape ---------------------------------------------------------
#
# In a burst thousands of replies differ only in a few per-patron strings. The templates
# only print these or test them for truth, so each reply shape (outcome, languages, every
# other value, which of these are set) is rendered once with private-use markers in their
# place, and each reply fills the markers in: raw in the text (then wrapped, as always),
# escaped in the HTML. The layouts get marked section bodies the same way. A template that
# does anything else with a value (a filter, a slice) is caught by the checks in
# _render_marked and render_reply; such a shape is never cached and renders the slow way.
# tests/respond/test_render_cache.py compares the two ways for every outcome.
_FILLED = ("code", "patron_name", "patron_first_name", "card_number", "subject")
_VALUE = re.compile("\ue100(\\d)\ue101")
_SECTION = re.compile("\ue102(\\d)\ue103")
_MARKERS = re.compile("[\ue100-\ue103]")
_MARKED_MAX = 512


class _Plan(NamedTuple):
    """A shape's finished text and HTML, cut where the per-patron values go.

    ``text`` alternates finished text and slots: a slot is one marked template line
    (with its section's language), which is filled, then wrapped as _tidy_text would
    (in its section, then in the whole reply). ``html`` alternates escaped HTML and the
    index of a value."""

    text: tuple[str | tuple[str, str], ...]
    html: tuple[str | int, ...]


class _Marked(NamedTuple):
    text_sections: tuple[tuple[str, str], ...]   # (lang, marked text before wrapping)
    html_sections: tuple[str, ...]               # marked, escaped HTML
    text_layout: str                             # marked with section markers
    html_layout: str
    plan: _Plan | None = None


_UNCACHEABLE = _Marked((), (), "", "")
_MARKED: dict[tuple[Any, ...], _Marked] = {}
_SEEN: set[tuple[Any, ...]] = set()


@lru_cache(maxsize=256)
def _referenced(root: Path, outcome: str, languages: tuple[str, ...]) -> frozenset[str]:
    """The context variables the reply's templates (and the layouts) refer to."""
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


def _frozen(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    hash(value)  # TypeError (not cached) for anything else unhashable
    return value


def _cache_key(root: Path, outcome: str, languages: tuple[str, ...],
               ctx: Mapping[str, Any]) -> tuple[Any, ...] | None:
    used = _referenced(root, outcome, languages)
    try:
        others = tuple(sorted((k, type(v).__name__, _frozen(v)) for k, v in ctx.items()
                              if k not in _FILLED and k in used))
    except TypeError:
        return None
    filled = tuple((k, ctx[k] if not ctx[k] else True) for k in _FILLED if k in ctx)
    if any(v is True and not isinstance(ctx[k], str) for k, v in filled):
        return None  # only strings are filled in
    return (root, outcome, languages, others, filled)


def _render_with(root: Path, outcome: str, languages: Sequence[str], ctx: dict[str, Any],
                 mark: Any) -> _Marked:
    marked = dict(ctx)
    for i, k in enumerate(_FILLED):
        if ctx.get(k):
            marked[k] = mark(i)
    texts, htmls = _sections(root, outcome, languages, marked)
    text_layout, html_layout = _layouts(
        root, languages, marked,
        [Section(lang, f"\ue102{i}\ue103") for i, lang in enumerate(languages)],
        [Section(lang, Markup(f"\ue102{i}\ue103")) for i, lang in enumerate(languages)])
    return _Marked(tuple(zip(languages, texts)), tuple(htmls), text_layout, html_layout)


def _render_marked(root: Path, outcome: str, languages: Sequence[str],
                   ctx: dict[str, Any]) -> _Marked:
    """The shape with markers, or _UNCACHEABLE if a template does more than print them.

    Rendered a second time with different, longer markers: if swapping the markers in the
    first rendering does not give the second exactly, some template looked inside a value
    (its length, a slice, its case) and only the slow render is right. The caller also
    checks the shape against the slow render of the reply that created it (which catches
    what treats every marker alike, such as ``|int``)."""
    shape = _render_with(root, outcome, languages, ctx, lambda i: f"\ue100{i}\ue101")
    check = _render_with(root, outcome, languages, ctx, lambda i: f"\ue100{i}aZ ~\ue101")
    parts = [t for _l, t in shape.text_sections] + list(shape.html_sections)
    intact = all(len(_MARKERS.findall(t)) == 2 * len(_VALUE.findall(t)) for t in parts) and \
        all(len(_MARKERS.findall(t)) == 2 * len(_SECTION.findall(t))
            for t in (shape.text_layout, shape.html_layout))
    if not intact or any(_SECTION.search(t) for t in parts) or \
            _VALUE.search(shape.text_layout) or _VALUE.search(shape.html_layout):
        return _UNCACHEABLE
    swap = lambda t: _VALUE.sub(lambda m: f"\ue100{m.group(1)}aZ ~\ue101", t)  # noqa: E731
    swapped = _Marked(tuple((lang, swap(t)) for lang, t in shape.text_sections),
                      tuple(swap(h) for h in shape.html_sections),
                      shape.text_layout, shape.html_layout)
    return shape._replace(plan=_plan(shape)) if swapped == check else _UNCACHEABLE


_SLOT = re.compile("\ue104(\\d+)\ue105")


def _plan(marked: _Marked) -> _Plan | None:
    """Cuts the finished shape where values go (see _Plan); None if the layout does
    anything but put each section on lines of its own.

    Each marked line of a section is stood in for by a short placeholder line while the
    rest is tidied exactly as _render does (wrapped in its section, then in the whole
    text). Tidying is line by line but for collapsing blank lines, and a filled line is
    never blank (_fill_planned checks), so the placeholders end up where the filled lines
    belong."""
    slots: list[tuple[str, str]] = []

    def stand_in(line: str, lang: str) -> str:
        if not _VALUE.search(line):
            return line
        slots.append((line, lang))
        return f"\ue104{len(slots) - 1}\ue105"

    texts = [_tidy_text("\n".join(stand_in(line, lang) for line in text.splitlines()), lang)
             for lang, text in marked.text_sections]
    layout_lines = marked.text_layout.splitlines()
    for i in range(len(texts)):
        marker = f"\ue102{i}\ue103"
        if marked.text_layout.count(marker) != 1 or marker not in layout_lines:
            return None
    if _MARKERS.search(_SECTION.sub("", marked.text_layout)):
        return None
    finished = _tidy_text(_SECTION.sub(lambda m: texts[int(m.group(1))], marked.text_layout))
    if len(_SLOT.findall(finished)) != len(slots):
        return None
    cut = _SLOT.split(finished)
    text: list[str | tuple[str, str]] = [
        part if n % 2 == 0 else slots[int(part)] for n, part in enumerate(cut)]
    html_doc = (_SECTION.sub(lambda m: marked.html_sections[int(m.group(1))].strip(),
                             marked.html_layout).strip() + "\n")
    pieces = _VALUE.split(html_doc)
    html: list[str | int] = [part if n % 2 == 0 else int(part) for n, part in enumerate(pieces)]
    return _Plan(tuple(text), tuple(html))


def _fill_planned(plan: _Plan, ctx: Mapping[str, Any]) -> RenderedReply | None:
    """The reply from its shape's plan, or None when a value could change how the text
    around it is tidied (blank, spaces at its ends, a line break inside): the caller then
    fills the shape the general way."""
    raw = [str(ctx.get(k) or "") for k in _FILLED]
    for value in raw:
        if value and (value != value.strip() or len(value.splitlines()) != 1):
            return None
    out: list[str] = []
    for part in plan.text:
        if isinstance(part, str):
            out.append(part)
            continue
        template, lang = part
        line = _VALUE.sub(lambda m: raw[int(m.group(1))], template).rstrip()
        if not line:
            return None
        wrapped = (line,) if len(line) <= TEXT_WIDTH else _fill.__wrapped__(line, lang)
        finished: list[str] = []
        for piece in wrapped:  # tidied again with the whole text, as _finished does
            piece = piece.rstrip()
            finished.extend((piece,) if len(piece) <= TEXT_WIDTH
                            else _fill.__wrapped__(piece, None))
        out.append("\n".join(finished))
    escaped = [str(escape(v)) for v in raw]
    html = "".join(part if isinstance(part, str) else escaped[part] for part in plan.html)
    return RenderedReply(text="".join(out), html=html)


def _fill_marked(marked: _Marked, ctx: Mapping[str, Any]) -> RenderedReply:
    raw = {str(i): str(ctx.get(k) or "") for i, k in enumerate(_FILLED)}
    escaped = {i: str(escape(v)) for i, v in raw.items()}
    texts = [_tidy_text(_VALUE.sub(lambda m: raw[m.group(1)], t), lang)
             for lang, t in marked.text_sections]
    htmls = [_VALUE.sub(lambda m: escaped[m.group(1)], h).strip() for h in marked.html_sections]
    return _finished(_SECTION.sub(lambda m: texts[int(m.group(1))], marked.text_layout),
                     _SECTION.sub(lambda m: htmls[int(m.group(1))], marked.html_layout))


def _check_outcome(outcome: str) -> None:
    if outcome not in REPLY_OUTCOMES and outcome not in NOTICES:
        if outcome in NO_REPLY_OUTCOMES:
            raise ValueError(f"outcome {outcome!r} gets no reply")
        raise ValueError(f"unknown reply outcome {outcome!r}")


def _check_lang(lang: str) -> None:
    if lang not in i18n.LANGUAGES:
        raise ValueError(f"unsupported language {lang!r}; expected one of {i18n.LANGUAGES}")


def _prepare_context(outcome: str, context: Mapping[str, Any]) -> dict[str, Any]:
    spec = CONTEXT_VARIABLES[outcome]
    missing = sorted(name for name in spec.required if name not in context)
    if missing:
        raise UndefinedError(
            f"render_reply({outcome!r}): missing context variable(s): {', '.join(missing)}"
        )
    ctx = dict(context)
    if outcome not in CODE_OUTCOMES:
        ctx.pop("code", None)
    for name in spec.optional:
        ctx.setdefault(name, None)
    if outcome == "already_received" and not ctx.get("previous_service"):
        ctx["previous_service"] = i18n.service_key(str(ctx["previous_service_name"]))
    return ctx


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


_LIST_MARKER = re.compile(r"^(\s*)((?:\d+[.)]|[-*•–])\s+)?")
_BLANK_RUN = re.compile(r"\n{3,}")
# A private-use character glues words together while wrapping; it never reaches output.
_GLUE = "\ue000"
# Never split a date ("1 grudnia 2026"), "nr 0012345", "godz. 10:00" or "Empik Go".
_KEEP_TOGETHER = r"\b\d{1,2} \w+ \d{4}\b|\b(?:nr|no\.|godz\.) (?=\S)|\bEmpik Go\b"
# Polish typesetting keeps one-letter words (w, z, i, a, o, u) off the end of a line.
_PL_ORPHAN = r"(?<![^\s(„])[aiouwzAIOUWZ] (?=\S)"
_GLUED = {
    "pl": re.compile(f"{_KEEP_TOGETHER}|{_PL_ORPHAN}"),
    None: re.compile(_KEEP_TOGETHER),
}


def _glue(match: re.Match[str]) -> str:
    return match.group(0).replace(" ", _GLUE)


def _tidy_text(text: str, lang: str | None = None) -> str:
    """Strip trailing spaces, collapse blank runs that guards leave, and wrap long lines.

    Text templates write a paragraph or list item as one line; here each line over
    TEXT_WIDTH is filled, with a hanging indent under list items. Words such as URLs and
    codes are never broken.
    """
    out: list[str] = []
    for line in text.splitlines():
        line = line.rstrip()
        if len(line) <= TEXT_WIDTH:
            out.append(line)
        else:
            out.extend(_fill(line, lang))
    return _BLANK_RUN.sub("\n\n", "\n".join(out)).strip("\n") + "\n"


@lru_cache(maxsize=8192)
def _fill(line: str, lang: str | None) -> tuple[str, ...]:
    """Greedy fill of one long line (textwrap is several times slower here).

    Cached: most long lines of a reply are the same for every patron, and a burst wraps
    them thousands of times."""
    marker = _LIST_MARKER.match(line)
    prefix = marker.group(0) if marker else ""  # indent and list marker, if any
    hang = " " * len(prefix)
    # No line should start with a dash: keep it with the word before.
    glued = line[len(prefix) :].replace(" – ", _GLUE + "– ").replace(" - ", _GLUE + "- ")
    glued = _GLUED.get(lang, _GLUED[None]).sub(_glue, glued)
    words = glued.split()
    lines: list[str] = []
    current = prefix + words[0]
    for word in words[1:]:
        if len(current) + 1 + len(word) <= TEXT_WIDTH:
            current += " " + word
        else:
            lines.append(current)
            current = hang + word
    lines.append(current)
    return tuple(part.replace(_GLUE, " ") for part in lines)
