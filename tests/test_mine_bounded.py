"""The miner of pair sources in bounded memory (issue 20, item 4): rows kept on disk and read back by position, the
pool found by digests, vectors memory-mapped, rows walked and written a chunk at a time, all giving what holding
every row gave (the release bytes were compared against builds made before the change: see tests/test_mine_stream.py
and bench/scale.py --mined-uncapped for the memory).

Real data: the demo mirror (demo/PROVENANCE.md): st/quora_duplicates (symmetric, no negatives: every row mined),
flagembedding/msmarco (several rows a query, given negatives shared between rows) and st/msmarco-triplets.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from support import DEMO_MIRROR

from medi.build import BuildOptions
from medi.schema import Record, records_of
from medi.search import Searcher
from medi.stages import mine
from medi.stages.checkpoint import Checkpoints, to_jsonable
from medi.stages.mine import MineConfig, MineReport, Pool, RowStore, mine_pairs
from medi.stages.units import CLEAN, SAMPLE, SELECT, Runner, run_source

SOURCES = ("st/quora_duplicates", "flagembedding/msmarco", "st/msmarco-triplets")


@pytest.fixture(scope="module")
def runner(cache_dir, tmp_path_factory) -> Runner:
    runner = Runner(BuildOptions(eval_sets="none"), [DEMO_MIRROR], cache_dir)
    runner.checkpoints = Checkpoints(tmp_path_factory.mktemp("stages"))
    return runner


@pytest.fixture(scope="module")
def selected(runner) -> dict[str, list[Record]]:
    """Each source's rows as the select stage leaves them."""
    found = {}
    for name in SOURCES:
        outcome = run_source(runner, runner.catalog.specs[name], (SAMPLE, CLEAN, SELECT))
        found[name] = records_of(pq.read_table(outcome.output("select").path))
    return found


def crossed(records: list[Record]) -> list[Record]:
    """The rows, then half of them again with other ids and their texts in other columns (a positive that is
    another row's negative or query, a query met twice): the texts the digests must recognise."""
    again = [Record(f"{r.row_id}#again", r.query, r.neg or r.query, r.pos) for r in records[: len(records) // 2]]
    return records + again


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("name", SOURCES)
def test_the_pool_is_in_first_occurrence_order(selected, name, symmetric, tmp_path):
    """Pool ids decide the order of tied candidates and the fallback's draws: they must be ``dict.fromkeys``'."""
    records = crossed(selected[name])
    texts = [r.pos for r in records] + [r.neg for r in records if r.neg is not None]
    expected = list(dict.fromkeys(texts))
    if symmetric:
        texts += [r.query for r in records]
        expected = list(dict.fromkeys(expected + [r.query for r in records]))
    assert len(expected) < len(texts)  # texts met more than once
    store = RowStore(tmp_path, iter(records))
    try:
        pool = Pool(store, symmetric)
        assert [pool[i] for i in range(len(pool))] == expected
        assert [expected[i] for i in pool.pos_id] == [r.pos for r in records]
        given = [(i, r.neg) for i, r in enumerate(records) if r.neg is not None]
        assert [expected[pool.neg_id[i]] for i, _ in given] == [neg for _, neg in given]
        assert all(pool.id_of(text) == i for i, text in enumerate(expected))
        assert pool.id_of("a text in no row of the source") is None
        assert [store.record(i) for i in range(len(records))] == [
            Record(r.row_id, r.query, r.pos, r.neg) for r in records
        ]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("st/quora_duplicates", {}),
        ("flagembedding/msmarco", {"negatives": 2}),
        ("st/msmarco-triplets", {"negatives": 3, "negative_sampling": "random"}),
    ],
)
def test_mined_rows_do_not_depend_on_the_row_chunk(runner, selected, name, config, monkeypatch):
    """Rows are walked, finished and written ROW_CHUNK at a time, and what a chunk kept (texts, forms, own texts) is
    dropped after it: any chunk gives the same negatives, ranks, rules and counts. Scores agree to float rounding
    only: the exact search multiplies a chunk's queries at once, and the matmul rounds differently for another
    number of rows (ROW_CHUNK is fixed, so a build's bytes do not change)."""
    spec = runner.catalog.specs[name]

    def mined() -> tuple[list, dict]:
        report = MineReport()
        triples = mine_pairs(crossed(selected[name]), runner.encoder, MineConfig(**config), report, spec.symmetric)
        return rounded([dataclasses.asdict(t) for t in triples]), rounded(to_jsonable(report))

    whole = mined()
    monkeypatch.setattr(mine, "ROW_CHUNK", 7)
    assert mined() == whole
    mined_texts = [
        n for t in whole[0] for n in [{"origin": t["neg_origin"]}, *t["extra_negs"]] if n["origin"] == "mined"
    ]
    assert len(whole[0]) > 7 and mined_texts  # several chunks, negatives mined


def rounded(value):
    """``value`` with every float rounded to 5 decimals (in lists and dicts)."""
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    return value


def test_embed_mapped_writes_embed_many_vectors(runner, selected, tmp_path):
    """Chunks of any size, texts repeated across chunks and groups: the vectors ``embed_many`` gives, in files."""
    records = selected["st/quora_duplicates"][:40]
    queries, docs = [r.query for r in records], [r.pos for r in records] + [r.query for r in records[:5]]
    encoder = runner.encoder
    want = encoder.embed_many([(queries, "query"), (docs, "document")])
    chunks = lambda texts: (texts[at : at + 7] for at in range(0, len(texts), 7))  # noqa: E731
    got = encoder.embed_mapped(
        [(chunks(queries), len(queries), "query"), (chunks(docs), len(docs), "document")], tmp_path
    )
    for mapped, vectors in zip(got, want, strict=True):
        assert isinstance(mapped, np.memmap) and Path(mapped.filename).parent == tmp_path
        assert np.array_equal(np.asarray(mapped), vectors)


def test_the_exact_search_builds_no_faiss_index(runner, selected):
    """Below a ceiling the exact search reads the (memory-mapped) corpus itself: no second copy in faiss."""
    texts = list(dict.fromkeys(r.pos for r in selected["st/quora_duplicates"]))[:200]
    vectors = runner.encoder.embed(texts)
    searcher = Searcher(vectors, use_gpu=False)
    _, ids, _ = searcher.search_below_counted(vectors[:5], 3, np.full(5, 0.99, np.float32))
    assert "index" not in searcher.__dict__ and (ids >= 0).all()
    assert np.array_equal(searcher.search(vectors[:5], 1)[1][:, 0], np.arange(5))  # the index, once searched
