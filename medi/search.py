"""Nearest-neighbour search over unit vectors: exact inner product by default, faiss on GPU when present.

Queries are searched in chunks so memory stays bounded (never N x N); on a CPU the chunks run on the process's
lanes (``medi.lanes``), each single-threaded, so the scores are the same bits whatever the number of workers and
threads. A search may carry a per-query score ceiling (hard negatives must score below the positive): the exact CPU
search applies it before taking the top k, in one pass; faiss indexes (GPU, HNSW, IVF) filter their top k
afterwards, and the caller widens k.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from functools import cached_property

import faiss
import numpy as np

from medi.lanes import lane_map, serial_map

GPU_MAX_K = 2048  # faiss-gpu's top-k limit for flat indexes
MAX_RESULT_CELLS = 1 << 22  # queries x k per chunk
EXACT_CHUNK_CELLS = 1 << 23  # queries x corpus rows per chunk of the exact search (32 MiB of scores)
# queries per faiss call: blocks for the lanes (medi.lanes), cut the same way whatever their number, so each query's
# results are the same bits with any number of lanes
SEARCH_BLOCK_ROWS = 1024


def gpu_count() -> int:
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0


class Searcher:
    """Inner-product search over a fixed corpus (rows must be L2-normalised for cosine)."""

    def __init__(self, corpus: np.ndarray, *, index: str = "flat", use_gpu: bool | None = None):
        corpus = np.ascontiguousarray(corpus, dtype=np.float32)  # a memory-mapped corpus stays mapped
        self.ntotal = len(corpus)
        self.on_gpu = gpu_count() > 0 if use_gpu is None else use_gpu
        # exact CPU search can also mask by ceiling before its top k (search_below), from the same vectors
        self.corpus = corpus if index == "flat" and not self.on_gpu else None
        self._kind, self._vectors = index, corpus
        self._lock = threading.Lock()  # the exact search's spare blocks, taken and given back by lanes
        if self.corpus is None:
            self.index  # noqa: B018 -- built now: an approximate index is what the caller asked for

    @cached_property
    def index(self):
        """The faiss index, built when first searched: the exact search below a ceiling reads the corpus itself,
        so a miner that only searches below never holds a second copy of the vectors."""
        index = _make_index(self._kind, self._vectors.shape[1], self._vectors)
        if self.on_gpu:
            index = faiss.index_cpu_to_all_gpus(index)
        index.add(self._vectors)
        if self.corpus is None:
            self._vectors = None  # the index holds them now
        return index

    @property
    def max_k(self) -> int:
        return min(self.ntotal, GPU_MAX_K) if self.on_gpu else self.ntotal

    def search(self, queries: np.ndarray, k: int, ceilings: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the top k corpus rows for each query, best first; ids are -1 past the end.

        With ``ceilings``, rows of the top k scoring at or above a query's ceiling are marked -1, so fewer than k
        may remain (``search_below`` takes the top k of the rows below it, where available).
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = max(1, min(k, self.max_k))
        step = max(1, min(SEARCH_BLOCK_ROWS, MAX_RESULT_CELLS // k))
        index = self.index
        run = serial_map if self.on_gpu else lane_map  # blocks of the same queries whatever the lanes: the same bits
        parts = run(lambda i: index.search(queries[i : i + step], k), range(0, len(queries), step))
        if not parts:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        scores, ids = np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts])
        if ceilings is not None:
            ids[scores >= ceilings[:, None]] = -1
        return scores, ids

    @property
    def can_search_below(self) -> bool:
        return self.corpus is not None

    @cached_property
    def _largest_norm(self) -> float:
        return float(np.sqrt(np.max(np.einsum("ij,ij->i", self.corpus, self.corpus), initial=0.0)))

    def search_below(self, queries: np.ndarray, k: int, ceilings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``search_below_counted`` without the counts."""
        scores, ids, _ = self.search_below_counted(queries, k, ceilings)
        return scores, ids

    def search_below_counted(
        self, queries: np.ndarray, k: int, ceilings: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scores, ids, above): the top k of the corpus rows scoring below each query's ceiling, exactly, in one
        pass (CPU flat only).

        Rows are ranked by 1 / (ceiling - score): largest just below the ceiling, +inf at it and negative above
        it, so two fast element-wise passes stand in for a boolean mask (masked_fill costs three times as much),
        and a small top-k of that costs less than faiss' heap top-k. The order is the scores' own but for scores
        within a float32 rounding of each other. Scores are read back from the matmul; ids are -1 where fewer
        than k rows lie below the ceiling. ``above`` counts each query's corpus rows at or above its ceiling (they
        rank ahead of every row returned: the miner's ranks and its margin count start after them).
        """
        import torch

        queries = np.ascontiguousarray(queries, dtype=np.float32)
        # a ceiling no score can reach leaves nothing out: lowered to one above the largest possible score, so that
        # ceiling - score stays finite and ordered (an infinite ceiling would rank every row alike)
        reach = np.linalg.norm(queries, axis=1) * self._largest_norm + 1
        limits = torch.from_numpy(np.minimum(ceilings, reach).astype(np.float32))[:, None]
        queries = torch.from_numpy(queries)
        k = max(1, min(k, self.ntotal))
        corpus = torch.from_numpy(self.corpus).T
        step = max(1, min(len(queries), EXACT_CHUNK_CELLS // max(self.ntotal, 1)))
        scores, ids = torch.empty((len(queries), k)), torch.empty((len(queries), k), dtype=torch.int64)
        closeness = torch.empty((len(queries), k))
        above = torch.zeros(len(queries), dtype=torch.int64)

        def one_block(start: int) -> None:
            """Rows start..start+step, into their own rows of the outputs (blocks run on lanes at once)."""
            rows = slice(start, start + step)
            size = len(queries[rows])
            with self._blocks(step) as (block, ranks, at_or_above), torch.inference_mode():
                part = torch.matmul(queries[rows], corpus, out=block[:size])
                rank = torch.sub(limits[rows], part, out=ranks[:size]).reciprocal_()
                if k == 1:  # a max pass costs a third less than a top-k
                    torch.max(rank, dim=1, keepdim=True, out=(closeness[rows], ids[rows]))
                else:
                    torch.topk(rank, k, dim=1, out=(closeness[rows], ids[rows]))
                torch.gather(part, 1, ids[rows], out=scores[rows])
                flags = torch.ge(part, limits[rows], out=at_or_above[:size])  # = rank <= 0 or +inf
                # numpy's count reduces in small buffers; torch's sum(dtype=int32) made a block-sized int32 copy
                # each time, and those (tens of MB) fragmented the heap: resident memory grew call after call
                above[rows] = torch.from_numpy(np.count_nonzero(flags.numpy(), axis=1))

        lane_map(one_block, range(0, len(queries), step))  # each block single-threaded: the same bits on any lanes
        with torch.inference_mode():
            ids[(closeness <= 0) | torch.isinf(closeness)] = -1  # at or above the ceiling
        return scores.numpy(), ids.numpy(), above.numpy()

    @contextmanager
    def _blocks(self, rows: int):
        """A (scores, ranks, flags) set of blocks of at least ``rows`` query rows, lent to one lane at a time and
        kept between calls: a miner searches thousands of times, and blocks of tens of MB allocated and freed each
        time leave the allocator's arenas fragmented (measured: resident memory grew by hundreds of MB over a few
        calls). At most one set per lane is ever made."""
        import torch

        with self._lock:
            spare = self.__dict__.setdefault("_spare", [])
            held = spare.pop() if spare else None
        if held is None or held[0].shape[0] < rows:
            shape = (rows, self.ntotal)
            held = (torch.empty(shape), torch.empty(shape), torch.empty(shape, dtype=torch.bool))
        try:
            yield held
        finally:
            with self._lock:
                self._spare.append(held)


def _make_index(kind: str, dim: int, corpus: np.ndarray):
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 128
        return index
    if kind == "ivf":
        # faiss wants >= 39 training points per list; probing a quarter of the lists keeps recall high
        nlist = max(1, min(int(4 * np.sqrt(len(corpus))), len(corpus) // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(corpus)
        index.nprobe = min(nlist, max(8, nlist // 4))
        return index
    raise ValueError(f"unknown index kind {kind!r}: use flat, hnsw or ivf")
