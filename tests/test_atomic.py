"""Files medi writes in place go through one helper (``medi.atomic``): written whole under a temporary name, flushed,
renamed over the target, the folder flushed. A failed write leaves the old file and no temporary; the files get the
permissions the umask gives (``mkstemp`` made stage outputs and downloads private to their writer, which a stage store
shared by several users or nodes cannot read)."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pyarrow as pa
import pytest
from support import PROJECT_ROOT

from medi.atomic import atomic_path, atomic_write, write_text
from medi.stages.checkpoint import Checkpoints

# where a rename is not a file written in place: finished outputs swapped into place after fsync_tree (outdir), and
# files renamed inside a staging folder that install flushes whole (the shard writer, the release's data folder)
RENAMES_ALLOWED = {"atomic.py", "outdir.py", "shard.py", "build.py"}


def umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def in_place_writes(path: Path) -> list[str]:
    """Calls in ``path`` that write a file in place by hand: a temporary file, a rename or replace, an fsync."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
        name = node.func.attr
        by_module = (owner, name) in {("os", "replace"), ("os", "rename"), ("os", "fsync"), ("tempfile", "mkstemp")}
        path_method = owner not in ("os", "tempfile") and name in ("replace", "rename") and len(node.args) == 1
        if by_module or (path_method and not node.keywords):
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node.func)}")
    return found


def test_every_file_written_in_place_goes_through_medi_atomic():
    modules = sorted((PROJECT_ROOT / "medi").rglob("*.py"))
    found = [hit for path in modules if path.name not in RENAMES_ALLOWED for hit in in_place_writes(path)]
    assert found == []
    assert in_place_writes(PROJECT_ROOT / "medi" / "atomic.py")  # the scan does see the helper's own calls


def test_a_write_is_whole_or_not_at_all(tmp_path):
    target = tmp_path / "file.txt"
    write_text(target, "first\n")
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write("half of the second")
        raise RuntimeError("the writer fails half-way")
    assert target.read_text() == "first\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]  # no temporary left behind
    with atomic_path(target) as partial:
        assert partial.parent == target.parent and partial.name.startswith(".file.txt.")
        partial.write_text("second\n")
        assert target.read_text() == "first\n"  # nothing visible until the block ends
    assert target.read_text() == "second\n" and sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_files_get_the_umask_permissions(tmp_path):
    expected = 0o666 & ~umask()
    write_text(tmp_path / "text.json", "{}")
    checkpoints = Checkpoints(tmp_path / "stages")
    schema = pa.schema([("text", pa.string())])
    batch = pa.record_batch([["a"]], schema=schema)
    output = checkpoints.run("stage", "src", "key", schema, lambda write: write(batch) or {})
    for path in (tmp_path / "text.json", output.path, output.path.with_suffix(".json")):
        assert path.stat().st_mode & 0o777 == expected, path
    assert output.table().column("text").to_pylist() == ["a"]
