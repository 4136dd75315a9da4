"""Lexical candidates: BM25 over the documents of a source (the ``bm25s`` library), and reciprocal-rank fusion of a
dense and a lexical candidate list (``mining.candidates: bm25 | hybrid``).

These are the classic DPR / Tevatron hard negatives: texts sharing the query's words, found without encoding a
single text. Results are deterministic: a document scores what BM25 gives it, ties are broken by document id, and a
document sharing no term with the query is no candidate (ids are padded with -1 instead).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medi.errors import MediError

DENSE = "dense"
BM25 = "bm25"
RRF_CONSTANT = 60  # Cormack, Clarke & Buettcher (SIGIR 2009): k = 60 in 1 / (k + rank)


class Bm25Index:
    """A BM25 index of ``texts`` (document id = position in ``texts``).

    Parameters are bm25s's: ``k1``, ``b``, ``method`` (lucene, robertson, atire, bm25l, bm25+); ``stopwords``: a
    language bm25s knows ("en") or None; ``stem``: stem words with PyStemmer's English stemmer (an optional package).
    """

    def __init__(
        self,
        texts: Sequence[str],
        *,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        stopwords: str | None = "en",
        stem: bool = False,
    ):
        import bm25s

        self.size = len(texts)
        self._stopwords = stopwords
        self._stemmer = _stemmer() if stem else None
        self._retriever = bm25s.BM25(k1=k1, b=b, method=method)
        if self.size:
            tokens = bm25s.tokenize(
                list(texts), stopwords=stopwords, stemmer=self._stemmer, return_ids=True, show_progress=False
            )
            self._retriever.index(tokens, show_progress=False)

    def search(self, query_texts: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 (n, k), ids int64 (n, k)), best first, ties by id; -1 (score 0) where fewer than k
        documents share a term with the query."""
        if k < 1:
            raise MediError(f"bm25 search: k must be at least 1, got {k}")
        scores = np.zeros((len(query_texts), k), np.float32)
        ids = np.full((len(query_texts), k), -1, np.int64)
        if not self.size or not len(query_texts):
            return scores, ids
        for row, token_ids in enumerate(self._query_token_ids(query_texts)):
            found_scores, found_ids = top_k(self._retriever.get_scores_from_ids(token_ids), k)
            scores[row, : len(found_ids)] = found_scores
            ids[row, : len(found_ids)] = found_ids
        return scores, ids

    def _query_token_ids(self, query_texts: Sequence[str]) -> list[list[int]]:
        import bm25s

        tokens = bm25s.tokenize(
            list(query_texts), stopwords=self._stopwords, stemmer=self._stemmer, return_ids=False, show_progress=False
        )
        return [self._retriever.get_tokens_ids(query) for query in tokens]


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The at most ``k`` positive scores and their ids, best first, ties broken by the smaller id."""
    hits = np.flatnonzero(scores > 0)
    values = scores[hits]
    if len(hits) > k:
        threshold = values[np.argpartition(-values, k - 1)[:k]].min()
        above = hits[values > threshold]
        tied = hits[values == threshold][: k - len(above)]  # ``hits`` is ascending: the smallest ids
        hits = np.concatenate([above, tied])
        values = scores[hits]
    order = np.lexsort((hits, -values))
    return values[order].astype(np.float32), hits[order].astype(np.int64)


def hybrid_merge(
    dense: tuple[np.ndarray, np.ndarray],
    lexical: tuple[np.ndarray, np.ndarray],
    k: int,
    constant: int = RRF_CONSTANT,
) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal-rank fusion of two candidate lists per row: (ids int64 (n, k), rules (n, k) ``"dense"`` /
    ``"bm25"``); -1 and ``""`` pad rows with fewer than k distinct candidates.

    A candidate scores the sum of 1 / (``constant`` + rank) over the lists that hold it (rank 1 = best; -1 ids are
    not candidates); ties go to the smaller id. Its rule is the list where it ranks better, dense on equal ranks.
    Only the ids' order in each list counts, not the scores (a (scores, ids) pair, as ``Bm25Index.search`` and the
    dense search return them).
    """
    dense_ids, lexical_ids = np.asarray(dense[1], np.int64), np.asarray(lexical[1], np.int64)
    if dense_ids.ndim != 2 or lexical_ids.ndim != 2 or len(dense_ids) != len(lexical_ids):
        raise MediError(
            f"hybrid_merge: candidate id arrays must be 2-d with a row per query; got {dense_ids.shape} (dense) and "
            f"{lexical_ids.shape} (bm25)"
        )
    if k < 1:
        raise MediError(f"hybrid_merge: k must be at least 1, got {k}")
    rows = len(dense_ids)
    merged = np.full((rows, k), -1, np.int64)
    rules = np.full((rows, k), "", dtype="<U5")
    ids = np.hstack([dense_ids, lexical_ids])
    ranks = np.hstack([np.arange(1, dense_ids.shape[1] + 1), np.arange(1, lexical_ids.shape[1] + 1)])
    ranks = np.broadcast_to(ranks, ids.shape)
    # rank * 2 + list (0 dense, 1 bm25): the smallest is the list a candidate ranks better in, dense on a tie
    first = ranks * 2 + (np.arange(ids.shape[1]) >= dense_ids.shape[1])
    row_of = np.broadcast_to(np.arange(rows)[:, None], ids.shape)
    valid = ids >= 0
    row_of, ids, ranks, first = row_of[valid], ids[valid], ranks[valid], first[valid]
    if not len(ids):
        return merged, rules
    order = np.lexsort((ids, row_of))
    row_of, ids, fused, first = row_of[order], ids[order], 1.0 / (constant + ranks[order]), first[order]
    starts = np.flatnonzero(np.r_[True, (np.diff(row_of) != 0) | (np.diff(ids) != 0)])
    row_of, ids = row_of[starts], ids[starts]
    fused, first = np.add.reduceat(fused, starts), np.minimum.reduceat(first, starts)
    order = np.lexsort((ids, -fused, row_of))
    row_of, ids, first = row_of[order], ids[order], first[order]
    row_starts = np.searchsorted(row_of, row_of, side="left")
    place = np.arange(len(row_of)) - row_starts
    keep = place < k
    merged[row_of[keep], place[keep]] = ids[keep]
    rules[row_of[keep], place[keep]] = np.where(first[keep] % 2 == 0, DENSE, BM25)
    return merged, rules


def _stemmer():
    try:
        import Stemmer
    except ImportError as exc:
        raise MediError("bm25 stemming needs the PyStemmer package: pip install PyStemmer (or leave stem off)") from exc
    return Stemmer.Stemmer("english")
