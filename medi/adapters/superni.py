"""Super-NaturalInstructions task files: one JSON object per task, ``Instances`` holds input/output rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from medi.adapters import Adapted, RowOrProblem, adapter
from medi.catalog import SourceSpec
from medi.errors import Problem, SourceError
from medi.schema import Record

META_KEYS = ("Definition", "Categories", "Domains", "Source", "Instance License", "Input_language")


def load_task(path: Path, source: str) -> dict:
    """Parse a task file; broken JSON or a missing ``Instances`` list names the file and the line."""
    try:
        task = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SourceError(
            source,
            "malformed_file",
            f"{path}, line {exc.lineno} column {exc.colno}: invalid JSON ({exc.msg})",
            path,
        ) from exc
    except UnicodeDecodeError as exc:
        raise SourceError(source, "malformed_file", f"{path}: not UTF-8 ({exc.reason})", path) from exc
    if not isinstance(task, dict) or not isinstance(task.get("Instances"), list):
        raise SourceError(source, "malformed_file", f"{path}: a Super-NI task needs an `Instances` list", path)
    return task


@adapter("superni")
def read_superni(path: Path, spec: SourceSpec, seed: int) -> Adapted:
    task = load_task(path, spec.name)
    meta = {key: task.get(key) for key in META_KEYS}
    return Adapted(rows=_instances(task["Instances"], str(path), spec.name), meta=meta)


def _instances(instances: list, file: str, source: str) -> Iterator[RowOrProblem]:
    for index, instance in enumerate(instances):
        where = f"Instances[{index}]"
        if not isinstance(instance, dict) or not isinstance(instance.get("input"), str):
            yield Problem(file, where, "an instance needs a string `input`")
            continue
        outputs = instance.get("output", [])
        outputs = [outputs] if isinstance(outputs, str) else outputs
        if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
            yield Problem(file, where, "`output` must be a list of strings")
            continue
        locator = instance.get("id") if isinstance(instance.get("id"), str) else f"i{index}"
        yield Record(row_id=f"{source}:{locator}", query=instance["input"], outputs=tuple(outputs))
