"""Synthetic sources shaped like the large sentence-transformers files, for scale benchmarks and tests.

``pairs``: ``PAQ_pairs.jsonl.gz`` rows, ``[question, passage]`` — questions 6-14 words, passages 40-90 words.
``triplets``: ``{"query", "pos", "neg"}`` rows (negatives given: nothing to mine) — 6-14, 20-40, 20-40 words.

Words are drawn from a fixed random vocabulary with a Zipf-like frequency, so texts are distinct and compress
about as badly as real prose. The same (kind, rows, seed) always gives the same bytes.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

VOCAB_SIZE = 30_000
CHUNK = 20_000


def vocabulary(rng: np.random.Generator) -> np.ndarray:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = rng.integers(3, 11, VOCAB_SIZE)
    return np.array(["".join(rng.choice(letters, n)) for n in lengths])


def _texts(rng: np.random.Generator, vocab: np.ndarray, weights: np.ndarray, rows: int, low: int, high: int):
    counts = rng.integers(low, high + 1, rows)
    words = vocab[rng.choice(len(vocab), counts.sum(), p=weights)]
    ends = np.cumsum(counts)
    return [" ".join(words[end - n : end]) for n, end in zip(counts, ends, strict=True)]


def write_source(path: Path, kind: str, rows: int, seed: int = 0) -> Path:
    """Write ``rows`` synthetic rows of ``kind`` (pairs | triplets) to a gzipped JSONL file at ``path``."""
    rng = np.random.default_rng(seed)
    vocab = vocabulary(rng)
    weights = 1.0 / np.arange(1, VOCAB_SIZE + 1) ** 0.8
    weights /= weights.sum()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with tmp.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as out:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            questions = _texts(rng, vocab, weights, n, 6, 14)
            questions = [q[0].upper() + q[1:] + "?" for q in questions]
            if kind == "pairs":
                passages = _texts(rng, vocab, weights, n, 40, 90)
                lines = [json.dumps([q, p]) for q, p in zip(questions, passages, strict=True)]
            elif kind == "triplets":
                pos = _texts(rng, vocab, weights, n, 20, 40)
                neg = _texts(rng, vocab, weights, n, 20, 40)
                triples = zip(questions, pos, neg, strict=True)
                lines = [json.dumps({"query": q, "pos": [p], "neg": [m]}) for q, p, m in triples]
            else:
                raise ValueError(f"unknown kind {kind!r}: pairs or triplets")
            out.write(("\n".join(lines) + "\n").encode())
    tmp.replace(path)
    return path


def cached_source(folder: Path, kind: str, rows: int, seed: int = 0) -> Path:
    """The file for (kind, rows, seed) under ``folder``, generated once."""
    path = folder / f"{kind}-{rows}-{seed}.jsonl.gz"
    if not path.is_file():
        write_source(path, kind, rows, seed)
    return path
