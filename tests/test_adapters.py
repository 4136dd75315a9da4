"""Adapters on real rows: the five sentence-transformers layouts (detected per row), the FlagEmbedding/GritLM files
with extra keys, and the ``table`` adapter on JSONL and Parquet with a dotted column path."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import ETD, FLAG, GRIT, json_lines, spec, squash

from medi.adapters import ADAPTERS, get_adapter
from medi.errors import MediError, Problem, SourceError
from medi.fetch import fetch
from medi.schema import Record


def read(path, source_spec, seed=0) -> list[Record | Problem]:
    return list(get_adapter(source_spec.adapter, source_spec.name)(path, source_spec, seed).rows)


def st(name: str):
    return spec(name, "st_jsonl")


def test_registered_adapters():
    assert {"superni", "st_jsonl", "table"} <= set(ADAPTERS)
    with pytest.raises(MediError, match="unknown adapter 'csv'"):
        get_adapter("csv", "tests/x")


# --- st_jsonl: one file per layout ----------------------------------------------------------------------------


def test_pair_layout():
    raw = json_lines(ETD / "quora_duplicates.jsonl.gz")
    rows = read(ETD / "quora_duplicates.jsonl.gz", st("st/quora_duplicates"))
    assert len(rows) == len(raw) == 10
    for line, (row, value) in enumerate(zip(rows, raw, strict=True), start=1):
        assert isinstance(row, Record)
        assert (row.query, row.pos, row.neg) == (value[0], value[1], None)
        assert row.row_id == f"st/quora_duplicates:L{line}"
        assert row.outputs == ()


def test_triplet_layout():
    raw = json_lines(ETD / "AllNLI.jsonl.gz")
    rows = read(ETD / "AllNLI.jsonl.gz", st("st/AllNLI"))
    assert len(rows) == len(raw) == 20
    for row, value in zip(rows, raw, strict=True):
        assert [row.query, row.pos, row.neg] == value


def test_set_layout():
    raw = json_lines(ETD / "flickr30k_captions.jsonl.gz")
    rows = read(ETD / "flickr30k_captions.jsonl.gz", st("st/flickr30k_captions"))
    assert len(rows) == len(raw) == 10
    for row, value in zip(rows, raw, strict=True):
        assert row.query != row.pos
        assert {row.query, row.pos} <= set(value["set"])
        assert row.neg is None


def test_query_pos_layout():
    raw = json_lines(ETD / "searchQA_top5_snippets.jsonl.gz")
    rows = read(ETD / "searchQA_top5_snippets.jsonl.gz", st("st/searchQA_top5_snippets"))
    assert len(rows) == len(raw) == 10
    for row, value in zip(rows, raw, strict=True):
        assert set(value) == {"query", "pos"}
        assert row.query == value["query"]
        assert row.pos in value["pos"]
        assert row.neg is None


def test_query_pos_neg_layout():
    raw = json_lines(ETD / "msmarco-triplets.jsonl.gz")
    rows = read(ETD / "msmarco-triplets.jsonl.gz", st("st/msmarco-triplets"))
    assert len(rows) == len(raw) == 10
    for row, value in zip(rows, raw, strict=True):
        assert row.query == value["query"]
        assert row.pos in value["pos"]
        assert row.neg in value["neg"]


REAL_FILES = sorted([*FLAG.rglob("*.jsonl"), GRIT])


@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.stem)
def test_real_query_pos_neg_files_with_extra_keys(path):
    """The real FlagEmbedding / GritLM example files: {query, pos[], neg[]} plus prompt, type, scores, category."""
    raw = json_lines(path)
    rows = read(path, st(f"tests/{path.stem}"))
    assert len(rows) == len(raw) == 10
    assert not [r for r in rows if isinstance(r, Problem)]
    extra = set().union(*(set(v) for v in raw)) - {"query", "pos", "neg"}
    if path != GRIT:
        assert extra, "these files carry keys beyond query/pos/neg"
    for line, (row, value) in enumerate(zip(rows, raw, strict=True), start=1):
        assert row.row_id == f"tests/{path.stem}:L{line}"
        assert row.query == value["query"]
        assert row.pos in value["pos"]
        assert row.neg in value["neg"]


def test_gzip_and_plain_read_alike(tmp_path):
    plain_copy = tmp_path / "AllNLI.jsonl"
    plain_copy.write_text(gzip.decompress((ETD / "AllNLI.jsonl.gz").read_bytes()).decode("utf-8"), encoding="utf-8")
    assert read(plain_copy, st("st/AllNLI")) == read(ETD / "AllNLI.jsonl.gz", st("st/AllNLI"))


# --- one file, every layout, detected line by line ----------------------------------------------------------


def mixed_lines() -> list[object | None]:
    """Real rows of every layout, one per line; None = a blank line. Returns JSON values."""
    pair = json_lines(ETD / "quora_duplicates.jsonl.gz")[0]
    triplet = json_lines(ETD / "AllNLI.jsonl.gz")[3]
    a_set = json_lines(ETD / "flickr30k_captions.jsonl.gz")[1]
    query_pos = json_lines(ETD / "searchQA_top5_snippets.jsonl.gz")[2]
    query_pos_neg = json_lines(ETD / "msmarco-triplets.jsonl.gz")[4]
    flag = json_lines(FLAG / "clustering-no_in_batch_neg" / "arXiv_title.jsonl")[5]
    no_layout = {k: v for k, v in flag.items() if k not in ("query", "pos")}  # prompt/type/category/neg only
    return [pair, triplet, None, a_set, query_pos, query_pos_neg, flag, no_layout, triplet[:1]]


EARLY_STOP = """
import itertools, sys, threading
from pathlib import Path
from medi.adapters import st_jsonl

handed_over = threading.Event()
def blocks():
    yield from [b"1", b"2", b"3", b"4", b"5"]
    handed_over.set()  # the thread has put blocks 2-5 on the queue of 4 (the reader took 1): it is full

reader = st_jsonl._prefetched(blocks(), depth=4)
assert next(reader) == b"1"
handed_over.wait()
reader.close()  # the thread must give up its end marker, not wait for room forever (join would never return)
print("threads after a closed prefetch:", threading.active_count())

st_jsonl.BLOCK = 64  # small blocks: the fixture file is many of them, more than the queue holds
rows = st_jsonl.read_json_lines(Path(sys.argv[1]))
first = list(itertools.islice(rows, 2))
rows.close()  # a reader that stopped after two rows, as a preview does
print("rows:", len(first), "threads after a closed read:", threading.active_count())
"""


def test_the_gzip_thread_ends_when_the_reader_stops_early():
    """A generator closed after a few rows stops the inflating thread (it blocked forever on a full queue)."""
    done = subprocess.run(
        [sys.executable, "-c", EARLY_STOP, str(ETD / "AllNLI.jsonl.gz")], capture_output=True, text=True, timeout=120
    )  # a thread that never ends hangs the child: the timeout fails the test instead of hanging it
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["threads after a closed prefetch: 1", "rows: 2 threads after a closed read: 1"]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_mixed_layouts_detected_per_line(tmp_path, suffix):
    values = mixed_lines()
    text = "".join(("" if v is None else json.dumps(v)) + "\n" for v in values)
    path = tmp_path / f"mixed{suffix}"
    path.write_bytes(gzip.compress(text.encode()) if suffix.endswith(".gz") else text.encode())
    rows = read(path, st("tests/mixed"))
    pair, triplet, _, a_set, query_pos, query_pos_neg, flag, _no_layout, _short = values
    by_line = {int(r.row_id.rsplit(":L", 1)[1]): r for r in rows if isinstance(r, Record)}
    problems = [r for r in rows if isinstance(r, Problem)]

    assert sorted(by_line) == [1, 2, 4, 5, 6, 7]  # line 3 is blank and skipped; locators are file lines
    assert (by_line[1].query, by_line[1].pos, by_line[1].neg) == (pair[0], pair[1], None)
    assert [by_line[2].query, by_line[2].pos, by_line[2].neg] == triplet
    assert {by_line[4].query, by_line[4].pos} == set(a_set["set"]) and by_line[4].neg is None
    assert (by_line[5].query, by_line[5].pos, by_line[5].neg) == (query_pos["query"], query_pos["pos"][0], None)
    assert by_line[6].query == query_pos_neg["query"] and by_line[6].neg in query_pos_neg["neg"]
    assert by_line[7].query == flag["query"] and by_line[7].pos == flag["pos"][0] and by_line[7].neg in flag["neg"]

    assert [(p.where, p.file) for p in problems] == [("line 8", str(path)), ("line 9", str(path))]
    assert "not a known layout" in problems[0].message and "category" in problems[0].message
    assert "2 or 3 texts, got 1" in problems[1].message


# --- seeded choices ----------------------------------------------------------------------------------------


def test_seed_fixes_set_and_list_choices():
    """A set's pair and a list's item depend on (seed, row id) only: same seed, same rows; other seeds differ."""
    flickr = ETD / "flickr30k_captions.jsonl.gz"
    assert read(flickr, st("st/flickr30k_captions"), 0) == read(flickr, st("st/flickr30k_captions"), 0)
    orders = {seed: [(r.query, r.pos) for r in read(flickr, st("st/flickr30k_captions"), seed)] for seed in range(4)}
    assert len({tuple(o) for o in orders.values()}) > 1

    negs = {seed: [r.neg for r in read(GRIT, st("gritlm/toy_data_embedding"), seed)] for seed in range(4)}
    assert len({tuple(n) for n in negs.values()}) > 1
    raw = json_lines(GRIT)
    for chosen in negs.values():
        assert all(n in value["neg"] for n, value in zip(chosen, raw, strict=True))


# --- table: JSONL and Parquet with a column mapping ------------------------------------------------------------


def kilt_like_rows() -> list[dict]:
    """Real FlagEmbedding nli rows reshaped like KILT: the positive sits at output[0].provenance[0].text."""
    rows = []
    for n, value in enumerate(json_lines(FLAG / "retrieval" / "nli.jsonl")):
        rows.append(
            {
                "id": f"nli-{n}",
                "input": value["query"],
                "output": [{"answer": "entailment", "provenance": [{"text": value["pos"][0], "score": 1.0}]}],
                "hard": {"negative": value["neg"][0]},
            }
        )
    return rows


TABLE_COLUMNS = {"query": "input", "pos": "output.provenance.text", "neg": "hard.negative"}


def write_jsonl(rows: list[dict], path):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(rows: list[dict], path):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_table_dotted_columns(tmp_path, fmt):
    rows = kilt_like_rows()
    path = (write_jsonl if fmt == "jsonl" else write_parquet)(rows, tmp_path / f"kilt_like.{fmt}")
    if fmt == "parquet":
        assert pq.read_schema(path).field("output").type.value_type.num_fields == 2  # a real nested column
    records = read(path, spec("tests/kilt_like", "table", options={"format": fmt, "columns": TABLE_COLUMNS}))
    assert len(records) == len(rows) == 10
    for n, (record, row) in enumerate(zip(records, rows, strict=True)):
        assert isinstance(record, Record)
        assert record.query == row["input"]
        assert record.pos == row["output"][0]["provenance"][0]["text"]
        assert record.neg == row["hard"]["negative"]
        assert record.row_id == (f"tests/kilt_like:L{n + 1}" if fmt == "jsonl" else f"tests/kilt_like:R{n}")


def test_table_format_from_suffix_and_neg_optional(tmp_path):
    path = write_parquet(kilt_like_rows(), tmp_path / "rows.parquet")
    columns = {"query": "input", "pos": "output.provenance.text", "neg": None}
    records = read(path, spec("tests/kilt_like", "table", options={"columns": columns}))
    assert len(records) == 10 and all(r.neg is None for r in records)


def test_table_bad_rows_are_problems(tmp_path):
    rows = kilt_like_rows()[:3]
    del rows[1]["input"]
    path = write_jsonl(rows, tmp_path / "rows.jsonl")
    with path.open("a", encoding="utf-8") as handle:
        handle.write('["not", "an", "object"]\n')
    records = read(path, spec("tests/kilt_like", "table", options={"columns": TABLE_COLUMNS}))
    problems = [r for r in records if isinstance(r, Problem)]
    assert [p.where for p in problems] == ["line 2", "line 4"]
    assert "'input'" in problems[0].message and "expected an object, got list" in problems[1].message
    assert len([r for r in records if isinstance(r, Record)]) == 2


def test_table_needs_query_and_pos_columns(tmp_path):
    path = write_jsonl(kilt_like_rows(), tmp_path / "rows.jsonl")
    bad = spec("tests/kilt_like", "table", options={"columns": {"query": "input"}})
    with pytest.raises(MediError, match=r"sources/tests/kilt_like\.yaml.*options\.columns\.pos"):
        read(path, bad)
    bad_format = spec("tests/kilt_like", "table", options={"format": "csv", "columns": TABLE_COLUMNS})
    with pytest.raises(MediError, match=r"options\.format must be one of jsonl, parquet, zip_lines, not .csv."):
        read(path, bad_format)


def test_table_list_value_takes_its_first_item():
    raw = json_lines(GRIT)  # neg holds 7 texts per row
    columns = {"query": "query", "pos": "pos", "neg": "neg"}
    records = read(GRIT, spec("tests/grit_table", "table", options={"columns": columns}))
    assert [r.neg for r in records] == [value["neg"][0] for value in raw]


def test_table_source_end_to_end(tmp_path, medi_home, make_release):
    """A Parquet table source added to the catalog (MEDI_HOME copy) builds from a data dir like any other."""
    mirror = tmp_path / "mirror"
    (mirror / "kilt_like").mkdir(parents=True)
    rows = kilt_like_rows()
    write_parquet(rows, mirror / "kilt_like" / "train.parquet")
    medi_home.add_source(
        "tests/kilt_like",
        {
            "adapter": "table",
            "description": "FlagEmbedding nli rows in a KILT-like Parquet file",
            "mirror": "kilt_like/train.parquet",
            "licence": "MIT",
            "symmetric": False,
            "options": {"format": "parquet", "columns": TABLE_COLUMNS},
        },
    )
    medi_home.add_instructions(["tests/kilt_like"], symmetric=False)
    release = make_release("tests/kilt_like", tmp_path / "out", [mirror])
    source = release.manifest["sources"]["tests/kilt_like"]
    assert source["rows_read"] == source["rows_kept"] == 10
    assert source["input"]["origin"] == "mirror" and source["input"]["location"] == "kilt_like/train.parquet"
    built = release.dataset
    assert [r["query"]["text"] for r in built] == [squash(r["input"]) for r in rows]
    assert [r["pos"]["text"] for r in built] == [squash(r["output"][0]["provenance"][0]["text"]) for r in rows]
    assert [r["neg"]["text"] for r in built] == [squash(r["hard"]["negative"]) for r in rows]
    assert {r["neg_origin"] for r in built} == {"given"}
    assert {r["query"]["instruction"] for r in built} != {r["pos"]["instruction"] for r in built}  # asymmetric


# --- table: parallel text files in a zip (Gigaword's org_data), joined list columns (SciTLDR) -------------------


def write_org_data(path, documents: list[str], summaries: list[str]):
    """A zip laid out like Gigaword's ggw_data.zip: org_data/train.src.txt and train.tgt.txt, one text per line."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("org_data/train.src.txt", "".join(f"{d}\n" for d in documents))
        archive.writestr("org_data/train.tgt.txt", "".join(f"{s}\n" for s in summaries))
    return path


ZIP_OPTIONS = {
    "format": "zip_lines",
    "members": {"document": "org_data/train.src.txt", "summary": "org_data/train.tgt.txt"},
    "columns": {"query": "document", "pos": "summary"},
}


def test_table_zip_lines_pairs_the_members_line_by_line(tmp_path):
    pairs = json_lines(ETD / "AllNLI.jsonl.gz")  # real sentences: premise -> hypothesis
    path = write_org_data(tmp_path / "ggw_data.zip", [p[0] for p in pairs], [p[1] for p in pairs])
    records = read(path, spec("st/gigaword", "table", options=ZIP_OPTIONS))
    assert [(r.query, r.pos, r.neg) for r in records] == [(p[0], p[1], None) for p in pairs]
    assert [r.row_id for r in records] == [f"st/gigaword:L{n}" for n in range(1, len(pairs) + 1)]


def test_table_zip_lines_uneven_members_and_missing_member(tmp_path):
    pairs = json_lines(ETD / "AllNLI.jsonl.gz")[:5]
    path = write_org_data(tmp_path / "ggw_data.zip", [p[0] for p in pairs], [p[1] for p in pairs[:3]])
    *records, problem = read(path, spec("st/gigaword", "table", options=ZIP_OPTIONS))
    assert len(records) == 3 and isinstance(problem, Problem)
    assert (problem.file, problem.where, problem.rows) == (str(path), "", 2)  # documents 4 and 5 have no summary
    short = "org_data/train.tgt.txt ended before the other members"
    assert problem.message == f"unreadable after line 3: 2 rows lost ({short})"
    other = dict(ZIP_OPTIONS, members={"document": "org_data/train.src.txt", "summary": "org_data/dev.tgt.txt"})
    with pytest.raises(SourceError, match=r"ggw_data\.zip: the archive has no org_data/dev\.tgt\.txt"):
        read(path, spec("st/gigaword", "table", options=other))
    with pytest.raises(MediError, match=r"zip_lines needs options\.members"):
        read(path, spec("st/gigaword", "table", options={**ZIP_OPTIONS, "members": None}))


def test_table_join_concatenates_a_list_column(tmp_path):
    """SciTLDR rows hold the abstract as a list of sentences and several TLDRs: join the one, take the first other."""
    raw = json_lines(ETD / "AllNLI.jsonl.gz")
    rows = [{"source": [a, b], "target": [c, a]} for a, b, c in raw]
    path = write_jsonl(rows, tmp_path / "train.jsonl")
    options = {"columns": {"query": "source", "pos": "target"}, "join": {"query": " "}}
    records = read(path, spec("st/scitldr", "table", options=options))
    assert [(r.query, r.pos) for r in records] == [(f"{a} {b}", c) for a, b, c in raw]
    with pytest.raises(MediError, match=r"options\.join must map query/pos/neg"):
        read(path, spec("st/scitldr", "table", options={**options, "join": {"title": " "}}))


def test_medi2_sources_read_their_upstream_layouts(tmp_path, catalog):
    """st/reddit-title-body, st/gigaword and st/scitldr as the catalog configures them, on files laid out like their
    upstream files (real sentences from the AllNLI fixture stand in for the text)."""
    triples = json_lines(ETD / "AllNLI.jsonl.gz")
    mirror = tmp_path / "mirror"
    reddit, gigaword, scitldr = (catalog.specs[f"st/{n}"] for n in ("reddit-title-body", "gigaword", "scitldr"))
    (mirror / reddit.mirror).parent.mkdir(parents=True)
    with gzip.open(mirror / reddit.mirror, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"title": a, "body": b, "subreddit": "test"}) + "\n" for a, b, _ in triples)
    (mirror / gigaword.mirror).parent.mkdir(parents=True)
    write_org_data(mirror / gigaword.mirror, [a for a, _, _ in triples], [b for _, b, _ in triples])
    (mirror / scitldr.mirror).parent.mkdir(parents=True)
    write_jsonl([{"source": [a, c], "target": [b, c], "paper_id": "x"} for a, b, c in triples], mirror / scitldr.mirror)
    expected = {
        "st/reddit-title-body": [(a, b) for a, b, _ in triples],
        "st/gigaword": [(a, b) for a, b, _ in triples],
        "st/scitldr": [(f"{a} {c}", b) for a, b, c in triples],
    }
    for source in (reddit, gigaword, scitldr):
        fetched = fetch(source, [mirror], catalog.root, remote=False, cache_dir=tmp_path / "cache")
        assert fetched.revision == source.upstream.revision and len(source.upstream.revision) == 40
        records = read(fetched.path, source)
        assert [(r.query, r.pos) for r in records] == expected[source.name]
        assert source.medi.included is True and not source.symmetric
