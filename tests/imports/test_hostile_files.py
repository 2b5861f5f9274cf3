"""Hostile and oversized import files (issue 15): each is refused as a whole with a clear
error (exit code 2 on the CLI, an error on the dashboard page, never HTTP 500), nothing is
imported, and the importing process's memory stays bounded; an error never tells staff of
one library about another library's pools."""

from __future__ import annotations

import io
import os
import re
import resource
import sys
import zipfile
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import func, select

from mailbot.db.models import Code, CodePool
from mailbot.web.app import create_app
from tests.web.webenv import TestClient, csrf_of, login, make_site

# "Billion laughs": ten levels of ten references, 10^10 characters if expanded.
LAUGHS = (b'<!DOCTYPE x [<!ENTITY a0 "AAAAAAAAAA">'
          + b"".join(b'<!ENTITY a%d "%s">' % (i, b"&a%d;" % (i - 1) * 10) for i in range(1, 10))
          + b"]>")
XXE = b'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'


@pytest.fixture
def site(tmp_path):
    site = make_site(tmp_path)
    assert site.add_user("north-staff", "north") == 0
    return site


def _workbook(codes: list[str]) -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["kod"])
    for code in codes:
        ws.append([code])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _tampered(member: str, prolog: bytes, old: bytes, new: bytes) -> bytes:
    """A real workbook whose part ``member`` gets ``prolog`` in front and ``old`` → ``new``."""
    source = zipfile.ZipFile(io.BytesIO(_workbook(["GOOD-CODE-001", "GOOD-CODE-002"])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == member:
                data = prolog + data.replace(old, new, 1)
            z.writestr(info, data)
    return out.getvalue()


def _zip_bomb(rows: int = 1_000_000) -> bytes:
    """~200 KB that unpack into a sheet of a million identical rows (~60 MB of XML)."""
    source = zipfile.ZipFile(io.BytesIO(_workbook(["GOOD-CODE-001"])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                head, _, tail = data.partition(b"<sheetData>")
                _, _, tail = tail.partition(b"</sheetData>")
                body = b"<row><c t=\"inlineStr\"><is><t>BOMB-CODE-01</t></is></c></row>" * rows
                data = (head + b"<sheetData><row><c t=\"inlineStr\"><is><t>kod</t></is></c></row>"
                        + body + b"</sheetData>" + tail)
            z.writestr(info.filename, data)
    return out.getvalue()


HOSTILE = {
    "xxe-in-sheet.xlsx": lambda: _tampered("xl/worksheets/sheet1.xml", XXE,
                                           b"GOOD-CODE-002", b"&xxe;"),
    "laughs-in-sheet.xlsx": lambda: _tampered("xl/worksheets/sheet1.xml", LAUGHS,
                                              b"GOOD-CODE-002", b"&a9;"),
    "laughs-in-workbook.xlsx": lambda: _tampered("xl/workbook.xml", LAUGHS,
                                                 b'name="Sheet"', b'name="&a9;"'),
    "xxe-in-styles.xlsx": lambda: _tampered("xl/styles.xml", XXE, b"", b""),
}


def _client(site) -> TestClient:
    """A dashboard client that shows a server error as the 500 a browser would get."""
    return TestClient(create_app(site.settings, site.sessions), base_url="http://testserver",
                      raise_server_exceptions=False)


def _codes_in(site) -> int:
    with site.sessions() as s:
        return s.scalar(select(func.count(Code.id)))


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_xml_entities_in_an_xlsx_are_refused_on_the_cli_with_exit_2(site, tmp_path, capsys,
                                                                   name):
    # XXE or entity expansion in any part of a workbook: exit 2, the part named, no code.
    path = tmp_path / name
    path.write_bytes(HOSTILE[name]())
    before = _codes_in(site)
    assert site.cli("import-codes", str(path), "--library", "north", "--service", "legimi",
                    "--month", site.month) == 2
    err = capsys.readouterr().err
    assert name in err and "DTD" in err and "nothing imported" in err
    assert "root:" not in err  # /etc/passwd was never read
    assert _codes_in(site) == before


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_xml_entities_in_an_xlsx_are_an_error_on_the_dashboard_not_a_500(site, name):
    # The same files uploaded: the imports page shows the error (400), nothing imported.
    c = _client(site)
    assert login(c, "north-staff").status_code == 200
    token = csrf_of(c.get("/imports").text)
    before = _codes_in(site)
    r = c.post("/imports", data={"csrf": token, "kind": "codes", "library": "north",
                                 "service": "legimi", "month": site.month},
               files={"file": (name, HOSTILE[name]())})
    assert r.status_code == 400, r.text[-300:]
    assert "DTD" in r.text and "root:" not in r.text
    assert _codes_in(site) == before


def test_a_file_name_of_dots_is_an_error_or_imported_never_a_500(site):
    # Upload names "..", "../..", "a/../.." and "..\\x": never HTTP 500; the file is read.
    c = _client(site)
    assert login(c, "north-staff").status_code == 200
    token = csrf_of(c.get("/imports").text)
    for i, name in enumerate(["..", "../..", "a/../..", "..\\..\\x.csv", "."]):
        r = c.post("/imports", data={"csrf": token, "kind": "codes", "library": "north",
                                     "service": "legimi", "month": site.month},
                   files={"file": (name, f"kod\nDOTS-CODE-{i:03d}\n".encode())})
        assert r.status_code == 200, (name, r.status_code, r.text[-300:])
        # The preview names the kept upload by its token; confirming imports it.
        preview = re.search(r'name="token" value="([^"]+)"', r.text)
        assert preview, r.text[-300:]
        r = c.post("/imports/confirm", data={"csrf": token, "token": preview.group(1),
                                             "action": "confirm"})
        assert r.status_code == 200, (name, r.status_code, r.text[-300:])
    with site.sessions() as s:
        assert s.scalar(select(func.count(Code.id)).where(Code.code.like("DOTS-CODE-%"))) == 5


AS_LIMIT = 1536 * 1024 * 1024
CPU_LIMIT = 60  # seconds; the bounded imports take ~3


def _run_measured(args: list[str]) -> tuple[int, str, int]:
    """Runs ``mailbot ARGS`` in a child process: its exit code, stderr and peak RSS (KiB)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: becomes the mailbot process, its stderr into the pipe
        # Hard ceilings besides the measurement: a run gone wrong (as before the bounds:
        # 5 GB and minutes for the CSV below) fails instead of swamping the machine.
        resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
        resource.setrlimit(resource.RLIMIT_CPU, (CPU_LIMIT, CPU_LIMIT))
        os.close(read)
        os.dup2(write, 2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.execv(sys.executable, [sys.executable, "-m", "mailbot", *args])
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        err = pipe.read().decode()
    _, status, usage = os.wait4(pid, 0)
    return os.waitstatus_to_exitcode(status), err, usage.ru_maxrss


def _import_measured(site, path: Path) -> tuple[int, str, int]:
    return _run_measured(["--config", str(site.config), "import-codes", str(path),
                          "--library", "north", "--service", "legimi", "--month",
                          site.month])


def test_a_zip_bomb_is_refused_before_it_is_unpacked(site, tmp_path):
    # ~200 KB unpacking to ~60 MB of sheet: exit 2 naming the bomb, nothing imported, and
    # the importing process grows by far less than the 700 MB it took before.
    small = tmp_path / "small.xlsx"
    small.write_bytes(_workbook(["SMALL-CODE-001"]))
    code, _, baseline = _import_measured(site, small)
    assert code == 0
    bomb = tmp_path / "bomb.xlsx"
    bomb.write_bytes(_zip_bomb())
    assert bomb.stat().st_size < 400_000
    code, err, peak = _import_measured(site, bomb)
    assert code == 2, err
    assert "bomb.xlsx" in err and "zip bomb" in err and "nothing imported" in err
    assert peak - baseline < 100 * 1024, (peak, baseline)
    with site.sessions() as s:
        assert s.scalar(select(func.count(Code.id)).where(Code.code.like("BOMB-%"))) == 0


def test_two_million_rows_of_csv_are_refused_at_max_rows(site, tmp_path):
    # A 2,000,000-row CSV: refused at the 500,000-row bound with an error naming it (in
    # Polish and English), nothing imported, memory bounded (it took 1.2 GB before).
    small = tmp_path / "small.csv"
    small.write_text("kod\nSMALL-CODE-002\n")
    code, _, baseline = _import_measured(site, small)
    assert code == 0
    big = tmp_path / "big.csv"
    with big.open("w") as f:
        f.write("kod\n")
        f.writelines(f"C{i:07d}\n" for i in range(2_000_000))
    code, err, peak = _import_measured(site, big)
    assert code == 2, err[-500:]
    assert "more than 500,000 rows" in err and "[imports] max_rows" in err
    assert "więcej niż 500 000 wierszy" in err
    assert peak - baseline < 250 * 1024, (peak, baseline)
    with site.sessions() as s:
        assert s.scalar(select(func.count(CodePool.id)).where(
            CodePool.source_file == "big.csv")) == 0


@pytest.mark.parametrize("kind", ["csv", "xlsx", "html"])
def test_the_row_bound_is_a_config_key_and_holds_for_every_format(site, tmp_path, capsys,
                                                                  kind):
    # [imports] max_rows = 3: four codes are refused (exit 2), three are imported.
    site.config.write_text(site.config.read_text().replace(
        "[smtp]", "[imports]\nmax_rows = 3\n\n[smtp]"), encoding="utf-8")
    assert site.settings.imports.max_rows == 3

    def write(name: str, codes: list[str]) -> Path:
        path = tmp_path / f"{name}.{kind}"
        if kind == "csv":
            path.write_text("kod\n" + "".join(f"{c}\n" for c in codes))
        elif kind == "xlsx":
            path.write_bytes(_workbook(codes))
        else:
            path.write_text("<html><body><table><tr><th>kod</th></tr>"
                            + "".join(f"<tr><td>{c}</td></tr>" for c in codes)
                            + "</table></body></html>")
        return path

    args = ("--library", "north", "--service", "legimi", "--month", site.month)
    four = write("four", [f"FOUR-CODE-{i}" for i in range(4)])
    assert site.cli("import-codes", str(four), *args) == 2
    assert "more than 3 rows" in capsys.readouterr().err
    three = write("three", [f"THREE-CODE-{i}" for i in range(3)])
    assert site.cli("import-codes", str(three), *args) == 0
    with site.sessions() as s:
        assert s.scalar(select(func.count(Code.id)).where(Code.code.like("FOUR-%"))) == 0
        assert s.scalar(select(func.count(Code.id)).where(Code.code.like("THREE-%"))) == 3


def test_a_stray_cell_far_to_the_right_cannot_multiply_memory(site, tmp_path, capsys):
    # One value in column 20,000 would pad every row to 20,000 cells: refused by the cells
    # bound, not read into memory.
    path = tmp_path / "wide.csv"
    with path.open("w") as f:
        f.write("kod\n")
        f.write("WIDE-CODE-000" + ";" * 20_000 + "x\n")
        f.writelines(f"WIDE-CODE-{i:03d}\n" for i in range(1, 999))
    assert site.cli("import-codes", str(path), "--library", "north", "--service", "legimi",
                    "--month", site.month) == 2
    assert "too many cells" in capsys.readouterr().err


def test_a_duplicate_of_another_librarys_code_does_not_name_that_library(site, tmp_path,
                                                                        capsys):
    # South imports a code North holds: "already in the system", with no library, pool,
    # service or month of North's; a duplicate of South's own code is named in full.
    args = ("--library", "south", "--service", "empik_go", "--month", site.month)
    theirs = tmp_path / "theirs.csv"
    theirs.write_text("kod\nSOUTH-NEW-001\nNORTH-CODE-001\n")
    assert site.cli("import-codes", str(theirs), *args) == 2
    err = capsys.readouterr().err
    assert "row 3" in err and "already" in err and "another library" in err
    assert "north" not in err.lower().replace("north-code-001", "")
    assert "legimi" not in err and site.month not in err
    own = tmp_path / "own.csv"
    own.write_text("kod\nSOUTH-CODE-002\n")
    assert site.cli("import-codes", str(own), *args) == 2
    err = capsys.readouterr().err
    assert "this library's pool legimi" in err and site.month in err
    with site.sessions() as s:
        assert s.scalar(select(func.count(Code.id)).where(Code.library_id == "south")) == 3


def test_an_activation_report_with_another_librarys_code_does_not_name_it(site, tmp_path,
                                                                         capsys):
    # South's report listing one of North's codes: refused without naming North.
    report = tmp_path / "report.csv"
    report.write_text("kod;data aktywacji\nSOUTH-CODE-000;2026-01-02\nNORTH-CODE-001;\n")
    assert site.cli("import-activations", str(report), "--library", "south") == 2
    err = capsys.readouterr().err
    assert "row 3" in err and "another library" in err
    assert "north" not in re.sub(r"(?i)north-code-001", "", err).lower()
