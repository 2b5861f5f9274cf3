"""The shape cache: a reply's templates rendered once per *shape*, then filled in per patron.

In a burst thousands of replies differ only in a few per-patron strings (FILLED). The
templates only print these or test them for truth, so each reply shape (outcome,
languages, every other value the templates read, which of these strings are set) is
rendered once with private-use markers in their place, and each reply fills the markers
in: raw in the text (then wrapped, as always), escaped in the HTML. The layouts get marked
section bodies the same way. A template that does anything else with a value (a filter, a
slice) is caught by the checks in _build and render; such a shape is never used and every
reply of it is rendered by the templates. A shape is built when its key comes a second
time, and only used if it gives that very reply exactly, both ways of filling it in.
tests/respond/test_render_cache.py compares the cached and the plain render for every
outcome, language set and kind of value.

The interface is ``render(templates, ctx)``: render.py hands over the reply's templates
(anything with the ``Templates`` methods) and gets the text and HTML; ``clear`` and
``cached`` are for tests.

Two ways of filling a shape in, because neither can do the other's work at its speed:

planned (``_fill_planned``)
    the shape's finished text cut where the values go: only the lines holding a value are
    filled and wrapped. It cannot take a value that changes how the text around it is
    tidied (blank, spaces at its ends, a line break inside), nor a layout that does more
    than put each section on lines of its own (a library's own templates may).
general (``_fill_marked``)
    the markers filled in and the whole text tidied again, as the templates' own output
    would be: right for any value and any layout.

Measured (issue 16; ``issued``, 10,000 replies with a different name, card, code and
subject each, timeit best of 3, process time): planned 51 µs a reply, general 145 µs
(the same replies with a trailing space on each name), the templates rendered each time
285 µs. Dropping the planned fill would make a burst's rendering nearly three times
slower; dropping the general one would send every odd value and every library's own
layout to the templates, twice as slow. (Both paths are as fast as before this module was
split out of render.py: 50.5 → 51.8 and 144.0 → 145.3 µs in one run, within the noise;
valgrind counts +1.6 % instructions on the planned path, the interface's few calls.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from markupsafe import escape

from mailbot.respond.wrap import TEXT_WIDTH, fill_once, finish, tidy_text

__all__ = ["FILLED", "Fill", "Templates", "cached", "clear", "render"]

# The per-patron strings a shape leaves open.
FILLED = ("code", "patron_name", "patron_first_name", "card_number", "subject")
_VALUE = re.compile("\ue100(\\d)\ue101")
_SECTION = re.compile("\ue102(\\d)\ue103")
_MARKERS = re.compile("[\ue100-\ue103]")
_SLOT = re.compile("\ue104(\\d+)\ue105")
MAX_SHAPES = 512


class Templates(Protocol):
    """One reply's templates (outcome, languages, templates directory), as render.py
    gives them. Hashable: they are part of the cache key."""

    @property
    def languages(self) -> tuple[str, ...]: ...

    def variables(self) -> frozenset[str]:
        """The context variables the templates (and the layouts) refer to."""
        ...

    def render(self, ctx: dict[str, Any]) -> tuple[str, str]:
        """The finished text and HTML, by the templates alone."""
        ...

    def sections(self, ctx: dict[str, Any]) -> tuple[list[str], list[str]]:
        """Each language's text (not wrapped yet) and HTML (stripped), in order."""
        ...

    def layouts(self, ctx: dict[str, Any], texts: list[str],
                htmls: list[str]) -> tuple[str, str]:
        """The layouts around these section bodies (text tidied, HTML escaped)."""
        ...


class Fill(StrEnum):
    """How the replies of one cached shape are made."""

    PLANNED = "planned"  # only the lines holding a value are filled and wrapped
    GENERAL = "general"  # the markers filled in, the whole text tidied again
    NONE = "none"        # a template looks into a value: rendered by the templates


class _Plan(NamedTuple):
    """A shape's finished text and HTML, cut where the per-patron values go.

    ``text`` alternates finished text and slots: a slot is one marked template line
    (with its section's language), which is filled, then wrapped as tidy_text would
    (in its section, then in the whole reply). ``html`` alternates escaped HTML and the
    index of a value."""

    text: tuple[str | tuple[str, str], ...]
    html: tuple[str | int, ...]


class _Shape(NamedTuple):
    text_sections: tuple[tuple[str, str], ...]   # (lang, marked text before wrapping)
    html_sections: tuple[str, ...]               # marked, escaped HTML
    text_layout: str                             # marked with section markers
    html_layout: str
    plan: _Plan | None = None


_UNUSABLE = _Shape((), (), "", "")
_SHAPES: dict[tuple[Any, ...], _Shape] = {}
_SEEN: set[tuple[Any, ...]] = set()


def render(templates: Templates, ctx: dict[str, Any]) -> tuple[str, str]:
    """The reply's text and HTML: from its shape when there is one, else (and the first
    times a shape comes) by the templates."""
    key = _cache_key(templates, ctx)
    if key is None:
        return templates.render(ctx)
    shape = _SHAPES.get(key)
    if shape is None:
        if len(_SHAPES) >= MAX_SHAPES:
            clear()
        if key not in _SEEN:  # a shape is built when it comes a second time
            _SEEN.add(key)
            return templates.render(ctx)
        slow = templates.render(ctx)
        shape = _build(templates, ctx)
        # The shape must give this very reply exactly, both ways of filling it in, or it
        # is never used.
        if shape is not _UNUSABLE and (_fill_marked(shape, ctx) != slow or (
                shape.plan is not None and _fill_planned(shape.plan, ctx) != slow)):
            shape = _UNUSABLE
        _SHAPES[key] = shape
        return slow
    if shape is _UNUSABLE:
        return templates.render(ctx)
    if shape.plan is not None:
        planned = _fill_planned(shape.plan, ctx)
        if planned is not None:
            return planned
    return _fill_marked(shape, ctx)


def clear() -> None:
    """Forgets every shape (and which keys came once)."""
    _SHAPES.clear()
    _SEEN.clear()


def cached() -> list[Fill]:
    """How each cached shape's replies are made, in the order the shapes were built."""
    return [Fill.NONE if shape is _UNUSABLE else
            Fill.PLANNED if shape.plan is not None else Fill.GENERAL
            for shape in _SHAPES.values()]


def _frozen(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    hash(value)  # TypeError (not cached) for anything else unhashable
    return value


def _cache_key(templates: Templates, ctx: Mapping[str, Any]) -> tuple[Any, ...] | None:
    used = templates.variables()
    try:
        others = tuple(sorted((k, type(v).__name__, _frozen(v)) for k, v in ctx.items()
                              if k not in FILLED and k in used))
    except TypeError:
        return None
    filled = tuple((k, ctx[k] if not ctx[k] else True) for k in FILLED if k in ctx)
    if any(v is True and not isinstance(ctx[k], str) for k, v in filled):
        return None  # only strings are filled in
    return (templates, others, filled)


def _marked(templates: Templates, ctx: dict[str, Any], mark: Any) -> _Shape:
    marked = dict(ctx)
    for i, k in enumerate(FILLED):
        if ctx.get(k):
            marked[k] = mark(i)
    texts, htmls = templates.sections(marked)
    sections = [f"\ue102{i}\ue103" for i in range(len(templates.languages))]
    text_layout, html_layout = templates.layouts(marked, sections, sections)
    return _Shape(tuple(zip(templates.languages, texts)), tuple(htmls), text_layout,
                  html_layout)


def _build(templates: Templates, ctx: dict[str, Any]) -> _Shape:
    """The shape with markers, or _UNUSABLE if a template does more than print them.

    Rendered a second time with different, longer markers: if swapping the markers in the
    first rendering does not give the second exactly, some template looked inside a value
    (its length, a slice, its case) and only the templates' own render is right. render
    also checks the shape against the plain render of the reply that created it (which
    catches what treats every marker alike, such as ``|int``)."""
    shape = _marked(templates, ctx, lambda i: f"\ue100{i}\ue101")
    check = _marked(templates, ctx, lambda i: f"\ue100{i}aZ ~\ue101")
    parts = [t for _l, t in shape.text_sections] + list(shape.html_sections)
    intact = all(len(_MARKERS.findall(t)) == 2 * len(_VALUE.findall(t)) for t in parts) and \
        all(len(_MARKERS.findall(t)) == 2 * len(_SECTION.findall(t))
            for t in (shape.text_layout, shape.html_layout))
    if not intact or any(_SECTION.search(t) for t in parts) or \
            _VALUE.search(shape.text_layout) or _VALUE.search(shape.html_layout):
        return _UNUSABLE
    swap = lambda t: _VALUE.sub(lambda m: f"\ue100{m.group(1)}aZ ~\ue101", t)  # noqa: E731
    swapped = _Shape(tuple((lang, swap(t)) for lang, t in shape.text_sections),
                     tuple(swap(h) for h in shape.html_sections),
                     shape.text_layout, shape.html_layout)
    return shape._replace(plan=_plan(shape)) if swapped == check else _UNUSABLE


def _plan(shape: _Shape) -> _Plan | None:
    """Cuts the finished shape where values go (see _Plan); None if the layout does
    anything but put each section on lines of its own.

    Each marked line of a section is stood in for by a short placeholder line while the
    rest is tidied exactly as the templates' render does (wrapped in its section, then in
    the whole text). Tidying is line by line but for collapsing blank lines, and a filled
    line is never blank (_fill_planned checks), so the placeholders end up where the
    filled lines belong."""
    slots: list[tuple[str, str]] = []

    def stand_in(line: str, lang: str) -> str:
        if not _VALUE.search(line):
            return line
        slots.append((line, lang))
        return f"\ue104{len(slots) - 1}\ue105"

    texts = [tidy_text("\n".join(stand_in(line, lang) for line in text.splitlines()), lang)
             for lang, text in shape.text_sections]
    layout_lines = shape.text_layout.splitlines()
    for i in range(len(texts)):
        marker = f"\ue102{i}\ue103"
        if shape.text_layout.count(marker) != 1 or marker not in layout_lines:
            return None
    if _MARKERS.search(_SECTION.sub("", shape.text_layout)):
        return None
    finished = tidy_text(_SECTION.sub(lambda m: texts[int(m.group(1))], shape.text_layout))
    if len(_SLOT.findall(finished)) != len(slots):
        return None
    cut = _SLOT.split(finished)
    text: list[str | tuple[str, str]] = [
        part if n % 2 == 0 else slots[int(part)] for n, part in enumerate(cut)]
    html_doc = (_SECTION.sub(lambda m: shape.html_sections[int(m.group(1))].strip(),
                             shape.html_layout).strip() + "\n")
    pieces = _VALUE.split(html_doc)
    html: list[str | int] = [part if n % 2 == 0 else int(part) for n, part in enumerate(pieces)]
    return _Plan(tuple(text), tuple(html))


def _fill_planned(plan: _Plan, ctx: Mapping[str, Any]) -> tuple[str, str] | None:
    """The reply from its shape's plan, or None when a value could change how the text
    around it is tidied (blank, spaces at its ends, a line break inside): render then
    fills the shape the general way."""
    raw = [str(ctx.get(k) or "") for k in FILLED]
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
        # Not the cached wrap: a line holding a patron's value only comes once.
        wrapped = (line,) if len(line) <= TEXT_WIDTH else fill_once(line, lang)
        finished: list[str] = []
        for piece in wrapped:  # tidied again with the whole text, as the templates' is
            piece = piece.rstrip()
            finished.extend((piece,) if len(piece) <= TEXT_WIDTH else fill_once(piece, None))
        out.append("\n".join(finished))
    escaped = [str(escape(v)) for v in raw]
    html = "".join(part if isinstance(part, str) else escaped[part] for part in plan.html)
    return "".join(out), html


def _fill_marked(shape: _Shape, ctx: Mapping[str, Any]) -> tuple[str, str]:
    raw = {str(i): str(ctx.get(k) or "") for i, k in enumerate(FILLED)}
    escaped = {i: str(escape(v)) for i, v in raw.items()}
    texts = [tidy_text(_VALUE.sub(lambda m: raw[m.group(1)], t), lang)
             for lang, t in shape.text_sections]
    htmls = [_VALUE.sub(lambda m: escaped[m.group(1)], h).strip() for h in shape.html_sections]
    text = _SECTION.sub(lambda m: texts[int(m.group(1))], shape.text_layout)
    html = _SECTION.sub(lambda m: htmls[int(m.group(1))], shape.html_layout)
    return finish(text, html)
