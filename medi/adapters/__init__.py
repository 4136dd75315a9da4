"""Adapters turn one source file into Records. A handful of kinds, registered by name."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from medi.catalog import SourceSpec
from medi.errors import MediError, Problem
from medi.schema import Record

RowOrProblem = Record | Problem


@dataclass
class Adapted:
    """An adapter's output: rows (or problems, in file order) and facts about the whole source."""

    rows: Iterator[RowOrProblem]
    meta: dict = field(default_factory=dict)


Reader = Callable[[Path, SourceSpec, int], Adapted]
ADAPTERS: dict[str, Reader] = {}


@dataclass(frozen=True)
class Split:
    """A part of a source's input that a worker reads on its own: the bytes ``start``-``end`` of ``path`` (JSONL,
    aligned to lines; ``end`` None: to the end), whose first line is line ``first`` of the source; or the Parquet
    ``row_groups`` of ``path``, whose first row is row ``first``."""

    path: str
    start: int = 0
    end: int | None = None
    first: int = 1
    row_groups: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Stream:
    """An input read once, start to end (gzip), handed out in blocks of whole lines: ``blocks`` yields
    (uncompressed lines, the number of the first) of about ``block_bytes`` each, then a Problem if the stream
    breaks (the lines before it are all given)."""

    blocks: Callable[[int], Iterator[tuple[bytes, int] | Problem]]


def plan_splits(kind: str, path: Path, spec: SourceSpec, split_bytes: int) -> list[Split] | Stream | None:
    """How to read a source in parallel: byte ranges or row groups of about ``split_bytes``, a stream of blocks,
    or None (one reader: the adapter cannot split, or the input is one split's worth)."""
    planner = getattr(ADAPTERS.get(kind), "splits", None)
    return planner(path, spec, split_bytes) if planner else None


def read_split(kind: str, path: Path, spec: SourceSpec, seed: int, split: Split) -> Iterator[RowOrProblem]:
    """The rows (and problems) of one split, with the row ids and line numbers one reader of the file gives."""
    return ADAPTERS[kind].read_split(path, spec, seed, split)


def adapter(kind: str) -> Callable[[Reader], Reader]:
    """Register a reader under an adapter kind named in source YAML files."""

    def register(reader: Reader) -> Reader:
        ADAPTERS[kind] = reader
        return reader

    return register


def extra_inputs(kind: str, path: Path, spec: SourceSpec) -> list[dict]:
    """The files an adapter reads besides the source's own (a reader's ``extra_inputs``), with size and mtime:
    they key the sample stage, so replacing one reruns it (hashing a 35 GB file on every build would not do)."""
    found = getattr(ADAPTERS.get(kind), "extra_inputs", None)
    paths = found(path, spec) if found else []
    return [{"path": str(p), "bytes": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns} for p in paths if p.is_file()]


def get_adapter(kind: str, source: str) -> Reader:
    if kind not in ADAPTERS:
        raise MediError(f"{source}: unknown adapter {kind!r}; known adapters: {', '.join(sorted(ADAPTERS))}")
    return ADAPTERS[kind]


def row_rng(seed: int, row_id: str) -> random.Random:
    """A generator fixed by (seed, row id): the same choice on every run, independent of row order."""
    return random.Random(f"{seed}:{row_id}")


def text_problem(file: str, where: str, value: object, field_name: str) -> Problem | None:
    """A problem when a text field is not a string."""
    if isinstance(value, str):
        return None
    return Problem(file, where, f"{field_name} must be a string, got {type(value).__name__}")


def utf8_safe(value: object) -> bool:
    """Whether a text (or a JSON value's texts) can be written as UTF-8: JSON's ``\\ud800``-``\\udfff`` escapes
    decode to lone surrogates, which the standard library's json accepts and Arrow, hashing and files refuse."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, list | tuple):
        return all(utf8_safe(item) for item in value)
    if isinstance(value, dict):
        return all(utf8_safe(key) and utf8_safe(item) for key, item in value.items())
    return True


from medi.adapters import kilt, st_jsonl, superni, table  # noqa: E402  (registers the kinds)

__all__ = ["ADAPTERS", "Adapted", "adapter", "get_adapter", "kilt", "row_rng", "st_jsonl", "superni", "table"]
