"""Dedup: drop repeated (query, positive) pairs within a source, and pairs that teach nothing.

INSTRUCTOR trains with in-batch negatives inside one task, so a pair repeated in a task becomes its own false
negative. Texts are compared in their canonical form (``medi.stages.normalize.canonical``: NFKC, casefolded,
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

A source is deduplicated in passes over its rows (``dedup_stream``: a list, or a stage's Parquet output read
again), holding one status byte a row: exact duplicates are found in hash partitions of the pair keys, near-duplicate
candidates in partitions of the LSH band keys, both spilled to files past ``SPILL_BYTES``, so memory stays flat as
an uncapped source grows.
"""

from __future__ import annotations

import hashlib
import heapq
import tempfile
import zlib
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Literal

import numpy as np
import xxhash
from rapidfuzz.distance import Levenshtein

from medi.schema import Record
from medi.stages.normalize import canonical
from medi.stages.report import MAX_EXAMPLES, StageReport

SIGNATURE_CHUNK = 1 << 14  # shingles per signature matrix: 64 x 16,384 x 8 bytes = 8 MB
PARTITIONS = 64  # hash partitions of pair keys, query hashes and band keys: one is held at a time
SPILL_BYTES = 8 << 20  # partitions stay in memory up to this, then go to files
SCAN_ROWS = 8192  # rows hashed and routed together
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
    """Records without duplicates or no-signal rows, in their original order; ``report`` says what went and why.

    Within one source (no ``seen``) this is ``dedup_stream`` over the list."""
    if seen is None:
        return list(dedup_stream(lambda: iter(records), config, report, symmetric=symmetric))
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


# --- the same, streamed: passes over the rows, partitions instead of dictionaries -----------------------------------

KEEP, QUERY_EQUALS_POS, EXACT, NEAR = range(4)  # a row's fate: the low bits of its status byte
ECHO, LONG = 4, 8  # flags: its negative echoes its query or positive; long enough for the near-duplicate pass
KEY_ROW = np.dtype([("key", "V12"), ("position", "<u8"), ("query", "<u8")])
QUERY_ROW = np.dtype([("query", "<u8")])


class Partitions:
    """Fixed-width rows routed to ``PARTITIONS`` hash partitions, in memory up to ``SPILL_BYTES`` then appended to
    files; a partition reads back in the order its rows came."""

    def __init__(self, dtype: np.dtype, folder: Path, name: str):
        self.dtype, self.folder, self.name = dtype, folder, name
        self.held: list[list[np.ndarray]] = [[] for _ in range(PARTITIONS)]
        self.held_bytes = 0
        self.spilled: set[int] = set()

    def add(self, rows: np.ndarray, partition: np.ndarray) -> None:
        order = np.argsort(partition, kind="stable")
        bounds = np.searchsorted(partition[order], np.arange(PARTITIONS + 1))
        for part in range(PARTITIONS):
            if bounds[part] < bounds[part + 1]:
                self.held[part].append(rows[order[bounds[part] : bounds[part + 1]]])
        self.held_bytes += rows.nbytes
        if self.held_bytes > SPILL_BYTES:
            self._spill()

    def _spill(self) -> None:
        for part, chunks in enumerate(self.held):
            if chunks:
                with open(self.folder / f"{self.name}-{part}.bin", "ab") as handle:
                    for chunk in chunks:
                        chunk.tofile(handle)
                self.spilled.add(part)
        self.held, self.held_bytes = [[] for _ in range(PARTITIONS)], 0

    def __iter__(self) -> Iterator[np.ndarray]:
        for part in range(PARTITIONS):
            stored = [np.fromfile(self.folder / f"{self.name}-{part}.bin", self.dtype)] if part in self.spilled else []
            rows = stored + self.held[part]
            if rows:
                yield np.concatenate(rows)


@dataclass
class _Scan:
    """What the first pass leaves: a status byte a row, the pair keys by partition, and the long rows' signatures."""

    status: array = field(default_factory=lambda: array("B"))
    keys: Partitions | None = None
    signatures: Path | None = None
    long_rows: int = 0
    duplicate_of: dict[int, int] = field(default_factory=dict)  # the first exact duplicates -> their first rows
    distinct_queries: int = 0


def dedup_stream(
    rows: Callable[[], Iterator[Record]],
    config: DedupConfig,
    report: DedupReport,
    *,
    symmetric: bool = False,
) -> Iterator[Record]:
    """``dedup`` of one source as a stream: ``rows()`` gives the rows afresh for each pass (two, three when some
    long pairs share a band). Kept rows come out in their order, the same as ``dedup`` keeps; ``report`` is
    complete once they have all been taken."""
    with tempfile.TemporaryDirectory(prefix="medi-dedup-") as folder:
        scan = _scan(rows(), config, symmetric, Path(folder))
        _mark_exact_duplicates(scan, Path(folder))
        report.same_query_other_pair += _kept_count(scan.status) - scan.distinct_queries
        earlier = _partitioned_band_candidates(scan, config, Path(folder)) if scan.long_rows else {}
        near, row_ids = _near_duplicates(rows(), earlier, config) if earlier else ({}, {})
        yield from _emit(rows(), scan, near, row_ids, report)


def _kept_count(status: array) -> int:
    return int(np.count_nonzero((np.frombuffer(status, dtype=np.uint8) & 3) == KEEP)) if status else 0


def _scan(records: Iterator[Record], config: DedupConfig, symmetric: bool, folder: Path) -> _Scan:
    """First pass: each row's pair key (routed to its partition), whether its query equals its positive, whether
    its negative echoes either, and the MinHash signature of each long pair (to a file)."""
    scan = _Scan(keys=Partitions(KEY_ROW, folder, "keys"), signatures=folder / "signatures.bin")
    perm_a, perm_b = _permutations(config.num_perm)
    signature_row = np.dtype([("position", "<u8"), ("signature", "<u4", (config.num_perm,))])
    with open(scan.signatures, "wb") as signatures:
        while chunk := list(islice(records, SCAN_ROWS)):
            first = len(scan.status)
            keys, long_rows = [], []
            for position, record in enumerate(chunk, start=first):
                query, second = _canonical_sides(record)
                paired = record.pos is not None
                status = 0
                if record.neg is not None and canonical(record.neg) in (query, second if paired else None):
                    status |= ECHO
                if paired and query == second:
                    scan.status.append(status | QUERY_EQUALS_POS)
                    continue
                key = pair_hash(_as_pair(query, second, unordered=symmetric and paired))
                keys.append((key, position, xxhash.xxh3_64_intdigest(query.encode())))
                if config.near and _word_count((query, second if paired else near_sides(record)[1])) >= (
                    config.near_min_words
                ):
                    status |= LONG
                    long_rows.append(position)
                scan.status.append(status)
            if keys:
                found = np.array(keys, dtype=KEY_ROW)
                scan.keys.add(found, np.frombuffer(found["key"].tobytes(), np.uint8)[::12] % PARTITIONS)
            if long_rows:
                width = config.shingle_words
                sides = (near_sides(chunk[p - first]) for p in long_rows)
                sets = (shingles(q, width) | shingles(s, width) for q, s in sides)
                written = np.empty(len(long_rows), signature_row)
                written["position"] = long_rows
                written["signature"] = minhash_signatures(sets, len(long_rows), perm_a, perm_b)
                written.tofile(signatures)
                scan.long_rows += len(long_rows)
    return scan


def _mark_exact_duplicates(scan: _Scan, folder: Path) -> None:
    """Per key partition: every row after the first with its pair key is an exact duplicate. Also counts the
    distinct queries of the rows kept (in query-hash partitions), and keeps the earliest duplicates' first rows
    for the report's examples."""
    status = np.frombuffer(scan.status, dtype=np.uint8).copy()
    queries = Partitions(QUERY_ROW, folder, "queries")
    earliest: list[tuple[int, int]] = []  # (-duplicate position, its first row), the MAX_EXAMPLES earliest
    for part in scan.keys:
        part = part[np.argsort(part["key"], kind="stable")]  # the rows of one key stay in read order
        starts = np.ones(len(part), dtype=bool)
        starts[1:] = part["key"][1:] != part["key"][:-1]
        first_of_group = part["position"][np.maximum.accumulate(np.where(starts, np.arange(len(part)), 0))]
        duplicates, firsts = part["position"][~starts], first_of_group[~starts]
        status[duplicates] = (status[duplicates] & 0b1100) | EXACT
        for i in np.argsort(duplicates)[:MAX_EXAMPLES].tolist():
            heapq.heappush(earliest, (-int(duplicates[i]), int(firsts[i])))
            if len(earliest) > MAX_EXAMPLES:
                heapq.heappop(earliest)
        kept = np.ascontiguousarray(part["query"][starts])
        queries.add(kept.view(QUERY_ROW), kept % PARTITIONS)
    scan.status = array("B", status.tobytes())
    scan.duplicate_of = {-negative: first for negative, first in earliest}
    scan.distinct_queries = sum(len(np.unique(part["query"])) for part in queries)


BAND_ROW_FIELDS = [("position", "<u8")]


def _partitioned_band_candidates(scan: _Scan, config: DedupConfig, folder: Path) -> dict[int, list[int]]:
    """{position: earlier long kept positions sharing at least one LSH band value}, ascending: the band keys
    (band number + the band's signature values) of the long rows exact dedup kept, grouped in hash partitions."""
    rows_per_band = config.num_perm // config.bands
    signature_row = np.dtype([("position", "<u8"), ("signature", "<u4", (config.num_perm,))])
    band_row = np.dtype([("band", f"V{1 + 4 * rows_per_band}"), ("position", "<u8")])
    bands = Partitions(band_row, folder, "bands")
    status = np.frombuffer(scan.status, dtype=np.uint8)
    stored = np.memmap(scan.signatures, dtype=signature_row, mode="r", shape=(scan.long_rows,))
    for start in range(0, scan.long_rows, SCAN_ROWS):
        chunk = np.asarray(stored[start : start + SCAN_ROWS])
        chunk = chunk[(status[chunk["position"]] & 3) == KEEP]
        for band in range(config.bands):
            cells = np.ascontiguousarray(chunk["signature"][:, band * rows_per_band : (band + 1) * rows_per_band])
            keyed = np.empty(len(chunk), band_row)
            raw = np.empty((len(chunk), 1 + 4 * rows_per_band), np.uint8)
            raw[:, 0] = band
            raw[:, 1:] = cells.view(np.uint8).reshape(len(chunk), -1)
            keyed["band"] = raw.view(band_row["band"]).ravel()
            keyed["position"] = chunk["position"]
            mixed = (cells.astype(np.uint64) * np.uint64(2654435761)).sum(axis=1) + np.uint64(band)
            bands.add(keyed, (mixed % np.uint64(PARTITIONS)).astype(np.int64))
    del stored
    earlier: dict[int, set[int]] = defaultdict(set)
    for part in bands:
        _, group, counts = np.unique(part["band"], return_inverse=True, return_counts=True)
        shared = np.flatnonzero(counts[group] > 1)
        members: dict[int, list[int]] = defaultdict(list)
        for row in shared.tolist():  # read order within a band value: each member sees the ones before it
            members[int(group[row])].append(int(part["position"][row]))
        for group_members in members.values():
            for i, position in enumerate(group_members[1:], start=1):
                earlier[position].update(group_members[:i])
    return {position: sorted(found) for position, found in earlier.items()}


def _near_duplicates(
    records: Iterator[Record], earlier: dict[int, list[int]], config: DedupConfig
) -> tuple[dict[int, int], dict[int, str]]:
    """({dropped position: the earlier kept row it nearly repeats}, {position: row id} of the rows that share a
    band): one pass gathers the sides of those rows, then the candidates are confirmed in order."""
    involved = set(earlier).union(*earlier.values())
    sides, row_ids = {}, {}
    width = config.shingle_words
    for position, record in enumerate(records):
        if position in involved:
            query, second = near_sides(record)
            sides[position] = (query.split(), second.split(), shingles(query, width), shingles(second, width))
            row_ids[position] = record.row_id
    dropped: dict[int, int] = {}
    for position in sorted(earlier):
        candidates = [c for c in earlier[position] if c not in dropped]
        match = _first_similar(sides[position], candidates, sides.__getitem__, config) if candidates else None
        if match is not None:
            dropped[position] = match
    return dropped, row_ids


def _emit(
    records: Iterator[Record], scan: _Scan, near: dict[int, int], row_ids: dict[int, str], report: DedupReport
) -> Iterator[Record]:
    """The last pass: the kept rows (echoing negatives cleared), and the report in read order."""
    kept = 0
    firsts = set(scan.duplicate_of.values())  # rows whose ids the examples name: read before their duplicates
    for position, (record, status) in enumerate(zip(records, scan.status, strict=True)):
        if position in firsts:
            row_ids[position] = record.row_id
        fate = status & 3
        if fate == QUERY_EQUALS_POS:
            report.dropped["query_equals_pos"] += 1
            report.example("query_equals_pos", row_id=record.row_id, query=record.query)
            continue
        if fate == EXACT:
            report.dropped["exact_duplicate"] += 1
            if position in scan.duplicate_of:
                first = row_ids[scan.duplicate_of[position]]
                report.example("exact_duplicate", row_id=record.row_id, duplicate_of=first, query=record.query)
            continue
        if status & ECHO:
            report.changed["neg_equals_query_or_pos_to_mine"] += 1
            report.example("neg_equals_query_or_pos", row_id=record.row_id, neg=record.neg)
            record = Record(row_id=record.row_id, query=record.query, pos=record.pos, neg=None, outputs=record.outputs)
        if position in near:
            report.dropped["near_duplicate"] += 1
            report.example("near_duplicate", row_id=record.row_id, duplicate_of=row_ids[near[position]])
            continue
        kept += 1
        yield record
    report.kept = kept
