"""The serial executor: every source in this process, one after another (``--workers 1``)."""

from __future__ import annotations

from medi.catalog import SourceSpec
from medi.executors import outcome_line
from medi.progress import BuildProgress
from medi.stages.units import Runner, SourceOutcome, run_source_safely


class SerialExecutor:
    """Sources run here in turn, with this process's torch threads; an error is raised as it is, so nothing after
    the failed source runs."""

    parallel = False

    def run(self, specs: list[SourceSpec], runner: Runner, progress: BuildProgress) -> list[SourceOutcome]:
        outcomes = []
        for spec in specs:
            outcomes.append(run_source_safely(runner, spec))
            progress.finished(spec.name, outcome_line(outcomes[-1]))
        return outcomes
