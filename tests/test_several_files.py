"""A source of several files (a glob or a list in ``path``, ``mirror`` or ``upstream.path``) is read as one stream:
its files in name order, each a split of its own for the parallel readers (plus the line ranges and row groups
within it). Row ids and problems name the file, so the release is not the concatenated file's byte for byte: its
rows, in the same order, and every count are (compared below; a row that lists several positives has one chosen
by its row id, so the rows here list one); and it is the same bytes whether read by one reader or in 3 or many
splits by two workers.

Rows are real: the demo mirror's FlagEmbedding nq.jsonl and msmarco.jsonl lines with tests/fixtures/bad/'s bad
lines (``test_split.nq_with_duplicates_and_bad_lines``), their first positive and negative only, cut into parts.
"""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from git_stub import RawServer
from support import plain, quiet_console, single_reader_sample, spec
from test_split import SEED, assert_same, assert_same_release, in_splits, nq_with_duplicates_and_bad_lines, split_events

import medi
from medi.adapters import plan_source_splits, read_source
from medi.build import BuildOptions
from medi.catalog import Catalog
from medi.errors import MediError, SourceError
from medi.fetch import fetch, sha256_file
from medi.release import open_release

CUTS = (7, 19)  # line numbers after which the whole file is cut: three parts, the bad lines in the second


def cut_in_parts(whole: Path, folder: Path, cuts=CUTS, suffix: str = ".jsonl") -> list[Path]:
    """``whole``'s lines in consecutive parts ``nq-0``, ``nq-1``, ... (the concatenation is ``whole``)."""
    lines = whole.read_bytes().splitlines(keepends=True)
    bounds = [0, *cuts, len(lines)]
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for number, (start, end) in enumerate(itertools.pairwise(bounds)):
        part = folder / f"nq-{number}{suffix}"
        data = b"".join(lines[start:end])
        part.write_bytes(gzip.compress(data, mtime=0) if suffix.endswith(".gz") else data)
        parts.append(part)
    return parts


def first_choices(path: Path) -> Path:
    """``path`` with every row's positives and negatives cut to the first (bad lines and blank lines kept)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict):
            line = json.dumps({k: v[:1] if k in ("pos", "neg") else v for k, v in row.items()}, ensure_ascii=False)
        lines.append(line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def whole_and_parts(tmp_path: Path) -> tuple[Path, list[Path]]:
    whole = first_choices(nq_with_duplicates_and_bad_lines(tmp_path))
    return whole, cut_in_parts(whole, tmp_path / "data" / "parts")


def one_reader(source, fetched, size):
    """What the sample stage's single reader keeps of a source (``read_source``): (sample, report, problems)."""
    return single_reader_sample(read_source(source.adapter, fetched, source, SEED).rows, source.name, SEED, size)


def texts(rows) -> list[tuple]:
    return [(r.query, r.pos, r.neg) for r in rows]


# --- reading ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["glob", "list"])
def test_several_jsonl_files_read_as_one_stream_naming_each_file(tmp_path, form):
    whole, parts = whole_and_parts(tmp_path)
    mirror = ["parts/nq-2.jsonl", "parts/nq-0.jsonl", "parts/nq-1.jsonl"] if form == "list" else "parts/nq-*.jsonl"
    source = spec("tests/nq", "st_jsonl", mirror=mirror)
    fetched = fetch(source, [tmp_path / "data"], tmp_path, remote=False, cache_dir=tmp_path / "cache")
    assert [f.name for f in fetched.files] == ["nq-0.jsonl", "nq-1.jsonl", "nq-2.jsonl"]  # name order, not listed
    assert [f.path for f in fetched.files] == parts and fetched.bytes == whole.stat().st_size
    expected_rows, report, problems = one_reader(spec("tests/nq", "st_jsonl"), fetch_whole(whole, tmp_path), None)
    rows, found_report, found_problems = one_reader(source, fetched, None)
    assert texts(rows) == texts(expected_rows) and found_report.rows_read == report.rows_read == 44
    line_of = {}  # (part, line in the part) of each line of the whole file
    for number, part in enumerate(parts):
        start = len(line_of)
        line_of.update({start + n: (f"nq-{number}.jsonl", n) for n in range(1, part.read_bytes().count(b"\n") + 1)})
    for row, expected in zip(rows, expected_rows, strict=True):
        file, line = line_of[int(expected.row_id.rsplit(":L", 1)[1])]
        assert row.row_id == f"tests/nq:{file}:L{line}"
    assert len(found_problems) == len(problems) == 2
    for problem, expected in zip(found_problems, problems, strict=True):
        file, line = line_of[int(expected.where.split()[1])]
        assert problem.file == str(parts[1]) and problem.where == f"line {line}" and problem.message == expected.message


def fetch_whole(path: Path, tmp_path: Path):
    return fetch(spec("tests/nq", "st_jsonl", path=str(path)), [], tmp_path, remote=False, cache_dir=tmp_path / "c")


@pytest.mark.parametrize("ranges", [False, True])
@pytest.mark.parametrize("size", [None, 3, 12, 10_000])
def test_several_files_in_splits_merge_to_one_readers_sample(tmp_path, ranges, size):
    """Each file a split (or many: line ranges within it), each sampled alone, merged: one reader's sample of the
    files, which holds the concatenated file's rows in its order with its counts."""
    whole, _ = whole_and_parts(tmp_path)
    source = spec("tests/nq", "st_jsonl", path=str(tmp_path / "data" / "parts" / "nq-*.jsonl"))
    fetched = fetch(source, [], tmp_path, remote=False, cache_dir=tmp_path / "cache")
    split_bytes = whole.stat().st_size // 12 if ranges else whole.stat().st_size
    splits = plan_source_splits("st_jsonl", fetched, source, split_bytes)
    assert {s.label for s in splits} == {"nq-0.jsonl", "nq-1.jsonl", "nq-2.jsonl"}
    assert len(splits) > 10 if ranges else len(splits) == 3
    expected = one_reader(source, fetched, size)
    assert_same(expected, in_splits("st_jsonl", fetched.path, source, size, splits), size)
    concatenated = one_reader(spec("tests/nq", "st_jsonl"), fetch_whole(whole, tmp_path), size)
    assert texts(expected[0]) == texts(concatenated[0]) and expected[1] == concatenated[1]  # the whole SampleReport


def test_a_gzip_file_among_several_is_read_whole_by_one_reader(tmp_path):
    whole = first_choices(nq_with_duplicates_and_bad_lines(tmp_path))
    parts = cut_in_parts(whole, tmp_path / "parts", suffix=".jsonl.gz")
    source = spec("tests/nq", "st_jsonl", path=str(tmp_path / "parts" / "nq-*.jsonl.gz"))
    fetched = fetch(source, [], tmp_path, remote=False, cache_dir=tmp_path / "cache")
    splits = plan_source_splits("st_jsonl", fetched, source, 1024)
    assert [(s.path, s.start, s.end) for s in splits] == [(str(p), 0, None) for p in parts]
    for size in (None, 5):
        expected = one_reader(source, fetched, size)
        assert_same(expected, in_splits("st_jsonl", fetched.path, source, size, splits), size)
        assert texts(expected[0]) == texts(
            one_reader(spec("tests/nq", "st_jsonl"), fetch_whole(whole, tmp_path), size)[0]
        )


def nq_parquet_parts(folder: Path, group_rows: int) -> tuple[Path, list[Path]]:
    """The demo's nq.jsonl rows (query, first positive) as one Parquet file and as three, row groups of
    ``group_rows``."""
    nq = Path(medi.__file__).resolve().parents[1] / "demo/mirror/FlagEmbedding/examples/finetune/embedder"
    rows = [
        json.loads(line) for name in ("nq", "msmarco") for line in (nq / f"example_data/retrieval/{name}.jsonl").open()
    ]
    table = pa.table({"question": [r["query"] for r in rows], "answer": [r["pos"][0] for r in rows]})
    folder.mkdir(parents=True, exist_ok=True)
    whole = folder / "whole.parquet"
    pq.write_table(table, whole, row_group_size=group_rows)
    parts = []
    for number, (start, end) in enumerate([(0, 7), (7, 8), (8, 20)]):
        parts.append(folder / "shards" / f"train-{number:05d}-of-00003.parquet")
        parts[-1].parent.mkdir(exist_ok=True)
        pq.write_table(table.slice(start, end - start), parts[-1], row_group_size=group_rows)
    return whole, parts


@pytest.mark.parametrize("size", [None, 4, 50])
def test_several_parquet_files_in_row_groups_merge_to_one_readers_sample(tmp_path, size):
    whole, parts = nq_parquet_parts(tmp_path, 3)
    columns = {"columns": {"query": "question", "pos": "answer"}}
    source = spec("tests/nq_table", "table", path=str(tmp_path / "shards" / "train-*.parquet"), options=columns)
    fetched = fetch(source, [], tmp_path, remote=False, cache_dir=tmp_path / "cache")
    splits = plan_source_splits("table", fetched, source, 2048)
    assert len(splits) > 3 and {s.label for s in splits} == {p.name for p in parts}
    expected = one_reader(source, fetched, size)
    assert expected[0][0].row_id.startswith("tests/nq_table:train-00000-of-00003.parquet:R")
    assert {r.row_id for r in expected[0]} <= {f"tests/nq_table:{p.name}:R{n}" for p in parts for n in range(12)}
    assert_same(expected, in_splits("table", fetched.path, source, size, splits), size)
    one_file = spec("tests/nq_table", "table", path=str(whole), options=columns)
    concatenated = one_reader(one_file, fetch(one_file, [], tmp_path, remote=False, cache_dir=tmp_path / "c"), size)
    assert texts(expected[0]) == texts(concatenated[0]) and expected[1] == concatenated[1]


# --- the YAML form and its errors ---------------------------------------------------------------------------------


def test_a_glob_matching_nothing_and_a_missing_listed_file_are_errors_naming_the_yaml(medi_home, tmp_path):
    whole_and_parts(tmp_path)
    medi_home.add_source("tests/nothing", {"adapter": "st_jsonl", "mirror": "parts/train-*.jsonl"})
    medi_home.add_source("tests/missing", {"adapter": "st_jsonl", "mirror": ["parts/nq-0.jsonl", "parts/nq-9.jsonl"]})
    medi_home.add_source("tests/local_nothing", {"adapter": "st_jsonl", "path": "data/train-*.jsonl"})
    catalog = Catalog.load()
    data = [tmp_path / "data"]
    with pytest.raises(SourceError, match=r"sources/tests/nothing\.yaml: mirror: not in the mirror: .*train-\*"):
        fetch(catalog.specs["tests/nothing"], data, medi_home.root, remote=False, cache_dir=tmp_path / "cache")
    with pytest.raises(SourceError, match=r"sources/tests/missing\.yaml: mirror: parts/nq-9\.jsonl not found"):
        fetch(catalog.specs["tests/missing"], data, medi_home.root, remote=False, cache_dir=tmp_path / "cache")
    with pytest.raises(SourceError, match=r"sources/tests/local_nothing\.yaml: path: data/train-\*\.jsonl matches no"):
        fetch(catalog.specs["tests/local_nothing"], [], medi_home.root, remote=False, cache_dir=tmp_path / "cache")


def test_a_local_glob_outside_the_project_reads_every_file_named_by_its_own_name(medi_home, tmp_path):
    """``path: /abs/dir/nq-*.jsonl`` (files outside the project root): fetched, not a crash on a path outside the
    root; the files named as anywhere else, relative to their common folder."""
    _, parts = whole_and_parts(tmp_path)
    medi_home.add_source("tests/absolute", {"adapter": "st_jsonl", "path": str(parts[0].parent / "nq-*.jsonl")})
    fetched = fetch(Catalog.load().specs["tests/absolute"], [], medi_home.root, remote=False, cache_dir=tmp_path / "c")
    assert [f.name for f in fetched.files] == sorted(p.name for p in parts)
    assert [f.path for f in fetched.files] == sorted(parts)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"adapter": "kilt", "mirror": "kilt_tasks/nq-*.jsonl"}, "mirror: adapter kilt reads one file"),
        ({"adapter": "st_jsonl", "path": ["a.jsonl", "b.jsonl"]}, "path: .*a list of local files is not read"),
        ({"adapter": "st_jsonl", "mirror": []}, "mirror: .*an empty list names no file"),
        ({"adapter": "st_jsonl", "mirror": ["a.jsonl", "a.jsonl"]}, r"mirror: .*names a file twice: \['a.jsonl'\]"),
        ({"adapter": "st_jsonl", "mirror": 3}, "mirror: .*give a file, a glob pattern or a list of them"),
        (
            {
                "adapter": "st_jsonl",
                "mirror": "x/*.jsonl",
                "upstream": {"kind": "hub", "repo": "a/b", "path": "x.jsonl"},
            },
            "mirror and upstream.path must both name one file or both several",
        ),
    ],
)
def test_a_bad_file_field_is_an_error_naming_the_yaml_and_key(medi_home, body, message):
    medi_home.add_source("tests/bad_files", body)
    with pytest.raises(MediError, match=rf"sources/tests/bad_files\.yaml: {message}"):
        Catalog.load()


# --- whole builds ---------------------------------------------------------------------------------------------------


@pytest.fixture
def parts_home(medi_home, tmp_path):
    """``tests/nq_parts`` (``mirror: parts/nq-*.jsonl``) in a data dir that also holds the concatenated file
    (``whole/nq.jsonl``), with a draft instruction."""
    whole, _ = whole_and_parts(tmp_path)
    (tmp_path / "data" / "whole").mkdir()
    whole.rename(tmp_path / "data" / "whole" / "nq.jsonl")
    medi_home.add_source("tests/nq_parts", parts_source("parts/nq-*.jsonl"))
    medi_home.add_instructions(["tests/nq_parts"])
    return tmp_path / "data"


def parts_source(mirror: str) -> dict:
    return {"adapter": "st_jsonl", "mirror": mirror, "symmetric": True, "licence": "MIT"}


def build(source: str, out: Path, data: Path, cache: Path, **options):
    console = quiet_console()
    return medi.build(source, out, [data], BuildOptions(**options), cache_dir=cache, console=console, resume=False)


def test_a_source_of_several_files_is_the_same_bytes_in_1_3_or_many_splits_on_two_workers(
    parts_home, medi_home, own_cache, monkeypatch, tmp_path
):
    """One reader (serial), a split per file, and line ranges within the files (two local workers): the same
    release; and its rows, in order, and counts are those of the same source read from the concatenated file (the
    source's name keys its sample: the same name)."""
    serial = build("tests/nq_parts", tmp_path / "serial", parts_home, own_cache, max_per_source=12)
    seen = split_events(monkeypatch)
    size = sum(path.stat().st_size for path in (parts_home / "parts").iterdir())
    for name, split_bytes in (("files", size), ("ranges", size // 12)):
        options = {"max_per_source": 12, "workers": 2, "split_bytes": split_bytes}
        build("tests/nq_parts", tmp_path / name, parts_home, own_cache, **options)
        assert_same_release(tmp_path / "serial", tmp_path / name)
    assert seen[0] == "tests/nq_parts: sample: merging 3 splits" and int(seen[1].split()[3]) > 10
    assert not list((own_cache / "splits").glob("*"))

    source = serial["sources"]["tests/nq_parts"]
    files = source["input"]["files"]
    assert [f["name"] for f in files] == ["nq-0.jsonl", "nq-1.jsonl", "nq-2.jsonl"]
    assert source["input"]["location"] == "parts/nq-*.jsonl" and source["input"]["origin"] == "mirror"
    assert any("parts/nq-1.jsonl, line 7: invalid JSON" in problem for problem in source["problems"])

    medi_home.add_source("tests/nq_parts", parts_source("whole/nq.jsonl"))  # the same source, one file
    whole = build("tests/nq_parts", tmp_path / "whole", parts_home, own_cache, max_per_source=12)
    whole = whole["sources"]["tests/nq_parts"]
    examples = [source["clean"]["dedup"].pop("examples"), whole["clean"]["dedup"].pop("examples")]  # name rows
    assert [[e["query"] for e in found["exact_duplicate"]] for found in examples] == [
        [e["query"] for e in examples[1]["exact_duplicate"]]
    ] * 2
    counts = ("rows_read", "rows_kept", "dropped", "sample", "changed", "problem_count", "rows_lost", "clean")
    assert {k: source.get(k) for k in counts} == {k: whole.get(k) for k in counts}
    parts_rows, whole_rows = open_release(tmp_path / "serial").dataset, open_release(tmp_path / "whole").dataset
    assert [(r["query"]["text"], r["pos"]["text"]) for r in parts_rows] == [
        (r["query"]["text"], r["pos"]["text"]) for r in whole_rows
    ]
    assert all(r["row_id"].startswith("tests/nq_parts:nq-") for r in parts_rows)


# --- downloads: a git list, a Hub glob ----------------------------------------------------------------------------


@pytest.fixture
def raw(tmp_path, monkeypatch):
    """GitHub's raw host in miniature (tests/git_stub.py), where git files are downloaded from."""
    with RawServer(tmp_path / "raw") as server:
        monkeypatch.setenv("MEDI_GIT_RAW_BASE", server.url)
        yield server


def test_a_git_source_of_listed_files_downloads_each(raw, medi_home, tmp_path, own_cache):
    whole, _ = whole_and_parts(tmp_path)
    revision = "1" * 40
    listed = ["data/nq-1.jsonl", "data/nq-0.jsonl", "data/nq-2.jsonl"]
    served = [
        raw.serve("medi-test/parts", revision, name, tmp_path / "data" / "parts" / Path(name).name) for name in listed
    ]
    upstream = {"kind": "git", "repo": "medi-test/parts", "path": listed, "revision": revision}
    medi_home.add_source("tests/git_parts", {**parts_source(["parts/nq-0.jsonl"]), "upstream": upstream})
    medi_home.add_instructions(["tests/git_parts"])
    manifest = medi.build(
        "tests/git_parts", tmp_path / "out", None, BuildOptions(), cache_dir=own_cache, console=quiet_console()
    )
    found = manifest["sources"]["tests/git_parts"]["input"]
    assert found["origin"] == "git" and found["revision"] == revision
    assert [f["name"] for f in found["files"]] == ["nq-0.jsonl", "nq-1.jsonl", "nq-2.jsonl"]
    assert [f["sha256"] for f in found["files"]] == [sha256_file(p) for p in sorted(served)]
    assert found["bytes"] == whole.stat().st_size and sorted(raw.requests) == sorted(
        f"/medi-test/parts/{revision}/{n}" for n in listed
    )
    assert manifest["sources"]["tests/git_parts"]["rows_read"] == 46  # 44 rows and 2 bad lines
    medi_home.add_source(
        "tests/git_glob", {**parts_source(["parts/nq-0.jsonl"]), "upstream": {**upstream, "path": "data/*.jsonl"}}
    )
    glob = Catalog.load().specs["tests/git_glob"]
    with pytest.raises(SourceError, match=r"sources/tests/git_glob\.yaml: upstream\.path: a git upstream cannot list"):
        fetch(glob, [], medi_home.root, remote=True, cache_dir=own_cache)


def test_a_hub_source_of_a_glob_downloads_every_shard_at_its_revision(medi_home, tmp_path, own_cache):
    """The shards of a Hub dataset (``data/train-*.parquet``) at the pinned commit, not main's extra shard."""
    from hub_stub import GITATTRIBUTES, Blob, HubStub, Repo
    from test_download import TOKEN, hub_env, medi_process

    _, parts = nq_parquet_parts(tmp_path, 3)
    shards = {f"data/{p.name}": Blob(p.read_bytes(), lfs=True) for p in parts}
    repo_id = "medi-test/shards"
    with HubStub(TOKEN) as hub:
        repo = Repo(repo_id, "dataset", private=False)
        hub.repos[("dataset", repo_id)] = repo
        files = {".gitattributes": Blob(GITATTRIBUTES, lfs=False), "README.md": Blob(b"shards", lfs=False), **shards}
        pinned = repo.add_commit(None, "three shards", files)
        repo.add_commit(
            pinned.oid, "a fourth", {**files, "data/train-00003-of-00004.parquet": shards["data/" + parts[0].name]}
        )
        upstream = {"kind": "hub", "repo": repo_id, "path": "data/train-*.parquet", "revision": pinned.oid}
        columns = {"columns": {"query": "question", "pos": "answer"}}
        body = {
            "adapter": "table",
            "upstream": upstream,
            "mirror": "shards/train-*.parquet",
            "options": columns,
            "symmetric": True,
        }
        medi_home.add_source("tests/hub_shards", body)
        medi_home.add_instructions(["tests/hub_shards"])
        env = hub_env(hub.url, tmp_path, medi_home.root)
        out = tmp_path / "out"
        done = medi_process(
            env, "build", "--sources", "tests/hub_shards", "--out", str(out), "--cache-dir", str(own_cache)
        )
        assert done.returncode == 0, done.stderr[-3000:]
        found = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["sources"]["tests/hub_shards"]
        assert found["input"]["origin"] == "hub" and found["input"]["revision"] == pinned.oid
        assert found["input"]["location"] == f"{repo_id}/data/train-*.parquet"
        assert [f["name"] for f in found["input"]["files"]] == [p.name for p in parts]  # not main's fourth
        assert [f["sha256"] for f in found["input"]["files"]] == [sha256_file(p) for p in parts]
        assert found["rows_read"] == 20 and not hub.writes()
        rows = open_release(out).dataset
        assert {r["row_id"].rsplit(":", 1)[0] for r in rows} <= {f"tests/hub_shards:{p.name}" for p in parts}

        body["upstream"] = {**upstream, "path": "data/test-*.parquet"}
        body["mirror"] = "shards/test-*.parquet"
        medi_home.add_source("tests/hub_none", body)
        medi_home.add_instructions(["tests/hub_none"])
        done = medi_process(
            env, "build", "--sources", "tests/hub_none", "--out", str(tmp_path / "none"), "--on-error", "fail"
        )
        assert (
            done.returncode == 1
            and "sources/tests/hub_none.yaml: upstream.path: data/test-*.parquet matches no file"
            in plain(" ".join(done.stderr.split()))
        )


def test_a_source_of_several_files_in_splits_on_ray_is_the_local_bytes(parts_home, own_cache, monkeypatch, tmp_path):
    """Two Ray workers (a local instance the build starts, MEDI_HOME forwarded), line ranges within the files: the
    local serial build's bytes."""
    pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")
    build("tests/nq_parts", tmp_path / "serial", parts_home, own_cache, max_per_source=12)
    size = sum(path.stat().st_size for path in (parts_home / "parts").iterdir())
    options = {"max_per_source": 12, "engine": "ray", "workers": 2, "split_bytes": size // 12}
    seen = split_events(monkeypatch)
    build("tests/nq_parts", tmp_path / "ray", parts_home, own_cache, **options)
    assert len(seen) == 1 and int(seen[0].split()[3]) > 10
    assert_same_release(tmp_path / "serial", tmp_path / "ray")
    assert not list((own_cache / "splits").glob("*"))


@pytest.mark.parametrize("size", [3, 12, 10_000])
def test_the_parts_written_by_split_readers_merge_to_one_readers_sample(medi_home, tmp_path, size):
    """The sample stage's own parts (``_sample_part``: a real runner, each split of the files sampled alone and
    written to the job folder) merged by ``_merged_sample`` (keys first, then only the kept rows read): the single
    reader's sample, row for row."""
    from medi.stages.splits import Claim, SplitJob
    from medi.stages.units import Runner, _merged_sample, _sample_part

    whole, _ = whole_and_parts(tmp_path)
    medi_home.add_source("tests/nq_parts", parts_source("parts/nq-*.jsonl"))
    options = BuildOptions(seed=SEED, eval_sets="none")
    runner = Runner(options, [tmp_path / "data"], tmp_path / "cache")
    source = runner.catalog.specs["tests/nq_parts"]
    fetched = fetch(source, [tmp_path / "data"], medi_home.root, remote=False, cache_dir=tmp_path / "cache")
    splits = plan_source_splits("st_jsonl", fetched, source, whole.stat().st_size // 12)
    folder = tmp_path / "job"
    folder.mkdir()
    job = SplitJob(source.name, str(fetched.path), size, str(folder))
    for number, split in enumerate(splits):
        _sample_part(runner, job, number, split, Claim(folder / f"claim-{number}"))
    merged = list(_merged_sample(folder, len(splits), size))
    expected = one_reader(source, fetched, size)[0]
    assert [r.row_id for r in merged] == [r.row_id for r in expected] and merged == expected
    assert len(merged) == min(size, 44)
