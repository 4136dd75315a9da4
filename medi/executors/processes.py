"""The local process pool (``--workers N``): one source at a time per worker process, the largest first; a worker
whose source is read in splits (``medi.stages.splits``) gets the idle workers' help, before any queued source.

Workers are spawned (a clean interpreter: no torch or faiss state forked) and each holds one runner, with its
share of the cores (``limit_threads``: lanes and torch threads). A failed source cancels the queued ones and stops
the running ones (the build fails anyway: their work would be thrown away). A worker process that dies (killed, out
of memory) breaks the pool: a new pool runs every unfinished source again, the stages they had finished reused from
the store; a source whose worker died ``RETRIES + 1`` times fails the build.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from queue import Empty

from medi.catalog import SourceSpec
from medi.errors import MediError
from medi.executors import RETRIES, WorkerSetup, outcome_line, run_one, threads_per_worker
from medi.progress import BuildProgress
from medi.stages.splits import SPLITS_EVENT
from medi.stages.units import Runner, SourceOutcome, help_sample

POLL_SECONDS = 0.2


class ProcessExecutor:
    parallel = True

    def run(self, specs: list[SourceSpec], runner: Runner, progress: BuildProgress) -> list[SourceOutcome]:
        workers = runner.options.workers  # not capped by the sources: idle workers read a large one's splits
        # each worker its share of the cores: N workers do not oversubscribe them, and lanes keep the bytes
        setup = WorkerSetup.of(runner, threads_per_worker(workers))
        done: dict[str, SourceOutcome] = {}
        deaths: Counter = Counter()
        while unfinished := [spec.name for spec in specs if spec.name not in done]:
            running = _Round(setup, workers, progress).run(unfinished, done)
            if not running:
                continue
            deaths.update(running)
            if worst := [name for name in running if deaths[name] > RETRIES]:
                raise MediError(f"{worst[0]}: its worker process died {deaths[worst[0]]} times")
            for name in running:
                progress.update(name, f"worker died; run again ({deaths[name]}/{RETRIES})")
        return [done[spec.name] for spec in specs]


class _Round:
    """One pool over ``names``: fills ``done``; returns [] when every source finished, or the sources that were
    running when a worker died (the pool is broken then, every unfinished source is run again by the next round)."""

    def __init__(self, setup: WorkerSetup, workers: int, progress: BuildProgress):
        self.setup, self.workers, self.progress = setup, workers, progress
        self.context = multiprocessing.get_context("spawn")
        self.events = self.context.Queue()
        self.started: dict[str, int] = {}  # source -> the worker pid running it

    def run(self, names: list[str], done: dict[str, SourceOutcome]) -> list[str]:
        slots = self.workers  # more than the sources: the idle ones help read a large source's splits
        pool = ProcessPoolExecutor(
            slots, mp_context=self.context, initializer=_start_worker, initargs=(self.setup, self.events)
        )
        broken = False
        for _ in range(slots - min(slots, len(names))):  # start the idle workers now: ready when a split needs them
            pool.submit(_ready)
        self.waiting: list[tuple] = [(_work, name) for name in names]  # handed out as workers free up
        futures: dict[Future, str | None] = {}  # -> the source it runs (None: help with another's splits)
        try:
            while self.waiting or futures:
                while self.waiting and len(futures) < slots:
                    task, argument = self.waiting.pop(0)
                    futures[pool.submit(task, argument)] = argument if task is _work else None
                finished, _ = wait(list(futures), timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                self._drain()
                for future in finished:
                    name = futures.pop(future)
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        broken = True
                        return self._lost(names, done)
                    if name is not None:
                        self._finished(name, outcome, done)
            self._drain()
            return []
        finally:
            _stop(pool, graceful=not broken and all(name in done for name in names))

    def _finished(self, name: str, outcome: SourceOutcome, done: dict[str, SourceOutcome]) -> None:
        if outcome.error:
            raise MediError(outcome.error)
        done[name] = outcome
        self.started.pop(name, None)
        self.progress.finished(name, outcome_line(outcome))

    def _lost(self, names: list[str], done: dict[str, SourceOutcome]) -> list[str]:
        """The sources a dead worker may have been running: every started, unfinished one; none when it died
        between sources (each source started in this round had finished: the next round runs the rest)."""
        self._drain()
        running = [name for name in names if name in self.started and name not in done]
        if running:
            return running
        if not any(name in done for name in names):  # nothing ever ran: a new pool would die the same way
            raise MediError("a worker process died before it ran any source (see the messages above)")
        self.progress.console.print("a worker process died between sources: the unfinished ones run in a new pool")
        return []

    def _drain(self) -> None:
        while True:
            try:
                pid, source, stage, *rest = self.events.get_nowait()
            except Empty:
                return
            if source == SPLITS_EVENT:  # help first: the other workers read its splits before queued sources
                self.waiting[:0] = [(_help, stage)] * (self.workers - 1)
                continue
            self.started.setdefault(source, pid)
            self.progress.update(source, stage, *rest, worker=pid)


def _stop(pool: ProcessPoolExecutor, graceful: bool) -> None:
    """Shut the pool down; unless every source finished, cancel the queued work and end the running workers."""
    if graceful:
        pool.shutdown(wait=True)
        return
    processes = list((pool._processes or {}).values())  # no public way to end running work before Python 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join()


# --- inside the workers --------------------------------------------------------------------------------------

_RUNNER = None


def _start_worker(setup: WorkerSetup, events) -> None:
    global _RUNNER
    pid = os.getpid()
    _RUNNER = setup.runner(lambda *event: events.put((pid, *event)))
    _RUNNER.share_splits = lambda job: events.put((pid, SPLITS_EVENT, job))


def _ready() -> None:
    """Nothing: a worker started (its runner loaded) before any work needs it."""


def _work(name: str) -> SourceOutcome:
    return run_one(_RUNNER, name)


def _help(job: dict) -> str | None:
    return help_sample(_RUNNER, job)
