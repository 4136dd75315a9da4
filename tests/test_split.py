"""One source read in splits (``medi.stages.splits``): every split keeps its own bottom-k sample and the merged result
is exactly one reader's — the same rows in the same order, the same read-wide counts, the same problems on the same
lines — for JSONL line ranges, gzip line blocks and Parquet row groups; and a build with 1, 2 or 4 splits of its
largest source writes the serial build's bytes (Ray: tests/test_ray.py).

Rows are real: the demo mirror's FlagEmbedding nq.jsonl (the largest demo input) and tests/fixtures/bad/.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import BAD, DEMO_MIRROR, quiet_console, single_reader_sample, spec

import medi
from medi.adapters import Split, Stream, get_adapter, plan_splits, read_split
from medi.adapters.st_jsonl import line_chunks, read_json_lines
from medi.build import BuildOptions
from medi.errors import Problem
from medi.progress import BuildProgress
from medi.stages.sample import Sampler, merge_reports, merge_samples

NQ = DEMO_MIRROR / "FlagEmbedding" / "examples" / "finetune" / "embedder" / "example_data" / "retrieval" / "nq.jsonl"
MSMARCO = NQ.with_name("msmarco.jsonl")
SEED = 7


def nq_with_duplicates_and_bad_lines(folder: Path) -> Path:
    """nq.jsonl's and msmarco.jsonl's lines, then all of them again (exact duplicates across splits), with
    tests/fixtures/bad/bad_lines.jsonl (two bad lines) and blank lines in the middle."""
    lines = [line for path in (NQ, MSMARCO) for line in path.read_text(encoding="utf-8").splitlines()]
    bad = (BAD / "bad_lines.jsonl").read_text(encoding="utf-8").splitlines()
    middle = len(lines) // 2
    path = folder / "nq-mixed.jsonl"
    body = [*lines[:middle], "", *bad, "  ", *lines[middle:], *lines]
    path.write_text("\n".join(body) + "\n", encoding="utf-8")
    return path


def one_reader(kind: str, path: Path, source, size: int | None):
    """What the sample stage's single reader keeps: (sample, report, problems)."""
    return single_reader_sample(get_adapter(kind, source.name)(path, source, SEED).rows, source.name, SEED, size)


def in_splits(kind: str, path: Path, source, size: int | None, splits: list[Split]):
    """Each split read and sampled alone, then merged."""
    parts, reports, keys, problems, every = [], [], [], [], []
    for split in splits:
        sampler = Sampler(size, f"{SEED}:{source.name}")
        for item in read_split(kind, path, source, SEED, split):
            if isinstance(item, Problem):
                problems.append(item)
            else:
                sampler.offer(item)
                every.append(item)
        parts.append(sampler.finish_keyed())
        reports.append(sampler.report)
        keys.append(sampler.unique_keys)
    sample = merge_samples(parts, size) if size is not None else every
    return sample, merge_reports(reports, keys, size), problems


def assert_same(expected, found, size) -> None:
    (rows, report, problems), (rows_found, report_found, problems_found) = expected, found
    assert [r.row_id for r in rows_found] == [r.row_id for r in rows]
    assert rows_found == rows
    assert report_found.rows_read == report.rows_read
    assert report_found.duplicates_read == report.duplicates_read
    assert [str(p) for p in problems_found] == [str(p) for p in problems]


@pytest.mark.parametrize("count", [2, 3, 4, 9])
@pytest.mark.parametrize("size", [None, 3, 12, 10_000])
def test_line_ranges_merge_to_one_readers_sample(tmp_path, count, size):
    path = nq_with_duplicates_and_bad_lines(tmp_path)
    source = spec("tests/nq", "st_jsonl")
    splits = plan_splits("st_jsonl", path, source, -(-path.stat().st_size // count))
    assert isinstance(splits, list) and len(splits) == count
    assert [s.start for s in splits[1:]] == [s.end for s in splits[:-1]] and splits[-1].end is None
    expected = one_reader("st_jsonl", path, source, size)
    assert expected[1].duplicates_read >= 20 and len(expected[2]) == 2  # the case is really exercised
    assert_same(expected, in_splits("st_jsonl", path, source, size, splits), size)


def test_a_range_starts_on_a_line_and_knows_its_number(tmp_path):
    path = nq_with_duplicates_and_bad_lines(tmp_path)
    data = path.read_bytes()
    splits = plan_splits("st_jsonl", path, spec("tests/nq", "st_jsonl"), 20_000)
    lines = data.count(b"\n")
    for split, after in zip(splits, [*(s.first for s in splits[1:]), lines + 1], strict=True):
        assert split.start == 0 or data[split.start - 1 : split.start] == b"\n"
        assert data[: split.start].count(b"\n") + 1 == split.first
        read = [item for item in read_json_lines(path, split)]
        numbers = [int(item.where.split()[1]) if isinstance(item, Problem) else item[0] for item in read]
        assert all(split.first <= number < after for number in numbers)
        if data[split.start : split.start + 1] == b"{":
            assert numbers[0] == split.first


def test_no_split_for_a_small_file(tmp_path):
    assert plan_splits("st_jsonl", NQ, spec("tests/nq", "st_jsonl"), NQ.stat().st_size) is None


def gzip_of(path: Path, folder: Path, cut: int | None = None) -> Path:
    data = gzip.compress(path.read_bytes(), mtime=0)
    target = folder / f"{path.name}.gz"
    target.write_bytes(data[:cut] if cut else data)
    return target


def blocks_as_splits(plan: Stream, folder: Path, block_bytes: int) -> tuple[list[Split], list[Problem]]:
    """The stream's blocks written out as the job folder holds them, each a split with its first line."""
    splits, closing = [], []
    for number, item in enumerate(plan.blocks(block_bytes)):
        if isinstance(item, Problem):
            closing.append(item)
            continue
        lines, first = item
        block = folder / f"block-{number}.jsonl"
        block.write_bytes(lines)
        splits.append(Split(str(block), first=first))
    return splits, closing


@pytest.mark.parametrize("cut", [None, -300])
def test_a_gzip_stream_in_blocks_merges_to_one_readers_sample(tmp_path, cut):
    """Decoded once into blocks of whole lines; a stream cut short ends with the problem one reader reports."""
    plain = nq_with_duplicates_and_bad_lines(tmp_path)
    path = gzip_of(plain, tmp_path, cut)
    source = spec("tests/nq", "st_jsonl")
    plan = plan_splits("st_jsonl", path, source, 50_000)
    assert isinstance(plan, Stream)
    splits, closing = blocks_as_splits(plan, tmp_path, 50_000)
    assert len(splits) >= 10
    for size in (None, 12):
        expected = one_reader("st_jsonl", path, source, size)
        rows, report, problems = in_splits("st_jsonl", path, source, size, splits)
        assert_same(expected, (rows, report, problems + closing), size)
    if cut:
        assert len(closing) == 1 and "unreadable after line" in str(closing[0]) and str(path) in str(closing[0])


def test_gzip_blocks_hold_every_line_once(tmp_path):
    plain = nq_with_duplicates_and_bad_lines(tmp_path)
    path = gzip_of(plain, tmp_path)
    blocks = [item for item in line_chunks(path, 10_000)]
    assert b"".join(lines for lines, _ in blocks) == plain.read_bytes()
    firsts = [first for _, first in blocks]
    counts = [lines.count(b"\n") for lines, _ in blocks]
    assert firsts == [1 + sum(counts[:n]) for n in range(len(blocks))]


def parquet_of_nq(folder: Path, group_rows: int) -> Path:
    """nq.jsonl's rows (query, first positive) as Parquet row groups of ``group_rows``."""
    import json

    rows = [json.loads(line) for line in NQ.read_text(encoding="utf-8").splitlines() if line.strip()]
    table = pa.table({"question": [r["query"] for r in rows], "answer": [r["pos"][0] for r in rows]})
    path = folder / "nq.parquet"
    pq.write_table(table, path, row_group_size=group_rows)
    return path


@pytest.mark.parametrize("size", [None, 4, 50])
def test_parquet_row_groups_merge_to_one_readers_sample(tmp_path, size):
    path = parquet_of_nq(tmp_path, 3)
    source = spec("tests/nq_table", "table", options={"columns": {"query": "question", "pos": "answer"}})
    splits = plan_splits("table", path, source, 2048)
    assert isinstance(splits, list) and len(splits) > 2
    assert [s.first for s in splits] == [3 * s.row_groups[0] for s in splits]
    expected = one_reader("table", path, source, size)
    assert_same(expected, in_splits("table", path, source, size, splits), size)


def test_table_jsonl_line_ranges(tmp_path):
    path = nq_with_duplicates_and_bad_lines(tmp_path)
    source = spec("tests/nq_table", "table", options={"columns": {"query": "query", "pos": "pos"}})
    splits = plan_splits("table", path, source, 30_000)
    expected = one_reader("table", path, source, 40)
    assert_same(expected, in_splits("table", path, source, 40, splits), 40)


# --- whole builds -------------------------------------------------------------------------------------------------


def split_events(monkeypatch) -> list[str]:
    """The 'sample: merging N splits' progress lines the workers send the driver."""
    seen: list[str] = []
    real = BuildProgress.update

    def update(progress, source, stage, *args, **kwargs):
        if stage.startswith("sample: merging"):
            seen.append(f"{source}: {stage}".split(" (")[0])  # without "(read by N workers)": timing
        return real(progress, source, stage, *args, **kwargs)

    monkeypatch.setattr(BuildProgress, "update", update)
    return seen


def assert_same_release(expected: Path, found: Path) -> None:
    names = sorted(p.name for p in expected.iterdir())
    assert names == sorted(p.name for p in found.iterdir())
    for name in names:
        assert (expected / name).read_bytes() == (found / name).read_bytes(), f"{name} differs"


@pytest.mark.parametrize("count", [1, 2, 4])
def test_the_demo_with_its_largest_source_in_splits_is_the_serial_bytes(
    demo_release, own_cache, monkeypatch, tmp_path, count
):
    """Two local workers; flagembedding/nq (637 kB) read in 1, 2 or 4 line ranges, the other worker helping:
    the release is the serial build's, byte for byte, and nothing is left in the splits folder."""
    monkeypatch.delenv("MEDI_HOME", raising=False)
    seen = split_events(monkeypatch)
    split_bytes = NQ.stat().st_size + 1 if count == 1 else -(-NQ.stat().st_size // count)
    options = BuildOptions(workers=2, split_bytes=split_bytes)
    medi.build("demo", tmp_path / "out", None, options, cache_dir=own_cache, console=quiet_console(), resume=False)
    assert_same_release(demo_release.out, tmp_path / "out")
    merged = [line for line in seen if line.startswith("flagembedding/nq:")]
    assert merged == ([] if count == 1 else [f"flagembedding/nq: sample: merging {count} splits"])
    assert not list((own_cache / "splits").glob("*"))


def test_a_gzip_source_in_blocks_is_the_serial_bytes(make_release, own_cache, monkeypatch, tmp_path):
    """st/msmarco-triplets from the fixture mirror (gzip) in ~1 kB blocks with two workers: the serial bytes."""
    from support import MIRROR

    monkeypatch.delenv("MEDI_HOME", raising=False)
    serial = make_release("st/msmarco-triplets", tmp_path / "serial", [MIRROR], cache=own_cache)
    seen = split_events(monkeypatch)
    options = BuildOptions(workers=2, split_bytes=1024)
    out = tmp_path / "split"
    medi.build(
        "st/msmarco-triplets", out, [MIRROR], options, cache_dir=own_cache, console=quiet_console(), resume=False
    )
    assert seen and seen[0].startswith("st/msmarco-triplets: sample: merging")
    assert_same_release(serial.out, out)
    assert not list((own_cache / "splits").glob("*"))
