"""Shard: write the release as Arrow shards with ``datasets`` and the schema's explicit Features.

Rows stay grouped by task (INSTRUCTOR's trainer drops any batch that spans two tasks). The dataset's
fingerprint is a hash of its content, so the same rows give the same bytes in every file.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import datasets
import pyarrow as pa

from medi.fetch import sha256_file
from medi.schema import FEATURES, Triple, release_row


def release_table(tasks: list[tuple[str, list[Triple]]]) -> pa.Table:
    rows = [release_row(name, task_id, t) for task_id, (name, triples) in enumerate(tasks) for t in triples]
    return pa.Table.from_pylist(rows, schema=FEATURES.arrow_schema)


def write_shards(table: pa.Table, folder: Path, shard_rows: int, description: str = "") -> list[dict]:
    """Save ``table`` into ``folder`` (which must not exist yet); return [{file, rows, sha256}] per shard."""
    fingerprint = _content_hash(table)
    info = datasets.DatasetInfo(description=description, features=FEATURES)
    dataset = datasets.Dataset(table, info=info, fingerprint=fingerprint)
    num_shards = max(1, math.ceil(len(table) / shard_rows)) if len(table) else 1
    datasets.disable_progress_bars()  # medi reports its own progress; keep stderr readable
    dataset.save_to_disk(str(folder), num_shards=num_shards)
    shards = []
    for path in sorted(folder.glob("data-*.arrow")):
        rows = pa.ipc.open_stream(path.open("rb")).read_all().num_rows
        shards.append({"file": path.name, "rows": rows, "sha256": sha256_file(path)})
    return shards


def _content_hash(table: pa.Table) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(FEATURES.to_dict(), sort_keys=True).encode())
    for batch in table.to_batches(max_chunksize=65536):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        digest.update(sink.getvalue().to_pybytes())
    return digest.hexdigest()[:16]
