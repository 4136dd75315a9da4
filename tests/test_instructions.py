"""Instruction templates: the shipped files, the linter on good and bad YAML, Super-NI drafts from real task files."""

from __future__ import annotations

import io
import json

import pytest
from support import MIRROR, PROJECT_ROOT, TASKS, plain, task_file
from typer.testing import CliRunner

from medi.authoring.lint import check_wording, lint, related
from medi.cli import app
from medi.stages.instruct import (
    PATTERN,
    InstructionBook,
    draft_superni,
    read_instruction_file,
    write_superni_drafts,
)

SHIPPED = sorted(p for p in (PROJECT_ROOT / "instructions").glob("*.yaml") if not p.name.startswith("_"))


def test_every_catalog_source_has_instructions(catalog):
    """An entry with a primary and two paraphrases per side, or (Super-NI) a draft rendered from its task file."""
    book = InstructionBook.load(catalog.root)
    assert not book.missing(list(catalog.specs.values()))
    for name, spec in catalog.specs.items():
        entry = book.entries.get(name)
        if entry is None:
            assert spec.adapter == "superni" and book.drafting, name
            continue
        assert len(entry.query) >= 3, name
        assert (entry.document is None) == spec.symmetric, name  # query and document wordings when asymmetric
        assert entry.status in ("draft", "reviewed", "rejected") and "reviewer" in entry.model_fields_set


def test_the_shipped_instructions_lint_clean_but_for_their_drafts():
    """No error; one warning per entry still a draft (issue 21: lint reported 0 warnings for them), at its status
    line; warnings leave the exit code 0."""
    report = lint(PROJECT_ROOT)
    book = InstructionBook.load(PROJECT_ROOT)
    drafts = sorted(name for name, entry in book.entries.items() if entry.status == "draft")
    assert drafts and [(f.level, f.code) for f in report.findings] == [("warning", "draft")] * len(drafts)
    assert sorted(f.source for f in report.findings) == drafts
    first = next(f for f in report.findings if f.source == drafts[0])
    text = (PROJECT_ROOT / first.file).read_text(encoding="utf-8").splitlines()
    assert text[first.line - 1] == "  status: draft" and text.index(f"{drafts[0]}:") < first.line
    assert report.sources > 800 and report.entries == len(book.entries)
    result = CliRunner().invoke(app, ["instructions", "lint", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert (json.loads(result.output)["errors"], json.loads(result.output)["warnings"]) == (0, len(drafts))
    table = CliRunner().invoke(app, ["instructions", "lint"])
    assert table.exit_code == 0 and f": 0 errors, {len(drafts)} warnings" in " ".join(plain(table.stdout).split())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_round_trip_leaves_every_shipped_file_byte_identical(path):
    yaml, data = read_instruction_file(path)
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    assert buffer.getvalue() == path.read_text(encoding="utf-8")


BAD_SOURCES = {
    "tests/pairs_a": {"adapter": "st_jsonl", "path": "pairs_a.jsonl", "symmetric": False},
    "tests/pairs_b": {"adapter": "st_jsonl", "path": "pairs_b.jsonl", "symmetric": False},
    "tests/sentences": {"adapter": "st_jsonl", "path": "s.jsonl", "symmetric": True},
    "tests/news_titles": {"adapter": "st_jsonl", "path": "n.jsonl", "symmetric": True},
    "tests/recipes": {"adapter": "st_jsonl", "path": "r.jsonl", "symmetric": True},
    "tests/exception": {"adapter": "st_jsonl", "path": "e.jsonl", "symmetric": True},
    "tests/no_entry": {"adapter": "st_jsonl", "path": "x.jsonl", "symmetric": True},
}
BAD_YAML = """\
# linter test cases, one per entry
tests/pairs_a:
  query:
    - "Represent the product question for retrieving the review that answers it:"
    - "Represent the shopper question for finding customer reviews with its answer:"
    - "Find the review that answers this shopper question"
  document:
    - "Represent the product question for retrieving the review that answers it:"
    - "Represent the customer review for finding questions it answers:"
    - "Represent the review text for matching shopper questions:"
  status: draft

tests/pairs_b:
  query:
    - "Represent the {domain} question for retrieving answers:"
  status: reviewed
  reviewer: null
  date: 2026-01-01

tests/sentences:
  query:
    - "Represent the news headline for retrieving headlines about the same event:"
    - "Represent the news headline for retrieving headlines about the same events:"
    - "Represent  the headline for finding other headlines of one story:"
  status: draft

tests/news_titles:
  query:
    - "Represent the news headline for retrieving headlines about the same event:"
    - "Represent the title of a news story for finding titles of the same story:"
    - "Represent the newspaper headline for matching it with headlines of one event:"
  status: draft

tests/recipes:
  query:
    - "Represent the news headline for retrieving headlines about the same event:"
    - "Represent the recipe title for finding recipes of the same dish:"
    - "Represent the dish name for retrieving recipes that cook it:"
  status: draft

tests/exception:
  query:
    - "Given a tweet, retrieve tweets of the same stance"
    - "Represent the tweet for retrieving tweets of the same stance:"
    - "Represent the social media post for finding posts that argue the same way:"
  status: reviewed
  reviewer: A. Person
  date: 2026-02-03
  note: the MTEB-style imperative wording is kept on purpose for this source

tests/unknown:
  query:
    - "Represent the sentence for retrieving similar sentences:"
  status: draft
"""


@pytest.fixture
def bad_home(medi_home):
    for name, body in BAD_SOURCES.items():
        medi_home.add_source(name, body)
    (medi_home.root / "instructions" / "tests.yaml").write_text(BAD_YAML, encoding="utf-8")
    return medi_home


def line_of(text: str, needle: str, after: str | None = None) -> int:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    return next(i for i, line in enumerate(lines) if i >= start and needle in line) + 1


def found(report, source: str) -> dict[str, list]:
    by_code: dict[str, list] = {}
    for f in report.findings:
        if f.source == source:
            by_code.setdefault(f.code, []).append(f)
    return by_code


def test_linter_findings_on_bad_yaml_with_file_and_line(bad_home):
    report = lint(bad_home.root)
    file = "instructions/tests.yaml"

    a = found(report, "tests/pairs_a")
    assert [f.line for f in a["pattern"]] == [line_of(BAD_YAML, "Find the review that")] * 2  # no Represent, no ":"
    assert a["query-equals-document"][0].level == "error" and a["query-equals-document"][0].file == file

    b = found(report, "tests/pairs_b")
    assert b["placeholder"][0].line == line_of(BAD_YAML, "{domain}") and b["placeholder"][0].level == "error"
    assert b["no-document"][0].level == "error"  # asymmetric source with query wordings only
    assert b["reviewer"][0].level == "error"  # reviewed without a reviewer
    assert b["paraphrases"][0].level == "warning"  # one wording, no paraphrases

    s = found(report, "tests/sentences")
    assert s["paraphrase-too-close"][0].line == line_of(BAD_YAML, "the same events:")
    assert s["whitespace"][0].line == line_of(BAD_YAML, "Represent  the headline")

    # same primary: tests/recipes is unrelated to both news sources; news_titles vs sentences is flagged too
    near = [f for f in report.findings if f.code == "near-duplicate"]
    assert {f.source for f in near} == {"tests/sentences", "tests/news_titles"}
    assert any("tests/recipes" in f.message for f in near)

    assert "pattern" not in found(report, "tests/exception")  # reviewed with a note: the exception is allowed
    assert found(report, "tests/unknown")["unknown-source"][0].level == "error"
    assert found(report, "tests/no_entry")["missing"][0].message == "no instruction entry"

    result = CliRunner().invoke(app, ["instructions", "lint"], env={"COLUMNS": "250"})
    assert result.exit_code == 1
    output = plain(result.output)
    assert f"{file}:{line_of(BAD_YAML, '{domain}')}" in output and "placeholder" in output
    as_json = json.loads(CliRunner().invoke(app, ["instructions", "lint", "--format", "json"]).output)
    assert as_json["errors"] == len(report.errors) and as_json["findings"][0]["file"]


def test_an_exception_excuses_the_pattern_but_not_a_placeholder():
    assert [c for _, c, _ in check_wording("Given a tweet, retrieve similar tweets", excepted=False)] == ["pattern"] * 2
    assert check_wording("Given a tweet, retrieve tweets of the same stance", excepted=True) == []
    assert [c for _, c, _ in check_wording("Represent the <type> for retrieving it:", excepted=True)] == ["placeholder"]
    assert not PATTERN.match("Represent the sentence:")  # no objective
    assert PATTERN.match("Represent the Wikipedia question for retrieving supporting documents:")


def test_related_sources_share_a_dataset_word():
    assert related("st/msmarco-triplets", "flagembedding/msmarco")
    assert related("st/yahoo_answers_title_answer", "st/yahoo_answers_question_answer")
    assert not related("kilt/triviaqa", "st/squad_pairs")
    assert not related("st/quora_duplicates", "st/stackexchange_duplicate_questions_title_title")


def test_drafts_from_real_task_files(catalog):
    tables = InstructionBook.load(catalog.root).drafting
    trec = task_file("task1289_trec_classification")  # Question Understanding, Miscellaneous
    assert draft_superni(trec, tables) == [
        "Represent the question for classifying what it is asking about:",
        "Represent the given question in a way that is useful for classifying what it is asking about:",
        "Represent the following question for the purpose of classifying what it is asking about:",
    ]
    clariq = task_file("task227_clariq_classification")  # Dialogue domain
    assert (
        draft_superni(clariq, tables)[0] == "Represent the dialogue question for classifying what it is asking about:"
    )
    # a category the tables lack: the text type comes from the Definition ("you are given a context, a sentence")
    story = task_file("task293_storycommonsense_emotion_text_generation")
    unknown = {**story, "Categories": ["A Category Added Later"]}
    assert draft_superni(unknown, tables)[0] == (
        "Represent the story sentence for retrieving texts of the same task with similar answers:"
    )
    for task in sorted(TASKS.glob("*.json")):
        for wording in draft_superni(json.loads(task.read_text(encoding="utf-8")), tables):
            assert not [c for level, c, _ in check_wording(wording) if level == "error"], (task.name, wording)


def test_a_super_ni_task_without_an_entry_is_drafted_at_build_time(medi_home, make_release, tmp_path):
    """Every shipped task has an entry, so take one away in this copy: the build renders a draft from the task
    file with the drafting tables, uses it for every text and records it as a draft."""
    name, task = "superni/task1146_country_capital", "task1146_country_capital"
    path = medi_home.root / "instructions" / "superni.yaml"
    blocks = path.read_text(encoding="utf-8").split("\n\n")
    kept = [b for b in blocks if not b.lstrip("\n").startswith(f"{name}:")]
    assert len(kept) == len(blocks) - 1
    path.write_text("\n\n".join(kept), encoding="utf-8")
    assert lint(medi_home.root).drafted == 1

    release = make_release(name, tmp_path / "out", [MIRROR])
    used = release.manifest["sources"][name]["instructions"]
    assert (used["origin"], used["status"]) == ("drafted from the task file", "draft")
    drafted = draft_superni(task_file(task), InstructionBook.load(medi_home.root).drafting)
    assert used["query"] == used["document"] == drafted
    rows = release.rows_of(name)
    assert rows and {(r["query"]["instruction"], r["pos"]["instruction"], r["neg"]["instruction"]) for r in rows} == {
        (drafted[0], drafted[0], drafted[0])
    }


def test_instructions_draft_writes_reviewable_entries(medi_home, catalog):
    (medi_home.root / "instructions" / "superni.yaml").unlink()  # start from no drafts at all
    result = CliRunner().invoke(app, ["instructions", "draft", "--data-dir", str(TASKS.parents[1])])
    assert result.exit_code == 0, result.output
    book = InstructionBook.load(medi_home.root)
    train_tasks = {f"superni/{p.stem}" for p in TASKS.glob("*.json")} & set(catalog.specs)
    written = {n for n in book.entries if n.startswith("superni/")}
    assert written == train_tasks and written  # test tasks in the mirror get no entry
    entry = book.entries["superni/task1289_trec_classification"]
    assert entry.status == "draft" and entry.document is None
    assert entry.query == draft_superni(task_file("task1289_trec_classification"), book.drafting)
    assert "Categories: Question Understanding" in entry.note
    text = (medi_home.root / "instructions" / "superni.yaml").read_text(encoding="utf-8")
    assert text.startswith("# Sources: Super-NI train tasks")
    again = CliRunner().invoke(app, ["instructions", "draft", "--data-dir", str(TASKS.parents[1])])
    assert "0 draft entries" in plain(again.output)
    assert (medi_home.root / "instructions" / "superni.yaml").read_text(encoding="utf-8") == text
    assert not lint(medi_home.root).errors
    with pytest.raises(Exception, match="not a Super-NI train task"):
        write_superni_drafts(medi_home.root, TASKS, ["task1562_zest_text_modification"])


def test_broken_yaml_and_repeated_entries_are_findings_not_crashes(medi_home):
    folder = medi_home.root / "instructions"
    (folder / "broken.yaml").write_text("st/AllNLI:\n  query: [unclosed\n", encoding="utf-8")
    repeated = (folder / "st.yaml").read_text(encoding="utf-8").split("\n\n")[1]  # the file's first entry
    (folder / "again.yaml").write_text(repeated + "\n", encoding="utf-8")
    report = lint(medi_home.root)
    codes = {(f.file, f.code) for f in report.errors}
    assert ("instructions/broken.yaml", "yaml") in codes
    duplicate = next(f for f in report.errors if f.code == "duplicate-entry")
    assert duplicate.file == "instructions/st.yaml" and "already in instructions/again.yaml:1" in duplicate.message
