"""Generic tables with a column mapping: ``options: {format, columns: {query, pos, neg}, join, members}``.

Formats: ``jsonl`` (optionally gzipped), ``parquet``, and ``zip_lines``: parallel text files inside a zip archive, one
row per line number, each member a column (``members: {column: path in the archive}``; Gigaword's ``org_data``).
A list value gives its first item, or, for a side named in ``join: {side: separator}``, all its items joined.
A large JSONL or Parquet table is read in parallel splits (``medi.stages.splits``): line ranges, or runs of row groups.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from itertools import zip_longest
from pathlib import Path

from medi.adapters import Adapted, RowOrProblem, Split, Stream, adapter
from medi.adapters.st_jsonl import line_splits, read_json_lines
from medi.catalog import SourceSpec
from medi.errors import MediError, Problem, SourceError
from medi.schema import Record


@adapter("table")
def read_table(path: Path, spec: SourceSpec, seed: int) -> Adapted:
    columns = spec.options.get("columns") or {}
    if not columns.get("query") or not columns.get("pos"):
        raise MediError(f"{spec.file}: the table adapter needs options.columns.query and options.columns.pos")
    fmt, join = _format(path, spec), _join(spec)
    if fmt == "zip_lines":
        rows = zip_line_rows(path, _members(spec), spec.name)
    else:
        rows = parquet_rows(path, spec.name) if fmt == "parquet" else jsonl_rows(path)
    return Adapted(rows=_records(rows, columns, join, spec.name, str(path)))


def _format(path: Path, spec: SourceSpec) -> str:
    fmt = spec.options.get("format") or ("parquet" if path.suffix == ".parquet" else "jsonl")
    if fmt not in FORMATS:
        raise MediError(f"{spec.file}: options.format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return fmt


def _join(spec: SourceSpec) -> dict:
    join = spec.options.get("join") or {}
    if not isinstance(join, dict) or not all(isinstance(v, str) for v in join.values()) or set(join) - SIDES:
        raise MediError(f"{spec.file}: options.join must map query/pos/neg to a separator string, not {join!r}")
    return join


def _splits(path: Path, spec: SourceSpec, split_bytes: int) -> list[Split] | Stream | None:
    """JSONL in line ranges (or a stream of line blocks), Parquet in runs of row groups; zip_lines in one."""
    fmt = _format(path, spec)
    if fmt == "jsonl":
        return line_splits(path, split_bytes)
    return row_group_splits(path, spec.name, split_bytes) if fmt == "parquet" else None


def _read_split(path: Path, spec: SourceSpec, seed: int, split: Split) -> Iterator[RowOrProblem]:
    """A split's rows; a whole file of a source of several (``split.label``) in any format, its row ids named."""
    columns = spec.options.get("columns") or {}
    fmt = _format(path, spec)
    if fmt == "zip_lines":
        rows = zip_line_rows(path, _members(spec), spec.name)
    else:
        rows = parquet_rows(path, spec.name, split) if fmt == "parquet" else jsonl_rows(path, split)
    prefix = f"{spec.name}:{split.label}" if split.label else spec.name
    return _records(rows, columns, _join(spec), prefix, str(path))


read_table.splits = _splits
read_table.read_split = _read_split


def row_group_splits(path: Path, source: str, split_bytes: int) -> list[Split] | None:
    """Runs of consecutive row groups of about ``split_bytes`` (uncompressed, by the footer), each with its first
    row's index; None when the file is one run's worth."""
    parquet = _open_parquet(path, source)
    splits, groups, first, size, rows = [], [], 0, 0, 0
    for group in range(parquet.num_row_groups):
        meta = parquet.metadata.row_group(group)
        groups.append(group)
        size += meta.total_byte_size
        rows += meta.num_rows
        if size >= split_bytes:
            splits.append(Split(str(path), first=first, row_groups=tuple(groups)))
            groups, first, size = [], rows, 0
    if groups:
        splits.append(Split(str(path), first=first, row_groups=tuple(groups)))
    return splits if len(splits) > 1 else None


FORMATS = ("jsonl", "parquet", "zip_lines")
SIDES = {"query", "pos", "neg"}


def _members(spec: SourceSpec) -> dict[str, str]:
    members = spec.options.get("members")
    if not isinstance(members, dict) or not members or not all(isinstance(v, str) for v in members.values()):
        raise MediError(f"{spec.file}: format zip_lines needs options.members: {{column: path in the archive}}")
    return members


def zip_line_rows(path: Path, members: dict[str, str], source: str) -> Iterator[tuple[str, object] | Problem]:
    """One row per line number of the archive's members: ``{column: line}`` with locator ``L<line>``."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SourceError(source, "malformed_file", f"{path}: not a readable zip archive ({exc})", path) from exc
    with archive:
        missing = sorted(set(members.values()) - set(archive.namelist()))
        if missing:
            raise SourceError(source, "malformed_file", f"{path}: the archive has no {', '.join(missing)}", path)
        handles = [io.TextIOWrapper(archive.open(member), encoding="utf-8") for member in members.values()]
        number = 0
        try:
            lines_of = enumerate(zip_longest(*handles), start=1)
            for number, lines in lines_of:
                if None in lines:
                    short = [m for m, line in zip(members.values(), lines, strict=True) if line is None]
                    lost = 1 + sum(1 for _ in lines_of)  # the longer members' lines: rows no longer whole
                    why = f"{', '.join(short)} ended before the other members"
                    yield Problem(str(path), "", f"unreadable after line {number - 1}: {lost} rows lost ({why})", lost)
                    return
                yield f"L{number}", {column: line.rstrip("\n") for column, line in zip(members, lines, strict=True)}
        except (UnicodeDecodeError, zipfile.BadZipFile, OSError, EOFError) as exc:
            raise SourceError(
                source, "malformed_file", f"{path}: unreadable after line {number} ({exc})", path
            ) from exc
        finally:
            for handle in handles:
                handle.close()


def jsonl_rows(path: Path, split: Split | None = None) -> Iterator[tuple[str, object] | Problem]:
    for item in read_json_lines(path, split):
        yield item if isinstance(item, Problem) else (f"L{item[0]}", item[1])


def _open_parquet(path: Path, source: str):
    """The file's Parquet reader (its footer read); a SourceError when it is not readable."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(source, "malformed_file", f"{path}: not a readable Parquet file ({exc})", path) from exc
    return parquet


def parquet_rows(path: Path, source: str, split: Split | None = None) -> Iterator[tuple[str, object] | Problem]:
    """``R<index>`` and the row as a dict, row group by row group (a ``split``'s groups only); a file whose footer
    cannot be read is a SourceError. A damaged page costs the rest of its row group only: one Problem saying how
    many rows it lost (the footer knows the group's size), then reading goes on with the next group, whose pages
    are independent."""
    import pyarrow as pa

    parquet = _open_parquet(path, source)
    ranged = split is not None and split.row_groups is not None  # else the whole file, from row 0
    try:
        chosen = split.row_groups if ranged else range(parquet.num_row_groups)
        groups = [(g, parquet.metadata.row_group(g).num_rows) for g in chosen]
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(source, "malformed_file", f"{path}: not a readable Parquet file ({exc})", path) from exc
    first = split.first if ranged else 0
    for group, size in groups:
        index = first
        try:
            for batch in parquet.iter_batches(batch_size=4096, row_groups=[group]):  # a bad page shows when read
                for row in batch.to_pylist():
                    yield f"R{index}", row
                    index += 1
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            lost = first + size - index
            damage = f"row group {group}, rows {first}-{first + size - 1}, is damaged: {exc}"
            yield Problem(str(path), "", f"unreadable from row {index}: {lost} rows lost ({damage})", lost)
        first += size


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


def _records(rows, columns: dict, join: dict, prefix: str, file: str) -> Iterator[RowOrProblem]:
    """Records named ``<prefix>:<locator>`` (prefix: the source, and the file of one of several)."""
    for item in rows:
        if isinstance(item, Problem):
            yield item
            continue
        locator, row = item
        where = "line " + locator[1:] if locator.startswith("L") else f"row {locator[1:]}"
        if not isinstance(row, dict):
            yield Problem(file, where, f"expected an object, got {type(row).__name__}")
            continue
        texts = {side: _text(row, columns.get(side), join.get(side)) for side in ("query", "pos", "neg")}
        if not isinstance(texts["query"], str) or not isinstance(texts["pos"], str):
            yield Problem(file, where, f"columns {columns.get('query')!r}/{columns.get('pos')!r} must be strings")
            continue
        neg = texts["neg"] if isinstance(texts["neg"], str) else None
        yield Record(row_id=f"{prefix}:{locator}", query=texts["query"], pos=texts["pos"], neg=neg)


def _text(row: dict, column: str | None, separator: str | None = None) -> object:
    if not column:
        return None
    value = lookup(row, column)
    if isinstance(value, list) and separator is not None:  # e.g. an abstract stored as a list of sentences
        return separator.join(value) if value and all(isinstance(v, str) for v in value) else None
    if isinstance(value, list):  # e.g. several reference answers: the first is the canonical one
        return value[0] if value else None
    return value
