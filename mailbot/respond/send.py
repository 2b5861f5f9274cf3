"""The respond stage: outbox rows -> SMTP (or a folder of .eml files for the demo).

Each row is marked sent in its own commit right after the server accepted it. A crash
between the two can at worst send that one reply again, with the same Message-ID. A 4xx or
a dropped connection leaves the row pending for a later try; a 5xx marks it failed for staff.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiosmtplib
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailbot.clock import utcnow
from mailbot.config import SmtpSettings
from mailbot.db.models import Outbox

log = logging.getLogger(__name__)


class TransportError(Exception):
    def __init__(self, message: str, *, permanent: bool, unreachable: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        # The server could not be reached at all: the rest of the round would fail too.
        self.unreachable = unreachable


@dataclass
class SendReport:
    sent: int = 0
    deferred: int = 0
    failed: int = 0


class FileTransport:
    """Writes each reply as ``<outbox id>.eml``; used by the demo and for dry runs."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    async def __aenter__(self) -> FileTransport:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, row: Outbox) -> None:
        target = self.folder / f"{row.id:06d}-{row.outcome}.eml"
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(row.message)
        os.replace(tmp, target)


class SmtpTransport:
    """One reused aiosmtplib connection; reconnects when the server drops it."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.client: aiosmtplib.SMTP | None = None

    async def __aenter__(self) -> SmtpTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.client is not None and self.client.is_connected:
            try:
                await self.client.quit()
            except aiosmtplib.SMTPException:
                pass

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.host, port=s.port, use_tls=s.ssl, start_tls=s.starttls,
            timeout=s.timeout, tls_context=ssl.create_default_context() if s.ssl or s.starttls
            else None,
        )
        await client.connect()
        if s.username:
            await client.login(s.username, s.password or "")
        return client

    async def send(self, row: Outbox) -> None:
        if self.client is None or not self.client.is_connected:
            try:
                self.client = await self._connect()
            except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
                self._drop()
                raise TransportError(f"cannot reach {self.settings.host}:{self.settings.port}: "
                                     f"{type(exc).__name__}: {exc}", permanent=False,
                                     unreachable=True) from None
        try:
            await self.client.sendmail(row.mail_from, [row.to_address], row.message)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise TransportError(f"recipient refused: {codes}",
                                 permanent=all(c >= 500 for c in codes)) from None
        except aiosmtplib.SMTPResponseException as exc:
            self._drop()
            raise TransportError(f"{exc.code} {exc.message}", permanent=exc.code >= 500) from None
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            self._drop()
            raise TransportError(f"{type(exc).__name__}: {exc}", permanent=False) from None

    def _drop(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None


def transport_for(settings: SmtpSettings) -> FileTransport | SmtpTransport:
    return FileTransport(settings.file_outbox) if settings.file_outbox else SmtpTransport(settings)


async def send_due(sessions: sessionmaker[Session], smtp: SmtpSettings, *,
                   now: datetime | None = None) -> SendReport:
    """Sends every pending reply that is due; returns counts."""
    report = SendReport()
    now = now or utcnow()
    with sessions() as session:
        ids = session.scalars(
            select(Outbox.id).where(Outbox.state == "pending", Outbox.due_at <= now)
            .order_by(Outbox.due_at, Outbox.id)
        ).all()
    async with transport_for(smtp) as transport:
        for outbox_id in ids:
            with sessions.begin() as session:
                row = session.get(Outbox, outbox_id)
                if row is None or row.state != "pending":
                    continue
                try:
                    await transport.send(row)
                except TransportError as exc:
                    row.attempts += 1
                    row.last_error = str(exc)[:1000]
                    if exc.permanent:
                        row.state = "failed"
                        report.failed += 1
                        log.warning("outbox=%s request=%s permanently refused: %s", row.id,
                                    row.request_id, exc)
                    else:
                        report.deferred += 1
                        log.warning("outbox=%s request=%s deferred: %s", row.id,
                                    row.request_id, exc)
                        if exc.unreachable:
                            break
                    continue
                row.state, row.sent_at = "sent", utcnow()
                row.attempts += 1
                report.sent += 1
                log.info("outbox=%s request=%s sent outcome=%s", row.id, row.request_id,
                         row.outcome)
    return report
