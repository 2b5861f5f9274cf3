"""[[services]]: platforms as data (issue 20) — what the config accepts and refuses, how
a configured platform's subject is matched, and that a config without [[services]] knows
exactly Legimi and Empik Go, as before."""

from __future__ import annotations

import pickle
import re
import tomllib
from datetime import datetime
from pathlib import Path

import pytest

from mailbot.config import SERVICES, LibrarySettings, settings_from_dict
from mailbot.decide.context import reply_context
from mailbot.errors import ConfigError
from mailbot.intake.subjects import match_service, match_test_service
from mailbot.services import SHIPPED_CATALOGUE, Catalogue
from tests.botenv import WAW

ROOT = Path(__file__).resolve().parents[1]
EBOOKPOINT = {"id": "ebookpoint", "name": "ebookpoint BIBLIO",
              "subjects": ["EBOOKPOINT", "EBOOKPOINT BIBLIO"],
              "activation_url": "https://ebookpoint.pl/biblio"}


def _settings(tables=(), **library):  # noqa: ANN001, ANN202
    return settings_from_dict({"services": list(tables),
                               "libraries": [{"id": "lib", "name": "L", **library}]})


def test_without_services_the_shipped_two_are_all_there_is():
    # No [[services]]: Legimi and Empik Go, their names, subjects and pages as always.
    settings = _settings()
    assert settings.catalogue == SHIPPED_CATALOGUE
    assert settings.catalogue.ids == SERVICES == ("legimi", "empik_go")
    lib = settings.library("lib")
    assert lib.services == SERVICES
    assert lib.activation_url("legimi", settings.catalogue) == "https://www.legimi.pl/"
    assert lib.activation_url("empik_go", settings.catalogue) == "https://www.empikgo.com/"
    assert match_service("Re: Empik-Go", settings.catalogue) == "empik_go"
    assert match_service("EBOOKPOINT", settings.catalogue) is None


def test_a_configured_service_is_added_and_offered_by_default():
    # ebookpoint joins the shipped two; a library without `services` offers all three, one
    # with `services` only those; a library's own page wins over the service's.
    settings = settings_from_dict({"services": [EBOOKPOINT], "libraries": [
        {"id": "all", "name": "A", "activation_urls": {"ebookpoint": "https://e.pl/all"}},
        {"id": "two", "name": "B", "services": ["legimi", "ebookpoint"],
         "min_ages": {"ebookpoint": 13}}]})
    cat = settings.catalogue
    assert cat.ids == ("legimi", "empik_go", "ebookpoint")
    assert cat.name("ebookpoint") == "ebookpoint BIBLIO"
    assert cat.subject("ebookpoint") == "EBOOKPOINT"
    assert settings.library("all").services == ("legimi", "empik_go", "ebookpoint")
    assert settings.library("two").services == ("legimi", "ebookpoint")
    assert settings.library("all").activation_url("ebookpoint", cat) == "https://e.pl/all"
    assert settings.library("two").activation_url("ebookpoint", cat) == \
        "https://ebookpoint.pl/biblio"
    assert settings.library("two").min_age("ebookpoint") == 13
    assert settings.library("all").min_age("ebookpoint") == 0
    # Settings stay hashable and picklable (cache keys, worker processes).
    hash(settings.library("two"))
    assert pickle.loads(pickle.dumps(cat)) == cat
    assert hash(pickle.loads(pickle.dumps(cat))) == hash(cat)


def test_a_shipped_id_changes_only_what_its_table_gives():
    # [[services]] id = "legimi": a new page and a second subject; the name stays, Empik Go
    # is untouched. The library's activation_url_legimi still wins over it.
    settings = _settings([{"id": "legimi", "subjects": ["LEGIMI", "LEGIMI WBP"],
                           "activation_url": "https://www.legimi.pl/wbp/"}])
    legimi = settings.catalogue.get("legimi")
    assert (legimi.name, legimi.subjects) == ("Legimi", ("LEGIMI", "LEGIMI WBP"))
    assert settings.catalogue.get("empik_go") == SHIPPED_CATALOGUE.get("empik_go")
    lib = settings.library("lib")
    assert lib.activation_url("legimi", settings.catalogue) == "https://www.legimi.pl/wbp/"
    own = _settings([{"id": "legimi", "activation_url": "https://x.pl/"}],
                    activation_url_legimi="https://filia.pl/legimi")
    assert own.library("lib").activation_url("legimi", own.catalogue) == \
        "https://filia.pl/legimi"
    # "": no page (the reply says it is on the library's website), not the default.
    none = _settings(activation_url_empik_go="")
    assert none.library("lib").activation_url("empik_go", none.catalogue) == ""


def test_a_configured_platform_is_matched_as_tolerantly_as_legimi():
    # Case, accents, punctuation, reply prefixes, tags, lookalike letters, TEST forms.
    cat = _settings([EBOOKPOINT]).catalogue
    for subject in ("EBOOKPOINT", "ebookpoint", "Re: ebookpoint", "Odp: Fwd: [EXT] EBOOKPOINT",
                    "ebookpoint biblio", "E-BOOKPOINT BIBLIO!", "ЕBOOKPOINT",  # Cyrillic Е
                    "  ebook point  "):
        assert match_service(subject, cat) == "ebookpoint", subject
    for subject in ("EBOOKPOINT LEGIMI", "ebookpoint please", "[Auto-Reply] Re: EBOOKPOINT"):
        assert match_service(subject, cat) is None, subject
    assert match_test_service("TEST ebookpoint biblio", cat) == "ebookpoint"
    assert match_service("LEGIMI", cat) == "legimi"
    # Another config's catalogue does not know it (no state shared between configs).
    assert match_service("EBOOKPOINT", SHIPPED_CATALOGUE) is None


def test_one_a_month_false_is_counted_only_against_itself():
    cat = _settings([{**EBOOKPOINT, "one_a_month": False}]).catalogue
    assert cat.counted_against("ebookpoint", per_service=False) == "ebookpoint"
    assert cat.counted_against("legimi", per_service=False) is None
    assert cat.counted_against("legimi", per_service=True) == "legimi"
    assert _settings([EBOOKPOINT]).catalogue.counted_against(
        "ebookpoint", per_service=False) is None


@pytest.mark.parametrize(("tables", "library", "column", "message"), [
    ([{"id": "Ebook Point", "name": "E"}], {}, r"services\[0\]\.id", "short id"),
    ([{"id": "a" * 21, "name": "E"}], {}, r"services\[0\]\.id", "at most 20"),
    ([{"id": "ebookpoint"}], {}, r"services\[0\]\.name", "is required"),
    ([EBOOKPOINT, EBOOKPOINT], {}, r"services\[1\]\.id", "duplicate service id"),
    ([{**EBOOKPOINT, "subjects": ["Empik GO"]}], {}, r"services\[0\]\.subjects",
     "would ask for both 'empik_go' and 'ebookpoint'"),
    ([{**EBOOKPOINT, "subjects": ["TEST EBOOK"]}], {}, r"services\[0\]\.subjects", "TEST"),
    ([{**EBOOKPOINT, "subjects": ["--"]}], {}, r"services\[0\]\.subjects", "no letter"),
    ([{**EBOOKPOINT, "one_a_month": "yes"}], {}, r"services\[0\]\.one_a_month",
     "true or false"),
    ([{**EBOOKPOINT, "instructions": {"de": "x"}}], {}, r"services\[0\]\.instructions\.de",
     "unknown key"),
    ([EBOOKPOINT], {"services": ["legimi", "ebokpoint"]}, r"libraries\[0\]\.services",
     r"unknown service 'ebokpoint' \(known: legimi, empik_go, ebookpoint\)"),
    ([], {"services": ["ebookpoint"]}, r"libraries\[0\]\.services",
     r"unknown service 'ebookpoint' \(known: legimi, empik_go\)"),
    ([], {"min_ages": {"ebookpoint": 13}}, r"libraries\[0\]\.min_ages\.ebookpoint",
     "unknown service"),
    ([], {"activation_urls": {"legimi": 3}}, r"libraries\[0\]\.activation_urls\.legimi",
     "must be a string"),
])
def test_a_wrong_service_table_names_the_key(tables, library, column, message):
    # Each mistake is a ConfigError (exit 2) naming the key and what is wrong.
    with pytest.raises(ConfigError) as caught:
        _settings(tables, **library)
    assert re.search(column, caught.value.column or ""), caught.value
    assert re.search(message, str(caught.value)), caught.value


def test_a_service_table_error_names_the_table_by_its_id():
    with pytest.raises(ConfigError, match=r'in \[\[services\]\] id = "ebookpoint"'):
        _settings([{"id": "ebookpoint", "name": "E", "colour": "red"}])
    with pytest.raises(ConfigError, match=r"must be an array of tables \(\[\[services\]\]\)"):
        settings_from_dict({"services": {"id": "x"}})


def test_the_example_config_documents_a_working_services_table():
    # config.example.toml's commented [[services]] example, uncommented, is valid.
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    start = text.index("# [[services]]")
    block = text[start:text.index("# One table per library")]
    lines = [re.sub(r"^# ?", "", line) for line in block.splitlines()
             if line.startswith("#")]
    data = tomllib.loads("\n".join(lines))
    settings = settings_from_dict({**data, "libraries": [{"id": "lib", "name": "L"}]})
    ebookpoint = settings.catalogue.get("ebookpoint")
    assert ebookpoint is not None and ebookpoint.steps("pl") and ebookpoint.steps("en")
    assert settings.library("lib").services[-1] == "ebookpoint"


def test_the_reply_context_has_the_services_name_page_steps_and_subjects():
    # A configured service's own steps (the page put in), and the library's subjects for
    # "write … in the subject"; the shipped two leave both to the templates.
    settings = _settings([{**EBOOKPOINT, "instructions": {
        "pl": "Prosimy wejść na {activation_url}.\nProsimy wpisać kod."}}])
    lib = settings.library("lib")
    ctx = reply_context(lib, WAW, 2026, 12, service="ebookpoint", subject="EBOOKPOINT",
                        received_at=datetime(2026, 12, 1, tzinfo=WAW),
                        card_number=None, patron_name=None, catalogue=settings.catalogue)
    assert ctx["service_name"] == "ebookpoint BIBLIO"
    assert ctx["activation_url"] == "https://ebookpoint.pl/biblio"
    assert ctx["service_steps"].pl == ("Prosimy wejść na {activation_url}.",
                                       "Prosimy wpisać kod.")
    assert ctx["service_steps"].en is None
    assert ctx["service_subjects"] == ("LEGIMI", "EMPIK GO", "EBOOKPOINT")
    plain = reply_context(LibrarySettings(id="x", name="X"), WAW, 2026, 12, service="legimi",
                          subject="LEGIMI", received_at=ctx["received_at"], card_number=None,
                          patron_name=None)
    assert plain["service_steps"] is None and plain["service_subjects"] is None
    assert plain["activation_url"] == "https://www.legimi.pl/"
    assert isinstance(settings.catalogue, Catalogue)
