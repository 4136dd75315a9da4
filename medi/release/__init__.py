"""Reading a release back: its manifest and its rows, for every command that consumes one.

Exports, verify, stats, review and publish all open a release through ``open_release`` so a missing or
foreign manifest, a damaged or truncated shard, or a release written with another schema is one clear
``MediError`` naming the file, everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import datasets
import pyarrow as pa

from medi.errors import MediError
from medi.fetch import sha256_file
from medi.schema import FEATURES, FORMAT_VERSION, READABLE_FEATURES

MANIFEST = "manifest.json"
DATASET_INFO = "dataset_info.json"
STATE = "state.json"
REQUIRED_KEYS = {"format": int, "rows": int, "tasks": list, "shards": list, "sources": dict}
TASK_KEYS = ("task_name", "task_id", "first_row", "rows")


@dataclass
class Release:
    """A release folder: ``manifest.json`` plus the Arrow shards ``datasets`` saved beside it.

    ``verify_checksums``: hash every shard against the manifest before the rows are first read (a flipped
    byte in a text is otherwise invisible to Arrow). Shard presence, size and row counts are always checked.
    """

    folder: Path
    manifest: dict
    verify_checksums: bool = False
    _checked: bool = field(default=False, repr=False)

    @cached_property
    def dataset(self) -> datasets.Dataset:
        self.check_shards()
        try:
            return datasets.load_from_disk(str(self.folder))
        except (FileNotFoundError, ValueError, OSError, pa.ArrowException, KeyError) as exc:
            raise MediError(f"{self.folder}: cannot load the release's Arrow data ({exc})") from exc

    @property
    def tasks(self) -> list[dict]:
        """``[{task_name, task_id, first_row, rows}]`` in release order (rows are grouped by task)."""
        return self.manifest["tasks"]

    @property
    def sources(self) -> dict[str, dict]:
        """The manifest's per-source summary (rows, drops, mining, instructions), keyed by source name."""
        return self.manifest["sources"]

    def task(self, task_name: str) -> dict:
        for task in self.tasks:
            if task["task_name"] == task_name:
                return task
        raise MediError(f"{self.folder}: no task {task_name!r} in this release")

    def task_rows(self, task_name: str) -> datasets.Dataset:
        """The contiguous slice of rows of one task (source)."""
        task = self.task(task_name)
        return self.dataset.select(range(task["first_row"], task["first_row"] + task["rows"]))

    def task_table(self, task_name: str) -> pa.Table:
        """The rows of one task as an Arrow table (zero-copy slice of the memory-mapped shards)."""
        task = self.task(task_name)
        return self.dataset.data.table.slice(task["first_row"], task["rows"])

    def iter_tasks(self) -> Iterator[tuple[str, datasets.Dataset]]:
        for task in self.tasks:
            yield task["task_name"], self.task_rows(task["task_name"])

    def check_shards(self) -> None:
        """Raise a MediError naming the first shard that is missing, cut, damaged or holds the wrong rows."""
        if self._checked:
            return
        problems = shard_problems(self.folder, self.manifest, checksums=self.verify_checksums, first_only=True)
        if problems:
            raise MediError(problems[0])
        self._checked = True


def open_release(folder: Path | str, *, verify_checksums: bool = False) -> Release:
    """Open a release folder; a missing folder or manifest, another format or schema, is a MediError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MediError(f"{folder}: no such release folder")
    manifest = load_manifest(folder)
    check_schema(folder)
    return Release(folder, manifest, verify_checksums)


def load_manifest(folder: Path) -> dict:
    """``folder/manifest.json``, checked to be a medi manifest of the format this medi reads."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise MediError(f"{path}: no manifest; is {folder} a medi release?")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise MediError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise MediError(f"{path}, line {exc.lineno}: invalid JSON ({exc.msg})") from exc
    if not isinstance(manifest, dict) or "format" not in manifest:
        raise MediError(f"{path}: not a medi manifest (no 'format' key); was it written by another tool?")
    if manifest["format"] != FORMAT_VERSION:
        writer = manifest.get("medi_version", "an unknown medi version")
        raise MediError(
            f"{path}: release format {manifest['format']!r} (written by medi {writer}); "
            f"this medi reads format {FORMAT_VERSION}: rebuild the release or use a matching medi"
        )
    for key, kind in REQUIRED_KEYS.items():
        if not isinstance(manifest.get(key), kind):
            raise MediError(f"{path}: key {key!r} is missing or not a {kind.__name__}; the manifest is damaged")
    for index, task in enumerate(manifest["tasks"]):
        if not isinstance(task, dict) or any(k not in task for k in TASK_KEYS):
            raise MediError(f"{path}: tasks[{index}] lacks one of {', '.join(TASK_KEYS)}; the manifest is damaged")
    return manifest


def check_schema(folder: Path) -> None:
    """The shards' features (``dataset_info.json``) must be the schema this medi writes (or the one before issue
    19's provenance columns: those releases stay readable)."""
    path = Path(folder) / DATASET_INFO
    if not path.is_file():
        raise MediError(f"{path}: missing; the release folder is incomplete")
    try:
        features = datasets.Features.from_dict(json.loads(path.read_text(encoding="utf-8"))["features"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise MediError(f"{path}: unreadable dataset info ({exc})") from exc
    if features not in READABLE_FEATURES:
        added = [f"+{column}" for column in sorted(set(features) - set(FEATURES))]
        missing = [f"-{column}" for column in sorted(set(FEATURES) - set(features))]
        retyped = [f"~{column}" for column in FEATURES if column in features and features[column] != FEATURES[column]]
        raise MediError(
            f"{path}: columns differ from this medi's schema ({' '.join(added + missing + retyped)}); "
            "was the release written by another medi version?"
        )


def expected_files(manifest: dict) -> list[dict]:
    """``[{file, sha256, bytes?, rows?}]``: the manifest's ``files`` list (when present) and every shard."""
    shards = {s["file"]: s for s in manifest.get("shards", [])}
    files = [
        {**f, **({"rows": shards[f["file"]]["rows"]} if f["file"] in shards else {})}
        for f in manifest.get("files") or []
    ]
    listed = {f["file"] for f in files}
    return files + [dict(s) for name, s in shards.items() if name not in listed]


def read_shard(path: Path) -> pa.Table:
    """One Arrow stream file, memory-mapped; a cut or damaged file raises ``pa.ArrowException`` or ``OSError``."""
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_stream(source).read_all()


def shard_problems(folder: Path, manifest: dict, *, checksums: bool, first_only: bool = False) -> list[str]:
    """What is wrong with the files the manifest lists: missing, wrong size, unreadable, wrong rows, wrong hash."""
    problems: list[str] = []
    for entry in expected_files(manifest):
        path = Path(folder) / entry["file"]
        problems += _file_problems(path, entry, checksums)
        if problems and first_only:
            break
    return problems


def _file_problems(path: Path, entry: dict, checksums: bool) -> list[str]:
    if not path.is_file():
        return [f"{path}: missing (listed in the manifest)"]
    problems = []
    size = path.stat().st_size
    if "bytes" in entry and size != entry["bytes"]:
        cut = " (truncated)" if size < entry["bytes"] else ""
        problems.append(f"{path}: {size} bytes, the manifest says {entry['bytes']}{cut}")
    if "rows" in entry:
        try:
            rows = read_shard(path).num_rows
        except (pa.ArrowException, OSError) as exc:
            return [*problems, f"{path}: not a readable Arrow shard, damaged or truncated ({exc})"]
        if rows != entry["rows"]:
            problems.append(f"{path}: {rows} rows, the manifest says {entry['rows']}")
    if checksums and (digest := sha256_file(path)) != entry["sha256"]:
        problems.append(f"{path}: sha256 {digest[:12]}…, the manifest says {entry['sha256'][:12]}… (content changed)")
    return problems
