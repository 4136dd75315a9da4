"""Benchmark: fast vote-k (medi.stages.select.vote_k) at 100k rows, against random selection measured in the same run.

The baseline is what any diverse selector pays first: random picks plus building the k-NN graph; vote-k is the
graph plus its greedy picks. Both run on the same embeddings in one process, and the script prints the times, the
ratio, and the coverage of each selection (mean cosine of every row to its nearest pick: higher = better spread).

    python bench/select_votek.py --shared ../shared/data --rows 100000 --pick 10000
    python bench/select_votek.py --synthetic --rows 100000          # no encoder: clustered random vectors
    python bench/select_votek.py --embeddings vectors.npy             # any (rows, dim) unit vectors, e.g. a cache chunk

Real rows: the distinct inputs and outputs of every Super-NI task file in SHARED/super-ni/tasks (about 104k
texts), embedded with the bundled all-MiniLM-L6-v2 through medi's embedding cache (--cache-dir; a warm cache,
e.g. from a full build over SHARED, skips the encoder). --synthetic uses a seeded Gaussian mixture in 384 dimensions.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from medi.encode import Encoder, EncoderConfig, default_cache_dir
from medi.stages.select import knn_graph, random_pick, vote_k_on_graph


def real_vectors(shared: Path, rows: int, cache_dir: Path) -> np.ndarray:
    texts: dict[str, None] = {}
    for path in sorted((shared / "super-ni" / "tasks").glob("*.json")):
        for inst in json.loads(path.read_text(encoding="utf-8"))["Instances"]:
            for text in (inst["input"], *inst["output"]):
                if text.strip():
                    texts.setdefault(text)
    chosen = list(texts)[:rows]
    if len(chosen) < rows:
        print(f"only {len(chosen)} distinct texts in {shared}; using them all")
    encoder = Encoder(EncoderConfig(), cache_dir)
    started = time.perf_counter()
    vectors = encoder.embed(chosen)
    print(
        f"embedded {len(chosen)} texts ({encoder.texts_encoded} by the model) in {time.perf_counter() - started:.1f} s"
    )
    return vectors


def synthetic_vectors(rows: int, dim: int = 384, clusters: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, clusters, rows)] + 1.2 * rng.normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def coverage(vectors: np.ndarray, chosen: np.ndarray, sample: int = 5000) -> float:
    """Mean over a fixed sample of rows of the cosine to the nearest chosen row."""
    rows = np.random.default_rng(1).choice(len(vectors), size=min(sample, len(vectors)), replace=False)
    return float((vectors[rows] @ vectors[chosen].T).max(axis=1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--embeddings", type=Path, help="a .npy of unit vectors (rows, dim) instead of --shared texts")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--pick", type=int, default=10_000)
    parser.add_argument("--knn", type=int, default=10)
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    args = parser.parse_args()

    if args.embeddings:
        vectors, kind = np.ascontiguousarray(np.load(args.embeddings)[: args.rows], dtype=np.float32), "from file"
    elif args.synthetic:
        vectors, kind = synthetic_vectors(args.rows), "synthetic"
    else:
        vectors, kind = real_vectors(args.shared, args.rows, args.cache_dir), "real"
    rows = len(vectors)
    print(f"{rows} rows x {vectors.shape[1]} dims ({kind}), pick {args.pick}")

    started = time.perf_counter()
    graph = knn_graph(vectors, args.knn)
    graph_s = time.perf_counter() - started
    started = time.perf_counter()
    random_choice = random_pick(rows, args.pick, 0)
    random_s = time.perf_counter() - started
    started = time.perf_counter()
    diverse = vote_k_on_graph(graph, args.pick)
    picks_s = time.perf_counter() - started

    baseline = graph_s + random_s
    total = graph_s + picks_s
    print(f"{'selection':<34}{'seconds':>10}{'coverage':>10}")
    graph_label = f"k-NN graph (k={args.knn})"
    print(f"{graph_label:<34}{graph_s:>10.2f}{'':>10}")
    print(f"{'baseline: random + k-NN graph':<34}{baseline:>10.2f}{coverage(vectors, random_choice):>10.4f}")
    print(f"{'vote-k greedy picks only':<34}{picks_s:>10.2f}{'':>10}")
    print(f"{'vote-k: k-NN graph + picks':<34}{total:>10.2f}{coverage(vectors, diverse):>10.4f}")
    print(f"vote-k / baseline: {total / baseline:.2f}x; picks {args.pick / picks_s:,.0f} per second")


if __name__ == "__main__":
    main()
