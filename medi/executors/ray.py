"""The Ray executor (``medi build --engine ray``): every source's stages on a Ray cluster, the release written here.

A build runs in three passes. First, CPU actors (``SourceWorker``, one ``medi.stages.units.Runner`` each: catalog,
instructions, evaluation sets, loaded once per actor) run each source's stages up to the mine stage — sample, clean,
select — and write the texts its mine stage will embed and the cache lacks (``medi.stages.embed``) as a request file.
Second, one Ray Data pipeline embeds every source's requests on one shared pool of actors (``map_batches`` with an
``ActorPoolStrategy``, one GPU per actor when the cluster has GPUs and ``--device`` is not ``cpu``), sorted by
length so the encoder's fixed-shape batches fill; each actor stores its vectors in the shared embedding cache. So
GPUs only embed. Third, the CPU actors run each source's whole pipeline (``run_source_safely``): the first stages
are reused, the mine stage finds every vector in the cache and encodes nothing. A vector is a function of its text
alone (fixed-shape batches), whichever process encodes it with whatever batch-mates, so the release bytes are the
local engine's: the driver streams the stage outputs into shards with the local engine's own code (``medi.build``).

Sources are handed out the largest first; a failed source stops the build, so the queued ones never run; a failed
pool stops it too. A worker process killed mid-source is restarted by Ray and the source run again
(``max_restarts`` / ``max_task_retries``); the stages it had finished are reused. Every node must see the same
paths: medi's code, catalog and instructions (checked), the data dirs and the cache dir (checked: the cache dir must
be storage every node shares — stage outputs, requests and embeddings are exchanged through it).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from medi.catalog import SourceSpec
from medi.encode import SHAPE_ROWS
from medi.errors import MediError, SourceError
from medi.executors import RETRIES, WorkerSetup, outcome_line, run_one
from medi.progress import BuildProgress
from medi.stages.checkpoint import Checkpoints
from medi.stages.splits import SPLITS_EVENT
from medi.stages.units import MINE, PIPELINE, Runner, SourceOutcome, help_sample, run_source

POLL_SECONDS = 0.5
BEFORE_MINE = tuple(stage for stage in PIPELINE if stage is not MINE)  # the first pass: CPU work only
REQUESTS_DIR = "embed-requests"  # under the cache dir: one folder per build, removed when the pool is done
POOL_BATCH = 4096  # texts per pool batch at most (fewer when the pool would otherwise idle)
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

    def __init__(self):
        self.pool = PoolReport()  # what the embedding pool did in the last build

    def run(self, specs: list[SourceSpec], runner: Runner, progress: BuildProgress) -> list[SourceOutcome]:
        """Every source's stages on the Ray cluster at ``options.ray_address`` (or the Ray session this process
        already has, or a new local one)."""
        ray = import_ray()
        started_here = _connect(ray, runner.options.ray_address)
        self.pool = PoolReport()
        try:
            return _run(ray, specs, runner, progress, self.pool)
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


@dataclass
class PoolReport:
    """What the embedding pool did, and what the source workers encoded besides (the numbers of the console
    lines; ``RayExecutor.pool`` keeps the last build's)."""

    texts: int = 0  # texts sent to the pool: those the cache lacked, once per source (a text two sources share: twice)
    encoded: int = 0  # texts the pool's model encoded (each distinct text once)
    batches: int = 0
    actors: int = 0
    seconds: float = 0.0  # from the pipeline's start (reading and sorting the requests included) to its end
    before_pool: int = 0  # texts the source workers encoded before the pool (the audit, a diverse select)
    after_pool: int = 0  # texts the source workers encoded while mining: 0 when the pool embedded every one

    def line(self, kind: str) -> str:
        if not self.texts:
            return "engine ray: embedding pool: nothing to embed (every text the mine stages need is cached)"
        rate = self.encoded / max(self.seconds, 1e-9)
        return (
            f"engine ray: embedding pool encoded {self.encoded:,} texts ({self.texts:,} requested) in "
            f"{self.batches:,} batches on {self.actors} actor{'s' if self.actors > 1 else ''} ({kind} each), "
            f"{rate:,.0f} texts/s"
        )

    def workers_line(self) -> str:
        return (
            f"engine ray: source workers encoded {self.before_pool:,} texts before the pool (audit, diverse select) "
            f"and {self.after_pool:,} while mining"
        )


def _run(ray, specs: list[SourceSpec], runner: Runner, progress: BuildProgress, pool: PoolReport):
    if not specs:
        return []
    o = runner.options
    wanted = o.workers  # more actors than sources: the idle ones read a large source's splits
    workers, cpus, _ = plan_workers(ray.nodes(), wanted, use_gpus=False)  # CPU work only: GPUs are the pool's
    probe = _probe_file(runner.cache_dir)
    sink_name = f"medi-progress-{uuid.uuid4().hex}"  # workers find it by name: no actor handle in their arguments
    sink = ray.remote(ProgressSink).options(name=sink_name, num_cpus=0).remote()
    actor = ray.remote(SourceWorker).options(num_cpus=cpus, max_restarts=RETRIES, max_task_retries=RETRIES)
    setup = WorkerSetup.of(runner, cpus)
    scratch = runner.cache_dir / REQUESTS_DIR / uuid.uuid4().hex
    handles = [actor.remote(setup, sink_name) for _ in range(workers)]
    try:
        nodes = _check_workers(ray, handles, runner, probe)
        kind = f"{cpus} CPU{'s' if cpus > 1 else ''}"
        address = o.ray_address or ray.get_runtime_context().gcs_address
        progress.console.print(
            f"engine ray: {workers} worker{'s' if workers > 1 else ''} ({kind} each) on {nodes} "
            f"node{'s' if nodes > 1 else ''}, cluster {address}",
            highlight=False,
        )
        first = _schedule(ray, specs, handles, sink, progress, partial_call("prepare", str(scratch)),
                          partial(_prepared, progress))  # fmt: skip
        _kill(ray, handles)  # their CPUs go to the pool
        pool.before_pool = sum(encoded for _, _, encoded in first.values())
        _embed_pool(ray, [Path(r["path"]) for _, r, _ in first.values() if r and r["texts"]], runner, pool, progress)
        _remove(scratch)
        left = [spec for spec in specs if not first[spec.name][0].skipped]
        handles = [actor.remote(setup, sink_name, True) for _ in range(min(workers, len(left)))]
        finished = partial(_finished, progress, Pace(len(handles)))
        last = _schedule(ray, left, handles, sink, progress, partial_call("run"), finished)
        pool.after_pool = sum(encoded for _, encoded in last.values())
        progress.console.print(pool.workers_line(), highlight=False)
        return [_joined(first[spec.name][0], last.get(spec.name, (None,))[0]) for spec in specs]
    finally:
        _kill(ray, handles)
        ray.kill(sink)
        probe.unlink(missing_ok=True)
        _remove(scratch)


def partial_call(method: str, *args) -> Callable:
    """The remote call a scheduled source makes on its worker: ``handle.<method>.remote(name, *args)``."""
    return lambda handle, name: getattr(handle, method).remote(name, *args)


def _prepared(progress: BuildProgress, name: str, result: tuple) -> None:
    """A source's first pass ended: skipped (done), or its requests written for the pool."""
    outcome, request, _ = result
    if outcome.skipped:
        progress.finished(name, outcome_line(outcome))
    else:
        progress.update(name, f"waiting for the embedding pool ({request['texts']:,} texts)")


def _finished(progress: BuildProgress, pace: Pace, name: str, result: tuple) -> None:
    outcome, encoded = result
    progress.finished(name, f"{outcome_line(outcome)}; {pace.add(outcome, encoded)}")


def _joined(first: SourceOutcome, last: SourceOutcome | None) -> SourceOutcome:
    """The source's outcome: the second pass's, with the stages the first pass reused (the second reuses them
    all: they were computed a moment ago, not resumed)."""
    if last is None:
        return first
    own = [stage for stage in last.reused if stage not in {s.name for s in BEFORE_MINE}]
    last.reused = first.reused + own
    return last


def _kill(ray, handles: list) -> None:
    for handle in handles:
        ray.kill(handle)
    handles.clear()


def _remove(scratch: Path) -> None:
    """The build's request files, and their parent folder once no other build's are there."""
    shutil.rmtree(scratch, ignore_errors=True)
    with contextlib.suppress(OSError):  # another build's requests are there (or it is gone already)
        scratch.parent.rmdir()


def _embed_pool(ray, requests: list[Path], runner: Runner, pool: PoolReport, progress: BuildProgress) -> None:
    """Every request file's texts embedded into the shared cache by one Ray Data pipeline on a pool of actors."""
    if not requests:
        progress.console.print(pool.line(""), highlight=False)
        return
    data = import_ray_data()
    context = data.DataContext.get_current()
    context.enable_progress_bars = False  # the build's own progress lines say what runs
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its start and finish lines, the progress bar note
    use_gpus = runner.options.device != "cpu"
    nodes = ray.nodes()
    gpus_total = sum(int(n["Resources"].get("GPU", 0)) for n in nodes if n.get("Alive", True)) if use_gpus else 0
    actors, cpus, gpus = plan_workers(nodes, gpus_total or runner.options.workers, use_gpus)
    started = time.perf_counter()
    files = data.from_items([{"path": str(path)} for path in requests])
    read = files.map_batches(read_requests, batch_size=1, batch_format="pyarrow")
    # sorted by length, so a pool batch spans few length buckets and the encoder's fixed-shape batches fill; then
    # by text, so the copies of a text (two sources', or one source's met far apart) are mostly in one batch, where
    # embed_many encodes it once
    texts = read.sort(["length", "text"], descending=True).materialize()
    total = texts.count()
    rows = max(SHAPE_ROWS, min(POOL_BATCH, -(-total // (actors * 4))))
    actors = min(actors, -(-total // rows))
    counts = texts.map_batches(
        EmbedBatches,
        fn_constructor_args=(WorkerSetup.of(runner, cpus),),
        batch_size=rows,
        batch_format="pyarrow",
        compute=data.ActorPoolStrategy(size=actors),
        num_cpus=cpus,
        num_gpus=gpus,
    )
    try:
        for batch in counts.iter_batches(batch_size=None, batch_format="pyarrow"):
            for error in batch.column("error").to_pylist():
                if error:
                    raise MediError(error)
            pool.texts += sum(batch.column("texts").to_pylist())
            pool.encoded += sum(batch.column("encoded").to_pylist())
            pool.batches += batch.num_rows
    except MediError:
        raise
    except Exception as exc:  # the pipeline itself failed (an actor that cannot start, a lost node): say so
        raise MediError(f"the embedding pool failed ({total:,} texts): {_cause(exc)}") from exc
    pool.actors, pool.seconds = actors, time.perf_counter() - started
    progress.console.print(pool.line("1 GPU" if gpus else f"{cpus} CPU{'s' if cpus > 1 else ''}"), highlight=False)


def read_requests(batch) -> Iterator:
    """The rows of request files (a CPU task), in Arrow tables of at most ``POOL_BATCH`` rows. Not
    ``ray.data.read_parquet``: its path resolution imports fsspec's HTTP file system, which fails without aiohttp."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in batch.column("path").to_pylist():
        for part in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=POOL_BATCH):
            yield pa.Table.from_batches([part])


def import_ray_data():
    try:
        import ray.data
    except ImportError as exc:
        raise MediError("--engine ray embeds on a Ray Data pool: pip install 'ray[data]' (or 'medi[ray]')") from exc
    return ray.data


def _cause(exc: BaseException) -> str:
    """The innermost cause of a Ray error, in one line (Ray's own text holds the remote traceback)."""
    while (inner := getattr(exc, "cause", None) or exc.__cause__) is not None and inner is not exc:
        exc = inner
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"


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


def _schedule(ray, specs, pool, sink, progress: BuildProgress, call: Callable, done: Callable) -> dict:
    """One source at a time per worker (``call(handle, name)``), in the order of ``specs``; progress drained from
    the workers as they report; ``done(name, result)`` as each ends. {name: result}. A failed source raises here:
    the queued sources are never handed out, the running ones end with the pool."""
    waiting = list(specs)
    idle = list(pool)
    running: dict = {}  # object ref -> (source name, worker); name None: help with another source's splits
    results: dict = {}
    while waiting or running:
        while idle and waiting:
            handle, name = idle.pop(0), waiting.pop(0).name
            running[call(handle, name)] = (name, handle)
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
            result = _result(ray, ref, name)
            if result[0].error:
                raise MediError(result[0].error)
            results[name] = result
            done(name, result)
    return results


def _result(ray, ref, name: str) -> tuple:
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
    """A Ray actor holding one Runner: sources run here one at a time, as ``run_source_safely`` runs them locally
    (``prepare``: the stages before mine, and the mine stage's requests for the pool)."""

    def __init__(self, setup: WorkerSetup, sink_name: str, second_pass: bool = False):
        import ray

        self.sink = ray.get_actor(sink_name)
        self.pid = os.getpid()
        self.runner = setup.runner(self._report)
        self.runner.share_splits = lambda job: self.sink.report.remote(self.pid, SPLITS_EVENT, job)
        if second_pass and not self.runner.checkpoints.reuse:
            self.runner.checkpoints = FirstPassReused(self.runner.checkpoints.root)

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

    def prepare(self, name: str, folder: str) -> tuple[SourceOutcome, dict | None, int]:
        """The source's stages before mine, then the texts its mine stage will embed and the cache lacks written
        to a request file in ``folder``: (outcome, {"path", "texts", "cached", ...} or None, texts encoded here)."""
        from medi.stages.embed import write_requests

        before = self._encoded()
        runner, spec = self.runner, self.runner.catalog.specs[name]
        try:
            outcome = run_source(runner, spec, BEFORE_MINE)
            path = Path(folder) / f"{hashlib.sha256(name.encode()).hexdigest()[:24]}.parquet"
            request = {"path": str(path), **write_requests(runner, spec, Path(outcome.outputs["select"]), path)}
        except SourceError as exc:  # as run_source_safely: skipped under --on-error skip
            if runner.options.on_error == "fail":
                return SourceOutcome(name, error=str(exc)), None, 0
            return SourceOutcome(name, skipped={"reason": exc.reason, "message": str(exc)}), None, 0
        except MediError as exc:  # as run_one: crosses back as text
            return SourceOutcome(name, error=str(exc)), None, 0
        return outcome, request, self._encoded() - before

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


class FirstPassReused(Checkpoints):
    """``--fresh`` in the second pass: the stages before mine, which the first pass of this build has just
    computed, are reused; the mine stage is computed again."""

    def run(self, stage: str, *args, **kwargs):
        self.reuse = stage != MINE.name
        return super().run(stage, *args, **kwargs)


class EmbedBatches:
    """The pool's actor (Ray Data ``map_batches``): one encoder, built as a source worker builds it (same options,
    same cache), embedding batches of requests into the shared cache. An error comes back as a row: the driver
    raises it with the sources it concerns."""

    def __init__(self, setup: WorkerSetup):
        self.encoder, self.error = None, None
        try:
            self.encoder = setup.runner(lambda *args, **kwargs: None).encoder
        except MediError as exc:
            self.error = f"the embedding pool could not start its encoder: {exc}"

    def __call__(self, batch):
        import pyarrow as pa

        from medi.stages.embed import embed_requests

        encoded, error = 0, self.error
        if error is None:
            try:
                encoded = embed_requests(self.encoder, batch)
            except Exception as exc:  # any failure of the model: said with the sources whose texts it was encoding
                sources = sorted(set(batch.column("source").to_pylist()))
                named = ", ".join(sources[:3]) + (f" and {len(sources) - 3} more" if len(sources) > 3 else "")
                error = (
                    f"the embedding pool failed on {batch.num_rows:,} texts of {named} "
                    f"(encoder {self.encoder.config.name}): {type(exc).__name__}: {exc}"
                )
        return pa.table(
            {"texts": [batch.num_rows], "encoded": [encoded], "actor": [os.getpid()], "error": [error]},
            schema=pa.schema(
                [("texts", pa.int64()), ("encoded", pa.int64()), ("actor", pa.int64()), ("error", pa.string())]
            ),
        )
