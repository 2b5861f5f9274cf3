"""The check of a library's own reply texts (``texts_dir``): every file there parses, has
the name of a shipped template, stays inside the folder (no symlink out of it), uses no
attribute the sandbox refuses and only the variables its reply is given, and every
reply of the library renders with it (a sample patron, the library's settings).

A broken text is the library's input, not a server that is down: ``mailbot check`` ends
with exit code 2 when one fails (run.py).
"""

from __future__ import annotations

from pathlib import Path

from mailbot.check.items import Failed
from mailbot.clock import utcnow
from mailbot.config import LibrarySettings, Settings
from mailbot.respond.render import NOTICES, REPLY_OUTCOMES, render_plainly, template_sources
from mailbot.respond.samples import sample_context
from mailbot.respond.texts_check import texts_problems

ITEM = "library {id} reply texts {dir}"


def check_texts(settings: Settings, lib: LibrarySettings) -> str:
    assert lib.texts_dir
    templates_dir = Path(settings.templates_dir) if settings.templates_dir else None
    problems = texts_problems(lib.texts_dir, templates_dir)
    if problems:
        raise Failed("; ".join(str(p) for p in problems))  # the CLI's English
    tz = settings.library_tz(lib.id)
    own = 0
    for outcome in (*REPLY_OUTCOMES, *NOTICES):
        sources = template_sources(outcome, lib.languages, templates_dir=templates_dir,
                                   texts_dir=lib.texts_dir)
        mine = [s for s in sources if s.own]
        if not mine:
            continue
        own += 1
        try:
            render_plainly(outcome, sample_context(lib, tz, outcome, now=utcnow(),
                                                   settings=settings),
                           languages=lib.languages, templates_dir=templates_dir,
                           texts_dir=lib.texts_dir)
        except Exception as exc:  # any template error, named with the files it came from
            files = ", ".join(str(s.path) for s in mine)
            raise Failed(f"the {outcome} reply does not render ({files}): "
                         f"{type(exc).__name__}: {exc}") from None
    return f"{own} repl{'y' if own == 1 else 'ies'} use the library's own texts"
