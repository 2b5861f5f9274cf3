"""A decided reply kept as what it is made from, and composed when it is sent (issue 21).

The outbox row of a decided request's reply holds no message: it holds its *recipe*, the
compose job (outcome, context, languages, addresses, the request's subject and
Message-IDs, the decision's time, which is the reply's Date), and the digest of the reply
texts it was decided with (text_sets.py). A few hundred bytes instead of a ~9 KB
bilingual multipart message written into the database and read back by the sender.

Composing is deterministic: the same row always gives the same bytes (the Message-ID
comes from the request, the Date from the decision, the texts from the set the row names),
so a resend, a restart, or another process sending the row sends the same message; what
the relay took is kept as ``outbox.sent_digest``. A template changed after the decision
does not change it: the row's texts are the set it was decided with (text_sets.py).

A reply that could not be composed must not issue a code: ``check`` renders it at the
decision (its request is then set aside, as before), unless a reply of the same shape was
already rendered, whose filling in cannot fail (respond/shapes.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from mailbot.respond import context_codec, text_sets
from mailbot.respond.compose import compose_reply
from mailbot.respond.render import check_reply
from mailbot.respond.text_sets import TextSet

__all__ = ["check", "compose", "compose_from", "message_of", "recipe"]


def recipe(*, outcome: str, context: Mapping[str, Any], languages: tuple[str, ...],
           library_name: str, mailbox_address: str, to: str, original_subject: str,
           original_message_id: str | None, original_references: tuple[str, ...],
           request_key: str, now: datetime) -> str:
    """The compose job of one reply (compose_reply's arguments but the texts), as the
    outbox keeps it."""
    return context_codec.encode({
        "outcome": outcome, "context": dict(context), "languages": tuple(languages),
        "library_name": library_name, "mailbox_address": mailbox_address, "to": to,
        "original_subject": original_subject, "original_message_id": original_message_id,
        "original_references": tuple(original_references), "request_key": request_key,
        "now": now,
    })


def check(text_set: TextSet, *, outcome: str, context: Mapping[str, Any],
          languages: tuple[str, ...]) -> None:
    """Raises what composing this reply from ``text_set`` would raise (a template error, a
    missing variable)."""
    check_reply(outcome, context, languages=languages, templates_dir=text_set.root,
                texts_dir=text_set.texts)


def compose(db: Session | Connection, recipe_text: str, texts: str) -> bytes:
    """The message of an outbox row kept as ``recipe_text`` with the texts ``texts``."""
    return compose_from(recipe_text, text_sets.load(db, texts))


def compose_from(recipe_text: str, text_set: TextSet) -> bytes:
    """The message of a recipe with its text set (already written out: a worker process
    composes with this, and needs no database)."""
    job = context_codec.decode(recipe_text)
    return compose_reply(**job, templates_dir=text_set.root,
                         texts_dir=text_set.texts).message


def message_of(db: Session | Connection, row: Any) -> bytes | None:
    """An outbox row's message as it is (or was) sent: its bytes, or composed from its
    recipe; None once purged."""
    if row.message is None and row.recipe and row.texts:
        return compose(db, row.recipe, row.texts)
    return row.message or None
