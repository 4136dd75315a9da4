"""sentence-transformers embedding-training data: JSONL (optionally gzipped), layout detected per row.

Layouts: pair ``[a, b]``, triplet ``[a, p, n]``, set ``{"set": [...]}``, query-pairs ``{"query", "pos"}``,
query-triplets ``{"query", "pos", "neg"}``; other keys are ignored. A set gives one pair of two of its members,
a list of positives or negatives one of its items, each chosen by the build seed and the row id.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from medi.adapters import Adapted, RowOrProblem, adapter, row_rng
from medi.catalog import SourceSpec
from medi.errors import Problem
from medi.schema import Record


def open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def read_json_lines(path: Path) -> Iterator[tuple[int, object] | Problem]:
    """(line number, value) per line, or a Problem for a line that is not JSON; blank lines are skipped.

    A file that stops being readable (truncated gzip, bad bytes) ends with one Problem for the rest of it.
    """
    line_number = 0
    try:
        with open_text(path) as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield line_number, json.loads(line)
                except json.JSONDecodeError as exc:
                    yield Problem(str(path), f"line {line_number}", f"invalid JSON: {exc.msg} (column {exc.colno})")
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        yield Problem(str(path), f"after line {line_number}", f"unreadable from here on: {exc}")


@adapter("st_jsonl")
def read_st_jsonl(path: Path, spec: SourceSpec, seed: int) -> Adapted:
    return Adapted(rows=_rows(path, spec.name, seed))


def _rows(path: Path, source: str, seed: int) -> Iterator[RowOrProblem]:
    for item in read_json_lines(path):
        if isinstance(item, Problem):
            yield item
            continue
        line, value = item
        yield parse_row(value, f"{source}:L{line}", str(path), f"line {line}", seed)


def parse_row(value: object, row_id: str, file: str, where: str, seed: int) -> RowOrProblem:
    """One JSON value in any of the five layouts, as a Record; anything else is a Problem."""
    rng = row_rng(seed, row_id)
    if isinstance(value, list):
        texts = value
        if len(texts) not in (2, 3):
            return Problem(file, where, f"a pair or triplet needs 2 or 3 texts, got {len(texts)}")
    elif isinstance(value, dict) and "set" in value:
        members = value["set"]
        if not isinstance(members, list) or len(members) < 2:
            return Problem(file, where, "`set` needs a list of at least 2 texts")
        texts = rng.sample(members, 2)
    elif isinstance(value, dict) and "query" in value and "pos" in value:
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


def _pick(value: object, rng) -> object:
    if isinstance(value, list):
        return rng.choice(value) if value else None
    return value
