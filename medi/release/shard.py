"""Shard: write the release as Arrow shards, as rows arrive, in the layout ``datasets.save_to_disk`` writes.

Rows stay grouped by task (INSTRUCTOR's trainer drops any batch that spans two tasks). Each shard is an Arrow
stream file that is closed when it holds ``shard_rows`` rows, so the release is never one table in memory; the
shards are renamed ``data-XXXXX-of-NNNNN.arrow`` once their number is known, and ``state.json`` /
``dataset_info.json`` are written as ``datasets`` writes them (its fingerprint: a hash of the shards' content).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa

from medi.fetch import sha256_file
from medi.schema import FEATURES, Triple, release_row


def release_batch(task_name: str, task_id: int, triples: list[Triple]) -> pa.RecordBatch:
    rows = [release_row(task_name, task_id, t) for t in triples]
    return pa.RecordBatch.from_pylist(rows, schema=release_schema())


def release_schema() -> pa.Schema:
    """FEATURES' Arrow schema with the metadata ``datasets`` reads the features back from."""
    metadata = {"huggingface": json.dumps({"info": {"features": FEATURES.to_dict()}})}
    return FEATURES.arrow_schema.with_metadata(metadata)


class ShardWriter:
    """Arrow stream shards of at most ``shard_rows`` rows in ``folder``; ``close()`` names them and writes the
    ``datasets`` metadata, returning [{file, rows, sha256}] per shard."""

    def __init__(self, folder: Path, shard_rows: int, description: str = ""):
        self.folder, self.shard_rows, self.description = folder, shard_rows, description
        folder.mkdir(parents=True, exist_ok=False)
        self.schema = release_schema()
        self._paths: list[Path] = []
        self._rows: list[int] = []
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None
        self._sink = None

    @property
    def rows(self) -> int:
        return sum(self._rows)

    def write(self, batch: pa.RecordBatch) -> None:
        while batch.num_rows:
            if self._writer is None or self._rows[-1] >= self.shard_rows:
                self._open()
            room = self.shard_rows - self._rows[-1]
            part, batch = batch.slice(0, room), batch.slice(room)
            self._writer.write_batch(part)
            self._rows[-1] += part.num_rows

    def _open(self) -> None:
        self._finish_shard()
        path = self.folder / f".shard-{len(self._paths):05d}.arrow"
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_stream(self._sink, self.schema)
        self._paths.append(path)
        self._rows.append(0)

    def _finish_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = self._sink = None

    def close(self) -> list[dict]:
        if not self._paths:
            self._open()  # an empty release is one empty shard, as datasets saves it
        self._finish_shard()
        total = len(self._paths)
        shards = []
        for number, (path, rows) in enumerate(zip(self._paths, self._rows, strict=True)):
            final = path.with_name(f"data-{number:05d}-of-{total:05d}.arrow")
            path.rename(final)
            shards.append({"file": final.name, "rows": rows, "sha256": sha256_file(final)})
        self._write_metadata(shards)
        return shards

    def _write_metadata(self, shards: list[dict]) -> None:
        fingerprint = hashlib.sha256(json.dumps(FEATURES.to_dict(), sort_keys=True).encode())
        for shard in shards:
            fingerprint.update(shard["sha256"].encode())
        state = {
            "_data_files": [{"filename": shard["file"]} for shard in shards],
            "_fingerprint": fingerprint.hexdigest()[:16],
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        }
        info = {
            "citation": "",
            "description": self.description,
            "features": FEATURES.to_dict(),
            "homepage": "",
            "license": "",
        }
        for name, content in (("state.json", state), ("dataset_info.json", info)):
            (self.folder / name).write_text(json.dumps(content, indent=2, sort_keys=True), encoding="utf-8")
