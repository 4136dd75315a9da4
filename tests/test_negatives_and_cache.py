"""Hard negatives (filter, widening window, fallback), faiss search selection, and the embedding cache.

Texts are the real FlagEmbedding STS rows shipped in tests/fixtures (MIT; see tests/fixtures/README.md).
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import faiss
import numpy as np
import pytest
from rapidfuzz import fuzz

from medi.encode import (
    TOKENS_PER_BATCH,
    EmbeddingCache,
    Encoder,
    EncoderConfig,
    cache_info,
    length_bucket,
    pick_device,
    prune_cache,
    shape_rows,
    text_key,
)
from medi.schema import Record
from medi.search import Searcher, gpu_count
from medi.stages.mine import MineConfig, MineReport, mine_pairs
from medi.stages.normalize import canonical

FIXTURES = Path(__file__).parent / "fixtures" / "mirror"
STS = FIXTURES / "FlagEmbedding/examples/finetune/embedder/example_data/sts/sts.jsonl"


@pytest.fixture(scope="module")
def sts_rows() -> list[dict]:
    return [json.loads(line) for line in STS.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Encoder:
    return Encoder(cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def pair_records(sts_rows) -> list[Record]:
    """STS pairs without their negatives, plus each row's negatives as extra pairs to grow the corpus."""
    records = [Record(row_id=f"sts:L{i + 1}", query=r["query"], pos=r["pos"][0]) for i, r in enumerate(sts_rows)]
    for i, row in enumerate(sts_rows):
        negs = row["neg"]
        records += [
            Record(row_id=f"sts:L{i + 1}/{k}", query=a, pos=b) for k, (a, b) in enumerate(itertools.pairwise(negs))
        ]
    return records


def mine(records, encoder, symmetric=False, **config) -> tuple[list, MineReport]:
    report = MineReport()
    return mine_pairs(records, encoder, MineConfig(**config), report, symmetric), report


def test_mined_negatives_respect_the_positive_aware_filter(pair_records, encoder):
    triples, report = mine(pair_records, encoder)
    mined = [t for t in triples if t.neg_origin == "mined"]
    assert len(mined) > 0.9 * len(pair_records)
    for t in mined:
        assert t.neg_score < 0.95 * t.pos_score or t.pos_score <= 0
        assert t.neg not in (t.query, t.pos)
    assert report.summary()["share_neg_ge_pos"] == 0.0


def test_no_negative_is_the_query_or_a_near_duplicate_on_symmetric_data(pair_records, encoder):
    # (a, b) and (b, a): on symmetric data the query's own text sits in the pool as another row's positive
    flipped = [Record(row_id=r.row_id + "~", query=r.pos, pos=r.query) for r in pair_records]
    triples, _ = mine(pair_records + flipped, encoder, symmetric=True)
    for t in triples:
        for other in (t.query, t.pos):
            assert fuzz.ratio(canonical(t.neg), canonical(other)) < 95


def test_a_narrow_window_widens_to_the_same_choice(pair_records, encoder):
    wide, _ = mine(pair_records, encoder, window=4096)
    narrow, report = mine(pair_records, encoder, window=1)
    assert report.widened > 0
    assert [t.neg for t in narrow] == [t.neg for t in wide]


def test_fallback_when_the_filter_rejects_every_candidate(pair_records, encoder):
    triples, report = mine(pair_records[:12], encoder, absolute_margin=10.0)  # ceiling far below any score
    assert report.neg_origin == {"fallback": 12}
    assert report.summary()["fallbacks"] == 12
    assert all(t.neg not in (t.query, t.pos) for t in triples)
    again, _ = mine(pair_records[:12], encoder, absolute_margin=10.0)
    assert [t.neg for t in again] == [t.neg for t in triples]  # the random fallback is seeded


def test_given_negatives_are_kept_unless_replaced(sts_rows, encoder):
    records = [
        Record(row_id=f"g{i}", query=r["query"], pos=r["pos"][0], neg=r["neg"][0]) for i, r in enumerate(sts_rows)
    ]
    kept, report = mine(records, encoder)
    assert report.neg_origin == {"given": len(records)}
    assert [t.neg for t in kept] == [r.neg for r in records]
    _, report = mine(records, encoder, replace_negatives=True)
    assert "given" not in report.neg_origin


def test_search_runs_on_cpu_here_and_matches_exact_scores(encoder, sts_rows):
    assert gpu_count() == (faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0)
    import torch

    assert pick_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    corpus = encoder.embed([n for r in sts_rows for n in r["neg"]])
    queries = encoder.embed([r["query"] for r in sts_rows])
    searcher = Searcher(corpus)
    assert searcher.on_gpu is (gpu_count() > 0)
    scores, ids = searcher.search(queries, 5)
    exact = queries @ corpus.T
    assert np.array_equal(ids, np.argsort(-exact, axis=1, kind="stable")[:, :5]) or np.allclose(
        scores, np.sort(exact, axis=1)[:, ::-1][:, :5], atol=1e-5
    )
    for kind in ("hnsw", "ivf"):
        _, approx = Searcher(corpus, index=kind).search(queries, 1)
        assert (approx[:, 0] == ids[:, 0]).mean() >= 0.8


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_a_ceiling_leaves_out_exactly_the_candidates_at_or_above_it(encoder, sts_rows, kind):
    """search() drops its top k's rows at or above the ceiling; search_below() (exact CPU) ranks only those below."""
    corpus = encoder.embed(list(dict.fromkeys(n for r in sts_rows for n in r["neg"])))
    queries = encoder.embed([r["query"] for r in sts_rows])
    exact = queries @ corpus.T
    ceilings = np.quantile(exact, 0.9, axis=1).astype(np.float32)  # the best tenth of every row is off limits
    k = 5
    searcher = Searcher(corpus, index=kind)
    _, ids = searcher.search(queries, k, ceilings)
    assert all((exact[row, ids[row][ids[row] >= 0]] < ceilings[row]).all() for row in range(len(queries)))
    assert searcher.can_search_below is (kind == "flat" and not searcher.on_gpu)
    if not searcher.can_search_below:
        return
    scores, ids = searcher.search_below(queries, k, ceilings)
    for row in range(len(queries)):
        below = np.sort(exact[row][exact[row] < ceilings[row]])[::-1][:k]
        assert (ids[row] >= 0).sum() == len(below)
        np.testing.assert_allclose(scores[row][: len(below)], below, atol=1e-5)


def test_search_below_leaves_out_a_score_exactly_at_the_ceiling_and_nothing_for_an_unreachable_one(encoder, sts_rows):
    corpus = encoder.embed(list(dict.fromkeys(n for r in sts_rows for n in r["neg"])))
    queries = encoder.embed([r["query"] for r in sts_rows])
    searcher = Searcher(corpus)
    top_scores, top_ids = searcher.search_below(queries, 4, np.full(len(queries), np.inf, np.float32))
    plain_scores, plain_ids = searcher.search(queries, 4)
    assert (top_ids >= 0).all()
    np.testing.assert_allclose(top_scores, plain_scores, atol=1e-5)  # no ceiling: the plain top k
    assert (top_ids[:, 0] == plain_ids[:, 0]).mean() > 0.95  # (ties within a rounding may swap)
    at_best = top_scores[:, 0].copy()  # each row's ceiling is its own best score, exactly as computed
    scores, ids = searcher.search_below(queries, 4, at_best)
    assert (ids[:, 0] != top_ids[:, 0]).all() and (np.where(ids >= 0, scores, -np.inf) < at_best[:, None]).all()
    lowest = (queries @ corpus.T).min(axis=1) - 1e-3
    _, none = searcher.search_below(queries, 4, lowest.astype(np.float32))
    assert (none == -1).all()


def test_a_texts_vector_does_not_depend_on_what_is_encoded_with_it(tmp_path, sts_rows):
    """Fixed-shape length buckets: the same bytes whatever else is cold in the same call (any worker split)."""
    texts = list(dict.fromkeys([r["query"] for r in sts_rows] + [n for r in sts_rows for n in r["neg"]]))
    alone = Encoder(cache_dir=tmp_path / "a").embed(texts[::3])
    together = Encoder(cache_dir=tmp_path / "b").embed(texts[::-1])[::-1]
    assert alone.tobytes() == together[::3].tobytes()


def test_length_buckets_pad_one_token_up_to_16_then_under_a_quarter():
    for tokens in range(1, 600):
        bucket = length_bucket(tokens, 512)
        assert bucket == 512 if tokens >= 512 else tokens <= bucket <= max(tokens + 1, tokens * 5 / 4)
        assert 1 <= shape_rows(bucket, 64) * bucket <= TOKENS_PER_BATCH


def test_each_text_is_encoded_once_and_the_cache_is_shared(tmp_path, sts_rows):
    texts = [r["query"] for r in sts_rows]
    first = Encoder(cache_dir=tmp_path)
    vectors = first.embed(texts + texts[:3])
    assert first.texts_encoded == len(texts)
    second = Encoder(cache_dir=tmp_path)
    assert np.array_equal(second.embed(texts), vectors[: len(texts)])
    assert second.texts_encoded == 0 and second.cache.hits == len(texts)


def test_concurrent_writers_and_prune(tmp_path, sts_rows):
    groups = [[r["query"] for r in sts_rows], [r["pos"][0] for r in sts_rows], [r["neg"][0] for r in sts_rows]]
    encoders = [Encoder(cache_dir=tmp_path) for _ in groups]
    threads = [threading.Thread(target=e.embed, args=(g,)) for e, g in zip(encoders, groups, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (info,) = cache_info(tmp_path)
    assert info["chunks"] == 3 and info["distinct_texts"] == len({t for g in groups for t in g})
    before = Encoder(cache_dir=tmp_path).embed(groups[1])
    report = prune_cache(tmp_path)
    assert report["merged"][info["encoder_key"]]["chunks_before"] == 3
    (after_info,) = cache_info(tmp_path)
    assert after_info["chunks"] == 1 and after_info["vectors"] == info["distinct_texts"]
    reader = Encoder(cache_dir=tmp_path)
    assert np.array_equal(reader.embed(groups[1]), before) and reader.texts_encoded == 0
    prune_cache(tmp_path, keep=[])
    assert cache_info(tmp_path) == []


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_cache_of_thousands_of_chunks_maps_none_of_them_between_reads(tmp_path, sts_rows, monkeypatch):
    """A long build writes a chunk every 32 batches; the index must not hold a file (or a dict entry) per chunk."""
    monkeypatch.setattr(EmbeddingCache, "MERGE_AT", 400)  # several merges of recent keys into the sorted index
    texts = [f"{r['query']} #{i}" for i in range(300) for r in sts_rows][:3000]
    keys = [text_key("", t) for t in texts]
    vectors = np.random.default_rng(0).standard_normal((len(keys), 8)).astype(np.float32)
    assert len(set(keys)) == len(keys) >= 2000
    writer = EmbeddingCache(tmp_path / "embeddings", "key")
    half = len(keys) // 2
    for start in range(0, half, 2):  # chunks of two texts
        writer.put(keys[start : start + 2], vectors[start : start + 2])
    reader, files = EmbeddingCache(tmp_path / "embeddings", "key"), open_files()
    found, missing = reader.lookup(keys[:half][::-1])
    assert not missing and np.array_equal(found, vectors[:half][::-1])
    for start in range(half, len(keys), 2):  # written after the reader's first look: found on its next
        writer.put(keys[start : start + 2], vectors[start : start + 2])
    writer.put(keys[:2], -vectors[:2])  # the same texts again in a later chunk: the first chunk still serves them
    found, missing = reader.lookup([*keys, text_key("", "never cached")])
    assert missing == [len(keys)] and np.array_equal(found[: len(keys)], vectors)
    assert open_files() <= files + 1 and len(reader) == len(keys)
    assert cache_info(tmp_path)[0]["distinct_texts"] == len(keys)


def test_int8_precision_is_opt_in_cached_apart_and_close_to_fp32(tmp_path, sts_rows):
    texts = [r["query"] for r in sts_rows]
    fp32 = Encoder(EncoderConfig(), cache_dir=tmp_path)
    int8 = Encoder(EncoderConfig(precision="int8"), cache_dir=tmp_path)
    assert fp32.key != int8.key and int8.identity()["precision"] == "int8"
    a, b = fp32.embed(texts), int8.embed(texts)
    assert int8.texts_encoded == len(texts), "int8 vectors must not come from the fp32 cache"
    cosines = np.einsum("ij,ij->i", a, b)
    assert not np.allclose(a, b) and cosines.min() > 0.9
