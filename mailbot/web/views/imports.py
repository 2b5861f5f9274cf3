"""Imports from the dashboard: an uploaded reader table, code pool or activation report,
loaded as the command line would (mailbot.imports.load), and the last ten imports."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from sqlalchemy import select
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.responses import Response

from mailbot.config import SERVICES
from mailbot.db.models import AuditLog
from mailbot.errors import BadInput
from mailbot.imports.months import default_import_month
from mailbot.web import actions
from mailbot.web.context import Ctx, page


def _save_upload(upload: UploadFile, folder: Path, limit: int) -> Path:
    name = Path(upload.filename or "upload").name
    name = re.sub(r"[^\w.\- ]", "_", name)[:120]
    if not name.strip(". "):  # "", "." or "..": the folder itself or its parent
        name = "upload"
    target = folder / name
    size = 0
    with target.open("wb") as out:
        while chunk := upload.file.read(1024 * 1024):
            size += len(chunk)
            if size > limit:
                raise BadInput(f"the file is larger than {limit / (1024 * 1024):.3g} MB",
                               file=name)
            out.write(chunk)
    return target


@page(upload=True)
def imports(ctx: Ctx) -> Response:
    from mailbot.imports.load import (
        import_activations,
        import_codes,
        import_readers,
        remove_missing_readers,
    )

    now = ctx.now()
    result = error = None
    kind = ctx.field("kind")
    values = {"library": ctx.field("library") or (ctx.scope[0] if ctx.scope else ""),
              "service": ctx.field("service") or SERVICES[0],
              "month": ctx.field("month") or default_import_month(
                  now, ctx.settings.library_tz(ctx.scope[0])) if ctx.scope else "",
              "column": ctx.field("column"), "kind": kind}
    if ctx.request.method == "POST":
        lib = ctx.require_library(ctx.field("library"))
        upload = ctx.form.get("file") if ctx.form else None
        user = ctx.user.name if ctx.user else "?"
        if not isinstance(upload, UploadFile) or not upload.filename:
            error = ctx.t("err_no_file")
        else:
            with tempfile.TemporaryDirectory(prefix="mailbot-upload-") as tmp:
                try:
                    path = str(_save_upload(upload, Path(tmp),
                                            ctx.settings.web.max_upload_bytes))
                    name = Path(path).name
                    column = ctx.field("column") or None
                    if kind == "readers":
                        r = import_readers(ctx.sessions, ctx.settings, path=path,
                                           library_id=lib, now=now)
                        result = ctx.t("done_readers", file=name, created=r.created,
                                       updated=r.updated, unchanged=r.unchanged)
                        if ctx.field("remove_missing"):
                            gone = remove_missing_readers(ctx.sessions, path=path,
                                                          library_id=lib,
                                                          limits=ctx.settings.imports)
                            result += " " + ctx.t("done_readers_removed", n=gone)
                    elif kind == "codes":
                        r = import_codes(ctx.sessions, ctx.settings, path=path, library_id=lib,
                                         service=ctx.field("service"),
                                         month=ctx.field("month"), column=column, now=now)
                        result = ctx.t("done_codes", file=name, added=r.added,
                                       service=ctx.field("service"), month=ctx.field("month"))
                    elif kind == "activations":
                        r = import_activations(ctx.sessions, ctx.settings, path=path,
                                               library_id=lib, column=column, now=now)
                        result = ctx.t("done_activations", file=name, activated=r.activated,
                                       not_activated=r.not_activated, unknown=r.unknown)
                    else:
                        raise HTTPException(400)
                except BadInput as exc:
                    error = str(exc)
                else:
                    with ctx.sessions.begin() as session:
                        actions.audit(session, user=user, action=f"import_{kind}",
                                      library_id=lib, now=now, detail=result or "")
    with ctx.reading() as session:
        recent = list(session.scalars(select(AuditLog).where(
            AuditLog.library_id.in_(ctx.scope), AuditLog.action.like("import_%"))
            .order_by(AuditLog.at.desc(), AuditLog.id.desc()).limit(10)))
    return ctx.render("imports.html.j2", nav="imports", v=values, result=result, error=error,
                      services=SERVICES, recent=recent, status=400 if error else 200)
