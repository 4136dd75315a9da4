"""Executors: who runs each source's stages — this process (``serial``), a local process pool (``processes``) or a
Ray cluster (``ray``). The build asks for one by name (``executor_name``) and gets the outcomes in catalog order;
the release bytes are the same whichever ran.

Every executor shares what lives here: the worker bootstrap (``WorkerSetup``: a runner per worker, torch threads
set to the worker's share of the cores), the error transport (``run_one``: a worker's MediError crosses as text and
is raised again by the driver), the order of work (the largest input first, so a long source does not start last)
and the progress lines. Each executor owns its own retries (a dead worker's source is run again) and cancellation
(a failed source stops the queued ones).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from medi.catalog import SourceSpec
from medi.errors import MediError
from medi.lanes import cores, set_lanes
from medi.progress import BuildProgress
from medi.stages.units import Runner, SourceOutcome, rows_read, run_source_safely

RETRIES = 3  # a source whose worker dies is run again this many times
EXECUTORS = {
    "serial": "medi.executors.serial:SerialExecutor",
    "processes": "medi.executors.processes:ProcessExecutor",
    "ray": "medi.executors.ray:RayExecutor",
}


class Executor(Protocol):
    """Runs every source's stages; returns the outcomes in the order of ``specs``."""

    parallel: bool  # runs several sources at once: it gets them largest first (a serial one in catalog order)

    def run(self, specs: list[SourceSpec], runner: Runner, progress: BuildProgress) -> list[SourceOutcome]: ...


def executor_name(options) -> str:
    """The executor a build's options ask for: ``ray`` for ``--engine ray``, else by ``--workers``."""
    if options.engine == "ray":
        return "ray"
    return "processes" if options.workers > 1 else "serial"


def get_executor(name: str) -> Executor:
    """The executor registered under ``name`` (its module is imported only when asked for: Ray is optional)."""
    if name not in EXECUTORS:
        raise MediError(f"unknown executor {name!r}; known: {', '.join(EXECUTORS)}")
    module, cls = EXECUTORS[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def execute(name: str, specs: list[SourceSpec], runner: Runner, progress: BuildProgress) -> list[SourceOutcome]:
    """Every source by the executor ``name`` (a parallel one gets the largest input first: the longest source does
    not start last; a serial one gains nothing by that and keeps the order the user listed); outcomes in the order
    of ``specs``."""
    if not specs:
        return []
    executor = get_executor(name)
    order = largest_first(specs, runner) if executor.parallel else specs
    outcomes = executor.run(order, runner, progress)
    by_name = {outcome.name: outcome for outcome in outcomes}
    return [by_name[spec.name] for spec in specs]


def largest_first(specs: list[SourceSpec], runner: Runner) -> list[SourceSpec]:
    """``specs`` by input bytes (all of a source's files), largest first (ties and unknown sizes in catalog order):
    the longest source starts first, so the pool does not wait on it at the end."""
    from medi.fetch import local_files

    def size(spec: SourceSpec) -> int:
        try:
            return sum(path.stat().st_size for path in local_files(spec, runner.catalog.root, runner.dirs))
        except OSError:
            return 0  # fetch says what is wrong with it

    sizes = {spec.name: size(spec) for spec in specs}
    return sorted(specs, key=lambda spec: -sizes[spec.name])


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs to build its own runner (JSON-able: it crosses to processes and Ray nodes)."""

    options: dict
    dirs: list[str]
    cache_dir: str
    reuse: bool
    threads: int | None  # lanes and torch threads (a pool worker: its share of the cores; a Ray actor: its CPUs)

    @classmethod
    def of(cls, runner: Runner, threads: int | None) -> WorkerSetup:
        o = runner.options
        dirs = [str(d) for d in runner.dirs]
        return cls(o.model_dump(mode="json"), dirs, str(runner.cache_dir), runner.checkpoints.reuse, threads)

    def runner(self, progress: Callable) -> Runner:
        """Bootstrap a worker: its torch threads, then its runner (catalog, instructions; the encoder lazily)."""
        from medi.options import BuildOptions

        if self.threads:
            limit_threads(self.threads)
        dirs = [Path(d) for d in self.dirs]
        return Runner(BuildOptions(**self.options), dirs, Path(self.cache_dir), reuse=self.reuse, progress=progress)


def threads_per_worker(workers: int) -> int:
    """Each of ``workers`` processes gets an equal share of the cores: N workers do not oversubscribe them."""
    return max(1, cores() // max(1, workers))


def limit_threads(threads: int) -> None:
    """This process works on ``threads`` cores: as many lanes (``medi.lanes``: the encoder's batches and the miner's
    query blocks, each computed single-threaded, so the vectors and scores are the same bits for any count), and
    as many torch threads for torch work outside the lanes (a cross-encoder teacher): set on torch if it is loaded,
    else through the variable torch reads when it loads (a worker that never embeds never imports it)."""
    set_lanes(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)


def run_one(runner: Runner, name: str) -> SourceOutcome:
    """One source's stages in a worker; a MediError crosses back as text (exception classes may not unpickle)."""
    try:
        return run_source_safely(runner, runner.catalog.specs[name])
    except MediError as exc:
        return SourceOutcome(name, error=str(exc))


def outcome_line(outcome: SourceOutcome) -> str:
    """What a finished source read, sampled and kept (the progress line)."""
    if outcome.skipped:
        return f"skipped ({outcome.skipped['reason']})"
    info = outcome.infos.get("sample", {})
    kept = outcome.infos.get("mine", {}).get("kept", 0)  # rows out of the last stage: what the release gets
    line = f"read {rows_read(info):,}, sampled {info.get('sample', {}).get('sampled', 0):,}, kept {kept:,}"
    return line + (f"; {problems_said(info)}" if info.get("problem_count") else "")


def problems_said(counts: dict) -> str:
    """``N problem(s): what they cost`` from a sample report or a manifest source (the same keys)."""
    lost = counts.get("rows_lost") or {}
    costs = [f"{lost['malformed_row']:,} bad rows skipped"] if lost.get("malformed_row") else []
    costs += [f"{lost['unreadable']:,} unreadable rows lost"] if lost.get("unreadable") else []
    costs += ["the rest of the file lost (its row count is not knowable)"] if counts.get("rest_lost") else []
    return f"{counts['problem_count']} problem(s): {', '.join(costs) or 'no rows lost'}"
