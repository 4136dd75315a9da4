"""The review page in a real headless browser (Debian's chromium driven by Playwright), and decisions imports.

Every test exports the page from the real demo release and imports into a MEDI_HOME copy of instructions/.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import shutil
import urllib.request
from pathlib import Path

import pytest
from support import MIRROR, PROJECT_ROOT, plain
from typer.testing import CliRunner

from medi.authoring.review import export_review, import_decisions, serve_in_thread, serve_review
from medi.cli import app
from medi.errors import MediError
from medi.stages.instruct import InstructionBook

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def page_data(page: Path) -> dict:
    """The JSON the exported page embeds (what its script renders)."""
    text = page.read_text(encoding="utf-8")
    start = text.index('id="review-data">') + len('id="review-data">')
    return json.loads(text[start : text.index("</script>", start)])


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """(removed, added) lines, as `git diff` shows them."""
    diff = list(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0))
    removed = [line[1:] for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in diff if line.startswith("+") and not line.startswith("+++")]
    return removed, added


def snapshot(home) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted((home.root / "instructions").glob("*.yaml"))}


def decision_for(data: dict, source: str, actions: dict[tuple[str, int], tuple[str, str | None]], reviewer="R. Viewer"):
    """A decisions file as the page writes it (used where no browser is needed)."""
    view = next(s for s in data["sources"] if s["name"] == source)
    decisions = []
    for (field, index), (action, text) in sorted(actions.items()):
        d = {"field": field, "index": index, "original": view["wordings"][field][index], "action": action}
        if text is not None:
            d["text"] = text
        decisions.append(d)
    return {
        "format": data["decisions_format"],
        "export_id": data["export_id"],
        "release": data["release"],
        "reviewer": reviewer,
        "date": "2026-11-20",
        "sources": {
            source: {
                "file": view["file"],
                "origin": view["origin"],
                "symmetric": view["symmetric"],
                "wordings": view["wordings"],
                "note": view["note"],
                "decisions": decisions,
            }
        },
    }


@pytest.fixture
def exported(demo_release, medi_home, tmp_path) -> Path:
    return export_review(demo_release.out, tmp_path / "review", root=medi_home.root)


def test_export_shows_every_source_with_real_rows(exported, demo_release, medi_home):
    data = page_data(exported)
    assert [s["name"] for s in data["sources"]] == [t["task_name"] for t in demo_release.manifest["tasks"]]
    assert data["selection"].startswith("vote-k")
    book = InstructionBook.load(medi_home.root)
    rows = {row["row_id"]: row for row in demo_release.dataset}
    for source in data["sources"]:
        assert 1 <= len(source["rows"]) <= 3
        for shown in source["rows"]:  # real rows of the release, instructions and scores included
            real = rows[shown["row_id"]]
            assert real["task_name"] == source["name"]
            assert shown["query"] == real["query"] and shown["neg"]["text"] == real["neg"]["text"]
            assert shown["pos_score"] == pytest.approx(real["pos_score"])
        entry = book.entries.get(source["name"])
        if entry is not None:
            assert source["wordings"]["query"] == entry.query and source["file"] == book.files[source["name"]]
        else:
            assert source["origin"] == "drafted from the task file" and source["file"] is None
    msmarco = next(s for s in data["sources"] if s["name"] == "st/msmarco-triplets")
    assert msmarco["symmetric"] is False and len(msmarco["wordings"]["document"]) == 3
    page = exported.read_text(encoding="utf-8")
    assert "http://" not in page.split("<script")[0] and "src=" not in page  # nothing loaded from elsewhere


def test_export_is_the_same_for_the_same_release_and_seed(demo_release, medi_home, tmp_path):
    first = page_data(export_review(demo_release.out, tmp_path / "a", root=medi_home.root))
    second = page_data(export_review(demo_release.out, tmp_path / "b", root=medi_home.root))
    assert [s["rows"] for s in first["sources"]] == [s["rows"] for s in second["sources"]]
    randomly = page_data(export_review(demo_release.out, tmp_path / "c", root=medi_home.root, pick="random"))
    assert randomly["selection"].startswith("random")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_review_in_a_real_browser_edit_reject_download_import(demo_release, medi_home, tmp_path):
    from playwright.sync_api import sync_playwright

    medi_home.set_draft("st/AllNLI")  # a draft beside reviewed entries, whatever the shipped files say
    exported = export_review(demo_release.out, tmp_path / "review", root=medi_home.root)
    data = page_data(exported)
    status = {s["name"]: s["status"] for s in data["sources"]}
    assert status["st/AllNLI"] == "draft" and "reviewed" in status.values()
    allnli = next(s for s in data["sources"] if s["name"] == "st/AllNLI")
    msmarco = next(s for s in data["sources"] if s["name"] == "flagembedding/msmarco")
    old_query, rejected = allnli["wordings"]["query"][1], msmarco["wordings"]["document"][2]
    new_query = "Represent the SNLI premise sentence for retrieving hypotheses it entails:"
    before = snapshot(medi_home)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(accept_downloads=True)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(exported.resolve().as_uri())
        assert page.locator("section.source").count() == len(data["sources"])
        page.get_by_label("Reviewer").fill("Ada Reviewer")

        wording = page.locator('section[data-source="st/AllNLI"] li.wording[data-field="query"][data-index="1"]')
        wording.get_by_role("button", name="Edit").click()
        wording.get_by_label("edited wording").fill(new_query)
        wording.get_by_role("button", name="Save").click()
        assert wording.get_attribute("data-decision") == "edit"

        other = page.locator('section[data-source="flagembedding/msmarco"] li.wording[data-field="document"]')
        other.nth(2).get_by_role("button", name="Reject").click()
        assert other.nth(2).get_attribute("data-decision") == "reject"
        assert page.locator("#progress").inner_text() == f"2 of {sum_wordings(data)} wordings decided"

        shown = "els => els.filter(e => !e.hidden).map(e => e.dataset.source)"
        for wanted in ("reviewed", "draft"):  # the status filter shows exactly the sources with that status
            page.select_option("#filter-status", wanted)
            visible = page.locator("section.source").evaluate_all(shown)
            assert visible == [name for name, s in status.items() if s == wanted]
            assert page.locator("section.source:visible").count() == len(visible)
        page.select_option("#filter-status", "all")
        page.select_option("#filter-decided", "undecided")
        assert page.locator("section.source:visible").count() == len(data["sources"])

        with page.expect_download() as download_info:
            page.get_by_role("button", name="Download decisions.json").click()
        download = download_info.value
        assert download.suggested_filename == "decisions.json"
        decisions_path = tmp_path / "decisions.json"
        download.save_as(decisions_path)
        browser.close()
    assert errors == []

    result = CliRunner().invoke(app, ["review", "import", str(decisions_path)])
    assert result.exit_code == 0, result.output
    assert "st/AllNLI: query[1] edited" in plain(result.output)
    after = snapshot(medi_home)
    assert changed_lines(before["st.yaml"], after["st.yaml"]) == ([f'  - "{old_query}"'], [f'  - "{new_query}"'])
    assert changed_lines(before["flagembedding.yaml"], after["flagembedding.yaml"]) == ([f'  - "{rejected}"'], [])
    assert {name for name in after if after[name] != before[name]} == {"st.yaml", "flagembedding.yaml"}
    book = InstructionBook.load(medi_home.root)
    assert book.entries["st/AllNLI"].query[1] == new_query
    assert book.entries["st/AllNLI"].status == "draft"  # one wording decided of three: still a draft
    assert rejected not in book.entries["flagembedding/msmarco"].document


def sum_wordings(data: dict) -> int:
    return sum(len(s["wordings"]["query"]) + len(s["wordings"]["document"] or []) for s in data["sources"])


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_review_page_served_on_localhost(exported):
    server = serve_review(exported.parent, port=0)
    serve_in_thread(server)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        with urllib.request.urlopen(url) as response:
            assert response.read() == exported.read_bytes()
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM)
            page = browser.new_page()
            page.goto(url)
            assert page.locator("section.source h2").first.inner_text() == page_data(exported)["sources"][0]["name"]
            browser.close()
    finally:
        server.shutdown()
        server.server_close()


def test_accepting_every_wording_marks_the_source_reviewed(demo_release, medi_home, tmp_path):
    medi_home.set_draft("st/msmarco-triplets")  # an entry nobody has reviewed yet, whatever the shipped file says
    data = page_data(export_review(demo_release.out, tmp_path / "review", root=medi_home.root))
    view = next(s for s in data["sources"] if s["name"] == "st/msmarco-triplets")
    assert view["status"] == "draft"
    actions = {(f, i): ("accept", None) for f in ("query", "document") for i in range(len(view["wordings"][f]))}
    path = tmp_path / "decisions.json"
    path.write_text(json.dumps(decision_for(data, "st/msmarco-triplets", actions)), encoding="utf-8")
    before = snapshot(medi_home)["st.yaml"]
    import_decisions(path, root=medi_home.root)
    removed, added = changed_lines(before, snapshot(medi_home)["st.yaml"])
    assert removed == ["  status: draft", "  reviewer: null", "  date: null"]
    assert added == ["  status: reviewed", "  reviewer: R. Viewer", "  date: 2026-11-20"]
    entry = InstructionBook.load(medi_home.root).entries["st/msmarco-triplets"]
    assert (entry.status, entry.reviewer, entry.date) == ("reviewed", "R. Viewer", dt.date(2026, 11, 20))


def test_rejecting_every_query_wording_rejects_the_source(exported, medi_home, tmp_path):
    data = page_data(exported)
    actions = {("query", i): ("reject", None) for i in range(3)}
    path = tmp_path / "decisions.json"
    path.write_text(json.dumps(decision_for(data, "st/AllNLI", actions)), encoding="utf-8")
    import_decisions(path, root=medi_home.root)
    entry = InstructionBook.load(medi_home.root).entries["st/AllNLI"]
    assert entry.status == "rejected" and len(entry.query) == 3  # wordings kept for the rewrite; build refuses it


def test_stale_decisions_are_refused_and_nothing_is_written(exported, medi_home, tmp_path):
    data = page_data(exported)
    path = tmp_path / "decisions.json"
    edit = {("query", 0): ("edit", "Represent the NLI sentence for retrieving its entailed hypotheses:")}
    path.write_text(json.dumps(decision_for(data, "st/AllNLI", edit)), encoding="utf-8")
    st = medi_home.root / "instructions" / "st.yaml"
    primary = next(s for s in data["sources"] if s["name"] == "st/AllNLI")["wordings"]["query"][0]
    st.write_text(st.read_text(encoding="utf-8").replace(primary, primary[:-1] + " (changed):"), encoding="utf-8")
    before = snapshot(medi_home)
    with pytest.raises(MediError, match=r"(?s)stale decisions, nothing imported.*st/AllNLI: query\[0\] was"):
        import_decisions(path, root=medi_home.root)
    assert snapshot(medi_home) == before
    result = CliRunner().invoke(app, ["review", "import", str(path)])
    assert result.exit_code == 1 and "stale" in plain(result.output)


def test_a_drafted_super_ni_task_gets_its_own_entry(make_release, medi_home, tmp_path, catalog):
    """A task drafted at build time (no entry yet: here, no superni.yaml at all) gets one when reviewed."""
    (medi_home.root / "instructions" / "superni.yaml").unlink()
    name = "superni/task1146_country_capital"
    release = make_release(name, tmp_path / "out", [MIRROR])  # built without an entry: drafted from the task file
    data = page_data(export_review(release.out, tmp_path / "review", root=medi_home.root))
    view = next(s for s in data["sources"] if s["name"] == name)
    assert (view["origin"], view["status"], view["file"]) == ("drafted from the task file", "draft", None)
    edited = "Represent the country name for retrieving countries whose capital is asked the same way:"
    actions = {("query", 0): ("edit", edited), ("query", 1): ("accept", None), ("query", 2): ("reject", None)}
    path = tmp_path / "decisions.json"
    path.write_text(json.dumps(decision_for(data, name, actions)), encoding="utf-8")
    result = import_decisions(path, root=medi_home.root)
    assert result.files == {"instructions/superni.yaml": [name]}
    text = (medi_home.root / "instructions" / "superni.yaml").read_text(encoding="utf-8")
    assert text.startswith("# instructions/superni.yaml: instructions for medi")
    book = InstructionBook.load(medi_home.root)
    entry = book.entries[name]
    assert entry.query == [edited, view["wordings"]["query"][1]]
    assert (entry.status, entry.reviewer) == ("reviewed", "R. Viewer")
    wordings = book.for_source(catalog.specs[name], {})
    assert wordings.query[0] == edited and wordings.origin == "instructions/superni.yaml"


def test_decisions_that_do_not_match_the_page_are_refused(exported, tmp_path, medi_home):
    data = page_data(exported)
    decisions = decision_for(data, "st/AllNLI", {("query", 1): ("accept", None)})
    decisions["sources"]["st/AllNLI"]["decisions"][0]["original"] = "Represent something else:"
    path = tmp_path / "decisions.json"
    path.write_text(json.dumps(decisions), encoding="utf-8")
    with pytest.raises(MediError, match=r"does not match the wordings the page showed"):
        import_decisions(path, root=medi_home.root)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(MediError, match="cannot read decisions"):
        import_decisions(path, root=medi_home.root)


def test_the_page_template_ships_with_the_package():
    assert (PROJECT_ROOT / "medi" / "authoring" / "review_page.html").is_file()
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"medi.authoring" = ["*.html"]' in pyproject
