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
