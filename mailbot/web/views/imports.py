"""Imports from the dashboard: an uploaded reader table, code pool or activation report,
first previewed (what would be added, what refused and why; nothing written), then
confirmed or cancelled; and the last ten imports.

The upload is kept on the server between the two steps (mailbot.imports.staged), bound to
the user and their session; the confirmation reads and checks the file again in the
transaction that writes (mailbot.imports.load), so what changed meanwhile is refused then.
Problems are worded from the catalogue (``imp_<key>``), naming the form's fields where the
command line names its options.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.responses import Response

from mailbot.clock import parse_month
from mailbot.db.models import AuditLog
from mailbot.errors import BadInput
from mailbot.imports.months import default_import_month
from mailbot.imports.problems import ImportRefused, Problem
from mailbot.imports.staged import Staged, StagedUploads
from mailbot.respond.i18n import format_month
from mailbot.web import actions, i18n
from mailbot.web.context import Ctx, page

KINDS = ("codes", "readers", "activations")
# How many of the codes to be added the preview shows (masked).
SHOWN_CODES = 5
# The command line's options, as the form's fields the dashboard names instead.
_FIELDS = {"--month": "col_month", "--service": "col_service", "--column": "column_optional"}
# Problems whose ``value`` is (or may be) a code: shown masked, like the preview's codes.
_MASKED = frozenset({"code_twice", "not_a_code"})

uploads = StagedUploads()
log = logging.getLogger(__name__)


def mask_code(code: str) -> str:
    """Enough of a code to recognise the file by, not enough to use it: ``LEG…2E``. At
    most the first 3 and last 2 characters, and never more than a quarter at either end
    (a short code keeps at least half hidden); under 4 characters, nothing."""
    keep = min(3, len(code) // 4), min(2, len(code) // 4)
    if not keep[0]:
        return "…"
    return f"{code[:keep[0]]}…{code[len(code) - keep[1]:]}"


def month_name(month: str, lang: str) -> str:
    try:
        return format_month(*parse_month(month), lang)
    except ValueError:
        return month


def _listed(lang: str, name: str, value: Any) -> Any:
    """A list of names (columns, headers) quoted as the language quotes: „a”, „b” in
    Polish, “a”, “b” in English; ``names`` (one of which is needed) joined with "lub"/"or"."""
    if not isinstance(value, list | tuple):
        return value
    opening, closing = ("„", "”") if lang == "pl" else ("“", "”")
    joint = i18n.t(lang, "imp_or") if name == "names" else ", "
    return joint.join(f"{opening}{item}{closing}" for item in value) or "—"


def problem_text(lang: str, problem: Problem, file: str | None = None) -> str:
    """One problem in ``lang``: where (file, row, column or form field), then what."""
    where = [file] if file else []
    if problem.row is not None:
        where.append(i18n.t(lang, "where_row", row=problem.row))
    if problem.column in _FIELDS:
        where.append(i18n.t(lang, "where_field", field=i18n.t(lang, _FIELDS[problem.column])))
    elif problem.column == "code":  # the command line's name for a code column it guessed
        where.append(i18n.t(lang, "where_column", column=i18n.t(lang, "col_code")))
    elif problem.column:
        where.append(i18n.t(lang, "where_column", column=problem.column))
    args = {name: _listed(lang, name, value) for name, value in problem.args.items()}
    if problem.key in _MASKED:  # a code, even one refused, is not shown whole
        args["value"] = mask_code(str(args["value"]))
    if "month" in args:
        args["month"] = month_name(str(args["month"]), lang)
    if problem.key == "in_both":  # written in both languages already: this one's part
        what = str(args.get(lang) or problem.message)
    elif problem.key:
        what = i18n.t(lang, "imp_" + problem.key, **args)
    else:
        what = problem.message
    return f"{', '.join(where)}: {what}" if where else what


def error_lines(lang: str, exc: BadInput) -> list[str]:
    """What the import page says about ``exc``: one line a problem, and how many more."""
    if not isinstance(exc, ImportRefused):
        # Not worded in the catalogue: the English text (it may name a server's path) is
        # for the log; the page says the file could not be imported.
        log.warning("import refused: %s", exc)
        return [i18n.t(lang, "err_import_failed")]
    lines = [problem_text(lang, p, exc.file) for p in exc.problems]
    if exc.count > len(exc.problems):
        lines.append(i18n.tn(lang, "imp_more", exc.count - len(exc.problems)))
    return lines


def _form_values(ctx: Ctx) -> dict[str, str]:
    now = ctx.now()
    month = ctx.field("month")
    if not month and ctx.scope:
        month = default_import_month(now, ctx.settings.library_tz(ctx.scope[0]))
    return {"library": ctx.field("library") or (ctx.scope[0] if ctx.scope else ""),
            "service": ctx.field("service") or ctx.settings.catalogue.ids[0], "month": month,
            "column": ctx.field("column"), "kind": ctx.field("kind")}


def _page(ctx: Ctx, *, values: dict[str, str] | None = None, result: str | None = None,
          error: list[str] | None = None, status: int | None = None,
          error_title: str | None = None) -> Response:
    with ctx.reading() as session:
        recent = list(session.scalars(select(AuditLog).where(
            AuditLog.library_id.in_(ctx.scope), AuditLog.action.like("import_%"))
            .order_by(AuditLog.at.desc(), AuditLog.id.desc()).limit(10)))
    return ctx.render("imports.html.j2", nav="imports", v=values or _form_values(ctx),
                      result=result, error=error, error_title=error_title,
                      services=ctx.settings.catalogue.ids, recent=recent,
                      status=status or (400 if error else 200))


def _csrf(ctx: Ctx) -> str:
    return str(ctx.request.session.get("csrf", ""))


@page(upload=True)
def imports(ctx: Ctx) -> Response:
    """GET: the three forms; POST: an upload kept and previewed, nothing imported."""
    if ctx.request.method != "POST":
        uploads.sweep()  # abandoned previews go when anyone opens the page
        return _page(ctx)
    kind = ctx.field("kind")
    if kind not in KINDS:
        raise HTTPException(400)
    lib = ctx.require_library(ctx.field("library"))
    upload = ctx.form.get("file") if ctx.form else None
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _page(ctx, error=[ctx.t("err_no_file")])
    fields = {"library": lib, "service": ctx.field("service"), "month": ctx.field("month"),
              "column": ctx.field("column"), "remove_missing": ctx.field("remove_missing")}
    user = ctx.user.name if ctx.user else "?"
    try:
        staged = uploads.keep(upload.file, filename=upload.filename,
                              limit=ctx.settings.web.max_upload_bytes, user=user,
                              csrf=_csrf(ctx), kind=kind, fields=fields)
    except BadInput as exc:
        return _page(ctx, error=error_lines(ctx.lang, exc))
    try:
        preview = _preview(ctx, staged)
    except BadInput as exc:
        # Refused at once (no code column, a reader file, a month over…): nothing kept.
        uploads.discard(staged.token)
        return _page(ctx, error=error_lines(ctx.lang, exc))
    except BaseException:
        uploads.discard(staged.token)  # nor after a failure of ours (a 500)
        raise
    return ctx.render("import_preview.html.j2", nav="imports", p=preview,
                      token=staged.token)


def _preview(ctx: Ctx, staged: Staged) -> dict[str, Any]:
    from mailbot.imports.load import (
        import_activations,
        import_readers,
        preview_codes,
        remove_missing_readers,
    )

    f, path, lang, now = staged.fields, str(staged.path), ctx.lang, ctx.now()
    out: dict[str, Any] = {"kind": staged.kind, "file": staged.path.name,
                           "library": f["library"], "can_confirm": True}
    if staged.kind == "codes":
        plan = preview_codes(ctx.sessions, ctx.settings, path=path, library_id=f["library"],
                             service=f["service"], month=f["month"],
                             column=f["column"] or None, now=now)
        out.update(service=i18n.service_label(plan.service, ctx.settings.catalogue),
                   month=month_name(plan.month, lang), added=len(plan.rows),
                   codes=[mask_code(r.code) for r in plan.rows[:SHOWN_CODES]],
                   refused=[problem_text(lang, p) for p in plan.refused],
                   refused_count=plan.refused_count, can_confirm=bool(plan.rows))
        if plan.refused_count > len(plan.refused):
            out["refused"].append(i18n.tn(lang, "imp_more",
                                          plan.refused_count - len(plan.refused)))
    elif staged.kind == "readers":
        r = import_readers(ctx.sessions, ctx.settings, path=path, library_id=f["library"],
                           now=now, dry_run=True)
        out.update(created=r.created, updated=r.updated, unchanged=r.unchanged,
                   removed=remove_missing_readers(
                       ctx.sessions, path=path, library_id=f["library"],
                       limits=ctx.settings.imports, dry_run=True)
                   if f["remove_missing"] else None)
    else:
        r = import_activations(ctx.sessions, ctx.settings, path=path,
                               library_id=f["library"], column=f["column"] or None, now=now,
                               dry_run=True)
        out.update(activated=r.activated, not_activated=r.not_activated, unknown=r.unknown,
                   months=[month_name(m, lang) for m in r.months])
    return out


@page
def import_confirm(ctx: Ctx) -> Response:
    """POST: the previewed upload imported ("confirm") or thrown away ("cancel")."""
    user = ctx.user.name if ctx.user else "?"
    uploads.sweep()
    # Claimed at once: a second click, or another tab, finds it gone, not imported twice.
    staged = uploads.claim(ctx.field("token"), user=user, csrf=_csrf(ctx))
    if staged is None:
        # Not "nothing imported": another click or tab may have imported it just now.
        return _page(ctx, error=[ctx.t("err_preview_gone")], status=400,
                     error_title="preview_gone_title")
    try:
        lib = ctx.require_library(staged.fields["library"])
        values = {**_form_values(ctx), "library": lib, "kind": staged.kind,
                  "service": staged.fields["service"] or ctx.settings.catalogue.ids[0],
                  "month": staged.fields["month"] or _form_values(ctx)["month"],
                  "column": staged.fields["column"]}
        if ctx.field("action") != "confirm":
            return _page(ctx, values=values, result=ctx.t("import_cancelled",
                                                          file=staged.path.name))
        try:
            # The import and its audit entry in one transaction: both or neither.
            with ctx.sessions.begin() as session:
                texts, args = _confirm(ctx, staged, session)
                actions.audit(session, user=user, action=f"import_{staged.kind}",
                              library_id=lib, now=ctx.now(), detail=texts("en"), args=args)
        except BadInput as exc:
            return _page(ctx, values=values, error=error_lines(ctx.lang, exc))
        return _page(ctx, values=values, result=texts(ctx.lang))
    finally:
        uploads.discard(staged.token)


def _confirm(ctx: Ctx, staged: Staged, session: Session) -> tuple[Any, dict[str, Any]]:
    """Does the import in ``session``; the result's text in a language (a function of it:
    the audit log keeps the English line) and the audit entry's values."""
    from mailbot.imports.load import (
        confirm_codes,
        import_activations,
        import_readers,
        remove_missing_readers,
    )

    f, path, now, name = staged.fields, str(staged.path), ctx.now(), staged.path.name
    lib = f["library"]
    if staged.kind == "codes":
        done, plan = confirm_codes(ctx.sessions, ctx.settings, path=path, library_id=lib,
                                   service=f["service"], month=f["month"],
                                   column=f["column"] or None, now=now, session=session)
        # "service" is worded as the service's name, "n" picks the plural form, a
        # "variant" the text that also counts refused rows (mailbot.web.notes).
        args: dict[str, Any] = {"file": name, "n": done.added, "service": plan.service,
                                "month": plan.month, "refused": plan.refused_count,
                                "variant": "refused" if plan.refused_count else ""}

        def codes_text(lang: str) -> str:
            text = i18n.tn(lang, "done_codes", done.added, file=name,
                           service=i18n.service_label(plan.service, ctx.settings.catalogue),
                           month=month_name(plan.month, lang))
            if plan.refused_count:
                text += " " + i18n.tn(lang, "done_codes_refused", plan.refused_count)
            return text

        return codes_text, args
    if staged.kind == "readers":
        r = import_readers(ctx.sessions, ctx.settings, path=path, library_id=lib, now=now,
                           session=session)
        removed = remove_missing_readers(ctx.sessions, path=path, library_id=lib,
                                         limits=ctx.settings.imports, session=session) \
            if f["remove_missing"] else None
        args = {"file": name, "n": r.created, "updated": r.updated,
                "unchanged": r.unchanged, "removed": removed or 0,
                "variant": "removed" if removed is not None else ""}

        def readers_text(lang: str) -> str:
            text = i18n.tn(lang, "done_readers", r.created, file=name, updated=r.updated,
                           unchanged=r.unchanged)
            if removed is not None:
                text += " " + i18n.tn(lang, "done_readers_removed", removed)
            return text

        return readers_text, args
    a = import_activations(ctx.sessions, ctx.settings, path=path, library_id=lib,
                           column=f["column"] or None, now=now, session=session)
    args = {"file": name, "activated": a.activated, "not_activated": a.not_activated,
            "unknown": a.unknown}
    return (lambda lang: i18n.t(lang, "done_activations", **args)), args
