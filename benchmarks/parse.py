"""Rough timings of reading one typical request: python benchmarks/parse.py

A ~3 KB request as Gmail delivers it (five Received fields, a DKIM signature, a
quoted-printable text/plain part and its HTML twin), parsed by the stdlib alone, by
``parse_mail``, and by ``parse_mail`` with everything deciding reads out of it.
"""

from __future__ import annotations

import timeit
from email import policy
from email.parser import BytesParser

from mailbot.intake.loops import loop_reason
from mailbot.intake.parse import parse_mail
from mailbot.intake.reading import read_mail
from mailbot.intake.subjects import match_service


def _timing_sample() -> bytes:
    """A typical ~3 KB request as Gmail delivers it, for the timing below."""
    received = (
        b"Received: from mail-lf1-f41.google.com (mail-lf1-f41.google.com [209.85.167.41])\r\n"
        b"\tby mx.biblioteka.pl (Postfix) with ESMTPS id 4XYZ%d for <legimi@biblioteka.pl>;\r\n"
        b"\tSun,  1 Nov 2026 00:00:07 +0100 (CET)\r\n"
    )
    html = b'<div dir=3D"ltr"><div>Dzie=C5=84 dobry,</div><div><br></div>' + b"".join(
        b"<div>%s</div>" % line
        for line in (
            b"prosz=C4=99 o kod do Legimi na listopad.",
            b"Imi=C4=99 i nazwisko: Jan Kowalski",
            b"Numer karty: 0012345",
            b"<br>",
            b"Pozdrawiam",
            b"Jan Kowalski",
            b"tel. 600 123 456",
        )
    )
    return (
        b"Return-Path: <jan.kowalski@gmail.com>\r\nDelivered-To: legimi@biblioteka.pl\r\n"
        + b"".join(received % i for i in range(5))
        + b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=gmail.com; s=20230601;\r\n"
        b"        h=to:subject:message-id:date:from:mime-version:from:to:cc:subject;\r\n"
        b"        bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n"
        + b"".join(b"        b=%s\r\n" % (b"Qk9Ha1VTa2VsZXRvbg" * 4) for _ in range(6))
        + b"X-Google-Smtp-Source: AGHT+IE" + b"x" * 120 + b"\r\n"
        b"MIME-Version: 1.0\r\n"
        b"From: =?UTF-8?Q?Jan_Kowalski?= <jan.kowalski@gmail.com>\r\n"
        b"Date: Sun, 1 Nov 2026 00:00:05 +0100\r\n"
        b"Message-ID: <CAF1234567890abcdefghijklmnopqrstuvw@mail.gmail.com>\r\n"
        b"Subject: LEGIMI\r\nTo: legimi@biblioteka.pl\r\n"
        b'Content-Type: multipart/alternative; boundary="000000000000a1b2c3"\r\n\r\n'
        b"--000000000000a1b2c3\r\n"
        b'Content-Type: text/plain; charset="UTF-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Dzie=C5=84 dobry,\r\n\r\nprosz=C4=99 o kod do Legimi na listopad.\r\n"
        b"Imi=C4=99 i nazwisko: Jan Kowalski\r\nNumer karty: 0012345\r\n\r\n"
        b"Pozdrawiam\r\nJan Kowalski\r\ntel. 600 123 456\r\n\r\n"
        b"--000000000000a1b2c3\r\n"
        b'Content-Type: text/html; charset="UTF-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + html + b"\r\n"
        b"--000000000000a1b2c3--\r\n"
    )


def main() -> None:
    sample = _timing_sample()
    parser = BytesParser(policy=policy.compat32)

    def everything() -> None:
        parsed = parse_mail(sample)
        match_service(parsed.subject)
        loop_reason(parsed)
        read_mail(parsed)

    runs = 2000
    for label, stmt in (
        ("stdlib BytesParser alone", lambda: parser.parsebytes(sample)),
        ("parse_mail", lambda: parse_mail(sample)),
        ("parse_mail + all helpers", everything),
    ):
        best = min(timeit.repeat(stmt, number=runs, repeat=5)) / runs
        print(f"{label:26s} {best * 1e6:7.1f} us per mail ({len(sample)} bytes)")


if __name__ == "__main__":
    main()
