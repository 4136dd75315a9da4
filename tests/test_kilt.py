"""KILT sources from the upstream files: task rows joined with their provenance paragraphs from the knowledge source.

The fixtures are made here in KILT's upstream layouts (a ``<task>-train-kilt.jsonl`` task file and a
``kilt_knowledgesource.json`` of one page per line) from real text: the Natural Questions queries and Wikipedia
passages of FlagEmbedding's ``retrieval/nq.jsonl`` example file (tests/fixtures, MIT; provenance in
tests/fixtures/README.md). Each positive passage becomes paragraph 1 of a page titled by hand after the DPR title the
passage starts with; negatives fill other paragraphs and the unneeded pages.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tracemalloc
import unicodedata
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import FLAG, json_lines, spec
from typer.testing import CliRunner

from medi import fetch as fetch_module
from medi.adapters import get_adapter, kilt
from medi.adapters.kilt import KnowledgeIndex, referenced_span, span_reference
from medi.build import BuildOptions
from medi.cli import app
from medi.errors import Problem, SourceError
from medi.fetch import fetch, locate_in_mirrors, sha256_file
from medi.schema import Record, records_of
from medi.stages.checkpoint import StageOutput
from medi.stages.normalize import clean_text
from medi.stages.sample import Sampler, sample_size
from medi.stages.units import CLEAN, SAMPLE, SELECT, Runner, rows_read, run_source

NQ = json_lines(FLAG / "retrieval" / "nq.jsonl")
TITLES = [  # the Wikipedia title each positive passage starts with (DPR passages are "<title> <text>")
    "Big Little Lies (TV series)",
    "Waiting for a Girl Like You",
    "Arctic Norway",
    "Green Eggs and Ham",
    "Peter Ostrum",
    "Bates Motel (season 5)",
    "Game of Thrones (season 7)",
    "Succession to the British throne",
    "Pendleton Civil Service Reform Act",
    "Spanish–American War",
]
MISSING_PAGE = "999999999"


def page_id(index: int) -> str:
    return str(27_000_000 + index)


def needed_page(index: int) -> dict:
    """Paragraph 0 is the title line (as in KILT), 1 the positive passage, 2 a second real passage, 3 a section line."""
    row, title = NQ[index], TITLES[index]
    assert row["pos"][0].startswith(title)
    text = [title, row["pos"][0][len(title) :].strip(), row["neg"][0], "Section::::See also."]
    return {"_id": page_id(index), "wikipedia_id": page_id(index), "wikipedia_title": title, "text": text}


def unneeded_pages(count: int) -> list[dict]:
    texts = [neg for row in NQ for neg in row["neg"][1:]]
    return [
        {
            "_id": str(n),
            "wikipedia_id": str(n),
            "wikipedia_title": f"Unneeded page {n}",
            "text": [f"Unneeded page {n}\n", texts[n % len(texts)] + "\n"],
            "anchors": [{"text": "linked", "href": "x", "paragraph_id": 1, "wikipedia_id": page_id(0)}],
        }
        for n in range(1, count + 1)
    ]


def provenance(index: int, start: int, end: int, wikipedia_id: str | None = None) -> dict:
    return {
        "wikipedia_id": wikipedia_id or page_id(index),
        "title": TITLES[index],
        "section": "Section::::Abstract",
        "start_paragraph_id": start,
        "start_character": 0,
        "end_paragraph_id": end,
        "end_character": 40,
        "bleu_score": 1.0,
    }


def task_row(index: int, *outputs: dict, suffix: str = "") -> dict:
    return {"id": f"nq-{index}{suffix}", "input": NQ[index]["query"], "output": list(outputs), "meta": {}}


# Line of each row in the task file (1-based) and the paragraphs its passage must hold.
GOOD = {
    1: (0, 1, 1),  # (NQ row, start, end)
    2: (1, 1, 2),  # two paragraphs
    3: (2, 0, 1),  # range from paragraph 0: the title line is not repeated
    4: (3, 1, 1),  # its first output has no provenance: the second output's is used
    **{line: (index, 1, 1) for line, index in zip(range(5, 11), range(4, 10), strict=True)},
}


def task_file_rows() -> list[dict]:
    rows = []
    for index, start, end in GOOD.values():
        outputs = [{"answer": "an answer", "provenance": [provenance(index, start, end)]}]
        if index == 3:
            outputs.insert(0, {"answer": "Sam-I-Am"})  # answer-only output, as KILT NQ rows have
        rows.append(task_row(index, *outputs))
    rows.append(task_row(0, {"answer": "x", "provenance": [provenance(0, 1, 1, MISSING_PAGE)]}, suffix="-a"))  # L11
    rows.append(task_row(1, {"answer": "x", "provenance": [provenance(1, 2, 9)]}, suffix="-b"))  # L12
    rows.append(task_row(2, {"answer": "NOT ENOUGH INFO", "provenance": []}, suffix="-c"))  # L13
    return rows


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def knowledge_source(path: Path, unneeded: int) -> Path:
    pages = unneeded_pages(unneeded)
    needed = [needed_page(index) for index in range(len(TITLES))]
    for position, page in enumerate(needed):  # spread the needed pages through the file
        pages.insert(position * (len(pages) // len(needed) + 1), page)
    for page in pages:
        page["text"] = [p if p.endswith("\n") else p + "\n" for p in page["text"]]
    return write_jsonl(pages, path)


def expected_passage(index: int, start: int, end: int) -> str:
    text = needed_page(index)["text"]
    paragraphs = [p.strip() for p in text[max(start, 1) : end + 1]]
    return "\n".join([TITLES[index], *paragraphs])


@pytest.fixture
def mirror(tmp_path) -> Path:
    root = tmp_path / "mirror"
    write_jsonl(task_file_rows(), root / "KILT" / "nq-train-kilt.jsonl")
    knowledge_source(root / "KILT" / "kilt_knowledgesource.json", unneeded=200)
    return root


def kilt_spec(**options):
    return spec("kilt/nq", "kilt", mirror="KILT/nq-train-kilt.jsonl", options=options)


def read(path: Path, source_spec) -> tuple[list[Record | Problem], dict]:
    adapted = get_adapter("kilt", source_spec.name)(path, source_spec, 0)
    return list(adapted.rows), adapted.meta


# --- the join --------------------------------------------------------------------------------------------------


def test_rows_join_their_first_provenance_paragraphs(mirror):
    task = mirror / "KILT" / "nq-train-kilt.jsonl"
    rows, meta = read(task, kilt_spec())
    records = {int(r.row_id.rsplit(":L", 1)[1]): r for r in rows if isinstance(r, Record)}
    assert sorted(records) == sorted(GOOD)
    for line, (index, start, end) in GOOD.items():
        record = records[line]
        assert record.row_id == f"kilt/nq:L{line}"
        assert record.query == NQ[index]["query"]
        assert record.pos == expected_passage(index, start, end)
        assert record.neg is None
    assert records[1].pos == f"{TITLES[0]}\n{NQ[0]['pos'][0][len(TITLES[0]) :].strip()}"
    assert records[2].pos.count("\n") == 2 and records[2].pos.endswith(NQ[1]["neg"][0])  # paragraphs 1 and 2
    assert records[3].pos.startswith(f"{TITLES[2]}\n{TITLES[2]} ")  # paragraph 0 (the title line) not repeated
    source = meta["knowledge_source"]
    assert source["pages_in_file"] == 210 and source["pages_needed"] == 11 and source["pages_found"] == 10
    assert (
        len(source["sha256"]) == 64
        and source["bytes"] == (mirror / "KILT" / "kilt_knowledgesource.json").stat().st_size
    )


def test_missing_page_paragraph_and_provenance_are_problems_with_file_and_line(mirror):
    task = mirror / "KILT" / "nq-train-kilt.jsonl"
    rows, _ = read(task, kilt_spec())
    problems = [r for r in rows if isinstance(r, Problem)]
    assert [(p.file, p.where) for p in problems] == [(str(task), f"line {n}") for n in (11, 12, 13)]
    page, paragraph, none = (p.message for p in problems)
    assert MISSING_PAGE in page and "not in" in page and "kilt_knowledgesource.json" in page
    assert page_id(1) in paragraph and "has 4 paragraphs" in paragraph and "paragraph(s) 4, 5, 6, 7, 8, 9" in paragraph
    assert "no provenance" in none


def test_hub_parquet_rows_read_like_the_jsonl(mirror, tmp_path):
    """facebook/kilt_tasks on the Hub holds the same rows as Parquet; the adapter reads either."""
    parquet = tmp_path / "nq" / "train-00000-of-00001.parquet"
    parquet.parent.mkdir()
    rows = [{k: v for k, v in row.items() if k != "meta"} for row in task_file_rows()]  # Parquet has no empty struct
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    options = {"knowledge_source": str(mirror / "KILT" / "kilt_knowledgesource.json")}
    rows, _ = read(parquet, kilt_spec(**options))
    jsonl_rows, _ = read(mirror / "KILT" / "nq-train-kilt.jsonl", kilt_spec())
    assert [(r.query, r.pos) for r in rows if isinstance(r, Record)] == [
        (r.query, r.pos) for r in jsonl_rows if isinstance(r, Record)
    ]
    assert [p.where for p in rows if isinstance(p, Problem)] == ["row 10", "row 11", "row 12"]


def test_missing_knowledge_source_is_a_source_error(mirror):
    (mirror / "KILT" / "kilt_knowledgesource.json").unlink()
    with pytest.raises(SourceError, match=r"KILT knowledge source not found at .*kilt_knowledgesource\.json"):
        read(mirror / "KILT" / "nq-train-kilt.jsonl", kilt_spec())


# --- memory: bounded by the needed pages -------------------------------------------------------------------------


@pytest.fixture
def own_index_dir(tmp_path):
    """Knowledge-source indexes in a folder of the test's own (the Runner of a build sets the build's cache dir)."""
    kilt.use_cache_dir(tmp_path / "index-cache")
    yield tmp_path / "index-cache" / kilt.INDEX_DIR
    kilt.use_cache_dir(None)


def peak_while_reading(task: Path, knowledge: Path) -> tuple[int, list, dict]:
    """Peak traced memory while the task's rows are joined through an index built beforehand."""
    options = {"knowledge_source": str(knowledge)}
    KnowledgeIndex.open(knowledge)
    tracemalloc.start()
    try:
        rows, meta = read(task, kilt_spec(**options))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, rows, meta


def needed_page_bytes(knowledge: Path) -> int:
    wanted = {f'"wikipedia_id": "{page_id(i)}"' for i in range(len(TITLES))}
    with knowledge.open("rb") as handle:
        return sum(len(line) for line in handle if line.decode()[:60].split(", ", 2)[1] in wanted)


def test_memory_does_not_grow_with_unneeded_pages(tmp_path, own_index_dir):
    task = write_jsonl(task_file_rows(), tmp_path / "task.jsonl")
    small = knowledge_source(tmp_path / "small.json", unneeded=1_000)
    large = knowledge_source(tmp_path / "large.json", unneeded=20_000)
    assert large.stat().st_size > 15 * small.stat().st_size
    before = kilt.READS.page_bytes
    small_peak, small_rows, small_meta = peak_while_reading(task, small)
    small_read = kilt.READS.page_bytes - before
    large_peak, large_rows, large_meta = peak_while_reading(task, large)
    large_read = kilt.READS.page_bytes - before - small_read
    assert [(r.query, r.pos) for r in small_rows if isinstance(r, Record)] == [
        (r.query, r.pos) for r in large_rows if isinstance(r, Record)
    ]
    for meta in (small_meta, large_meta):
        assert meta["knowledge_source"]["pages_needed"] == 11 and meta["knowledge_source"]["pages_found"] == 10
    assert small_read == large_read == needed_page_bytes(large)  # the ten needed pages are read, never the others
    assert large_peak < 1.5 * small_peak  # 20x the pages, not 20x the memory (the task reader's buffer dominates)


# --- one pass over the knowledge source for every KILT task -------------------------------------------------------

TASKS = ("nq", "fever", "hotpotqa")


def test_one_build_reads_the_knowledge_source_once_for_every_kilt_task(mirror, tmp_path, cache_dir):
    """Three KILT tasks of one build: one pass over the file (the index and the sha256), then only the needed pages;
    a second build reads it not at all and writes the same bytes."""
    for task in TASKS[1:]:
        task_file = mirror / "KILT" / f"{task}-train-kilt.jsonl"
        task_file.write_bytes((mirror / "KILT" / "nq-train-kilt.jsonl").read_bytes())
    knowledge = mirror / "KILT" / "kilt_knowledgesource.json"
    sources = ",".join(f"kilt/{task}" for task in TASKS)
    args = ["build", "--sources", sources, "--data-dir", str(mirror), "--cache-dir", str(cache_dir), "--no-remote"]
    passes, pages = kilt.READS.passes, kilt.READS.page_bytes
    first = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "one")])
    assert first.exit_code == 0, first.output
    assert kilt.READS.passes - passes == 1, "the knowledge source was read more than once"
    assert kilt.READS.page_bytes - pages == len(TASKS) * needed_page_bytes(knowledge)  # only the pages they name
    manifest = json.loads((tmp_path / "one" / "manifest.json").read_text(encoding="utf-8"))
    facts = [manifest["sources"][f"kilt/{task}"]["task"]["knowledge_source"] for task in TASKS]
    assert all(f == facts[0] for f in facts) and facts[0]["pages_in_file"] == 210 and facts[0]["pages_needed"] == 11
    assert facts[0]["sha256"] == hashlib.sha256(knowledge.read_bytes()).hexdigest()
    assert facts[0]["bytes"] == knowledge.stat().st_size
    assert [s["rows_kept"] for s in manifest["sources"].values()] == [len(GOOD)] * len(TASKS)

    passes = kilt.READS.passes
    second = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "two"), "--fresh"])  # every stage recomputed
    assert second.exit_code == 0, second.output
    assert kilt.READS.passes == passes, "the index of an unchanged file was built again"
    for path in sorted((tmp_path / "one").iterdir()):
        assert path.read_bytes() == (tmp_path / "two" / path.name).read_bytes(), path.name


OPEN_INDEX = """
import sys
from pathlib import Path
from medi.adapters import kilt
kilt.use_cache_dir(Path(sys.argv[2]))
index = kilt.KnowledgeIndex.open(Path(sys.argv[1]))
print(kilt.READS.passes, index.facts["sha256"])
"""


def test_concurrent_workers_build_the_index_once(tmp_path):
    """Four processes open the index of a new file at once: the lock lets one build it, the others read it."""
    knowledge = knowledge_source(tmp_path / "kilt_knowledgesource.json", unneeded=5_000)
    command = [sys.executable, "-c", OPEN_INDEX, str(knowledge), str(tmp_path / "cache")]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    answers = [worker.communicate(timeout=300)[0].split() for worker in workers]
    assert all(worker.returncode == 0 for worker in workers)
    assert sorted(int(passes) for passes, _ in answers) == [0, 0, 0, 1]
    assert {digest for _, digest in answers} == {hashlib.sha256(knowledge.read_bytes()).hexdigest()}
    assert len(list((tmp_path / "cache" / kilt.INDEX_DIR).glob("*.npy"))) == 1


def test_an_unreadable_needed_page_is_a_problem_with_its_line(mirror, own_index_dir):
    """A needed page whose line is not JSON: one problem naming the knowledge source's line, and each row that
    needs the page a problem of its own; the other rows are joined as before."""
    knowledge = mirror / "KILT" / "kilt_knowledgesource.json"
    lines = knowledge.read_text(encoding="utf-8").splitlines(keepends=True)
    broken = next(n for n, line in enumerate(lines, start=1) if f'"wikipedia_id": "{page_id(4)}"' in line)
    lines[broken - 1] = lines[broken - 1][:200] + "\n"  # cut mid-page
    knowledge.write_text("".join(lines), encoding="utf-8")
    rows, meta = read(mirror / "KILT" / "nq-train-kilt.jsonl", kilt_spec())
    problems = [r for r in rows if isinstance(r, Problem)]
    assert problems[0].file == str(knowledge) and problems[0].where == f"line {broken}" and problems[0].rows == 0
    assert "invalid JSON" in problems[0].message
    missing = [p for p in problems[1:] if page_id(4) in p.message]
    assert [p.where for p in missing] == ["line 5"] and "is not in" in missing[0].message
    assert len([r for r in rows if isinstance(r, Record)]) == len(GOOD) - 1
    assert meta["knowledge_source"]["pages_found"] == 9


# --- derived files and the build -----------------------------------------------------------------------------------


def test_a_derived_file_is_preferred_and_read_as_is(mirror, catalog, tmp_path):
    nq = catalog.specs["kilt/nq"]
    assert nq.adapter == "kilt" and nq.mirror == "KILT/nq-train-kilt.jsonl"
    assert locate_in_mirrors(nq, [mirror]) == (mirror / nq.mirror, nq.mirror)
    derived = [{"input": NQ[i]["query"], "passage": expected_passage(i, 1, 1)} for i in range(3)]
    write_jsonl(derived, mirror / nq.options["derived"])
    fetched = fetch(nq, [mirror], catalog.root, remote=False, cache_dir=tmp_path / "cache")
    assert fetched.path == mirror / "kilt_tasks" / "nq-train.jsonl" and fetched.location == nq.options["derived"]
    assert fetched.revision is None  # a hand-made file is not the upstream revision
    (mirror / "KILT" / "kilt_knowledgesource.json").unlink()  # a derived file needs no knowledge source
    rows, meta = read(fetched.path, nq)
    assert [(r.query, r.pos) for r in rows] == [(d["input"], d["passage"]) for d in derived]
    assert meta == {"kilt_input": "derived rows"}


def test_medi_build_kilt_nq_from_upstream_files(mirror, tmp_path, cache_dir):
    out = tmp_path / "release"
    args = ["build", "--sources", "kilt/nq", "--data-dir", str(mirror), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--cache-dir", str(cache_dir), "--no-remote"])
    assert result.exit_code == 0, result.output
    release = datasets.load_from_disk(str(out))
    assert sorted(release["row_id"]) == sorted(f"kilt/nq:L{line}" for line in GOOD)
    by_id = {row["row_id"]: row for row in release}
    for line, (index, start, end) in GOOD.items():
        row = by_id[f"kilt/nq:L{line}"]
        assert row["query"]["text"] == NQ[index]["query"]
        assert row["pos"]["text"] == unicodedata.normalize("NFC", expected_passage(index, start, end))
        assert row["neg"]["text"] and row["neg"]["text"] != row["pos"]["text"]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    source = manifest["sources"]["kilt/nq"]
    assert source["rows_kept"] == len(GOOD) and source["input"]["location"] == "KILT/nq-train-kilt.jsonl"
    # file and line (a warm checkpoint from an earlier run keeps that run's folder: compare from the mirror down);
    # line 13 (no provenance) is found as the file is read, lines 11 and 12 when the sampled rows are joined
    where = [p.split(": ", 1)[0] for p in source["problems"]]
    assert [w.rsplit("/mirror/", 1)[1] for w in where] == [f"KILT/nq-train-kilt.jsonl, line {n}" for n in (13, 11, 12)]
    texts = [row[side]["text"] for row in release for side in ("query", "pos", "neg")]
    assert not [t for t in texts if kilt.SPAN_MARK[1:-1] in t or "\x00" in t], "a span reference reached the release"


def test_a_replaced_knowledge_source_reruns_the_read(mirror, tmp_path, cache_dir):
    """The knowledge source is an input of the sample stage too: replacing it must not reuse the stored rows."""
    args = ["build", "--sources", "kilt/nq", "--data-dir", str(mirror), "--cache-dir", str(cache_dir), "--no-remote"]
    first = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "one")])
    assert first.exit_code == 0, first.output
    source = mirror / "KILT" / "kilt_knowledgesource.json"
    pages = source.read_text(encoding="utf-8").splitlines(keepends=True)
    source.write_text("".join(pages[1:] + pages[:1]), encoding="utf-8")  # same pages, another file
    second = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "two")])
    assert second.exit_code == 0, second.output
    knowledge = [
        json.loads((tmp_path / name / "manifest.json").read_text())["sources"]["kilt/nq"]["task"]["knowledge_source"]
        for name in ("one", "two")
    ]
    assert knowledge[0]["sha256"] != knowledge[1]["sha256"], "the second build reused the first read"


def test_a_large_input_is_hashed_again_only_when_its_size_or_mtime_change(tmp_path, monkeypatch):
    """fetch's sha256 of a large file is kept by (path, size, mtime): a second build does not read it again."""
    monkeypatch.setattr(fetch_module, "CACHED_CHECKSUM_BYTES", 1_000)  # the fixture is small; 64 MiB in a build
    path = knowledge_source(tmp_path / "kilt_knowledgesource.json", unneeded=50)
    cache = tmp_path / "cache"
    assert sha256_file(path, cache) == hashlib.sha256(path.read_bytes()).hexdigest()
    stat = path.stat()
    original = path.read_bytes()
    path.write_bytes(original.replace(b"Unneeded page 1\\n", b"Unneeded page X\\n", 1))  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert sha256_file(path, cache) == hashlib.sha256(original).hexdigest(), "the file was hashed again"
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    changed = hashlib.sha256(path.read_bytes()).hexdigest()
    assert changed != hashlib.sha256(original).hexdigest() and sha256_file(path, cache) == changed


# --- the join after the sample: pages read for the kept rows alone -----------------------------------------------

WIDE_PAGES = 4_000  # the unneeded pages "1".."4000" (paragraph 1: a real NQ negative passage)
WIDE_ROWS = 5_000


def wide_task_rows(rows: int, good=lambda n: True) -> list[dict]:
    """``rows`` task rows over the unneeded pages (NQ queries; each names page 1 + n % WIDE_PAGES, paragraph 1).
    A row that ``good`` refuses names a page the knowledge source lacks (n even) or a paragraph its page lacks;
    every 500th row names no page."""
    found = []
    for n in range(rows):
        page, paragraph = str(1 + n % WIDE_PAGES), 1
        if not good(n):
            page, paragraph = (MISSING_PAGE, 1) if n % 2 == 0 else (page, 7)
        evidence = {"wikipedia_id": page, "start_paragraph_id": paragraph, "end_paragraph_id": paragraph}
        output = {"answer": "x", "provenance": [] if n % 500 == 499 else [evidence]}
        found.append({"id": f"wide-{n}", "input": NQ[n % len(NQ)]["query"], "output": [output]})
    return found


def wide_passage(page: str) -> str:
    """The passage of paragraph 1 of an unneeded page, as the sample stage writes it (normalized)."""
    text = unneeded_pages(int(page))[-1]["text"]
    return clean_text(f"Unneeded page {page}\n{text[1].strip()}", BuildOptions().max_chars)[0]


@pytest.fixture
def wide_mirror(tmp_path) -> Path:
    root = tmp_path / "wide"
    knowledge_source(root / "KILT" / "kilt_knowledgesource.json", unneeded=WIDE_PAGES)
    return root


def sample_stage(mirror: Path, cache_dir: Path, name: str = "kilt/nq", **options):
    """The sample stage alone (no encoder): its report and the rows it kept."""
    runner = Runner(BuildOptions(eval_sets="none", **options), [mirror], cache_dir, reuse=False)
    outcome = run_source(runner, runner.catalog.specs[name], stages=(SAMPLE,))
    output = StageOutput(Path(outcome.outputs["sample"]), {})
    return outcome.infos["sample"], [r for batch in output.batches() for r in records_of(batch)]


def line_of(row_id: str) -> int:
    return int(row_id.rsplit(":L", 1)[1])


def test_deferred_rows_name_their_passage_by_a_span_reference(mirror):
    """The sample stage's rows: the passage a span reference (page id and paragraph range) that no text can be;
    ``rows`` are the same rows joined."""
    adapted = get_adapter("kilt", "kilt/nq")(mirror / "KILT" / "nq-train-kilt.jsonl", kilt_spec(), 0)
    deferred = [r for r in adapted.deferred if isinstance(r, Record)]
    assert [line_of(r.row_id) for r in deferred] == [*GOOD, 11, 12]  # missing page / paragraph: known when joined
    for record in deferred[: len(GOOD)]:
        index, start, end = GOOD[line_of(record.row_id)]
        assert record.pos == span_reference(page_id(index), start, end) and record.pos.startswith("\x00")
        assert referenced_span(record.pos) == (page_id(index), start, end)
    assert referenced_span(expected_passage(0, 1, 1)) is None
    joined = [r for r in adapted.resolve(deferred) if isinstance(r, Record)]
    assert [(r.row_id, r.pos) for r in joined] == [
        (f"kilt/nq:L{line}", expected_passage(*span)) for line, span in GOOD.items()
    ]
    assert kilt.READS.page_reads > 0


def test_a_derived_passage_in_the_span_reference_form_is_a_problem(tmp_path):
    rows = [{"input": NQ[0]["query"], "passage": span_reference("290", 1, 1)}, {"input": "q", "passage": "a text"}]
    path = write_jsonl(rows, tmp_path / "derived.jsonl")
    found, _ = read(path, kilt_spec())
    assert isinstance(found[0], Problem) and found[0].where == "line 1" and "span-reference" in found[0].message
    assert found[1] == Record(row_id="kilt/nq:L2", query="q", pos="a text")


def test_a_capped_build_reads_only_the_pages_of_its_sampled_rows(wide_mirror, cache_dir):
    """5,000 task rows over 4,000 pages, a cap of 10 (a sample of 1,010): only the pages of the sampled rows are
    read; every kept row carries its real passage; a sampled row whose page or paragraph is missing is a problem with
    file and line (the others are never looked up); rows read = rows given + rows lost."""
    task = write_jsonl(
        wide_task_rows(WIDE_ROWS, good=lambda n: n % 40 != 7), wide_mirror / "KILT" / "nq-train-kilt.jsonl"
    )
    spec_ = kilt_spec(knowledge_source=str(wide_mirror / "KILT" / "kilt_knowledgesource.json"))
    adapted = get_adapter("kilt", "kilt/nq")(task, spec_, 0)
    size = sample_size(10, "random")
    sampler = Sampler(size, f"{BuildOptions().seed}:kilt/nq")
    read_problems = 0
    for item in adapted.deferred:  # the rows the stage samples: which lines it keeps
        if isinstance(item, Problem):
            read_problems += 1
        else:
            sampler.offer(item)
    sampled = {line_of(r.row_id): referenced_span(r.pos) for r in sampler.finish()}
    tasks = {n + 1: row for n, row in enumerate(json_lines(task))}
    bad = {line for line, span in sampled.items() if span[0] == MISSING_PAGE or span[1] == 7}
    assert size == 1_010 and read_problems == WIDE_ROWS // 500 and 0 < len(bad) < len(sampled)

    reads = kilt.READS.page_reads
    info, kept = sample_stage(wide_mirror, cache_dir, max_per_source=10)
    pages_read = kilt.READS.page_reads - reads
    wanted = {span[0] for span in sampled.values()}
    assert pages_read == len(wanted - {MISSING_PAGE}) < 0.3 * WIDE_PAGES  # of the ~4,000 pages the rows name
    facts = info["meta"]["knowledge_source"]
    named = {e["wikipedia_id"] for row in tasks.values() for e in row["output"][0]["provenance"]}
    assert facts["pages_named"] == len(named) > 0.99 * WIDE_PAGES and facts["pages_needed"] == len(wanted)
    assert facts["pages_found"] == pages_read

    assert sorted(line_of(r.row_id) for r in kept) == sorted(sampled.keys() - bad)
    for record in kept:
        assert record.query == tasks[line_of(record.row_id)]["input"]
        assert record.pos == wide_passage(sampled[line_of(record.row_id)][0]), record.row_id
        assert "\x00" not in record.pos and "kilt span" not in record.pos
    joined = [p for p in info["problems"] if not p["message"].startswith("no provenance")]
    assert len(info["problems"]) - len(joined) == read_problems
    assert sorted((p["file"], p["where"]) for p in joined) == sorted((str(task), f"line {n}") for n in bad)
    assert all(("is not in" in p["message"]) != ("missing provenance paragraph" in p["message"]) for p in joined)

    sample = info["sample"]
    assert info["rows_lost"] == {"malformed_row": read_problems + len(bad)}
    assert sample["rows_read"] == WIDE_ROWS - read_problems - len(bad)  # given: the lost rows are not counted twice
    assert rows_read(info) == WIDE_ROWS
    assert sample["sampled"] == size - len(bad) == len(kept) and info["truncated"]


def test_an_uncapped_build_joins_every_row_as_it_streams(mirror, cache_dir, medi_home):
    """Every row kept: the rows resolved in blocks as they stream; the missing page and paragraph are problems with
    file and line, and rows read = rows given + rows lost."""
    medi_home.add_source(
        "tests/kilt_all", {"adapter": "kilt", "mirror": "KILT/nq-train-kilt.jsonl", "symmetric": False}
    )
    medi_home.add_instructions(["tests/kilt_all"], symmetric=False)
    task = mirror / "KILT" / "nq-train-kilt.jsonl"
    reads = kilt.READS.page_reads
    info, kept = sample_stage(mirror, cache_dir, name="tests/kilt_all")
    assert kilt.READS.page_reads - reads == len(TITLES)
    assert info["sample"]["size"] is None and not info["truncated"]
    assert [(r.row_id, r.pos) for r in kept] == [
        (f"tests/kilt_all:L{line}", clean_text(expected_passage(*span), BuildOptions().max_chars)[0])
        for line, span in GOOD.items()
    ]
    where = sorted((p["file"], p["where"]) for p in info["problems"])
    assert where == [(str(task), f"line {n}") for n in (11, 12, 13)]
    assert info["rows_lost"] == {"malformed_row": 3} and info["sample"]["rows_read"] == len(GOOD)
    assert info["sample"]["sampled"] == len(GOOD) and rows_read(info) == 13


def test_a_sample_short_after_the_join_is_read_again_larger(wide_mirror, cache_dir):
    """2,000 rows of which 12 can be joined, a cap of 10: the first sample (1,010 rows) holds fewer than 10
    joinable rows, so select reads again with a larger sample, which holds them all."""
    good = set(range(0, 2_000, 167))
    rows = wide_task_rows(2_000, good=lambda n: n in good)
    write_jsonl(rows, wide_mirror / "KILT" / "nq-train-kilt.jsonl")
    runner = Runner(BuildOptions(eval_sets="none", max_per_source=10), [wide_mirror], cache_dir, reuse=False)
    outcome = run_source(runner, runner.catalog.specs["kilt/nq"], stages=(SAMPLE, CLEAN, SELECT))
    sample = outcome.infos["sample"]
    assert len(good) == 12 and sample["sample"]["passes"] == 2 and sample["sample"]["sampled"] == len(good)
    assert rows_read(sample) == 2_000
    output = StageOutput(Path(outcome.outputs["select"]), {})
    kept = [r for batch in output.batches() for r in records_of(batch)]
    assert len(kept) == 10 and {line_of(r.row_id) - 1 for r in kept} <= good
    assert all(r.pos == wide_passage(str(1 + (line_of(r.row_id) - 1) % WIDE_PAGES)) for r in kept)
