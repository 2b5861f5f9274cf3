"""Files with patrons' data or codes are 0600 whatever the umask: a file outbox's replies,
a RODO export, the monthly report (mailbot.private_files)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

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


def test_a_file_that_cannot_be_written_is_named_not_its_temporary(tmp_path) -> None:
    # No such folder, or a folder in the way: BadInput (exit 2) naming the file asked
    # for, never the hidden temporary one, and still an OSError (a file outbox's reply
    # is retried, as for any passing failure); nothing is left behind.
    from mailbot.errors import BadInput

    missing = tmp_path / "nie-ma" / "raport.xlsx"
    with pytest.raises(BadInput) as caught:
        write_private(missing, b"x")
    assert str(caught.value) == f"{missing}: cannot write it: there is no folder {missing.parent}"
    assert isinstance(caught.value, OSError)
    (tmp_path / "a-folder").mkdir()
    with pytest.raises(BadInput, match=rf"^{tmp_path}/a-folder: cannot write it: it is a folder$"):
        write_private(tmp_path / "a-folder", b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["a-folder"]


def test_the_temporary_name_cannot_be_guessed_in_advance(tmp_path) -> None:
    # A link planted at the name a temporary file would predictably get (.<name>.<pid>.tmp)
    # is not written through: the temporary file is made with O_EXCL under a random name.
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    (tmp_path / f".reply.eml.{os.getpid()}.tmp").symlink_to(victim)
    write_private(tmp_path / "reply.eml", b"kod: ABC")
    assert victim.read_bytes() == b"untouched"
    assert (tmp_path / "reply.eml").read_bytes() == b"kod: ABC"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the suite runs as root)")
def test_a_folder_the_user_may_not_write_is_named_with_its_owner(tmp_path) -> None:
    # nobody writing a report into root's 0755 folder: the file, the folder, its owner.
    import subprocess
    import tempfile

    from tests.test_paths import _as_nobody

    folder = Path(tempfile.mkdtemp(prefix="mailbot-root-"))
    try:
        folder.chmod(0o755)
        run = _as_nobody("""
            import sys
            from mailbot.errors import BadInput
            from mailbot.private_files import write_private
            try:
                write_private(sys.argv[1], b"x")
            except BadInput as exc:
                print("refused:", exc)
        """, str(folder / "raport.xlsx"))
        assert run.stdout.strip() == (
            f"refused: {folder}/raport.xlsx: cannot write it: the folder {folder} is not "
            "writable for user nobody (it belongs to user root, mode 0755)"), run.stderr
        assert os.listdir(folder) == []
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=False)
