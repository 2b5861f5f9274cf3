"""Files with patrons' data or codes are 0600 whatever the umask: a file outbox's replies,
a RODO export, the monthly report (mailbot.private_files)."""

from __future__ import annotations

import os
import stat

from mailbot.private_files import write_private


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_whole_and_private_under_a_loose_umask(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        target = tmp_path / "reply.eml"
        write_private(target, b"kod: ABC")
        assert target.read_bytes() == b"kod: ABC" and _mode(target) == 0o600
        target.chmod(0o644)  # replaced, not rewritten in place: the new file is private
        write_private(target, b"x" * 300_000)
        assert target.read_bytes() == b"x" * 300_000 and _mode(target) == 0o600
        assert [p.name for p in tmp_path.iterdir()] == ["reply.eml"]  # no temporary left
    finally:
        os.umask(old)


def test_the_demo_outbox_and_a_patron_export_are_private(tmp_path) -> None:
    from mailbot.cli import main

    old = os.umask(0o022)
    try:
        assert main(["demo", "--no-serve", "--dir", str(tmp_path / "d")]) == 0
        replies = list((tmp_path / "d" / "outbox").glob("*.eml"))
        assert replies and {_mode(p) for p in replies} == {0o600}
        config = str(tmp_path / "d" / "mailbot.toml")
        out = tmp_path / "patron.json"
        assert main(["--config", config, "patron", "export", "0001001", "--library",
                     "demo", "-o", str(out)]) == 0
        assert _mode(out) == 0o600 and b"0001001" in out.read_bytes()
        report = tmp_path / "raport.xlsx"
        assert main(["--config", config, "report", "--month", "2026-12", "-o",
                     str(report)]) == 0
        assert _mode(report) == 0o600
    finally:
        os.umask(old)
