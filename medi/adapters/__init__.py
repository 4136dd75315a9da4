"""Adapters turn one source file into Records. A handful of kinds, registered by name.

A source of several files (``medi.fetch.Fetched.files``) is read as one stream, its files in name order, each file
through its adapter's ``read_split`` as a split of its own (``Split.label``: its row ids and problems name it).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from medi.catalog import SourceSpec
from medi.errors import MediError, Problem
from medi.fetch import Fetched
from medi.schema import Record

RowOrProblem = Record | Problem


@dataclass
class Adapted:
    """An adapter's output: rows (or problems, in file order) and facts about the whole source.

    A reader whose rows are costly to complete (KILT: each passage read from a 35 GB knowledge source) may defer that
    work: ``deferred`` gives the rows with the costly text left as a reference that identifies it (same row ids, the
    problems found while reading), and ``resolve`` completes such rows (problems pass through in place; a row it
    cannot complete becomes a Problem). The sample stage samples the deferred rows and resolves only those it keeps;
    ``rows`` is the rows completed (``resolve`` over them), for every other reader."""

    rows: Iterator[RowOrProblem]
    meta: dict = field(default_factory=dict)
    deferred: Iterator[RowOrProblem] | None = None
    resolve: Callable[[Iterable[RowOrProblem]], Iterator[RowOrProblem]] | None = None


Reader = Callable[[Path, SourceSpec, int], Adapted]
ADAPTERS: dict[str, Reader] = {}


@dataclass(frozen=True)
class Split:
    """A part of a source's input that a worker reads on its own: the bytes ``start``-``end`` of ``path`` (JSONL,
    aligned to lines; ``end`` None: to the end), whose first line is line ``first`` of the source; or the Parquet
    ``row_groups`` of ``path``, whose first row is row ``first``. In a source of several files, ``label`` is the
    file's name (``medi.fetch.InputFile.name``): row ids carry it, and ``path`` is that file, which problems name; a
    split of a whole file has no range and no row groups (a Parquet file's rows are then numbered from 0)."""

    path: str
    start: int = 0
    end: int | None = None
    first: int = 1
    row_groups: tuple[int, ...] | None = None
    label: str = ""


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
    """The rows (and problems) of one split, with the row ids and line numbers one reader of the file gives; a split
    of one of several files reads (and names) its own file."""
    return ADAPTERS[kind].read_split(Path(split.path) if split.label else path, spec, seed, split)


def read_source(kind: str, fetched: Fetched, spec: SourceSpec, seed: int) -> Adapted:
    """A source's rows: its file through its adapter, or its several files one after another (in name order), each
    read whole as a split of its own. ``meta`` is the first file's."""
    reader = get_adapter(kind, spec.name)
    if not fetched.files:
        return reader(fetched.path, spec, seed)
    if not hasattr(reader, "read_split"):
        raise MediError(f"{spec.file}: adapter {kind} reads one file; this source names {len(fetched.files)}")
    meta = reader(fetched.path, spec, seed).meta  # checks the options before any row is read
    wholes = [Split(str(file.path), label=file.name) for file in fetched.files]
    return Adapted(
        rows=(row for split in wholes for row in read_split(kind, fetched.path, spec, seed, split)), meta=meta
    )


def plan_source_splits(kind: str, fetched: Fetched, spec: SourceSpec, split_bytes: int) -> list[Split] | Stream | None:
    """How to read a source in parallel (``plan_splits``); a source of several files in at least a split per file:
    each file's own splits, or the whole file (a file of one split's worth; a gzip file, decoded by its reader rather
    than by the source's worker for all). None when it is one split's worth."""
    if not fetched.files:
        return plan_splits(kind, fetched.path, spec, split_bytes)
    found: list[Split] = []
    for file in fetched.files:
        plan = plan_splits(kind, file.path, spec, split_bytes)
        whole = [Split(str(file.path), label=file.name)]
        found += [replace(split, label=file.name) for split in plan] if isinstance(plan, list) else whole
    return found if len(found) > 1 else None


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
