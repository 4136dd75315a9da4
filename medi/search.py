"""Nearest-neighbour search over unit vectors with faiss: exact inner product by default, GPU when present.

One code path for CPU and GPU; queries are searched in chunks so memory stays bounded (never N x N).
"""

from __future__ import annotations

import faiss
import numpy as np

GPU_MAX_K = 2048  # faiss-gpu's top-k limit for flat indexes
MAX_RESULT_CELLS = 1 << 22  # queries x k per chunk


def gpu_count() -> int:
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0


class Searcher:
    """Inner-product search over a fixed corpus (rows must be L2-normalised for cosine)."""

    def __init__(self, corpus: np.ndarray, *, index: str = "flat", use_gpu: bool | None = None):
        corpus = np.ascontiguousarray(corpus, dtype=np.float32)
        self.ntotal, dim = corpus.shape
        self.on_gpu = gpu_count() > 0 if use_gpu is None else use_gpu
        self.index = _make_index(index, dim, corpus)
        if self.on_gpu:
            self.index = faiss.index_cpu_to_all_gpus(self.index)
        self.index.add(corpus)

    @property
    def max_k(self) -> int:
        return min(self.ntotal, GPU_MAX_K) if self.on_gpu else self.ntotal

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the top k corpus rows for each query, best first; ids are -1 past the end."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = max(1, min(k, self.max_k))
        step = max(1, MAX_RESULT_CELLS // k)
        parts = [self.index.search(queries[i : i + step], k) for i in range(0, len(queries), step)]
        if not parts:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        return np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts])


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
