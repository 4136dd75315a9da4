"""Exports: a release in the layouts other trainers read.

- ``instructor``: one JSON array of MEDI rows for INSTRUCTOR's ``train.py`` (batches never span two tasks);
- ``medi2``: GritLM's MEDI2 layout, one JSONL file per source in a folder;
- ``st-triplets``: a ``datasets`` folder sentence-transformers trains on directly;
- ``parquet``: one Parquet file per source under ``data/<source>/`` (what ``medi publish`` uploads).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from medi.fetch import sha256_file
from medi.release import Release
from medi.schema import FEATURES

PARQUET_FILE = "train-00000-of-00001.parquet"  # the Hub's split-from-filename convention: split "train"
PARQUET_ROW_GROUP = 10_000


def parquet_path(source: str) -> str:
    """Where a source's rows go, relative to the export folder (and to a Hub dataset repo's root)."""
    return f"data/{source}/{PARQUET_FILE}"


def write_parquet_per_source(release: Release, folder: Path | str) -> list[dict]:
    """Write one Parquet file per source under ``folder/data/<source>/``; same release, same bytes.

    Returns ``[{source, path, rows, bytes, sha256}]`` in release order; ``path`` is relative to ``folder``
    (posix, the path in a Hub repo). The schema carries the release's ``datasets`` Features, so
    ``datasets.load_dataset("parquet", ...)`` gives back the same nested columns.
    """
    folder = Path(folder)
    written = []
    for task in release.tasks:
        table = _with_features(release.task_table(task["task_name"]))
        relative = parquet_path(task["task_name"])
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(table, path)
        written.append(
            {
                "source": task["task_name"],
                "path": relative,
                "rows": table.num_rows,
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
            }
        )
    return written


def _with_features(table: pa.Table) -> pa.Table:
    """The table with the ``huggingface`` schema metadata ``datasets`` reads its Features from."""
    metadata = {"huggingface": json.dumps({"info": {"features": FEATURES.to_dict()}}, sort_keys=True)}
    return table.replace_schema_metadata(metadata)


def _write_atomically(table: pa.Table, path: Path) -> None:
    partial = path.with_name(path.name + ".partial")
    pq.write_table(table, partial, compression="zstd", row_group_size=PARQUET_ROW_GROUP, write_statistics=True)
    partial.replace(path)
