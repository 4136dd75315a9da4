"""Sample: a capped source keeps a deterministic, seeded sample while it streams; nothing holds the whole source.

The sample is the bottom-k of a keyed hash of each row's content (its pair in a comparison form), so the same
rows are chosen whatever the read order, the file's line order or the number of workers; exact duplicates share a
key and later dedup keeps one of them. The sample is the ``size`` smallest (key, arrival) pairs, a total order: a
source read in splits (``medi.stages.splits``) keeps each split's bottom-k and ``merge_samples`` takes the bottom-k of
their union — exactly what one reader of the whole file keeps. ``k`` oversamples the cap (dedup, decontamination and
filters run after it); the build reads again with a larger ``k`` when they leave fewer rows than the cap and rows
were left out.

Over every row read (not only the sample) it counts exact duplicate pairs and rows with a text equal to an
evaluation text, from the same cheap comparison form: lowercase ASCII letters and digits only (other texts go
through ``medi.stages.normalize.canonical`` first), so the count is of pairs equal up to case, punctuation and spacing.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import xxhash

from medi.schema import Record
from medi.stages.normalize import canonical

_LOWER = bytes(i + 32 if 65 <= i <= 90 else i for i in range(256))
_NOT_ALNUM = bytes(i for i in range(128) if not chr(i).isalnum())
RANDOM_OVERSAMPLE, DIVERSE_OVERSAMPLE, MIN_EXTRA = 1.25, 10, 1000
GROWTH = 4  # a second pass reads with this many times the sample


def text_form(text: str) -> bytes:
    """The comparison form as bytes: ``canonical`` without its spaces (equal for equal canonical forms)."""
    if text.isascii():
        return text.encode().translate(_LOWER, _NOT_ALNUM)
    return canonical(text).replace(" ", "").encode()


def pair_form(record: Record) -> bytes:
    """A record's pair for comparison: query and positive, or query and its set of outputs (Super-NI)."""
    if record.pos is not None:
        return text_form(record.query) + b"\x1f" + text_form(record.pos)
    return text_form(record.query) + b"\x1f" + b"\x1e".join(sorted({text_form(o) for o in record.outputs}))


def sample_size(cap: int | None, mode: str, factor: int = 1) -> int | None:
    """Rows to sample for a cap: the cap plus a margin (10x the cap for vote-k's pre-sample), times ``factor``."""
    if cap is None:
        return None
    base = cap * DIVERSE_OVERSAMPLE if mode == "diverse" else max(round(cap * RANDOM_OVERSAMPLE), cap + MIN_EXTRA)
    return base * factor


def key_seed(seed: int | str) -> int:
    return xxhash.xxh64_intdigest(str(seed).encode())


def content_key(record: Record, seed: int | str) -> int:
    """The row's sample key: a keyed hash of its pair's comparison form (the same for the same content)."""
    return xxhash.xxh3_64_intdigest(pair_form(record), key_seed(seed))


@dataclass
class SampleReport:
    rows_read: int = 0  # rows the adapter gave (problems not included)
    size: int | None = None  # rows the sample may hold; None: every row is kept
    sampled: int = 0
    passes: int = 1
    duplicates_read: int = 0  # rows whose pair repeats an earlier row's, among every row read
    eval_exact_read: int = 0  # rows with a text equal to an evaluation text, among every row read

    def summary(self) -> dict:
        return {
            "rows_read": self.rows_read,
            "sample_size": self.size,
            "sampled": self.sampled,
            "passes": self.passes,
            "exact_duplicates_read": self.duplicates_read,
            "eval_exact_read": self.eval_exact_read,
        }


class Sampler:
    """Bottom-``size`` rows by keyed content hash (every row when ``size`` is None), with the read-wide counts."""

    def __init__(self, size: int | None, seed: int | str, eval_forms: frozenset[int] = frozenset()):
        self.size, self.seed, self.eval_forms = size, key_seed(seed), eval_forms
        self.report = SampleReport(size=size)
        self._keys = array("Q")
        # (-key, -arrival, record): the largest (key, arrival) on top; equal keys are the same pair, the later one goes
        self._heap: list[tuple[int, int, Record]] = []

    def offer(self, record: Record) -> None:
        key = xxhash.xxh3_64_intdigest(pair_form(record), self.seed)  # content_key, with the seed hashed once
        self._keys.append(key)
        self.report.rows_read += 1
        if self.eval_forms and self._touches_eval(record):
            self.report.eval_exact_read += 1
        if self.size is None:
            return  # every row is kept: the caller streams it on
        arrival = self.report.rows_read
        if len(self._heap) < self.size:
            heapq.heappush(self._heap, (-key, -arrival, record))
        elif -key > self._heap[0][0]:  # smaller than the largest key held (an equal key arrived later: larger)
            heapq.heapreplace(self._heap, (-key, -arrival, record))

    def _touches_eval(self, record: Record) -> bool:
        texts = [record.query, *(t for t in (record.pos, record.neg) if t is not None), *record.outputs]
        return any(xxhash.xxh3_64_intdigest(text_form(t)) in self.eval_forms for t in texts)

    def finish(self) -> list[Record]:
        """The sample (which rows: the same whatever the read order), in the order they were read; [] when every
        row was kept."""
        return [record for _, _, record in self.finish_keyed()]

    def finish_keyed(self) -> list[tuple[int, int, Record]]:
        """The sample as (key, arrival, record) in the order read; ``unique_keys`` keeps the distinct keys read."""
        keys = np.frombuffer(self._keys, dtype=np.uint64) if len(self._keys) else np.zeros(0, np.uint64)
        self.unique_keys = np.unique(keys)
        self.report.duplicates_read = int(len(keys) - len(self.unique_keys))
        self._keys = array("Q")
        rows = sorted(((-key, -arrival, record) for key, arrival, record in self._heap), key=lambda item: item[1])
        self._heap = []
        self.report.sampled = len(rows) if self.size is not None else self.report.rows_read
        return rows

    @property
    def truncated(self) -> bool:
        """Whether rows were left out (a larger sample would hold more)."""
        return self.size is not None and self.report.rows_read > self.size


def merge_samples(parts: list[list[tuple[int, int, Record]]], size: int) -> list[Record]:
    """The bottom-``size`` by (key, arrival) of the splits' samples (each its split's bottom-``size``, as
    ``finish_keyed`` gives it; splits in file order): the rows one reader of the whole input keeps, in read order."""
    entries = ((key, split, arrival, record) for split, part in enumerate(parts) for key, arrival, record in part)
    kept = heapq.nsmallest(size, entries, key=lambda item: item[:3])
    return [record for *_, record in sorted(kept, key=lambda item: item[1:3])]


def merge_reports(reports: list[SampleReport], unique_keys: list[np.ndarray], size: int | None) -> SampleReport:
    """The splits' read-wide counts as one reader's: rows and evaluation hits add up; a duplicate is a key read
    before, in any split."""
    merged = SampleReport(size=size)
    merged.rows_read = sum(r.rows_read for r in reports)
    merged.eval_exact_read = sum(r.eval_exact_read for r in reports)
    distinct = np.unique(np.concatenate(unique_keys)) if unique_keys else np.zeros(0, np.uint64)
    merged.duplicates_read = merged.rows_read - len(distinct)
    return merged


def eval_form_hashes(texts: Iterable[str]) -> frozenset[int]:
    """Hashes of evaluation texts' comparison forms, for the read-wide exact count."""
    return frozenset(xxhash.xxh3_64_intdigest(text_form(t)) for t in texts)
