"""A POST's form, read only up to a size cap (413 past it, 400 for a malformed one).

The cap is counted as the body streams, chunked or not, so a client cannot make the
dashboard read (or spool to disk) more than the page allows.
"""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.types import Message, Receive

# The body of any form but an upload (web.max_upload_bytes caps those): a login, a note.
FORM_CAP = 1024 * 1024


class _BodyTooLarge(MultiPartException):
    """Raised from ``receive`` once a body passes its cap (a MultiPartException, so that
    Starlette's parser closes the files it had begun)."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"the request body is larger than {cap} bytes")
        self.cap = cap


def _capped(receive: Receive, cap: int) -> Receive:
    """``receive`` that counts the body as it streams (chunked or not) and stops it at
    ``cap`` bytes."""
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > cap:
                raise _BodyTooLarge(cap)
        return message

    return capped


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    return int(value) if value.isdigit() else -1


async def read_form(request: Request, cap: int) -> tuple[Request, FormData]:
    """The POST's form, read only up to ``cap`` bytes: 413 for a larger declared
    Content-Length without reading a byte, and for a longer stream as soon as it passes
    the cap; 400 for a malformed one."""
    declared = _declared_length(request)
    if declared is not None and (declared < 0 or declared > cap):
        raise HTTPException(413, str(cap)) if declared > cap else HTTPException(400)
    request = Request(request.scope, _capped(request.receive, cap))
    try:
        form = await request.form(max_files=4, max_fields=100, max_part_size=1024 * 1024)
    except _BodyTooLarge:
        raise HTTPException(413, str(cap)) from None
    except HTTPException as exc:
        if isinstance(exc.__context__, _BodyTooLarge):
            raise HTTPException(413, str(cap)) from None
        raise HTTPException(400) from None
    except Exception:
        raise HTTPException(400) from None
    return request, form
