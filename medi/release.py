"""Reading a release back: its manifest and its rows, for every command that consumes one.

Exports, verify, stats, review and publish all open a release through ``open_release`` so a missing or
foreign manifest is one clear error, everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import datasets

from medi.errors import MediError
from medi.manifest import read_manifest


@dataclass
class Release:
    """A release folder: ``manifest.json`` plus the Arrow shards ``datasets`` saved beside it."""

    folder: Path
    manifest: dict

    @cached_property
    def dataset(self) -> datasets.Dataset:
        try:
            return datasets.load_from_disk(str(self.folder))
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise MediError(f"{self.folder}: cannot load the release's Arrow data ({exc})") from exc

    @property
    def tasks(self) -> list[dict]:
        """``[{task_name, task_id, first_row, rows}]`` in release order (rows are grouped by task)."""
        return self.manifest["tasks"]

    def task_rows(self, task_name: str) -> datasets.Dataset:
        """The contiguous slice of rows of one task (source)."""
        for task in self.tasks:
            if task["task_name"] == task_name:
                return self.dataset.select(range(task["first_row"], task["first_row"] + task["rows"]))
        raise MediError(f"{self.folder}: no task {task_name!r} in this release")

    def iter_tasks(self) -> Iterator[tuple[str, datasets.Dataset]]:
        for task in self.tasks:
            yield task["task_name"], self.task_rows(task["task_name"])


def open_release(folder: Path | str) -> Release:
    """Open a release folder; a missing folder or manifest, or another format version, is a MediError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MediError(f"{folder}: no such release folder")
    return Release(folder, read_manifest(folder))
