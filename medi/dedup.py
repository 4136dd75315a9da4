"""Dedup: drop repeated (query, positive) pairs within a source, and pairs that teach nothing.

INSTRUCTOR trains with in-batch negatives inside one task, so a pair repeated in a task becomes its own false
negative. Texts are compared in their canonical form (``medi.normalize.canonical``: NFKC, casefolded,
punctuation stripped, digits kept, single spaces). Per source:

- exact duplicates of the pair (a Super-NI instance's pair is its input with its set of outputs; on a
  symmetric source (a, b) and (b, a) are the same pair) are dropped, the first occurrence kept;
- near-duplicates among long pairs (at least ``near_min_words`` words): MinHash over word shingles with LSH
  banding finds candidates; both sides must be at least ``near_threshold`` similar (Jaccard of the shingle sets)
  and at most ``near_max_word_edits`` words apart. The edit cap keeps one long passage asked two different
  questions (CoQA, bAbI stories in Super-NI): similar as sets, yet different rows;
- rows whose query equals their positive are dropped (no training signal);
- a negative equal to its query or positive is cleared, so the mine stage replaces it with a mined one.

Across sources, pairs already seen in an earlier source are counted per source (and dropped when asked).
"""

from __future__ import annotations

import hashlib
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from rapidfuzz.distance import Levenshtein

from medi.normalize import canonical
from medi.report import StageReport
from medi.schema import Record

_PRIME = np.uint64(4294967291)  # largest prime below 2**32: a * x + b stays inside uint64


@dataclass
class DedupConfig:
    near: bool = True
    near_min_words: int = 50  # shorter pairs are compared exactly only: "Is X big?" / "Is Y big?" differ
    near_threshold: float = 0.9  # Jaccard similarity of the word-shingle sets
    near_max_word_edits: int = 3  # and at most this many words inserted, deleted or replaced (per side)
    shingle_words: int = 5
    num_perm: int = 64
    bands: int = 16  # 16 bands of 4 rows: pairs above ~0.5 Jaccard become candidates
    across_sources: Literal["report", "remove"] = "report"

    def __post_init__(self) -> None:
        if self.across_sources not in ("report", "remove"):
            raise ValueError(f"across_sources must be one of report, remove, not {self.across_sources!r}")


@dataclass
class DedupReport(StageReport):
    same_query_other_pair: int = 0  # kept: same query with another positive/outputs (not a duplicate)
    across: Counter = field(default_factory=Counter)  # earlier source -> pairs of this source seen there

    def summary(self) -> dict:
        return {
            **super().summary(),
            "same_query_other_pair": self.same_query_other_pair,
            "across_sources": dict(sorted(self.across.items())),
            "examples": self.examples,
        }


def pair_sides(record: Record, symmetric: bool = False) -> tuple[str, str]:
    """The canonical (query side, positive side) of a record; outputs stand in for the positive."""
    query = canonical(record.query)
    if record.pos is not None:
        pos = canonical(record.pos)
        return tuple(sorted((query, pos))) if symmetric else (query, pos)
    return query, "\x1e".join(sorted({canonical(o) for o in record.outputs}))


def pair_hash(sides: tuple[str, str]) -> bytes:
    return hashlib.blake2b("\x1f".join(sides).encode(), digest_size=12).digest()


class SeenPairs:
    """Pair hashes of the sources deduplicated so far, with the first source that had each pair."""

    def __init__(self) -> None:
        self._first: dict[bytes, str] = {}

    def where(self, key: bytes) -> str | None:
        return self._first.get(key)

    def __len__(self) -> int:
        return len(self._first)

    def add(self, keys: list[bytes], source: str) -> None:
        for key in keys:
            self._first.setdefault(key, source)


def dedup(
    records: list[Record],
    config: DedupConfig,
    report: DedupReport,
    *,
    symmetric: bool = False,
    source: str = "",
    seen: SeenPairs | None = None,
) -> list[Record]:
    """Records without duplicates or no-signal rows, in their original order; ``report`` says what went and why."""
    kept: list[Record] = []
    first_of: dict[bytes, str] = {}
    queries: dict[str, bytes] = {}
    keys: list[bytes] = []
    for record in records:
        sides = pair_sides(record, symmetric)
        key = pair_hash(sides)
        if record.pos is not None and sides[0] == sides[1]:
            report.dropped["query_equals_pos"] += 1
            report.example("query_equals_pos", row_id=record.row_id, query=record.query)
            continue
        if key in first_of:
            report.dropped["exact_duplicate"] += 1
            report.example("exact_duplicate", row_id=record.row_id, duplicate_of=first_of[key], query=record.query)
            continue
        if seen is not None and (other := seen.where(key)) is not None:
            report.across[other] += 1
            if config.across_sources == "remove":
                report.dropped["duplicate_in_other_source"] += 1
                report.example("duplicate_in_other_source", row_id=record.row_id, source=other, query=record.query)
                continue
        first_of[key] = record.row_id
        if queries.setdefault(canonical(record.query), key) != key:
            report.same_query_other_pair += 1
        kept.append(_clear_echo_negative(record, report))
        keys.append(key)
    if config.near:
        kept, keys = _drop_near_duplicates(kept, keys, config, report)
    if seen is not None:
        seen.add(keys, source)
    report.kept = len(kept)
    return kept


def _clear_echo_negative(record: Record, report: DedupReport) -> Record:
    if record.neg is None:
        return record
    neg = canonical(record.neg)
    if neg == canonical(record.query) or (record.pos is not None and neg == canonical(record.pos)):
        report.changed["neg_equals_query_or_pos_to_mine"] += 1
        report.example("neg_equals_query_or_pos", row_id=record.row_id, neg=record.neg)
        return Record(row_id=record.row_id, query=record.query, pos=record.pos, neg=None, outputs=record.outputs)
    return record


def _sides_text(record: Record) -> tuple[str, str]:
    second = record.pos if record.pos is not None else "\n".join(sorted(record.outputs))
    return canonical(record.query), canonical(second)


def shingles(text: str, width: int) -> set[str]:
    words = text.split()
    if len(words) <= width:
        return {" ".join(words)}
    return {" ".join(words[i : i + width]) for i in range(len(words) - width + 1)}


def minhash(shingle_set: set[str], perm_a: np.ndarray, perm_b: np.ndarray) -> np.ndarray:
    """MinHash signature: for each (a, b), min over shingles of (a * crc32(s) + b) mod p."""
    x = np.fromiter((zlib.crc32(s.encode()) for s in shingle_set), dtype=np.uint64, count=len(shingle_set))
    x %= _PRIME
    return ((np.outer(perm_a, x) + perm_b[:, None]) % _PRIME).min(axis=1)


def _permutations(count: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20221220)  # fixed: signatures must not depend on the build seed
    a = rng.integers(1, int(_PRIME), size=count, dtype=np.uint64)
    b = rng.integers(0, int(_PRIME), size=count, dtype=np.uint64)
    return a, b


def _drop_near_duplicates(
    records: list[Record], keys: list[bytes], config: DedupConfig, report: DedupReport
) -> tuple[list[Record], list[bytes]]:
    """Drop long pairs whose query and positive sides are both at least ``near_threshold`` similar to an
    earlier kept pair's (a long passage asked two different questions, or with two different answers, stays).
    """
    perm_a, perm_b = _permutations(config.num_perm)
    rows = config.num_perm // config.bands
    buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    sides: dict[int, tuple[set[str], set[str]]] = {}
    kept, kept_keys = [], []
    for index, (record, key) in enumerate(zip(records, keys, strict=True)):
        query, second = _sides_text(record)
        if len(query.split()) + len(second.split()) < config.near_min_words:
            kept.append(record)
            kept_keys.append(key)
            continue
        own = (
            query.split(),
            second.split(),
            shingles(query, config.shingle_words),
            shingles(second, config.shingle_words),
        )
        signature = minhash(own[2] | own[3], perm_a, perm_b)
        bands = [(b, signature[b * rows : (b + 1) * rows].tobytes()) for b in range(config.bands)]
        match = _first_similar(own, {i for band in bands for i in buckets.get(band, ())}, sides, config)
        if match is not None:
            report.dropped["near_duplicate"] += 1
            report.example("near_duplicate", row_id=record.row_id, duplicate_of=records[match].row_id)
            continue
        sides[index] = own
        for band in bands:
            buckets[band].append(index)
        kept.append(record)
        kept_keys.append(key)
    return kept, kept_keys


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _first_similar(own, candidates: set[int], sides: dict, config: DedupConfig) -> int | None:
    """The first earlier kept row whose two sides are both near ``own``'s: (words, words, shingles, shingles)."""
    for other in sorted(candidates):
        theirs = sides[other]
        if all(jaccard(own[i], theirs[i]) >= config.near_threshold for i in (2, 3)) and all(
            Levenshtein.distance(own[i], theirs[i], score_cutoff=config.near_max_word_edits + 1)
            <= config.near_max_word_edits
            for i in (0, 1)
        ):
            return other
    return None
