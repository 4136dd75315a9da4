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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import xxhash
from rapidfuzz.distance import Levenshtein

from medi.normalize import canonical
from medi.report import StageReport
from medi.schema import Record

SIGNATURE_CHUNK = 1 << 14  # shingles per signature matrix: 64 x 16,384 x 8 bytes = 8 MB
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
    return _as_pair(*_canonical_sides(record), unordered=symmetric and record.pos is not None)


def _as_pair(query: str, second: str, *, unordered: bool) -> tuple[str, str]:
    return tuple(sorted((query, second))) if unordered else (query, second)


def _canonical_sides(record: Record) -> tuple[str, str]:
    if record.pos is not None:
        return canonical(record.query), canonical(record.pos)
    return canonical(record.query), "\x1e".join(sorted({canonical(o) for o in record.outputs}))


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
    queries: dict[int, bytes] = {}  # hash of the canonical query -> its first pair's key
    keys: list[bytes] = []
    long_rows: list[int] = []  # kept positions of the pairs long enough for the near-duplicate pass
    for record in records:
        query, second = _canonical_sides(record)
        paired = record.pos is not None
        key = pair_hash(_as_pair(query, second, unordered=symmetric and paired))
        if paired and query == second:
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
        if queries.setdefault(xxhash.xxh3_64_intdigest(query.encode()), key) != key:
            report.same_query_other_pair += 1
        if config.near and _word_count((query, second if paired else near_sides(record)[1])) >= config.near_min_words:
            long_rows.append(len(kept))
        kept.append(_clear_echo_negative(record, query, second if paired else None, report))
        keys.append(key)
    if config.near:
        kept, keys = _drop_near_duplicates(kept, keys, long_rows, config, report)
    if seen is not None:
        seen.add(keys, source)
    report.kept = len(kept)
    return kept


def _word_count(sides: tuple[str, str]) -> int:
    return sum(side.count(" ") + 1 for side in sides if side)  # canonical forms: single spaces, no padding


def _clear_echo_negative(record: Record, query: str, pos: str | None, report: DedupReport) -> Record:
    if record.neg is None:
        return record
    neg = canonical(record.neg)
    if neg in (query, pos):
        report.changed["neg_equals_query_or_pos_to_mine"] += 1
        report.example("neg_equals_query_or_pos", row_id=record.row_id, neg=record.neg)
        return Record(row_id=record.row_id, query=record.query, pos=record.pos, neg=None, outputs=record.outputs)
    return record


def shingles(text: str, width: int) -> set[str]:
    words = text.split()
    if len(words) <= width:
        return {" ".join(words)}
    return {" ".join(words[i : i + width]) for i in range(len(words) - width + 1)}


def minhash_signatures(
    shingle_sets: Iterable[set[str]], count: int, perm_a: np.ndarray, perm_b: np.ndarray
) -> np.ndarray:
    """MinHash signatures of ``count`` sets, one row each: for each (a, b), min over shingles of
    (a * crc32(s) + b) mod p. The sets stream in; one matrix per chunk of about ``SIGNATURE_CHUNK`` shingles."""
    signatures = np.empty((count, len(perm_a)), dtype=np.uint32)  # values < p < 2**32
    sets, start = iter(shingle_sets), 0
    while chunk := _chunk_of_shingles(sets):
        x = np.fromiter((zlib.crc32(s.encode()) for group in chunk for s in group), dtype=np.uint64)
        x %= _PRIME
        offsets = np.cumsum([0] + [len(group) for group in chunk[:-1]])
        values = (np.outer(perm_a, x) + perm_b[:, None]) % _PRIME
        signatures[start : start + len(chunk)] = np.minimum.reduceat(values, offsets, axis=1).T
        start += len(chunk)
    return signatures


def _chunk_of_shingles(sets: Iterator[set[str]]) -> list[set[str]]:
    chunk, total = [], 0
    for group in sets:
        chunk.append(group)
        total += len(group)
        if total >= SIGNATURE_CHUNK:
            break
    return chunk


def _permutations(count: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20221220)  # fixed: signatures must not depend on the build seed
    a = rng.integers(1, int(_PRIME), size=count, dtype=np.uint64)
    b = rng.integers(0, int(_PRIME), size=count, dtype=np.uint64)
    return a, b


def near_sides(record: Record) -> tuple[str, str]:
    """The canonical query and second side the near-duplicate pass compares (outputs joined as one text)."""
    second = record.pos if record.pos is not None else "\n".join(sorted(record.outputs))
    return canonical(record.query), canonical(second)


def _drop_near_duplicates(
    records: list[Record], keys: list[bytes], long_rows: list[int], config: DedupConfig, report: DedupReport
) -> tuple[list[Record], list[bytes]]:
    """Drop long pairs whose query and positive sides are both at least ``near_threshold`` similar to an
    earlier kept pair's (a long passage asked two different questions, or with two different answers, stays).

    Only signatures are held for every long pair (``num_perm`` 32-bit values); the word lists and shingle sets
    that confirm a candidate are rebuilt from the record for the few rows that share an LSH band with an earlier one.
    """
    earlier = _band_candidates(records, long_rows, config)
    sides_of = _SidesCache(records, config.shingle_words)
    dropped: set[int] = set()
    for position in long_rows:
        candidates = [c for c in earlier.get(position, ()) if c not in dropped]
        match = _first_similar(sides_of(position), candidates, sides_of, config) if candidates else None
        if match is not None:
            dropped.add(position)
            report.dropped["near_duplicate"] += 1
            report.example("near_duplicate", row_id=records[position].row_id, duplicate_of=records[match].row_id)
    kept = [(r, k) for i, (r, k) in enumerate(zip(records, keys, strict=True)) if i not in dropped]
    return [r for r, _ in kept], [k for _, k in kept]


def _band_candidates(records: list[Record], long_rows: list[int], config: DedupConfig) -> dict[int, list[int]]:
    """{position: earlier long positions sharing at least one LSH band of its signature}, ascending."""
    perm_a, perm_b = _permutations(config.num_perm)
    width = config.shingle_words
    sets = (shingles(q, width) | shingles(s, width) for q, s in (near_sides(records[i]) for i in long_rows))
    signatures = minhash_signatures(sets, len(long_rows), perm_a, perm_b)
    rows = config.num_perm // config.bands
    earlier: dict[int, set[int]] = defaultdict(set)
    for band in range(config.bands):
        cells = np.ascontiguousarray(signatures[:, band * rows : (band + 1) * rows])
        _, group, counts = np.unique(
            cells.view(np.dtype((np.void, cells.shape[1] * 4))).ravel(), return_inverse=True, return_counts=True
        )
        shared = np.flatnonzero(counts[group] > 1)  # rows of a band value that more than one pair has
        members: dict[int, list[int]] = defaultdict(list)
        for row in shared:  # ascending: each member sees the ones before it
            members[int(group[row])].append(long_rows[row])
        for group_members in members.values():
            for i, position in enumerate(group_members[1:], start=1):
                earlier[position].update(group_members[:i])
    return {position: sorted(found) for position, found in earlier.items()}


class _SidesCache:
    """(query words, second words, query shingles, second shingles) of a long pair, built on first use."""

    def __init__(self, records: list[Record], width: int):
        self.records, self.width, self._built = records, width, {}

    def __call__(self, position: int) -> tuple:
        if position not in self._built:
            query, second = near_sides(self.records[position])
            self._built[position] = (
                query.split(),
                second.split(),
                shingles(query, self.width),
                shingles(second, self.width),
            )
        return self._built[position]


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _first_similar(own, candidates: list[int], sides_of, config: DedupConfig) -> int | None:
    """The first earlier kept row whose two sides are both near ``own``'s: (words, words, shingles, shingles)."""
    for other in candidates:
        theirs = sides_of(other)
        if all(jaccard(own[i], theirs[i]) >= config.near_threshold for i in (2, 3)) and all(
            Levenshtein.distance(own[i], theirs[i], score_cutoff=config.near_max_word_edits + 1)
            <= config.near_max_word_edits
            for i in (0, 1)
        ):
            return other
    return None
