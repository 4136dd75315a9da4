"""``medi verify``: check a release folder against its manifest and name everything that differs.

Checked: every file the manifest lists (``files`` when present, else ``shards``): presence, size, sha256 and
Arrow row count; files the manifest does not list (but for a ``plots/`` folder); ``state.json``'s shard list;
the row totals (a release of 0 rows is no good release: medi build refuses to write one); and the task index
(rows sum, contiguous ``first_row`` ranges, each range holding only its own task_name and task_id).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from medi.errors import MediError
from medi.release import (
    DATASET_INFO,
    MANIFEST,
    STATE,
    Release,
    expected_files,
    open_release,
    read_shard,
    shard_problems,
)

PLOTS_DIR = "plots/"  # `medi stats RELEASE --plots RELEASE/plots` may put its PNGs inside the release


@dataclass
class Verdict:
    """The outcome of ``verify_release``: ``ok`` when ``problems`` is empty."""

    folder: str
    problems: list[str] = field(default_factory=list)
    files: int = 0
    rows: int = 0
    tasks: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {"folder": self.folder, "ok": self.ok, "problems": self.problems, "files": self.files,
                "rows": self.rows, "tasks": self.tasks}  # fmt: skip


def verify_release(folder: Path | str) -> Verdict:
    """Every difference between ``folder`` and its manifest, each naming the file (and row range) concerned."""
    folder = Path(folder)
    verdict = Verdict(str(folder))
    try:
        release = open_release(folder)
    except MediError as exc:
        verdict.problems.append(str(exc))
        return verdict
    manifest = release.manifest
    listed = expected_files(manifest)
    verdict.files, verdict.tasks = len(listed), len(release.tasks)
    file_problems = shard_problems(folder, manifest, checksums=True)
    verdict.problems += file_problems
    verdict.problems += _extra_files(folder, listed)
    verdict.problems += _state_problems(folder, manifest)
    verdict.problems += _index_problems(release)
    if not manifest["rows"]:
        verdict.problems.append(f"{folder / MANIFEST}: the release holds no rows (a build that kept nothing)")
    shard_paths = {str(folder / shard["file"]) for shard in manifest["shards"]}
    if not any(problem.split(": ", 1)[0] in shard_paths for problem in file_problems):
        verdict.problems += _row_problems(release)  # only readable shards can be read row by row
    verdict.rows = sum(s["rows"] for s in manifest["shards"])
    return verdict


def _extra_files(folder: Path, listed: list[dict]) -> list[str]:
    known = {entry["file"] for entry in listed} | {MANIFEST}
    if not any(entry["file"] == STATE for entry in listed):  # an older manifest lists shards only
        known |= {STATE, DATASET_INFO}
    found = {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}
    found = {name for name in found if not name.startswith(PLOTS_DIR)}
    return [f"{folder / name}: not listed in the manifest (extra file)" for name in sorted(found - known)]


def _state_problems(folder: Path, manifest: dict) -> list[str]:
    """``datasets`` loads the shards ``state.json`` names: they must be exactly the manifest's shards."""
    path = folder / STATE
    if not path.is_file():
        return [f"{path}: missing; datasets cannot load the release without it"]
    try:
        names = [f["filename"] for f in json.loads(path.read_text(encoding="utf-8"))["_data_files"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        return [f"{path}: unreadable ({exc})"]
    shards = [s["file"] for s in manifest["shards"]]
    if names != shards:
        return [f"{path}: lists shards {names}, the manifest lists {shards}"]
    return []


def _index_problems(release: Release) -> list[str]:
    """The task index must tile the rows: contiguous ranges from 0, summing to the manifest's rows."""
    where = release.folder / MANIFEST
    problems, next_row, seen_ids = [], 0, set()
    for task in release.tasks:
        if task["first_row"] != next_row:
            problems.append(f"{where}: task {task['task_name']} starts at row {task['first_row']}, expected {next_row}")
        if task["task_id"] in seen_ids:
            problems.append(f"{where}: task_id {task['task_id']} is used by more than one task")
        seen_ids.add(task["task_id"])
        next_row = task["first_row"] + task["rows"]
    total = sum(t["rows"] for t in release.tasks)
    if total != release.manifest["rows"]:
        problems.append(f"{where}: tasks hold {total} rows, the manifest says rows={release.manifest['rows']}")
    shard_total = sum(s["rows"] for s in release.manifest["shards"])
    if shard_total != release.manifest["rows"]:
        problems.append(f"{where}: shards hold {shard_total} rows, the manifest says rows={release.manifest['rows']}")
    for name, source in release.sources.items():
        kept = source.get("rows_kept")
        listed = next((t["rows"] for t in release.tasks if t["task_name"] == name), 0)
        if kept is not None and kept != listed:
            problems.append(f"{where}: source {name} kept {kept} rows, its task holds {listed}")
    return problems


def _row_problems(release: Release) -> list[str]:
    """Each task's row range in the shards holds only that task's name and id."""
    table = pa.concat_tables(read_shard(release.folder / shard["file"]) for shard in release.manifest["shards"])
    problems = []
    for task in release.tasks:
        start, rows = task["first_row"], task["rows"]
        if start + rows > table.num_rows:
            problems.append(f"{release.folder}: task {task['task_name']} rows {start}..{start + rows - 1} "
                            f"lie past the shards' {table.num_rows} rows")  # fmt: skip
            continue
        for column, expected in (("task_name", task["task_name"]), ("task_id", task["task_id"])):
            values = table.column(column).slice(start, rows)
            wrong = pc.sum(pc.not_equal(values, pa.scalar(expected, values.type))).as_py() or 0
            if wrong:
                problems.append(
                    f"{release.folder}: rows {start}..{start + rows - 1} (task {task['task_name']}): "
                    f"{wrong} rows have another {column}"
                )
    return problems
