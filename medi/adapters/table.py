"""Generic tables (JSONL or Parquet) with a column mapping: ``options: {format, columns: {query, pos, neg}}``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medi.adapters import Adapted, RowOrProblem, adapter
from medi.adapters.st_jsonl import read_json_lines
from medi.catalog import SourceSpec
from medi.errors import MediError, Problem, SourceError
from medi.schema import Record


@adapter("table")
def read_table(path: Path, spec: SourceSpec, seed: int) -> Adapted:
    columns = spec.options.get("columns") or {}
    if not columns.get("query") or not columns.get("pos"):
        raise MediError(f"{spec.file}: the table adapter needs options.columns.query and options.columns.pos")
    fmt = spec.options.get("format") or ("parquet" if path.suffix == ".parquet" else "jsonl")
    if fmt not in ("jsonl", "parquet"):
        raise MediError(f"{spec.file}: options.format must be jsonl or parquet, not {fmt!r}")
    rows = parquet_rows(path, spec.name) if fmt == "parquet" else jsonl_rows(path)
    return Adapted(rows=_records(rows, columns, spec.name, str(path), seed))


def jsonl_rows(path: Path) -> Iterator[tuple[str, object] | Problem]:
    for item in read_json_lines(path):
        yield item if isinstance(item, Problem) else (f"L{item[0]}", item[1])


def parquet_rows(path: Path, source: str) -> Iterator[tuple[str, object]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=4096)
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(source, "malformed_file", f"{path}: not a readable Parquet file ({exc})", path) from exc
    index = 0
    try:
        for batch in batches:  # a damaged page shows only when its batch is read
            for row in batch.to_pylist():
                yield f"R{index}", row
                index += 1
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(source, "malformed_file", f"{path}: unreadable after row {index} ({exc})", path) from exc


def lookup(row: dict, dotted: str) -> object:
    """``a.b`` looks into nested mappings; a list value gives its first item."""
    value: object = row
    for part in dotted.split("."):
        if isinstance(value, list):
            value = value[0] if value else None
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _records(rows, columns: dict, source: str, file: str, seed: int) -> Iterator[RowOrProblem]:
    for item in rows:
        if isinstance(item, Problem):
            yield item
            continue
        locator, row = item
        where = "line " + locator[1:] if locator.startswith("L") else f"row {locator[1:]}"
        if not isinstance(row, dict):
            yield Problem(file, where, f"expected an object, got {type(row).__name__}")
            continue
        texts = {side: _text(row, columns.get(side)) for side in ("query", "pos", "neg")}
        if not isinstance(texts["query"], str) or not isinstance(texts["pos"], str):
            yield Problem(file, where, f"columns {columns.get('query')!r}/{columns.get('pos')!r} must be strings")
            continue
        neg = texts["neg"] if isinstance(texts["neg"], str) else None
        yield Record(row_id=f"{source}:{locator}", query=texts["query"], pos=texts["pos"], neg=neg)


def _text(row: dict, column: str | None) -> object:
    if not column:
        return None
    value = lookup(row, column)
    if isinstance(value, list):  # e.g. several reference answers: the first is the canonical one
        return value[0] if value else None
    return value
