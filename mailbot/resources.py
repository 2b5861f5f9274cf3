"""Where mailbot's own files are: the reply and dashboard templates, the staff guide the
dashboard serves, and the documented example config and systemd unit an installation
starts from.

The source keeps them at the top level (``templates/``, beside ``mailbot/``); a built wheel
carries the same folder inside the package (``mailbot/templates/``, pyproject.toml's
force-include). An installed mailbot finds them in the package, a checkout (or an editable
install, which runs the checkout) beside it. (An editable install also gets a copy in
site-packages, as hatchling force-includes into editable wheels too; that copy is never
read: the checkout's package, which is what is imported, has no ``templates/`` of its own.)
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def templates_root() -> Path:
    """The folder holding ``email/`` and ``web/``."""
    inside = _PACKAGE / "templates"
    if inside.is_dir():
        return inside
    return _PACKAGE.parent / "templates"


TEMPLATES = templates_root()


def docs_root() -> Path:
    """The folder holding the staff guide (``pl/``) and its ``screenshots/``: found like
    ``templates/`` (a wheel carries ``docs/pl`` and ``docs/screenshots`` as
    ``mailbot/docs/``, a checkout has them at the top level)."""
    inside = _PACKAGE / "docs"
    if inside.is_dir():
        return inside
    return _PACKAGE.parent / "docs"


# In a wheel under mailbot/share/; in a checkout at these places beside the package.
_SHARED = {"config.example.toml": "config.example.toml",
           "mailbot.service": "deploy/mailbot.service"}


def shared_file(name: str) -> Path:
    """``config.example.toml`` or ``mailbot.service``, wherever this mailbot has it."""
    inside = _PACKAGE / "share" / name
    if inside.is_file():
        return inside
    return _PACKAGE.parent / _SHARED[name]
