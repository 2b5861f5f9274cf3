"""The dashboard's import preview (issue 19, "imports that cannot hurt"): an upload is
kept, previewed and written only on "Potwierdź"; the kept file is private, bound to its
user and session, expires, and the confirmation checks the file again."""

from __future__ import annotations

import io
import os
import re
import stat

import pytest
from sqlalchemy import func, select

from mailbot.db.models import AuditLog, Code, CodePool, Reader
from mailbot.imports.staged import StagedUploads
from mailbot.web.views import imports as import_view
from tests.web.webenv import csrf_of, login, make_site


@pytest.fixture
def site(tmp_path, monkeypatch):
    site = make_site(tmp_path)
    assert site.add_user("north-staff", "north") == 0
    assert site.add_user("north-too", "north") == 0
    # The kept uploads of this test in its own folder, so they can be looked at.
    monkeypatch.setattr(import_view, "uploads", StagedUploads(tmp_path / "kept"))
    return site


def _codes(site, like: str) -> int:
    with site.sessions() as s:
        return s.scalar(select(func.count(Code.id)).where(Code.code.like(like)))


def _upload(c, token: str, body: bytes, *, name: str = "legimi.csv", month: str, **data):
    return c.post("/imports", data={"csrf": token, "kind": "codes", "library": "north",
                                    "service": "legimi", "month": month, **data},
                  files={"file": (name, body, "text/csv")})


def _token(html: str) -> str:
    found = re.search(r'name="token" value="([^"]+)"', html)
    assert found, html[-800:]
    return found.group(1)


def test_a_preview_writes_nothing_and_confirm_imports_the_good_rows(site, tmp_path):
    # The preview counts, masks and refuses by row; nothing is written until confirm,
    # which adds the codes, leaves the refused rows out and writes the audit entry.
    c = site.client()
    login(c, "north-staff")
    token = csrf_of(c.get("/imports").text)
    body = b"kod\nPREV-AAAA-01\nPREV-BBBB-02\nPREV-AAAA-01\n\nPREV-CCCC-03\n"
    r = _upload(c, token, body, month=site.month)
    assert r.status_code == 200
    text = r.text
    assert "Podgląd importu" in text and "legimi.csv" in text and "Legimi" in text
    assert "Zostaną dodane 3 kody." in text
    assert "PRE…01" in text and "PREV-AAAA-01" not in text  # masked: 3 first, 2 last
    assert "1 wiersz zostanie odrzucony" in text
    # The refused duplicate is named by row, and masked like the others.
    assert "wiersz 4, kolumna „kod”: kod „PRE…01” jest już w wierszu 2" in text
    assert _codes(site, "PREV-%") == 0
    kept = list((tmp_path / "kept").glob("*/legimi.csv"))
    assert len(kept) == 1
    assert stat.S_IMODE(kept[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "kept").stat().st_mode) == 0o700

    r = c.post("/imports/confirm", data={"csrf": token, "token": _token(text),
                                         "action": "confirm"})
    assert r.status_code == 200
    assert "legimi.csv: dodano 3 kody" in r.text and "Pominięto 1 odrzucony wiersz." in r.text
    assert _codes(site, "PREV-%") == 3
    assert not list((tmp_path / "kept").iterdir() if (tmp_path / "kept").exists() else [])
    with site.sessions() as s:
        entry = s.scalars(select(AuditLog).where(AuditLog.action == "import_codes")).one()
        assert entry.args["n"] == 3 and entry.args["refused"] == 1
        assert entry.args["file"] == "legimi.csv" and entry.args["month"] == site.month
        assert "3 codes added" in entry.detail
    # The audit entry is worded in Polish on the import page, the month by its name.
    from mailbot.clock import parse_month
    from mailbot.respond.i18n import format_month

    named = format_month(*parse_month(site.month), "pl")
    assert f"legimi.csv: dodano 3 kody (Legimi, {named})" in c.get("/imports").text
    assert f"(Legimi, {named})" in c.get("/audit").text
    # The token was used up: a second confirm imports nothing again.
    r = c.post("/imports/confirm", data={"csrf": token, "token": _token(text),
                                         "action": "confirm"})
    assert r.status_code == 400 and "wygasł albo został już użyty" in r.text
    assert _codes(site, "PREV-%") == 3


def test_cancel_discards_the_upload(site, tmp_path):
    c = site.client()
    login(c, "north-staff")
    token = csrf_of(c.get("/imports").text)
    r = _upload(c, token, b"kod\nCANC-0000-01\n", month=site.month)
    preview = _token(r.text)
    r = c.post("/imports/confirm", data={"csrf": token, "token": preview, "action": "cancel"})
    assert r.status_code == 200 and "import anulowany" in r.text
    assert _codes(site, "CANC-%") == 0
    assert not list((tmp_path / "kept").iterdir())
    r = c.post("/imports/confirm", data={"csrf": token, "token": preview,
                                         "action": "confirm"})
    assert r.status_code == 400 and _codes(site, "CANC-%") == 0


def test_another_users_token_is_refused(site):
    # Staff of the same library cannot confirm a colleague's upload, nor can the same
    # user from a new session (the token is bound to the CSRF token too).
    mine = site.client()
    login(mine, "north-staff")
    token = csrf_of(mine.get("/imports").text)
    preview = _token(_upload(mine, token, b"kod\nMINE-0000-01\n", month=site.month).text)
    theirs = site.client()
    login(theirs, "north-too")
    their_csrf = csrf_of(theirs.get("/imports").text)
    r = theirs.post("/imports/confirm", data={"csrf": their_csrf, "token": preview,
                                              "action": "confirm"})
    assert r.status_code == 400 and _codes(site, "MINE-%") == 0
    again = site.client()
    login(again, "north-staff")
    new_csrf = csrf_of(again.get("/imports").text)
    r = again.post("/imports/confirm", data={"csrf": new_csrf, "token": preview,
                                             "action": "confirm"})
    assert r.status_code == 400 and _codes(site, "MINE-%") == 0
    # The owner, in the session that uploaded it, still can.
    r = mine.post("/imports/confirm", data={"csrf": token, "token": preview,
                                            "action": "confirm"})
    assert r.status_code == 200 and _codes(site, "MINE-%") == 1


def test_confirm_checks_again_a_code_imported_since_the_preview(site):
    # Between preview and confirm the same code came in from the command line: the
    # confirmation refuses it (not a duplicate, not an error 500) and adds the rest.
    c = site.client()
    login(c, "north-staff")
    token = csrf_of(c.get("/imports").text)
    preview = _token(_upload(c, token, b"kod\nRACE-0000-01\nRACE-0000-02\n",
                             month=site.month).text)
    other = site.root / "other.csv"
    other.write_text("kod\nRACE-0000-02\n", encoding="utf-8")
    assert site.cli("import-codes", str(other), "--library", "north", "--service", "legimi",
                    "--month", site.month) == 0
    r = c.post("/imports/confirm", data={"csrf": token, "token": preview,
                                         "action": "confirm"})
    assert r.status_code == 200
    assert "dodano 1 kod " in r.text and "Pominięto 1 odrzucony wiersz." in r.text
    assert _codes(site, "RACE-%") == 2
    with site.sessions() as s:
        assert s.scalar(select(func.count(CodePool.id)).where(
            CodePool.source_file == "legimi.csv")) == 1


def test_a_reader_file_is_refused_at_the_preview_in_polish(site, tmp_path):
    c = site.client()
    login(c, "north-staff")
    token = csrf_of(c.get("/imports").text)
    body = ("numer_karty;imie;nazwisko;email\n1000009;Ola;Nowa;ola@patron.test\n").encode()
    r = _upload(c, token, body, name="czytelnicy.csv", month=site.month)
    assert r.status_code == 400
    assert "Nic nie zaimportowano." in r.text
    # The columns quoted as Polish quotes them, not as Python's reprs.
    assert "to wygląda na plik czytelników (kolumny „numer_karty”, „nazwisko”)" in r.text
    assert 'name="token"' not in r.text
    assert not list((tmp_path / "kept").iterdir())
    # A month that is over names the form's field, never the command line's option.
    r = _upload(c, token, b"kod\nOVER-0000-01\n", month="2020-01")
    assert r.status_code == 400
    assert "pole „Miesiąc”: styczeń 2020 już minął" in r.text and "--month" not in r.text
    r = c.post("/imports?lang=en", data={"csrf": token, "kind": "codes", "library": "north",
                                         "service": "legimi", "month": "2020-01"},
               files={"file": ("x.csv", b"kod\nOVER-0000-01\n", "text/csv")})
    assert "field “Month”: January 2020 is over" in r.text


def test_reader_rows_in_error_are_worded_in_polish(site):
    c = site.client()
    login(c, "north-staff")
    token = csrf_of(c.get("/imports").text)
    bad = "numer_karty;imie;nazwisko;email;wazna_do\n1000010;Ola;Nowa;ola@x.test;31.13.2030\n"
    r = c.post("/imports", data={"csrf": token, "kind": "readers", "library": "north"},
               files={"file": ("czytelnicy.csv", bad.encode(), "text/csv")})
    assert r.status_code == 400
    assert "czytelnicy.csv, wiersz 2, kolumna „wazna_do”: „31.13.2030” nie jest datą" in r.text


def test_kept_uploads_expire_and_are_bound(tmp_path):
    store = StagedUploads(tmp_path / "kept", ttl=60)
    kept = store.keep(io.BytesIO(b"kod\nX\n"), filename="../../etc/kody.csv", limit=1000,
                      user="ala", csrf="c1", kind="codes", fields={"library": "lib"},
                      now=1000.0)
    assert kept.path.name == "kody.csv" and kept.path.parent.parent == tmp_path / "kept"
    assert store.get(kept.token, user="ala", csrf="c1", now=1059.0) is not None
    assert store.get(kept.token, user="ola", csrf="c1", now=1059.0) is None
    assert store.get(kept.token, user="ala", csrf="c2", now=1059.0) is None
    assert store.get("../" + kept.token[3:], user="ala", csrf="c1", now=1059.0) is None
    # Past its time it is gone, and deleted from the disk.
    assert store.get(kept.token, user="ala", csrf="c1", now=1061.0) is None
    assert not kept.path.exists()
    # A file over the limit is refused and leaves nothing behind.
    with pytest.raises(Exception, match="larger than"):
        store.keep(io.BytesIO(b"x" * 2000), filename="big.csv", limit=1000, user="ala",
                   csrf="c1", kind="codes", fields={})
    assert list((tmp_path / "kept").iterdir()) == []
    # Old ones are swept when another is kept.
    old = store.keep(io.BytesIO(b"a"), filename="a.csv", limit=10, user="ala", csrf="c1",
                     kind="codes", fields={})
    past = old.created - 3600
    os.utime(old.path.parent, (past, past))
    os.utime(tmp_path / "kept" / f"{old.token}.json", (past, past))
    store.keep(io.BytesIO(b"b"), filename="b.csv", limit=10, user="ala", csrf="c1",
               kind="codes", fields={})
    assert not old.path.exists()


def test_readers_are_previewed_then_imported_with_polish_counts(site):
    c = site.client()
    login(c, "north-staff")
    token = csrf_of(c.get("/imports").text)
    body = ("numer_karty;imie;nazwisko;email\n1000001;Anna;Nowak;anna@patron.test\n"
            "1000050;Ola;Nowa;ola@patron.test\n").encode()
    r = c.post("/imports", data={"csrf": token, "kind": "readers", "library": "north",
                                 "remove_missing": "1"},
               files={"file": ("czytelnicy.csv", body, "text/csv")})
    assert r.status_code == 200
    assert "Nowi czytelnicy: 1" in r.text and "Zmienione dane: 1" in r.text
    # North has three readers: Jan Kowal and Ewa Lis are not in this file.
    assert "Zostaną usunięci 2 czytelnicy nieobecni w pliku." in r.text
    with site.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Reader).where(
            Reader.card_number == "1000050")) == 0
    r = c.post("/imports/confirm", data={"csrf": token, "token": _token(r.text),
                                         "action": "confirm"})
    assert "czytelnicy.csv: dodano 1 czytelnika, zaktualizowano 1, bez zmian 0." in r.text
    assert "Usunięto 2 czytelników nieobecnych w pliku." in r.text
    with site.sessions() as s:
        entry = s.scalars(select(AuditLog).where(AuditLog.action == "import_readers")).one()
        assert entry.args == {"file": "czytelnicy.csv", "n": 1, "updated": 1,
                              "unchanged": 0, "removed": 2, "variant": "removed"}


def test_every_problem_the_imports_can_raise_is_worded_in_both_languages():
    # Walks mailbot/imports for the keys its problems carry: each has its imp_ text.
    from pathlib import Path

    from mailbot.imports import readers
    from mailbot.web import i18n

    root = Path(readers.__file__).parent
    source = "\n".join(p.read_text(encoding="utf-8") for p in root.rglob("*.py"))
    keys = set(re.findall(r'ImportRefused\.one\(\s*"(\w+)"', source))
    keys |= set(re.findall(r'\bkey="(\w+)"', source))
    keys |= set(re.findall(r'CellError\(\s*"(\w+)"', source))
    keys |= set(re.findall(r'Mixup\([^)]*?"(\w+)",\s*(?:\{|dict)', source, re.S))
    keys |= set(re.findall(r'"(code_imported_\w+)"', source))
    keys |= set(readers._VALUE_PROBLEM.values()) | {"reader_file", "card_like"}
    keys.discard("in_both")  # its text is in both languages already (ImportRefused.in_both)
    assert {"month_over", "code_twice", "bad_date", "no_code_column", "file_empty",
            "card_scientific", "too_large", "code_imported_here"} <= keys
    for lang in ("pl", "en"):
        missing = sorted(k for k in keys if not i18n.has(lang, f"imp_{k}"))
        assert not missing, (lang, missing)


def test_code_counts_take_the_polish_plural_forms():
    from mailbot.web.i18n import tn

    said = {n: tn("pl", "done_codes", n, file="k.csv", service="Legimi", month="luty 2027")
            for n in (1, 2, 5, 12, 22, 25)}
    assert said[1] == "k.csv: dodano 1 kod (Legimi, luty 2027)."
    assert said[2] == "k.csv: dodano 2 kody (Legimi, luty 2027)."
    assert said[5] == "k.csv: dodano 5 kodów (Legimi, luty 2027)."
    assert said[12] == "k.csv: dodano 12 kodów (Legimi, luty 2027)."
    assert said[22] == "k.csv: dodano 22 kody (Legimi, luty 2027)."
    assert said[25] == "k.csv: dodano 25 kodów (Legimi, luty 2027)."
    assert tn("pl", "done_readers", 1, file="c.csv", updated=0, unchanged=0).startswith(
        "c.csv: dodano 1 czytelnika")
    assert tn("en", "preview_add", 1) == "1 code will be added."


def test_a_bound_written_in_both_languages_shows_the_pages_language():
    from mailbot.imports.problems import ImportRefused
    from mailbot.imports.tables.limits import Limit

    exc = Limit("duzy.csv", 10).too_many_rows()
    assert isinstance(exc, ImportRefused) and "/ the file has more than" in str(exc)
    pl, = import_view.error_lines("pl", exc)
    en, = import_view.error_lines("en", exc)
    assert pl.startswith("duzy.csv: plik ma więcej niż 10 wierszy") and "the file" not in pl
    assert en.startswith("duzy.csv: the file has more than 10 rows") and "plik" not in en


def test_a_preview_is_confirmed_once_even_from_two_requests(site, tmp_path):
    # A double click, or a second tab, while the first confirmation runs: the upload is
    # claimed by the first, and the second is told the preview is gone (no second
    # import, no "nothing imported" page, no error 500 from the unique constraint).
    c = site.client()
    login(c, "north-staff")
    token = csrf_of(c.get("/imports").text)
    preview = _token(_upload(c, token, b"kod\nTWICE-000-01\n", month=site.month).text)
    first = import_view.uploads.claim(preview, user="north-staff", csrf=token)
    assert first is not None  # the first request, still importing
    assert import_view.uploads.claim(preview, user="north-staff", csrf=token) is None
    r = c.post("/imports/confirm", data={"csrf": token, "token": preview,
                                         "action": "confirm"})
    assert r.status_code == 400 and "Ten podgląd wygasł albo został już użyty" in r.text
    assert "Tego podglądu już nie ma." in r.text and "Nic nie zaimportowano" not in r.text
    assert _codes(site, "TWICE-%") == 0
    import_view.uploads.discard(preview)
    assert not list((tmp_path / "kept").iterdir())


def test_the_import_and_its_audit_entry_are_one_transaction(site, monkeypatch):
    # If the audit entry cannot be written, the codes are not imported either.
    c = site.client()
    login(c, "north-staff")
    token = csrf_of(c.get("/imports").text)
    preview = _token(_upload(c, token, b"kod\nAUDIT-00-01\n", month=site.month).text)

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("the audit log is broken")

    monkeypatch.setattr(import_view.actions, "audit", broken)
    with pytest.raises(RuntimeError, match="audit log is broken"):
        c.post("/imports/confirm", data={"csrf": token, "token": preview,
                                         "action": "confirm"})
    assert _codes(site, "AUDIT-%") == 0


def test_column_names_are_quoted_in_the_pages_language_and_codes_masked(site):
    c = site.client()
    login(c, "north-staff")
    token = csrf_of(c.get("/imports").text)
    r = c.post("/imports", data={"csrf": token, "kind": "readers", "library": "north"},
               files={"file": ("czytelnicy.csv", b"imie;nazwisko\nOla;Nowa\n", "text/csv")})
    assert r.status_code == 400
    assert "brakuje wymaganej kolumny „card_number” lub „numer_karty”" in r.text
    assert " or " not in r.text and "&#39;" not in r.text
    r = c.post("/imports?lang=en", data={"csrf": token, "kind": "readers",
                                         "library": "north"},
               files={"file": ("czytelnicy.csv", b"imie;nazwisko\nOla;Nowa\n", "text/csv")})
    assert "the required column “card_number” or “numer_karty” is missing" in r.text
    # A value refused as not a code may well be one: masked like the preview's codes.
    r = _upload(c, token, b"kod\nLEG_ABC_123456\nGOOD-CODE-01\n", month=site.month)
    assert r.status_code == 200
    assert "LEG_ABC_123456" not in r.text and "LEG…56" in r.text
    # A short code keeps at least half of it hidden.
    for code in ("ABCDEF", "ABCDEFGH", "ABCDEFGHIJ", "ABC"):
        shown = import_view.mask_code(code).replace("…", "")
        assert len(shown) * 2 <= len(code), (code, shown)
    assert import_view.mask_code("LEG-NEW-0001") == "LEG…01"


def test_abandoned_uploads_are_swept_without_another_upload(site, tmp_path, monkeypatch):
    # An upload nobody confirmed goes when the import page is shown, when any preview is
    # confirmed or cancelled, and in the daemon's housekeeping.
    from mailbot.housekeeping import purge_old_mail

    c = site.client()
    login(c, "north-staff")
    token = csrf_of(c.get("/imports").text)
    kept = tmp_path / "kept"

    def abandoned() -> str:
        preview = _token(_upload(c, token, b"kod\nGONE-0000-01\n", month=site.month).text)
        past = os.stat(kept / f"{preview}.json").st_mtime - 3600
        os.utime(kept / preview, (past, past))
        os.utime(kept / f"{preview}.json", (past, past))
        return preview

    abandoned()
    c.get("/imports")
    assert not list(kept.iterdir())
    old = abandoned()
    fresh = _token(_upload(c, token, b"kod\nKEEP-0000-01\n", month=site.month).text)
    c.post("/imports/confirm", data={"csrf": token, "token": "x" * 32, "action": "cancel"})
    assert not (kept / f"{old}.json").exists() and (kept / f"{fresh}.json").exists()
    import_view.uploads.discard(fresh)
    # Housekeeping sweeps the default folder (the dashboard's, on the same machine).
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    from mailbot.imports.staged import default_folder
    monkeypatch.setattr(import_view, "uploads", StagedUploads(default_folder()))
    abandoned_default = import_view.uploads.folder
    preview = _token(_upload(c, token, b"kod\nGONE-0000-02\n", month=site.month).text)
    past = os.stat(abandoned_default / f"{preview}.json").st_mtime - 3600
    os.utime(abandoned_default / preview, (past, past))
    os.utime(abandoned_default / f"{preview}.json", (past, past))
    purge_old_mail(site.sessions, site.settings, site.window())
    assert not list(abandoned_default.iterdir())


def test_an_upload_the_server_cannot_keep_is_worded_without_its_path(site, tmp_path,
                                                                   monkeypatch):
    # The server's folder is for its log; the page says, in Polish, what happened.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setattr(import_view, "uploads", StagedUploads(blocker / "kept"))
    c = site.client()
    login(c, "north-staff")
    token = csrf_of(c.get("/imports").text)
    r = _upload(c, token, b"kod\nPATH-0000-01\n", month=site.month)
    assert r.status_code == 400
    assert "serwer nie może teraz przechować przesłanego pliku" in r.text
    assert str(tmp_path) not in r.text and "cannot keep" not in r.text
    # Any other refusal not worded in the catalogue: a Polish line, the details logged.
    from mailbot.errors import BadInput

    lines = import_view.error_lines("pl", BadInput("disk full", file="/srv/mailbot/x.csv"))
    assert lines == [import_view.i18n.t("pl", "err_import_failed")]
