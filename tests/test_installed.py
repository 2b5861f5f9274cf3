"""mailbot installed from its wheel, as a library's IT installs it (README "Installing"):
the sdist is built from this checkout and the wheel from the sdist (as ``python -m build``
does, so both must carry everything), the wheel is installed into a fresh venv outside the
checkout and run from a folder that is not the checkout, so nothing can come from the
source tree. Then the demo, and the documented path init -> check -> run --once against
the real test servers.

The venv is made once for the module (about 20 s: pip installs mailbot's dependencies).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from mailbot.outcomes import Outcome
from tests.botenv import READER_HEADER, request_mail, valid_reader

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Installed:
    sdist: Path
    wheel: Path
    venv: Path
    work: Path  # a folder outside the checkout, the commands' working directory

    def mailbot(self, *args: str, env: dict[str, str] | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith(("MAILBOT_", "PYTHON", "VIRTUAL_ENV"))}
        return subprocess.run([str(self.venv / "bin" / "mailbot"), *args], cwd=self.work,
                              env={**clean, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout)


def _run(*argv: str | Path, cwd: Path) -> str:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{argv}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("installed")
    pip_env = ("-m", "pip", "--disable-pip-version-check", "--no-input", "-q")
    _run(sys.executable, "-m", "build", "--outdir", base / "dist", ROOT, cwd=base)
    (sdist,) = (base / "dist").glob("mailbot-*.tar.gz")
    (wheel,) = (base / "dist").glob("mailbot-*.whl")
    _run(sys.executable, "-m", "venv", base / "venv", cwd=base)
    _run(base / "venv" / "bin" / "python", *pip_env, "install", wheel, cwd=base)
    work = base / "work"
    work.mkdir()
    yield Installed(sdist=sdist, wheel=wheel, venv=base / "venv", work=work)


def test_the_sdist_and_wheel_carry_templates_migrations_and_static_files(installed) -> None:
    with tarfile.open(installed.sdist) as tar:
        in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in ("templates/email/pl/issued.txt.j2", "templates/web/base.html.j2",
                   "config.example.toml", "deploy/mailbot.service", "README.md"):
        assert needed in in_sdist, needed
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    assert {"mailbot/share/config.example.toml", "mailbot/share/mailbot.service"} <= names
    source = {f"mailbot/templates/{p.relative_to(ROOT / 'templates')}"
              for p in (ROOT / "templates").rglob("*") if p.is_file()}
    assert source and source <= names, sorted(source - names)[:5]
    for folder in ("mailbot/db/migrations", "mailbot/web/static", "mailbot/locale"):
        shipped = {f"{folder}/{p.relative_to(ROOT / folder)}"
                   for p in (ROOT / folder).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts}
        assert shipped and shipped <= names, sorted(shipped - names)[:5]


def test_the_installed_mailbot_runs_from_the_venv_not_the_checkout(installed) -> None:
    where = _run(installed.venv / "bin" / "python", "-c",
                 "import mailbot, mailbot.resources as r; print(mailbot.__file__); "
                 "print(r.TEMPLATES)", cwd=installed.work).split()
    site = installed.venv.resolve()
    assert all(Path(p).resolve().is_relative_to(site) for p in where), where
    version = installed.mailbot("--version")
    assert version.returncode == 0 and re.fullmatch(r"mailbot \d+\.\d+\.\d+\n", version.stdout)


def test_the_demo_works_from_the_wheel(installed) -> None:
    done = installed.mailbot("demo", "--no-serve", "--dir", "demo")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "TemplateNotFound" not in done.stderr
    replies = list((installed.work / "demo" / "outbox").glob("*.eml"))
    # Every outcome the demo shows, and a reply for each outcome that has one.
    for outcome in (Outcome.ISSUED, Outcome.TOO_EARLY, Outcome.POOL_EXHAUSTED):
        assert f" {outcome.value}" in done.stdout, done.stdout
    assert len(replies) >= 10, done.stdout
    assert any(b"X-Mailbot-Outcome: issued" in p.read_bytes() for p in replies)


def test_init_then_check_then_run_once_serves_a_patron(installed, imap_user, smtp_sink) -> None:
    # README "Installing": init writes the config, IT fills in the marked lines and
    # imports readers and codes, check passes, run --once answers the first patron. All
    # with the installed mailbot, in the order init prints.
    etc, state = installed.work / "etc", installed.work / "state"
    config = etc / "mailbot.toml"
    done = installed.mailbot("--config", str(config), "init", "--dir", str(state))
    assert done.returncode == 0, done.stderr
    steps = [f"mailbot --config {config} import-readers", f"mailbot --config {config} "
             "import-codes", f"mailbot --config {config} check --create-folders",
             f"mailbot --config {config} run --once"]
    at = [done.stdout.find(step) for step in steps]
    assert -1 not in at and at == sorted(at), done.stdout
    # The unit and the example config it names are the installed ones.
    share = installed.venv.resolve()
    for name in ("mailbot.service", "config.example.toml"):
        (path,) = re.findall(rf"(/\S*/mailbot/share/{re.escape(name)})", done.stdout)
        assert Path(path).resolve().is_relative_to(share) and Path(path).is_file(), path
    text = config.read_text(encoding="utf-8")
    assert text.count(">>> CHANGE") >= 5
    # What IT fills in (here: the test servers, plain on loopback; a relay without login).
    edits = [
        (r'host = "smtp\.biblioteka\.invalid".*', f'host = "{smtp_sink.host}"'),
        (r"port = 587", f"port = {smtp_sink.port}"),
        (r"starttls = true.*", "starttls = false"),
        (r'username = "ebooki@biblioteka\.invalid"\s+# >>> CHANGE: the account.*\n'
         r'password_env = "MAILBOT_SMTP_PASSWORD".*\n', ""),
        (r'host = "imap\.biblioteka\.invalid".*', f'host = "{imap_user.host}"'),
        (r"port = 993", f"port = {imap_user.port}"),
        (r"ssl = true .*", "ssl = false"),
        (r'username = "ebooki@biblioteka\.invalid"\s+# >>> CHANGE: its login.*',
         f'username = "{imap_user.name}"'),
    ]
    for pattern, value in edits:
        text, n = re.subn(pattern, value, text, count=1)
        assert n == 1, pattern
    config.write_text(text, encoding="utf-8")
    secrets = {"MAILBOT_IMAP_PASSWORD": imap_user.password}

    from mailbot.clock import month_key, month_of, utcnow
    from mailbot.config import load_settings
    from mailbot.rules.window import window_opens

    settings = load_settings(config, secrets=frozenset({"database"}))
    tz = settings.library_tz("biblioteka")
    year, month = month_of(utcnow(), tz)
    opened = window_opens(settings.library("biblioteka"), tz, year, month)
    readers = installed.work / "czytelnicy.csv"
    readers.write_text(f"{READER_HEADER}\n0601234;Ala;Nowak;ala@patron.test;"
                       f"{valid_reader(opened.year)}\n", encoding="utf-8")
    codes = installed.work / "kody.csv"
    codes.write_text("kod\nLEG-INST-0001\n", encoding="utf-8")
    for argv in (("import-readers", str(readers), "--library", "biblioteka"),
                 ("import-codes", str(codes), "--library", "biblioteka", "--service",
                  "legimi", "--month", month_key(year, month))):
        done = installed.mailbot("--config", str(config), *argv)
        assert done.returncode == 0, done.stderr
    check = installed.mailbot("--config", str(config), "check", "--create-folders", env=secrets)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "\nFAIL " not in "\n" + check.stdout and "0 FAIL" in check.stdout

    raw, mid = request_mail("ala@patron.test", "LEGIMI", "Ala Nowak, karta 0601234")
    imap_user.append(raw, internaldate=opened + timedelta(minutes=1))

    run = installed.mailbot("--config", str(config), "run", "--once", env=secrets)
    assert run.returncode == 0, run.stdout + run.stderr
    (reply,) = smtp_sink.wait_for(1)
    assert reply.message["In-Reply-To"] == mid
    assert reply.message["X-Mailbot-Outcome"] == "issued"
    assert "LEG-INST-0001" in reply.message.get_body(("plain",)).get_content()
    status = installed.mailbot("--config", str(config), "status")
    assert status.returncode == 0, status.stdout + status.stderr
