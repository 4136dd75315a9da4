"""BM25 candidates (medi.lexical.Bm25Index over bm25s) and reciprocal-rank fusion (hybrid_merge).

Scores are checked against BM25 computed here from its formula (Lucene's variant, bm25s's default), on a corpus
small enough to check by hand and on real FlagEmbedding retrieval rows (NQ passages; tests/fixtures/PROVENANCE.tsv).
"""

from __future__ import annotations

import json
import math
from collections import Counter

import bm25s
import numpy as np
import pytest
from support import FLAG

from medi.errors import MediError
from medi.lexical import Bm25Index, hybrid_merge, top_k

K1, B = 1.5, 0.75


def reference_bm25(docs: list[list[str]], queries: list[list[str]]) -> np.ndarray:
    """Lucene BM25 of every document for each query (queries x documents): the sum over the query's terms (a
    repeated term counts each time) of ln(1 + (N - df + 0.5) / (df + 0.5)) * tf / (tf + k1 * (1 - b + b * len /
    avglen)) (without the constant factor k1 + 1 of the original formula, as Lucene 8+ and bm25s)."""
    n = len(docs)
    avg = sum(map(len, docs)) / n
    df = Counter(term for doc in docs for term in set(doc))
    counts = [Counter(doc) for doc in docs]
    scores = np.zeros((len(queries), n))
    for row, query in enumerate(queries):
        for i, (doc, tf) in enumerate(zip(docs, counts, strict=True)):
            for term in query:
                if tf[term]:
                    idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                    scores[row, i] += idf * tf[term] / (tf[term] + K1 * (1 - B + B * len(doc) / avg))
    return scores


def tokens(texts: list[str]) -> list[list[str]]:
    return bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)


TINY = [
    "apple banana apple",  # 0
    "banana cherry",  # 1
    "cherry cherry cherry date",  # 2
    "date elderberry",  # 3
    "banana cherry",  # 4: the same text as 1, so they tie
]


def test_tiny_corpus_scores_match_the_formula_by_hand():
    scores, ids = Bm25Index(TINY).search(["apple", "cherry banana", "fig"], 4)
    # apple: only doc 0 (tf 2, len 3, avglen 2.6, df 1, N 5): idf ln(1 + 4.5/1.5) = ln 4
    by_hand = math.log(4) * 2 / (2 + 1.5 * (0.25 + 0.75 * 3 / 2.6))
    assert ids[0].tolist() == [0, -1, -1, -1]
    assert scores[0, 0] == pytest.approx(by_hand, rel=1e-6)
    assert scores[0, 1:].tolist() == [0, 0, 0]
    # cherry banana: 1 and 4 hold both words in 2 tokens (tie: the smaller id first), then 2 (cherry x3), then 0
    assert ids[1].tolist() == [1, 4, 2, 0]
    assert scores[1, 0] == scores[1, 1]
    expected = reference_bm25(tokens(TINY), [["cherry", "banana"]])[0]
    np.testing.assert_allclose(scores[1], expected[[1, 4, 2, 0]], rtol=1e-6)
    # a word no document holds: no candidate at all
    assert ids[2].tolist() == [-1] * 4 and scores[2].tolist() == [0] * 4


def test_stopwords_are_not_candidates_and_k_beyond_the_corpus_pads():
    scores, ids = Bm25Index(TINY).search(["the and of", "date"], 10)
    assert (ids[0] == -1).all()
    assert ids[1, :2].tolist() == [3, 2] and (ids[1, 2:] == -1).all()  # the shorter text first at tf 1
    assert scores.dtype == np.float32 and ids.dtype == np.int64 and ids.shape == (2, 10)


def test_ties_are_broken_by_id_when_k_cuts_through_them():
    docs = ["kiwi"] * 7 + ["kiwi kiwi lemon lemon lemon"]
    scores, ids = Bm25Index(docs).search(["kiwi"], 3)
    assert ids[0].tolist() == [0, 1, 2]  # seven equal best scores: the three smallest ids
    assert len(set(scores[0].tolist())) == 1
    values, found = top_k(np.array([0.5, 2.0, 0.0, 2.0, 1.0, 2.0], np.float32), 2)
    assert found.tolist() == [1, 3] and values.tolist() == [2.0, 2.0]


def nq_rows() -> list[dict]:
    path = FLAG / "retrieval" / "nq.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_real_passages_rank_as_the_formula_says():
    rows = nq_rows()
    docs = list(dict.fromkeys(text for row in rows for text in row["pos"] + row["neg"]))
    # the 10 questions, and the starts of 30 passages as queries too
    queries = [row["query"] for row in rows] + [text[:200] for text in docs[:30]]
    scores, ids = Bm25Index(docs).search(queries, 10)
    expected = reference_bm25(tokens(docs), tokens(queries))
    for row in range(len(queries)):
        np.testing.assert_allclose(scores[row], expected[row, ids[row]], rtol=1e-5)
        assert ids[row].tolist() == np.lexsort((np.arange(len(docs)), -expected[row].round(4)))[:10].tolist()
    # the rows' own positive passage is a BM25 candidate of its query for 7 of the 10 NQ rows (their negatives
    # were themselves mined lexically, so the positive does not always win)
    found = [docs.index(row["pos"][0]) in ids[i] for i, row in enumerate(rows)]
    assert sum(found) == 7


def test_the_same_texts_give_the_same_candidates():
    rows = nq_rows()
    docs = list(dict.fromkeys(text for row in rows for text in row["neg"]))
    queries = [row["query"] for row in rows]
    first, again = Bm25Index(docs).search(queries, 20), Bm25Index(list(docs)).search(queries[::-1], 20)
    np.testing.assert_array_equal(first[1], again[1][::-1])
    np.testing.assert_array_equal(first[0], again[0][::-1])


def test_empty_index_and_bad_k():
    scores, ids = Bm25Index([]).search(["apple"], 2)
    assert ids.tolist() == [[-1, -1]] and scores.tolist() == [[0, 0]]
    assert Bm25Index(TINY).search([], 3)[1].shape == (0, 3)
    with pytest.raises(MediError, match="k must be at least 1"):
        Bm25Index(TINY).search(["apple"], 0)


def test_stemming_needs_pystemmer():
    try:
        import Stemmer  # noqa: F401
    except ImportError:
        with pytest.raises(MediError, match="PyStemmer"):
            Bm25Index(TINY, stem=True)
    else:  # installed: "bananas" finds "banana"
        assert Bm25Index(TINY, stem=True).search(["bananas"], 1)[1][0, 0] in (1, 4)


def lists(*rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.array(rows, np.int64)
    return np.zeros(ids.shape, np.float32), ids


def test_hybrid_merge_fuses_ranks_and_remembers_the_better_list():
    dense = lists([4, 1, 2], [0, -1, -1], [7, 8, -1])
    lexical = lists([1, 3, -1], [-1, -1, -1], [8, 7, -1])
    ids, rules = hybrid_merge(dense, lexical, 4)
    # row 0: 1 = 1/62 + 1/61 (both lists, bm25 rank 1 < dense rank 2), 4 = 1/61, 3 = 1/62, 2 = 1/63
    assert ids[0].tolist() == [1, 4, 3, 2]
    assert rules[0].tolist() == ["bm25", "dense", "bm25", "dense"]
    assert ids[1].tolist() == [0, -1, -1, -1] and rules[1].tolist() == ["dense", "", "", ""]
    # row 2: 7 and 8 both score 1/61 + 1/62: the smaller id first; each from the list it tops
    assert ids[2].tolist() == [7, 8, -1, -1] and rules[2].tolist() == ["dense", "bm25", "", ""]


def test_hybrid_merge_ties_on_equal_ranks_go_to_dense_and_k_cuts():
    ids, rules = hybrid_merge(lists([5, 6]), lists([6, 5]), 1)
    assert ids.tolist() == [[5]] and rules.tolist() == [["dense"]]
    ids, rules = hybrid_merge(lists([9, 3]), lists([9, 2]), 3)
    assert ids.tolist() == [[9, 2, 3]] and rules.tolist() == [["dense", "bm25", "dense"]]


def test_hybrid_merge_of_real_dense_and_bm25_lists():
    rows = nq_rows()
    docs = list(dict.fromkeys(text for row in rows for text in row["pos"] + row["neg"]))
    queries = [row["query"] for row in rows]
    lexical = Bm25Index(docs).search(queries, 10)
    dense = lexical[0], np.ascontiguousarray(lexical[1][:, ::-1])  # another order of the same ids
    ids, rules = hybrid_merge(dense, lexical, 10)
    for row in range(len(rows)):
        assert sorted(ids[row].tolist()) == sorted(lexical[1][row].tolist())  # the same candidates, once each
    assert set(rules.ravel()) <= {"dense", "bm25"}


def test_hybrid_merge_rejects_lists_of_other_rows():
    with pytest.raises(MediError, match="a row per query"):
        hybrid_merge(lists([1, 2]), lists([1], [2]), 2)
