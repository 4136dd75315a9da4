"""Super-NaturalInstructions task files: one JSON object per task, ``Instances`` holds input/output rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from medi.adapters import Adapted, RowOrProblem, adapter, utf8_safe
from medi.catalog import SourceSpec
from medi.errors import Problem, SourceError
from medi.schema import Record

META_KEYS = ("Definition", "Categories", "Domains", "Source", "Instance License", "Input_language")


def load_task(path: Path, source: str) -> dict:
    """Parse a task file; a file that cannot be read or parsed, or lacks an ``Instances`` list, is a SourceError
    naming the file (and the line, where there is one)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(source, "malformed_file", f"{path}: cannot be read ({exc.strerror or exc})", path) from exc
    try:
        task = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SourceError(source, "malformed_file", f"{path}, line {line}: not UTF-8 ({exc.reason})", path) from exc
    except json.JSONDecodeError as exc:
        raise SourceError(
            source,
            "malformed_file",
            f"{path}, line {exc.lineno} column {exc.colno}: invalid JSON ({exc.msg})",
            path,
        ) from exc
    except RecursionError as exc:
        raise SourceError(source, "malformed_file", f"{path}: invalid JSON (nested too deeply)", path) from exc
    if not isinstance(task, dict) or not isinstance(task.get("Instances"), list):
        raise SourceError(source, "malformed_file", f"{path}: a Super-NI task needs an `Instances` list", path)
    for key in META_KEYS:  # read by the build (Source, Categories) and written to the manifest
        value = task.get(key)
        texts = value if isinstance(value, list) else [value]
        if value is not None and not all(isinstance(text, str) for text in texts):
            raise SourceError(source, "malformed_file", f"{path}: `{key}` must be a list of strings", path)
        if not utf8_safe(value):
            raise SourceError(source, "malformed_file", f"{path}: `{key}` holds a lone surrogate (not Unicode)", path)
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
        if not utf8_safe([instance["input"], *outputs]):
            yield Problem(file, where, "a text holds a lone surrogate (a \\ud800-\\udfff escape): not Unicode text")
            continue
        given = instance.get("id")
        locator = given if isinstance(given, str) and utf8_safe(given) else f"i{index}"
        yield Record(row_id=f"{source}:{locator}", query=instance["input"], outputs=tuple(outputs))
