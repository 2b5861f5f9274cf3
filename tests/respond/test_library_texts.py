"""A library's own reply texts (``texts_dir``): a file there replaces the shipped one for
that library only, everything else falls back, the render cache keeps each library's
replies apart, and ``mailbot check`` names a broken text (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbot.cli import main
from mailbot.respond import shapes
from mailbot.respond.render import (DEFAULT_TEMPLATES_DIR, render_plainly, render_reply,
                                    template_sources)
from mailbot.respond.texts_check import texts_problems
from tests.respond.test_templates import full_context

OWN_ISSUED = (
    '{% import "email/pl/_macros.txt.j2" as m %}'
    "Dzień dobry,\n\nFilia nr 3 przesyła kod do serwisu {{ service_name }}: {{ code }}\n"
)


def _texts(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "texts" / "filia-3"
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_an_own_file_replaces_the_shipped_one_for_that_library_only(tmp_path):
    # Filia 3's Polish text of `issued` is its own; its HTML, its English and every other
    # library's replies are the shipped ones.
    texts = _texts(tmp_path, {"pl/issued.txt.j2": OWN_ISSUED})
    ctx = full_context(code="ABCD-1234")
    own = render_reply("issued", ctx, texts_dir=texts)
    shipped = render_reply("issued", ctx)
    assert "Filia nr 3 przesyła kod do serwisu Legimi: ABCD-1234" in own.text
    assert "Filia nr 3" not in shipped.text
    assert own.html == shipped.html
    # The English section is the shipped one, word for word.
    assert own.text.split("— English version below —")[1] == \
        shipped.text.split("— English version below —")[1]
    # Other outcomes of that library fall back too.
    assert render_reply("debt", ctx, texts_dir=texts) == render_reply("debt", ctx)


def test_the_cache_keeps_libraries_apart_and_matches_the_plain_render(tmp_path):
    # A burst that alternates two libraries: each reply has its own library's text, and
    # the cached render is byte for byte the plain one.
    texts = _texts(tmp_path, {"pl/issued.txt.j2": OWN_ISSUED,
                              "en/issued.html.j2": "<p>Branch 3: {{ code }}</p>\n"})
    shapes.clear()
    for i in range(6):
        ctx = full_context(code=f"CODE-{i:04d}", patron_name=f"Ala Kot{i}",
                           card_number=f"{i:07d}")
        mine = render_reply("issued", ctx, texts_dir=texts)
        other = render_reply("issued", ctx)
        assert mine == render_plainly("issued", ctx, texts_dir=texts)
        assert other == render_plainly("issued", ctx)
        assert f"Filia nr 3 przesyła kod do serwisu Legimi: CODE-{i:04d}" in mine.text
        assert f"<p>Branch 3: CODE-{i:04d}</p>" in mine.html
        assert "Filia nr 3" not in other.text and "Branch 3" not in other.html
    # One shape per library, each rendered once and then filled in.
    assert len(shapes.cached()) == 2


def test_own_macros_reach_the_shipped_outcome_templates(tmp_path):
    # The library changes only the code box macro: every shipped template importing it
    # shows the library's box.
    macros = (DEFAULT_TEMPLATES_DIR / "email/pl/_macros.html.j2").read_text(encoding="utf-8")
    macros += '\n{% macro code_box(code) %}<div class="filia3">{{ code }}</div>{% endmacro %}\n'
    texts = _texts(tmp_path, {"pl/_macros.html.j2": macros})
    html = render_reply("issued", full_context(code="XY-99"), texts_dir=texts).html
    assert '<div class="filia3">XY-99</div>' in html
    sources = {s.name: s.own for s in template_sources("issued", texts_dir=texts)}
    assert sources["email/pl/_macros.html.j2"] is True
    assert sources["email/pl/issued.html.j2"] is False
    assert sources["email/layout.html.j2"] is False


def test_problems_name_the_file_and_line(tmp_path):
    # A syntax error (with its line), an unknown filter, a variable the reply never gets
    # (a refusal cannot show a code) and a misnamed file are each named.
    texts = _texts(tmp_path, {
        "pl/debt.txt.j2": "Dzień dobry,\n{% if balance_due %}\nzaległość\n",
        "pl/overdue.txt.j2": "{{ overdue_items|nosuchfilter }}\n",
        "en/debt.txt.j2": "Your code: {{ code }}, owed {{ balance_due|money }}\n",
        "pl/isued.txt.j2": "Dzień dobry\n",
    })
    problems = texts_problems(texts)
    text = "\n".join(map(str, problems))  # the CLI's English
    assert len(problems) == 4, problems
    assert f"{texts / 'pl/debt.txt.j2'}, line 3:" in text
    assert f"{texts / 'pl/overdue.txt.j2'}, line 1: No filter named 'nosuchfilter'" in text
    assert f"{texts / 'en/debt.txt.j2'}: unknown variable(s) code" in text
    assert f"{texts / 'pl/isued.txt.j2'}: no shipped template is called pl/isued.txt.j2" \
        in text
    assert texts_problems(_texts(tmp_path / "good", {"pl/issued.txt.j2": OWN_ISSUED})) == []
    # For the dashboard: catalogue keys and values; only the misnamed file blocks nothing.
    by_file = {Path(p.file).name: p for p in problems}
    assert (by_file["debt.txt.j2"].key, by_file["debt.txt.j2"].line) == ("syntax", 3)
    assert by_file["isued.txt.j2"].key == "misnamed" and not by_file["isued.txt.j2"].blocks
    assert by_file["overdue.txt.j2"].detail == "No filter named 'nosuchfilter'."


PAYLOAD = '{{ cycler.__init__.__globals__.os.popen("id -un").read() }}\n'


@pytest.mark.parametrize("payload", [
    PAYLOAD,
    '{{ ""["__class__"].__mro__ }}\n',
    '{{ cycler|attr("__init__") }}\n',
])
def test_a_library_text_runs_in_the_sandbox(tmp_path, payload):
    # A library's texts are its input: rendering them never reaches Python's insides
    # (the payload ran `id -un` in a plain environment), and the check names the file.
    from jinja2.exceptions import SecurityError

    texts = _texts(tmp_path, {"pl/issued.txt.j2": payload})
    for render in (render_reply, render_plainly):
        with pytest.raises(SecurityError):
            render("issued", full_context(code="X-1"), texts_dir=texts)
    problems = texts_problems(texts)
    assert [(p.key, p.file, p.line) for p in problems] == \
        [("unsafe", str(texts / "pl/issued.txt.j2"), 1)], problems
    assert "SecurityError" in str(problems[0])


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    # pl/issued.txt.j2 -> /etc/hostname rendered the server's file into a reply; now it is
    # refused (no silent fall-back either) and named; a link inside the folder is fine.
    from mailbot.respond.render import OutsideTexts

    texts = _texts(tmp_path, {"pl/real.txt": "Filia nr 3: {{ balance_due|money }}\n"})
    (texts / "pl/issued.txt.j2").symlink_to("/etc/hostname")
    (texts / "pl/debt.txt.j2").symlink_to(texts / "pl/real.txt")
    with pytest.raises(OutsideTexts):
        render_reply("issued", full_context(code="X-1"), texts_dir=texts)
    problems = {Path(p.file).name: p for p in texts_problems(texts)}
    assert problems["issued.txt.j2"].key == "outside"
    assert problems["issued.txt.j2"].args == {"target": "/etc/hostname"}
    assert "debt.txt.j2" not in problems and problems["real.txt"].key == "misnamed"
    ctx = full_context(code="X-1")
    assert "Filia nr 3" in render_reply("debt", ctx, texts_dir=texts).text


def test_shipped_texts_render_the_same_in_the_sandbox(tmp_path):
    # A library with a texts folder renders its shipped templates sandboxed: byte for
    # byte what the plain environment gives, for every outcome that replies.
    from mailbot.respond.render import NOTICES, REPLY_OUTCOMES
    texts = _texts(tmp_path, {"pl/unused.txt": "x"})
    for outcome in (*REPLY_OUTCOMES, *NOTICES):
        ctx = full_context()
        assert render_plainly(outcome, ctx, texts_dir=texts) == render_plainly(outcome, ctx)
        assert render_plainly(outcome, ctx, texts_dir=texts, fresh=True) == \
            render_plainly(outcome, ctx)


def _config(tmp_path: Path, texts: str) -> Path:
    path = tmp_path / "mailbot.toml"
    path.write_text(f"""
database_url = "sqlite:///{tmp_path}/mailbot.db"
[smtp]
file_outbox = "{tmp_path}/outbox"
[[libraries]]
id = "f3"
name = "Filia 3"
texts_dir = "{texts}"
""", encoding="utf-8")
    return path


@pytest.mark.parametrize("broken", [False, True])
def test_mailbot_check_names_a_broken_text(tmp_path, capsys, broken):
    # A relative texts_dir counts from the config file's folder; a broken text is the
    # library's input: `mailbot check` names the file and exits 2. A good one is OK.
    _texts(tmp_path, {"pl/issued.txt.j2": OWN_ISSUED + ("{% endif %}" if broken else "")})
    config = _config(tmp_path, "texts/filia-3")
    capsys.readouterr()
    code = main(["--config", str(config), "check"])
    lines = capsys.readouterr().out.splitlines()
    line = next(x for x in lines if "reply texts" in x)
    if broken:
        assert code == 2, lines
        assert line.startswith("FAIL") and \
            f"{tmp_path}/texts/filia-3/pl/issued.txt.j2, line 4:" in line, line
    else:
        assert line.startswith("OK") and "1 reply use the library's own texts" in line, line
        assert code == 1, lines  # the reader source has no readers yet: that is not 2


def test_a_misspelt_variable_is_caught_by_check_render(tmp_path, capsys):
    # A macro called with a name the reply does not have is found by rendering the reply
    # with a sample patron and the library's settings.
    _texts(tmp_path, {"pl/issued.txt.j2":
                      '{% import "email/pl/_macros.txt.j2" as m %}{{ m.nosuchmacro(code) }}\n'})
    config = _config(tmp_path, "texts/filia-3")
    capsys.readouterr()
    assert main(["--config", str(config), "check"]) == 2
    line = next(x for x in capsys.readouterr().out.splitlines() if "reply texts" in x)
    assert "the issued reply does not render" in line and "pl/issued.txt.j2" in line, line
