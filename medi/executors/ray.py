"""The Ray executor (``medi build --engine ray``): every source's stages on a Ray cluster, the release written here.

The driver (this process) hands sources out, one at a time, to a pool of worker actors; each actor holds one
``medi.stages.units.Runner`` — catalog, instructions, evaluation sets and the encoder, loaded once per actor — and runs
``run_source_safely`` exactly as the local executors do, so a source makes the same embed calls with the same
batches. Stage outputs land under the cache dir, keyed by content; the driver then streams them into shards with
the local engine's own code (``medi.build``), so the release bytes are the local engine's. Sources are handed out
the largest first; a failed source stops the build, so the queued ones never run.

An actor asks Ray for one GPU when the cluster has GPUs (and ``--device`` is not ``cpu``), else for CPUs (torch in
an actor uses as many threads as CPUs it was given). A worker process killed mid-source is restarted by Ray and the
source run again (``max_restarts`` / ``max_task_retries``); the stages it had finished are reused. Every node must
see the same paths: medi's code, catalog and instructions (checked), the data dirs and the cache dir (checked: the
cache dir must be storage every node shares — stage outputs and embeddings are exchanged through it).
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from pathlib import Path

from medi.catalog import SourceSpec
from medi.errors import MediError
from medi.executors import RETRIES, WorkerSetup, outcome_line, run_one
from medi.progress import BuildProgress
from medi.stages.splits import SPLITS_EVENT
from medi.stages.units import Runner, SourceOutcome, help_sample

POLL_SECONDS = 0.5
# forwarded to the workers of a cluster this build connects to (a local instance inherits the environment);
# credentials (HF_TOKEN) are not: each node uses its own
FORWARDED_ENV = ("MEDI_HOME", "MEDI_CACHE", "HF_HUB_OFFLINE", "HF_HOME", "HF_ENDPOINT", "TRANSFORMERS_OFFLINE")


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise MediError("--engine ray needs Ray: pip install 'medi[ray]' (or use the default --engine local)") from exc
    return ray


class RayExecutor:
    parallel = True

    def run(self, specs: list[SourceSpec], runner: Runner, progress: BuildProgress) -> list[SourceOutcome]:
        """Every source's stages on the Ray cluster at ``options.ray_address`` (or the Ray session this process
        already has, or a new local one)."""
        ray = import_ray()
        started_here = _connect(ray, runner.options.ray_address)
        try:
            return _run(ray, specs, runner, progress)
        finally:
            if started_here:
                ray.shutdown()


def _connect(ray, address: str | None) -> bool:
    """Connect (or start a local instance); False when this process already had a Ray session (tests, notebooks)."""
    if address:
        _reachable(address)
    if ray.is_initialized():
        return False
    env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
    try:
        ray.init(address=address, logging_level="error", runtime_env={"env_vars": env} if env else None)
    except ConnectionError as exc:
        raise MediError(f"--ray-address {address}: no Ray cluster answered ({exc})") from exc
    return True


def _reachable(address: str) -> None:
    """Fail fast on a head node that does not answer: Ray itself retries for minutes before giving up."""
    if "://" in address or ":" not in address:  # ray:// (Ray Client), auto, local: Ray's own resolution
        return
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except (OSError, ValueError) as exc:
        raise MediError(
            f"--ray-address {address}: no Ray head answers there ({exc}); start one with "
            f"`ray start --head --port {port}` or give its address"
        ) from exc


def _run(ray, specs: list[SourceSpec], runner: Runner, progress: BuildProgress) -> list[SourceOutcome]:
    if not specs:
        return []
    wanted = runner.options.workers  # more actors than sources: the idle ones read a large source's splits
    workers, cpus, gpus = plan_workers(ray.nodes(), wanted, runner.options.device != "cpu")
    probe = _probe_file(runner.cache_dir)
    sink_name = f"medi-progress-{uuid.uuid4().hex}"  # workers find it by name: no actor handle in their arguments
    sink = ray.remote(ProgressSink).options(name=sink_name, num_cpus=0).remote()
    actor = ray.remote(SourceWorker).options(
        num_cpus=cpus, num_gpus=gpus, max_restarts=RETRIES, max_task_retries=RETRIES
    )
    o = runner.options
    pool = [actor.remote(WorkerSetup.of(runner, cpus), sink_name) for _ in range(workers)]
    try:
        nodes = _check_workers(ray, pool, runner, probe)
        kind = "1 GPU" if gpus else f"{cpus} CPU{'s' if cpus > 1 else ''}"
        address = o.ray_address or ray.get_runtime_context().gcs_address
        progress.console.print(
            f"engine ray: {workers} worker{'s' if workers > 1 else ''} ({kind} each) on {nodes} "
            f"node{'s' if nodes > 1 else ''}, cluster {address}",
            highlight=False,
        )
        return _schedule(ray, specs, pool, sink, progress)
    finally:
        for handle in pool:
            ray.kill(handle)
        ray.kill(sink)
        probe.unlink(missing_ok=True)


def plan_workers(nodes: list[dict], wanted: int, use_gpus: bool) -> tuple[int, int, int]:
    """(actors, CPUs per actor, GPUs per actor) for ``wanted`` workers on the cluster's alive nodes.

    With GPUs: at most one actor per GPU, each with 1 GPU. CPUs per actor: the most that still lets every actor
    fit on some node (an actor that fits nowhere would wait forever).
    """
    alive = [n["Resources"] for n in nodes if n.get("Alive", True)]
    gpu_slots = sum(int(r.get("GPU", 0)) for r in alive) if use_gpus else 0
    cpu_total = sum(int(r.get("CPU", 0)) for r in alive)
    actors = max(1, min(wanted, gpu_slots or cpu_total or 1))
    for cpus in range(max((int(r.get("CPU", 0)) for r in alive), default=1), 0, -1):
        fits = sum(min(int(r.get("CPU", 0)) // cpus, int(r.get("GPU", 0)) if gpu_slots else 1 << 30) for r in alive)
        if fits >= actors:
            return actors, cpus, 1 if gpu_slots else 0
    return actors, 1, 1 if gpu_slots else 0


def _probe_file(cache_dir: Path) -> Path:
    """A file every worker must see in the cache dir: proof that it is storage the nodes share."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    probe = cache_dir / f".ray-probe-{uuid.uuid4().hex}"
    probe.write_text(socket.gethostname(), encoding="utf-8")
    return probe


def _check_workers(ray, pool, runner: Runner, probe: Path) -> int:
    """Every worker runs the driver's medi code and catalog and sees its data and cache dirs; the node count."""
    expected = _fingerprints(runner.catalog.root)
    seen_nodes = set()
    for found in ray.get([handle.hello.remote(str(probe)) for handle in pool]):
        node = found["node"]
        seen_nodes.add(node)
        if found["code"] != expected["code"]:
            raise MediError(
                f"Ray node {node} runs other medi code ({found['package']}, fingerprint {found['code']}) than this "
                f"driver ({expected['package']}, {expected['code']}): install one medi on every node"
            )
        if found["content"] != expected["content"]:
            raise MediError(
                f"Ray node {node}: its catalog and instructions ({found['root']}) differ from this driver's "
                f"({runner.catalog.root}); every node needs the same sources/ and instructions/ (MEDI_HOME)"
            )
        if found["missing_dirs"]:
            raise MediError(f"Ray node {node} does not see the data dirs {found['missing_dirs']}: use shared storage")
        if not found["sees_cache"]:
            raise MediError(
                f"Ray node {node} does not see this build's cache dir {runner.cache_dir}: --cache-dir must be "
                "storage every node shares (stage outputs and embeddings are exchanged through it)"
            )
    return len(seen_nodes)


def _fingerprints(root: Path) -> dict:
    import medi
    from medi.stages.checkpoint import code_fingerprint

    digest = hashlib.sha256()
    for folder in ("sources", "instructions"):
        for path in sorted((root / folder).rglob("*.yaml")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return {"code": code_fingerprint(), "package": str(Path(medi.__file__).parent), "content": digest.hexdigest()}


def _schedule(ray, specs, pool, sink, progress: BuildProgress) -> list[SourceOutcome]:
    """One source at a time per worker, in the order of ``specs``; progress drained from the workers as they report.
    A failed source raises here: the queued sources are never handed out, the running ones end with the pool."""
    waiting = list(specs)
    idle = list(pool)
    running: dict = {}  # object ref -> (source name, worker); name None: help with another source's splits
    done: dict[str, SourceOutcome] = {}
    pace = Pace(len(pool))
    while waiting or running:
        while idle and waiting:
            handle, name = idle.pop(0), waiting.pop(0).name
            running[handle.run.remote(name)] = (name, handle)
        ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_SECONDS)
        for pid, source, *event in ray.get(sink.drain.remote()):
            if source == SPLITS_EVENT:  # a worker reads a source in splits: the idle ones help, queued work waits
                running.update({handle.help.remote(event[0]): (None, handle) for handle in idle})
                idle.clear()
                continue
            progress.update(source, *event, worker=pid)
        for ref in ready:
            name, handle = running.pop(ref)
            idle.append(handle)
            if name is None:
                continue  # a helper's failure shows in the source's worker, which reads that split again
            outcome, encoded = _result(ray, ref, name)
            if outcome.error:
                raise MediError(outcome.error)
            done[name] = outcome
            progress.finished(name, f"{outcome_line(outcome)}; {pace.add(outcome, encoded)}")
    return [done[spec.name] for spec in specs]


def _result(ray, ref, name: str) -> tuple[SourceOutcome, int]:
    try:
        return ray.get(ref)
    except ray.exceptions.RayActorError as exc:
        raise MediError(f"{name}: its Ray worker died {RETRIES + 1} times; last: {exc}") from exc


class Pace:
    """Rows mined and texts embedded per second across the pool, since the build started."""

    def __init__(self, workers: int):
        self.workers = workers
        self.started = time.perf_counter()
        self.rows = self.texts = 0

    def add(self, outcome: SourceOutcome, encoded: int) -> str:
        self.rows += outcome.infos.get("mine", {}).get("kept", 0)
        self.texts += encoded
        seconds = max(time.perf_counter() - self.started, 1e-9)
        return (
            f"pool of {self.workers}: {self.rows:,} rows ({self.rows / seconds:,.0f}/s), "
            f"{self.texts:,} texts embedded ({self.texts / seconds:,.0f}/s)"
        )


# --- inside the workers --------------------------------------------------------------------------------------


class ProgressSink:
    """Progress events from the workers, drained by the driver (an actor: workers on any node reach it)."""

    def __init__(self):
        self.events: list[tuple] = []

    def report(self, *event) -> None:
        self.events.append(event)

    def drain(self) -> list[tuple]:
        events, self.events = self.events, []
        return events


class SourceWorker:
    """A Ray actor holding one Runner: sources run here one at a time, as ``run_source_safely`` runs them locally."""

    def __init__(self, setup: WorkerSetup, sink_name: str):
        import ray

        self.sink = ray.get_actor(sink_name)
        self.pid = os.getpid()
        self.runner = setup.runner(self._report)
        self.runner.share_splits = lambda job: self.sink.report.remote(self.pid, SPLITS_EVENT, job)

    def _report(self, *event) -> None:
        self.sink.report.remote(self.pid, *event)  # fire and forget: progress never waits on the driver

    def hello(self, probe: str) -> dict:
        return {
            "node": socket.gethostname(),
            "root": str(self.runner.catalog.root),
            **_fingerprints(self.runner.catalog.root),
            "missing_dirs": [str(d) for d in self.runner.dirs if not d.is_dir()],
            "sees_cache": Path(probe).is_file(),
        }

    def run(self, name: str) -> tuple[SourceOutcome, int]:
        """The source's outcome and how many texts the encoder embedded for it (0 when all were cached)."""
        before = self._encoded()
        outcome = run_one(self.runner, name)
        return outcome, self._encoded() - before

    def help(self, job: dict) -> str | None:
        """Read the unclaimed splits of a source another worker runs."""
        return help_sample(self.runner, job)

    def _encoded(self) -> int:
        encoder = self.runner._encoder  # not the property: asking must not load an encoder
        return encoder.texts_encoded if encoder is not None else 0
