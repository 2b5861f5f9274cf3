"""The check of a library's own texts folder (``texts_dir``), before any reply needs it:
each file named as a shipped template, inside the folder, UTF-8, valid Jinja, using no
attribute the sandbox refuses and only the variables its reply is given. ``mailbot check``
prints the problems (check/texts.py), the dashboard's texts page words them in the staff's
language (``TextProblem.key``).

Each file is compiled in the environment render.py would render it in (``environment``:
sandboxed, the library's folder read first), so the check and the replies agree on what
compiles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import TemplateSyntaxError, meta, nodes

from mailbot.respond import i18n
from mailbot.respond.render import environment, templates_root
from mailbot.respond.variables import CONTEXT_VARIABLES

__all__ = ["TextProblem", "texts_problems"]


@dataclass(frozen=True)
class TextProblem:
    """One finding about a library's texts folder. ``key`` words it in the dashboard's
    catalogue (``texts_problem_<key>``, with ``file``, ``line`` and ``args``); ``detail``
    is Jinja's own message, if any (English); ``str()`` is the English sentence the CLI
    (``mailbot check``) prints. ``blocks``: replies needing the file cannot be put
    together (a misnamed file is only never read)."""

    key: str
    file: str
    line: int | None = None
    args: Mapping[str, str] = field(default_factory=dict)
    detail: str = ""
    blocks: bool = True

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}, line {self.line}"
        return f"{where}: {_PROBLEM_TEXT[self.key].format(**self.args, detail=self.detail)}"


_PROBLEM_TEXT = {
    "no_folder": "no such folder",
    "misnamed": "no shipped template is called {name} (it would never be used; see "
                "templates/email for the names)",
    "outside": "points outside the texts folder (to {target}); it is not read",
    "not_utf8": "not UTF-8 text",
    "syntax": "{detail}",
    "unsafe": "uses {attribute}, which reply texts may not (sandbox: SecurityError)",
    "unknown_variable": "unknown variable(s) {names} (this reply is given: {allowed})",
}


def texts_problems(texts_dir: Path | str,
                   templates_dir: Path | None = None) -> list[TextProblem]:
    """What is wrong with a library's texts folder, each problem naming its file: a file
    no shipped template has the name of (it would never be read), one that resolves
    outside the folder, a syntax error or an unknown filter (with its line), an attribute
    the sandbox refuses (``__globals__``, ``_x``), a variable the outcome's replies are
    never given."""
    texts, root = Path(texts_dir), templates_root(templates_dir)
    if not texts.is_dir():
        return [TextProblem("no_folder", str(texts))]
    real = texts.resolve()
    problems: list[TextProblem] = []
    for path in sorted(p for p in texts.rglob("*") if p.is_file()):
        rel = path.relative_to(texts).as_posix()
        name = f"email/{rel}"
        target = path.resolve()
        if not target.is_relative_to(real):
            problems.append(TextProblem("outside", str(path), args={"target": str(target)}))
            continue
        if not (root / name).is_file():
            problems.append(TextProblem("misnamed", str(path), args={"name": rel},
                                        blocks=False))
            continue
        lang, _, base = rel.rpartition("/")
        env = environment(lang if lang in i18n.LANGUAGES else "pl", templates_dir, texts)
        try:
            source = path.read_text(encoding="utf-8")
            # Compiling also finds an unknown filter or test, which parsing alone does not.
            env.compile(source, name, str(path))
            ast = env.parse(source)
        except UnicodeDecodeError:
            problems.append(TextProblem("not_utf8", str(path)))
            continue
        except TemplateSyntaxError as exc:
            problems.append(TextProblem("syntax", str(path), exc.lineno, detail=exc.message or ""))
            continue
        unsafe = _unsafe_attribute(ast)
        if unsafe is not None:
            problems.append(TextProblem("unsafe", str(path), unsafe[1],
                                        args={"attribute": unsafe[0]}))
            continue
        outcome = base.split(".", 1)[0]
        if base.startswith("_"):
            continue  # macros: imported without the context, their names are their own
        if lang:
            spec = CONTEXT_VARIABLES.get(outcome)
            allowed = (spec.required | spec.optional) if spec else None
        else:  # a layout gets the sections and what every reply has
            allowed = frozenset.intersection(
                *(v.required | v.optional for v in CONTEXT_VARIABLES.values())) | {"sections"}
        if allowed is None:
            continue
        unknown = sorted(meta.find_undeclared_variables(ast) - allowed - {"lang"})
        if unknown:
            problems.append(TextProblem("unknown_variable", str(path), args={
                "names": ", ".join(unknown), "allowed": ", ".join(sorted(allowed))}))
    return problems


def _unsafe_attribute(ast: nodes.Template) -> tuple[str, int] | None:
    """The first attribute the sandbox would refuse at rendering (``x.__class__``,
    ``x["__init__"]``, ``x|attr("_y")``, a function's ``__globals__`` …), with its line:
    found here by reading, so the check names it before any reply is rendered."""
    from jinja2.sandbox import (UNSAFE_FUNCTION_ATTRIBUTES, UNSAFE_GENERATOR_ATTRIBUTES,
                                UNSAFE_METHOD_ATTRIBUTES)

    internal = UNSAFE_FUNCTION_ATTRIBUTES | UNSAFE_METHOD_ATTRIBUTES | \
        UNSAFE_GENERATOR_ATTRIBUTES | {"mro", "f_globals", "f_locals", "gi_frame", "cr_frame"}

    def bad(attr: object) -> bool:
        return isinstance(attr, str) and (attr.startswith("_") or attr in internal)

    for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        if isinstance(node, nodes.Getattr):
            attr: object = node.attr
        elif isinstance(node, nodes.Getitem):
            attr = node.arg.value if isinstance(node.arg, nodes.Const) else None
        else:
            attr = node.args[0].value if node.name == "attr" and node.args and \
                isinstance(node.args[0], nodes.Const) else None
        if bad(attr):
            return str(attr), node.lineno
    return None
