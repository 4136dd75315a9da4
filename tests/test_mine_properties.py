"""Property tests of the miner (issue 19, item 7), bounded and derandomized like tests/test_adapters_fuzz.py.

Texts are the real FlagEmbedding STS rows shipped in tests/fixtures (MIT; see tests/fixtures/README.md): every
query, positive and negative of the file, so hypothesis draws rows out of ~80 real sentences. The encoder is the
bundled all-MiniLM-L6-v2 (embeddings cached in the session's cache).

- rows sharing a query never get a sibling's positive (or a near-duplicate of one) as a negative, and each row's
  margin is measured against its own positive (sentence-transformers 6.3's ``mine_hard_negatives`` measures every
  row of a repeated query against the lowest-scoring of its positives);
- ``--negatives N`` never repeats a text (nor a near-duplicate) within a row, whatever the sampling and candidates;
- the exact search (flat, below-ceiling) and faiss' approximate HNSW index choose the same negatives wherever the
  scores are tie-free.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rapidfuzz import fuzz
from support import FLAG

from medi.encode import Encoder, EncoderConfig
from medi.schema import Record
from medi.stages.mine import MineConfig, MineReport, mine_pairs
from medi.stages.normalize import canonical

STS = FLAG / "sts" / "sts.jsonl"
PROPERTIES = settings(
    max_examples=20,
    deadline=None,  # house rule: no time limits in tests
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
NEAR = 95.0  # MineConfig.near_duplicate


def sts_texts() -> list[str]:
    texts = []
    for line in STS.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        texts += [row["query"], *row["pos"], *row["neg"]]
    return list(dict.fromkeys(texts))


TEXTS = sts_texts()


@pytest.fixture(scope="module")
def encoder(cache_dir) -> Encoder:
    return Encoder(EncoderConfig(), cache_dir)


def near(a: str, b: str) -> bool:
    a, b = canonical(a), canonical(b)
    return a == b or fuzz.ratio(a, b) >= NEAR


def negatives(triple) -> list[str]:
    return ([triple.neg] if triple.neg else []) + [n["text"] for n in triple.extra_negs]


def records_of(pairs: list[tuple[int, int]]) -> list[Record]:
    return [Record(f"prop:L{n + 1}", TEXTS[q], TEXTS[p]) for n, (q, p) in enumerate(pairs)]


# queries from a few texts, so that several rows share one; positives from the rest
shared_pairs = st.lists(
    st.tuples(st.integers(0, 3), st.integers(4, len(TEXTS) - 1)), min_size=4, max_size=24, unique=True
)


@PROPERTIES
@given(pairs=shared_pairs, n=st.integers(1, 3))
def test_shared_queries_never_take_a_siblings_positive_and_margins_use_their_own(encoder, pairs, n):
    records = records_of(pairs)
    report = MineReport()
    triples = mine_pairs(records, encoder, MineConfig(negatives=n), report, symmetric=False)
    positives_of: dict[str, set[str]] = {}
    for r in records:
        positives_of.setdefault(r.query, set()).add(r.pos)
    q = dict(zip(TEXTS, encoder.embed(TEXTS, side="query"), strict=True))
    d = dict(zip(TEXTS, encoder.embed(TEXTS, side="document"), strict=True))
    for t in triples:
        for text in negatives(t):
            assert not any(near(text, pos) for pos in positives_of[t.query]), (t.query, text)
        own = float(q[t.query] @ d[t.pos])
        assert t.pos_score == pytest.approx(own, abs=1e-5)
        ceiling = own * 0.95 if own > 0 else own
        mined = ([{"rule": t.neg_rule, "score": t.neg_score}] if t.neg else []) + t.extra_negs
        for m in mined:
            if m["rule"] == "dense":
                assert m["score"] < ceiling + 1e-6


@PROPERTIES
@given(
    pairs=st.lists(st.tuples(st.integers(0, len(TEXTS) - 1), st.integers(0, len(TEXTS) - 1)), min_size=3,
                   max_size=30, unique=True),
    n=st.integers(1, 6),
    sampling=st.sampled_from(["top", "random"]),
    candidates=st.sampled_from(["dense", "bm25", "hybrid"]),
    symmetric=st.booleans(),
)  # fmt: skip
def test_several_negatives_never_repeat_a_text_in_a_row(encoder, pairs, n, sampling, candidates, symmetric):
    records = records_of([(a, b) for a, b in pairs if a != b])
    config = MineConfig(negatives=n, negative_sampling=sampling, candidates=candidates)
    report = MineReport()
    triples = mine_pairs(records, encoder, config, report, symmetric=symmetric)
    for t in triples:
        texts = [t.query, t.pos, *negatives(t)]
        assert len(negatives(t)) <= n
        for i, a in enumerate(texts):
            for b in texts[i + 1 :]:
                assert not near(a, b), (a, b)
        for m in t.extra_negs:
            assert m["rule"] in ("dense", "bm25", "fallback")
    held = sum(int(k) * v for k, v in report.negatives_per_row.items())
    assert held == sum(len(negatives(t)) for t in triples)


@PROPERTIES
@given(
    pairs=st.lists(st.tuples(st.integers(0, len(TEXTS) - 1), st.integers(0, len(TEXTS) - 1)), min_size=5,
                   max_size=40, unique=True),
    n=st.integers(1, 3),
)  # fmt: skip
def test_exact_and_approximate_search_choose_the_same_tie_free_negatives(encoder, pairs, n):
    """HNSW (efSearch 128) against the exact below-ceiling search: on rows whose candidates' scores differ by more
    than float rounding, the same negatives in the same order (measured on these sizes: no difference at all)."""
    records = records_of([(a, b) for a, b in pairs if a != b])
    exact = mine_pairs(records, encoder, MineConfig(negatives=n, index="flat"), MineReport(), symmetric=False)
    approx = mine_pairs(records, encoder, MineConfig(negatives=n, index="hnsw"), MineReport(), symmetric=False)
    pool = list(dict.fromkeys(r.pos for r in records))
    q = encoder.embed([r.query for r in records], side="query")
    scores = q @ encoder.embed(pool, side="document").T
    for i, (a, b) in enumerate(zip(exact, approx, strict=True)):
        assert a.row_id == b.row_id
        ordered = np.sort(scores[i])
        if np.min(np.diff(ordered), initial=1.0) < 1e-4:
            continue  # near-ties: either order is right
        assert negatives(a) == negatives(b)
        assert [a.neg_rank, *(m["rank"] for m in a.extra_negs)] == [b.neg_rank, *(m["rank"] for m in b.extra_negs)]
