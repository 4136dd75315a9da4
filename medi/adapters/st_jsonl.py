"""sentence-transformers embedding-training data: JSONL (optionally gzipped), layout detected per row.

A large file is read in parallel splits (``medi.stages.splits``): byte ranges aligned to lines, or, gzipped, one stream
decoded once and handed out in blocks of lines; each split numbers its lines as one reader of the file does.

Layouts: pair ``[a, b]``, triplet ``[a, p, n]``, set ``{"set": [...]}``, query-pairs ``{"query", "pos"}``,
query-triplets ``{"query", "pos", "neg"}``; other keys are ignored. A set gives one pair of two of its members,
a list of positives or negatives one of its items, each chosen by the build seed and the row id.
"""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from queue import Full, Queue
from typing import IO

import orjson

from medi.adapters import Adapted, RowOrProblem, Split, Stream, adapter, row_rng, utf8_safe
from medi.catalog import SourceSpec
from medi.errors import Problem
from medi.schema import Record

BLOCK = 1 << 22  # compressed bytes per read: large blocks keep gzip and the line split in C
GZIP_RATIO = 8  # a gzip file smaller than split_bytes / GZIP_RATIO is read whole, not streamed in blocks


def _gunzip_blocks(raw: IO[bytes]) -> Iterator[bytes]:
    """Decompressed blocks of a (multi-member) gzip stream; a truncated stream raises EOFError at its end."""
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    while chunk := raw.read(BLOCK):
        while chunk:
            yield decompressor.decompress(chunk)
            chunk = b""
            if decompressor.eof:
                chunk = decompressor.unused_data
                decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS) if chunk else decompressor
    if not decompressor.eof:
        raise EOFError("compressed file ended before the end-of-stream marker was reached")


def _blocks(path: Path, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """The file's bytes (from ``start`` to ``end``: uncompressed files only) in large blocks; gzip is inflated in a
    background thread (zlib releases the GIL)."""
    with path.open("rb") as raw:
        if path.suffix != ".gz":
            raw.seek(start)
            left = end - start if end is not None else None
            while block := raw.read(BLOCK if left is None else min(BLOCK, left)):
                yield block
                if left is not None:
                    left -= len(block)
            return
        yield from _prefetched(_gunzip_blocks(raw))


def _prefetched(blocks: Iterator[bytes], depth: int = 4) -> Iterator[bytes]:
    """``blocks`` produced on a second thread, up to ``depth`` ahead. A reader that stops early (a closed
    generator, a preview of a few rows) stops the thread too: it never waits on a full queue nobody reads."""
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item: object) -> bool:
        """Put ``item`` on the queue unless the reader stopped; whether it was put."""
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for block in blocks:
                if not hand_over(block):
                    return
            hand_over(_END)
        except BaseException as exc:  # handed to the reader, raised there
            hand_over(exc)

    thread = threading.Thread(target=produce, name="medi-gunzip", daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


_END = object()


def _line_blocks(path: Path, start: int = 0, end: int | None = None) -> Iterator[list[bytes]]:
    """The file's lines, a block's worth at a time (the last line of a block is completed by the next)."""
    rest = b""
    for block in _blocks(path, start, end):
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        yield lines
    if rest:
        yield [rest]


def read_json_lines(path: Path, split: Split | None = None) -> Iterator[tuple[int, object] | Problem]:
    """(line number, value) per line, or a Problem for a line that is not JSON; blank lines are skipped. With a
    ``split``, only its lines (read from ``split.path``, numbered from ``split.first``); problems name ``path``.

    A file that stops being readable (truncated gzip, an I/O error) ends with one Problem for the rest of it:
    how many rows that cost is not knowable (``rows=None``).
    """
    line_number = split.first - 1 if split else 0
    where = (Path(split.path), split.start, split.end) if split else (path,)
    try:
        for lines in _line_blocks(*where):
            for line in lines:
                line_number += 1
                try:
                    yield line_number, orjson.loads(line)
                except orjson.JSONDecodeError:
                    if not line or line.isspace():
                        continue
                    yield _slow_parse(path, line_number, line)
    except (OSError, EOFError, zlib.error) as exc:
        yield Problem(str(path), "", f"unreadable after line {line_number}: the rest of the file lost ({exc})", None)


def _slow_parse(path: Path, line_number: int, line: bytes) -> tuple[int, object] | Problem:
    """What orjson refused: the standard library's verdict, with its message."""
    where = f"line {line_number}"
    try:
        value = json.loads(line.decode("utf-8"))
        if not utf8_safe(value):  # orjson refuses a lone surrogate escape (\ud800); the standard library does not
            return Problem(str(path), where, "a text holds a lone surrogate (a \\ud800-\\udfff escape): not Unicode")
        return line_number, value
    except json.JSONDecodeError as exc:
        return Problem(str(path), where, f"invalid JSON: {exc.msg} (column {exc.colno})")
    except UnicodeDecodeError as exc:
        return Problem(str(path), where, f"not UTF-8: {exc.reason} at byte {exc.start}")
    except RecursionError:
        return Problem(str(path), where, "invalid JSON: nested too deeply")


def line_splits(path: Path, split_bytes: int) -> list[Split] | Stream | None:
    """A JSONL file in parts of about ``split_bytes``: byte ranges cut after a newline (uncompressed), or a stream
    of line blocks (gzip); None when the file is one part's worth."""
    size = path.stat().st_size
    if path.suffix == ".gz":  # decompressed, JSONL text is rarely more than GZIP_RATIO times its gzip
        return Stream(lambda block_bytes: line_chunks(path, block_bytes)) if size * GZIP_RATIO > split_bytes else None
    count = -(-size // split_bytes)
    if count <= 1:
        return None
    cuts = _cuts_after_newlines(path, [size * n // count for n in range(1, count)])
    starts = [(0, 0), *cuts]
    ends = [offset for offset, _ in cuts] + [None]
    return [Split(str(path), start, end, lines + 1) for (start, lines), end in zip(starts, ends, strict=True)]


def _cuts_after_newlines(path: Path, targets: list[int]) -> list[tuple[int, int]]:
    """For each target offset, the offset just after the first newline at or past it, and the lines before that
    (one pass over the file, counting newlines in C); cuts that would leave a part empty are dropped."""
    cuts: list[tuple[int, int]] = []
    position = newlines = 0
    pending = list(targets)
    with path.open("rb") as raw:
        while pending and (block := raw.read(BLOCK)):
            while pending:
                target = max(pending[0], cuts[-1][0] if cuts else 0)
                found = block.find(b"\n", max(0, target - position))
                if found < 0:
                    break
                cut = position + found + 1
                if not cuts or cut > cuts[-1][0]:
                    cuts.append((cut, newlines + block.count(b"\n", 0, found + 1)))
                pending.pop(0)
            newlines += block.count(b"\n")
            position += len(block)
    size = path.stat().st_size
    return [(cut, lines) for cut, lines in cuts if cut < size]


def line_chunks(path: Path, block_bytes: int) -> Iterator[tuple[bytes, int] | Problem]:
    """The (decompressed) file as blocks of whole lines of about ``block_bytes``, each with its first line's
    number; a file that stops being readable ends with the Problem ``read_json_lines`` gives, after every whole
    line before it."""
    lines = 0  # lines given so far
    pending = b""  # whole lines not given yet
    rest = b""  # a line not complete yet

    def cut(data: bytes, final: bool) -> Iterator[tuple[bytes, int]]:
        """Blocks of ``data`` (whole lines) cut after the first newline past ``block_bytes``; the remainder back
        in ``pending`` unless ``final``."""
        nonlocal lines, pending
        start = 0
        while len(data) - start >= block_bytes or (final and start < len(data)):
            end = data.find(b"\n", start + block_bytes - 1) + 1 or len(data)
            block = data[start:end]
            yield block, lines + 1
            lines += block.count(b"\n")
            start = end
        pending = data[start:]

    try:
        for block in _blocks(path):
            data = rest + block
            end = data.rfind(b"\n") + 1
            rest = data[end:]
            yield from cut(pending + data[:end], final=False)
    except (OSError, EOFError, zlib.error) as exc:
        yield from cut(pending, final=True)
        yield Problem(str(path), "", f"unreadable after line {lines}: the rest of the file lost ({exc})", None)
        return
    yield from cut(pending + rest, final=True)


@adapter("st_jsonl")
def read_st_jsonl(path: Path, spec: SourceSpec, seed: int) -> Adapted:
    return Adapted(rows=_rows(path, spec.name, seed))


read_st_jsonl.splits = lambda path, spec, split_bytes: line_splits(path, split_bytes)
read_st_jsonl.read_split = lambda path, spec, seed, split: _rows(path, spec.name, seed, split)


def _rows(path: Path, source: str, seed: int, split: Split | None = None) -> Iterator[RowOrProblem]:
    file = str(path)
    prefix = f"{source}:{split.label}" if split and split.label else source  # one of several files: named
    for item in read_json_lines(path, split):
        if isinstance(item, Problem):
            yield item
            continue
        line, value = item
        if type(value) is list and len(value) == 2 and type(value[0]) is str and type(value[1]) is str:
            yield Record(f"{prefix}:L{line}", value[0], value[1])  # the common pair layout, without the checks
        elif (fast := _single_query_triplet(value)) is not None:
            yield Record(f"{prefix}:L{line}", *fast)
        else:
            yield parse_row(value, f"{prefix}:L{line}", file, f"line {line}", seed)


def _single_query_triplet(value: object) -> tuple[str, str, str | None] | None:
    """``{"query": q, "pos": [p], "neg": [n]}`` (one item each, or no ``neg``) as texts, without a generator."""
    if type(value) is not dict or type(value.get("query")) is not str:
        return None
    pos, neg = value.get("pos"), value.get("neg")
    if type(pos) is not list or len(pos) != 1 or type(pos[0]) is not str:
        return None
    if neg is None:
        return value["query"], pos[0], None
    if type(neg) is list and len(neg) == 1 and type(neg[0]) is str:
        return value["query"], pos[0], neg[0]
    return None


def parse_row(value: object, row_id: str, file: str, where: str, seed: int) -> RowOrProblem:
    """One JSON value in any of the five layouts, as a Record; anything else is a Problem."""
    if isinstance(value, list):
        texts = value
        if len(texts) not in (2, 3):
            return Problem(file, where, f"a pair or triplet needs 2 or 3 texts, got {len(texts)}")
    elif isinstance(value, dict) and "set" in value:
        members = value["set"]
        if not isinstance(members, list) or len(members) < 2:
            return Problem(file, where, "`set` needs a list of at least 2 texts")
        texts = row_rng(seed, row_id).sample(members, 2)
    elif isinstance(value, dict) and "query" in value and "pos" in value:
        rng = _LazyRng(seed, row_id)
        pos, neg = _pick(value["pos"], rng), _pick(value.get("neg"), rng)
        if pos is None:
            return Problem(file, where, "`pos` is empty")
        texts = [value["query"], pos] + ([neg] if neg is not None else [])
    else:
        kind = type(value).__name__
        keys = f" with keys {sorted(value)}" if isinstance(value, dict) else ""
        return Problem(file, where, f"not a known layout: a {kind}{keys}")
    if not all(isinstance(t, str) for t in texts):
        return Problem(file, where, "every text must be a string")
    return Record(row_id=row_id, query=texts[0], pos=texts[1], neg=texts[2] if len(texts) == 3 else None)


def _pick(value: object, rng: _LazyRng) -> object:
    if isinstance(value, list):
        if len(value) == 1:
            return value[0]  # what rng.choice would give, without seeding a generator per row
        return rng.get().choice(value) if value else None
    return value


class _LazyRng:
    """The row's generator (``row_rng``), seeded only when a choice among several items is needed."""

    __slots__ = ("_rng", "row_id", "seed")

    def __init__(self, seed: int, row_id: str):
        self.seed, self.row_id, self._rng = seed, row_id, None

    def get(self):
        if self._rng is None:
            self._rng = row_rng(self.seed, self.row_id)
        return self._rng
