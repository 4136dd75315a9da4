"""Executors (``medi.executors``): one interface for this process, a local process pool and Ray. The pool writes the
serial build's bytes even when a worker process is SIGKILLed mid-source, stops the queued sources when one fails,
hands the largest input out first and gives each worker its share of the cores; ``medi.build`` and the executors
do not import each other in a cycle.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import BAD, DEMO_MIRROR, PROJECT_ROOT, quiet_console

import medi
from medi.build import BuildOptions
from medi.errors import MediError
from medi.executors import executor_name, largest_first
from medi.progress import BuildProgress
from medi.stages.units import Runner

MEDI = PROJECT_ROOT / "medi"


def modules() -> dict[str, Path]:
    """Every module of the medi package by its dotted name."""
    found = {}
    for path in sorted(MEDI.rglob("*.py")):
        parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The medi modules a file imports anywhere in it (module level or inside functions); ``import medi`` is not
    counted: the package's ``__init__`` is the public facade, whose ``medi.build`` loads the build when called."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found.update(name for name in names if name in known and name != "medi")
    return found


def test_every_module_imports_alone_in_a_fresh_interpreter():
    """Each medi module imported first in its own interpreter: an import cycle would fail one of them."""
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    for name in modules():
        if name == "medi.executors.ray":
            pytest.importorskip("ray")
        done = subprocess.run(
            [sys.executable, "-c", code, name], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"import {name} alone: {done.stderr[-2000:]}"


def test_the_build_and_the_executors_import_each_other_in_no_cycle():
    """medi.build asks medi.executors for an executor by name; no executor reaches back to medi.build."""
    found = modules()
    graph = {name: imports_of(path, set(found)) for name, path in found.items()}
    assert "medi.executors" in graph["medi.build"]

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for target in graph[todo.pop()] - seen:
                seen.add(target)
                todo.append(target)
        return seen

    executors = [name for name in found if name.startswith("medi.executors")]
    assert {"medi.executors.serial", "medi.executors.processes", "medi.executors.ray"} <= set(executors)
    for name in executors:
        assert "medi.build" not in reachable(name), f"{name} reaches medi.build"
    assert "medi.ray_engine" not in found  # one module orchestrates Ray workers


def test_the_executor_is_chosen_by_the_options():
    assert executor_name(BuildOptions()) == "serial"
    assert executor_name(BuildOptions(workers=3)) == "processes"
    assert executor_name(BuildOptions(engine="ray", workers=1)) == "ray"


def assert_same_release(expected: Path, found: Path) -> None:
    names = sorted(p.name for p in expected.iterdir())
    assert names == sorted(p.name for p in found.iterdir())
    for name in names:
        assert (expected / name).read_bytes() == (found / name).read_bytes(), f"{name} differs"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


class Reports:
    """Wraps ``BuildProgress.update`` (the driver's view of the workers' progress): records every event, and can
    SIGKILL the worker process that reports a given stage first."""

    def __init__(self, monkeypatch, kill_at: str | None = None):
        self.events: list[tuple[str, str, int | None]] = []
        self.killed: int | None = None
        self.kill_at = kill_at
        real = BuildProgress.update

        def update(progress, source, stage, rows=None, seconds=None, *, worker=None):
            self.events.append((source, stage, worker))
            if stage == self.kill_at and self.killed is None and worker not in (None, os.getpid()):
                self.killed = worker
                os.kill(worker, signal.SIGKILL)
            return real(progress, source, stage, rows, seconds, worker=worker)

        monkeypatch.setattr(BuildProgress, "update", update)

    def started(self) -> list[str]:
        return list(dict.fromkeys(source for source, stage, _ in self.events if stage == "fetch"))


def test_the_pool_survives_a_killed_worker(demo_release, own_cache, monkeypatch, tmp_path):
    """A worker process SIGKILLed by this test when it reports mining a source: the pool breaks, the unfinished
    sources run again in a new pool and the release is the serial build's, byte for byte.

    The driver sees a worker's events a moment late (it polls), and a demo source mines from cached vectors in
    milliseconds, so the kill lands either while that source mines (it is run again, counted against it) or after
    the worker finished it and before it reported the next (nothing is counted: every unfinished source runs in
    the new pool). Both must give the serial bytes."""
    reports = Reports(monkeypatch, kill_at="mine")
    console = quiet_console()
    monkeypatch.delenv("MEDI_HOME", raising=False)
    medi.build("demo", tmp_path / "out", None, BuildOptions(workers=2), cache_dir=own_cache, console=console)
    assert reports.killed is not None, "no worker reported mining"
    assert not alive(reports.killed)
    assert_same_release(demo_release.out, tmp_path / "out")
    rerun = any(stage.startswith("worker died; run again (1/3)") for _, stage, _ in reports.events)
    assert rerun or "a worker process died between sources" in console.file.getvalue()
    assert "[19/19]" in console.file.getvalue()


def big_bad_source(medi_home, folder: Path) -> str:
    """A source larger than every demo file whose third line is not JSON (tests/fixtures/bad/bad_lines.jsonl,
    its good lines repeated after it to make it the largest)."""
    lines = (BAD / "bad_lines.jsonl").read_text(encoding="utf-8").splitlines()
    good = [line for line in lines if isinstance(json_or_none(line), dict)]
    path = folder / "big_bad.jsonl"
    path.write_text("\n".join(lines + good * 4000) + "\n", encoding="utf-8")
    assert path.stat().st_size > max(p.stat().st_size for p in DEMO_MIRROR.rglob("*") if p.is_file())
    medi_home.add_source("tests/big_bad", {"adapter": "st_jsonl", "path": str(path), "symmetric": True})
    medi_home.add_instructions(["tests/big_bad"])
    return "tests/big_bad"


def json_or_none(line: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def test_a_failed_source_cancels_the_queued_ones(medi_home, own_cache, monkeypatch, tmp_path):
    """--on-error fail with two workers: the largest source (handed out first) stops at its bad line; the build
    fails naming the file and line, and the sources still queued never start."""
    name = big_bad_source(medi_home, tmp_path)
    reports = Reports(monkeypatch)
    options = BuildOptions(workers=2, on_error="fail")
    sources = ["demo", name]
    with pytest.raises(MediError, match=r"big_bad\.jsonl.*line 3.*invalid JSON"):
        medi.build(sources, tmp_path / "out", [DEMO_MIRROR], options, cache_dir=own_cache, console=quiet_console())
    started = reports.started()
    assert started[0] == name
    assert len(started) <= 4, f"queued sources started after the failure: {started}"
    assert not (tmp_path / "out").exists()


def test_the_largest_input_is_handed_out_first(medi_home, tmp_path):
    """Sources by input bytes, largest first; equal sizes keep their catalog order."""
    sizes = {"tests/small": 10, "tests/large": 5000, "tests/middle": 300, "tests/middle_too": 300}
    for name, size in sizes.items():
        path = tmp_path / f"{name.split('/')[1]}.jsonl"
        path.write_text(json.dumps(["q" * size, "p"]) + "\n", encoding="utf-8")
        medi_home.add_source(name, {"adapter": "st_jsonl", "path": str(path), "symmetric": True})
    runner = Runner(BuildOptions(), [], tmp_path / "cache")
    specs = [runner.catalog.specs[name] for name in sizes]
    assert [spec.name for spec in largest_first(specs, runner)] == [
        "tests/large", "tests/middle", "tests/middle_too", "tests/small"
    ]  # fmt: skip


def test_a_source_of_several_files_is_sized_by_all_of_them(medi_home, tmp_path):
    """Three 400-character parts (a glob) outweigh one 1,000-character file; each part alone would not."""
    for number in range(3):
        (tmp_path / f"part-{number}.jsonl").write_text(json.dumps(["q" * 400, "p"]) + "\n", encoding="utf-8")
    (tmp_path / "one.jsonl").write_text(json.dumps(["q" * 1000, "p"]) + "\n", encoding="utf-8")
    medi_home.add_source("tests/one", {"adapter": "st_jsonl", "path": str(tmp_path / "one.jsonl"), "symmetric": True})
    medi_home.add_source(
        "tests/parts", {"adapter": "st_jsonl", "path": str(tmp_path / "part-*.jsonl"), "symmetric": True}
    )
    runner = Runner(BuildOptions(), [], tmp_path / "cache")
    specs = [runner.catalog.specs[name] for name in ("tests/one", "tests/parts")]
    assert [spec.name for spec in largest_first(specs, runner)] == ["tests/parts", "tests/one"]


def test_a_serial_build_runs_the_sources_in_the_order_given(make_release, tmp_path):
    """One process gains nothing from largest first: the sources run (and report) in the order the user listed,
    the smaller file first here."""
    small, large = "superni/task1146_country_capital", "superni/task1355_sent_comp_summarization"
    runner = Runner(BuildOptions(), [DEMO_MIRROR], tmp_path / "sizes")
    specs = [runner.catalog.specs[name] for name in (small, large)]
    assert [spec.name for spec in largest_first(specs, runner)] == [large, small]
    log = make_release(f"{small},{large}", tmp_path / "out", [DEMO_MIRROR]).log
    assert log.index(f"[1/2] {small}") < log.index(f"[2/2] {large}")


def test_limit_threads_gives_a_worker_a_share_of_the_cores(tmp_path):
    """``limit_threads(threads_per_worker(N))`` gives a worker cores // N lanes and torch threads (at least one):
    the local pool's workers and Ray actors (their CPUs) both use it; lanes keep the bytes (tests/test_lanes.py)."""
    code = (
        "import sys\nfrom medi.executors import limit_threads, threads_per_worker, cores\n"
        "from medi.lanes import lane_count\n"
        "limit_threads(threads_per_worker(int(sys.argv[1])))\nimport torch\n"
        "assert lane_count() == torch.get_num_threads()\nprint(cores(), torch.get_num_threads())\n"
    )
    for workers in (1, 2, 64):
        done = subprocess.run(
            [sys.executable, "-c", code, str(workers)], capture_output=True, text=True, timeout=300, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        cores, threads = map(int, done.stdout.split())
        assert threads == max(1, cores // workers)
