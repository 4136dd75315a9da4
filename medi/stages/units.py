"""The per-source stages as units an engine can run: each has one shape — a name, the schema of its output rows,
a config (what it reads besides its input rows: that keys its stored output) and a function from Arrow batches
(plus the source's context) to Arrow batches and a report.

``PIPELINE`` lists them in run order: sample (adapt + sample + normalize), clean (dedup, decontaminate, filter),
select (token budget + cap) and mine. ``run_source`` is the local executor for one source: it runs each stage
through the checkpoint store (a finished output is reused, never recomputed) and reads again with a larger sample
when the cap is not met. The build (``medi.build``) runs ``run_source`` per source, in this process or in a pool
of worker processes, then streams the mined rows into shards.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property, partial
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from medi.adapters import Adapted, Split, extra_inputs, plan_source_splits, read_source, read_split
from medi.adapters.kilt import use_cache_dir as keep_kilt_indexes_in
from medi.catalog import SUPERNI, Catalog, SourceSpec
from medi.encode import Encoder, EncoderConfig
from medi.errors import MediError, Problem, SourceError
from medi.fetch import Fetched, fetch, sha256_file
from medi.schema import RECORD_SCHEMA, TRIPLE_SCHEMA, Record, records_batch, records_of, triples_batch
from medi.stages.checkpoint import (
    BATCH_ROWS,
    STAGES_DIR,
    Batches,
    Checkpoints,
    StageOutput,
    Writer,
    from_jsonable,
    rereadable,
    stage_key,
    to_jsonable,
    write_in_batches,
)
from medi.stages.decontaminate import DecontamConfig, DecontamReport, EvalIndex, decontaminate, load_eval_sets
from medi.stages.dedup import DedupConfig, DedupReport, dedup_stream
from medi.stages.filter import FilterConfig, FilterReport, apply_token_budget, filter_records
from medi.stages.instruct import InstructionBook
from medi.stages.mine import (
    MineConfig,
    MineReport,
    given_only,
    given_triples_stream,
    mine_pairs_stream,
    mine_task,
)
from medi.stages.normalize import NormalizeReport, normalize
from medi.stages.sample import (
    GROWTH,
    Sampler,
    SampleReport,
    content_key,
    eval_form_hashes,
    merge_reports,
    sample_size,
)
from medi.stages.select import SelectConfig, SelectReport, select, token_budget_stream

MAX_KEPT_PROBLEMS = 1000  # problems listed per source (all are counted)
PROGRESS_EVERY = 1024  # rows between looks at the clock while reading
PROGRESS_SECONDS = 1.0  # seconds between progress reports while reading


# --- what every stage sees -----------------------------------------------------------------------------------


class Runner:
    """What a process needs to run stages: options, catalog, instructions, eval sets, the encoder (lazily)."""

    def __init__(self, options, dirs: list[Path], cache_dir: Path, *, reuse: bool = True, progress=None):
        self.options, self.dirs, self.cache_dir = options, dirs, cache_dir
        keep_kilt_indexes_in(cache_dir)  # each process of a build finds the one knowledge-source index
        self.catalog = Catalog.load()
        self.book = InstructionBook.load(self.catalog.root)
        self.checkpoints = Checkpoints(cache_dir / STAGES_DIR, reuse=reuse)
        self.progress = progress or (lambda *args, **kwargs: None)
        self.test_sources = dict(self.catalog.superni_test_sources)
        self._encoder: Encoder | None = None
        self._eval: tuple[EvalIndex, list, dict] | None = None
        check_stage_options(options)

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            o = self.options
            config = EncoderConfig(
                o.encoder, o.device, o.batch_size, o.max_seq_length, o.query_prompt, o.document_prompt, o.precision
            )
            self._encoder = Encoder(config, self.cache_dir)
        return self._encoder

    def _eval_sets(self) -> tuple[EvalIndex, list, dict]:
        if self._eval is None:
            sets, fingerprint, skipped = load_eval_sets(
                self.catalog, self.options.eval_sets, self.dirs, self.options, self.cache_dir
            )
            self._eval = (EvalIndex(sets, self.decontam_config()), fingerprint, skipped)
        return self._eval

    @property
    def eval_index(self) -> EvalIndex:
        return self._eval_sets()[0]

    @property
    def eval_fingerprint(self) -> list:
        return self._eval_sets()[1]

    @property
    def eval_skipped(self) -> dict:
        return self._eval_sets()[2]

    @cached_property
    def eval_forms(self) -> frozenset[int]:
        return eval_form_hashes(text.text for text in self.eval_index.texts)

    def dedup_config(self) -> DedupConfig:
        return stage_config(DedupConfig, self.options.dedup, "dedup")

    def decontam_config(self) -> DecontamConfig:
        return stage_config(DecontamConfig, self.options.decontaminate, "decontaminate")

    def all_test_sources(self) -> dict[str, list[str]]:
        """Shipped table plus the Source of every test task file found in the data dirs."""
        for data_dir in self.dirs:
            for task in self.catalog.superni_test_tasks - set(self.test_sources):
                path = data_dir / "super-ni" / "tasks" / f"{task}.json"
                if path.is_file():
                    self.test_sources[task] = json.loads(path.read_text(encoding="utf-8")).get("Source") or []
        return self.test_sources


@dataclass
class SourceContext:
    """One source's trip: its spec and input, the runner, and the reports of the stages run so far."""

    spec: SourceSpec
    runner: Runner
    fetched: Fetched | None = None
    infos: dict[str, dict] = field(default_factory=dict)
    sample_factor: int = 1

    @property
    def options(self):
        return self.runner.options

    @property
    def meta(self) -> dict:
        return self.infos.get("sample", {}).get("meta") or {}

    def embed(self) -> Callable:
        side = "document" if self.spec.adapter == SUPERNI else "query"
        return partial(self.runner.encoder.embed, side=side)

    def filter_config(self) -> FilterConfig:
        base = stage_config(FilterConfig, self.options.filter, "filter")
        try:
            return base.with_overrides(self.spec.filter)
        except MediError as exc:
            raise MediError(f"{self.spec.file}: filter: {exc}") from exc

    def cap(self) -> int | None:
        return self.options.max_per_source or self.spec.medi.cap

    def refuse_shared_test_source(self, meta: dict) -> None:
        """A Super-NI task outside the train split must not share a Source with any test task."""
        spec = self.spec
        if spec.adapter != SUPERNI or spec.stem in self.runner.catalog.superni_train_tasks:
            return
        own = set(meta.get("Source") or [])
        for test_task, test_sources in self.runner.all_test_sources().items():
            if shared := own & set(test_sources):
                raise SourceError(
                    spec.name,
                    "shares_test_source",
                    f"shares Source {sorted(shared)} with Super-NI test task {test_task}; refused to keep "
                    "test data out of the release",
                )

    def longest_wordings(self) -> dict[str, str]:
        """The longest query and document wording of the source: the token budget counts the worst case."""
        wordings = self.runner.book.for_source(self.spec, self.meta)
        found = {
            "query": max(wordings.query, key=len, default=""),
            "document": max(wordings.document, key=len, default=""),
        }
        return {side: text for side, text in found.items() if text}


def pairs_symmetric(spec: SourceSpec) -> bool:
    """Dedup compares (query, positive) unordered for symmetric pair sources; Super-NI inputs never pair so."""
    return spec.symmetric and spec.adapter != SUPERNI


def check_stage_options(options) -> None:
    """Every stage's options, before any work: a wrong key or value would otherwise surface only when that stage
    first runs, after the sources before it were read."""
    stage_config(DedupConfig, options.dedup, "dedup")
    stage_config(DecontamConfig, options.decontaminate, "decontaminate")
    stage_config(FilterConfig, options.filter, "filter")
    mining = stage_config(MineConfig, {**options.mining, "seed": options.seed}, "mining")
    if mining.teacher:  # a missing folder or not a model: said before any source runs, not at its mine stage
        from medi.teacher import Teacher

        Teacher.load(mining.teacher, device=mining.teacher_device)


def stage_config(cls, values: dict, option: str):
    """A stage's config dataclass from a build option's dict; a wrong key or value names the option."""
    unknown = set(values) - set(cls.__dataclass_fields__)
    if unknown:
        raise MediError(
            f"build option {option}: unknown keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}"
        )
    try:
        return cls(**values)
    except ValueError as exc:
        raise MediError(f"build option {option}: {exc}") from exc


@dataclass(frozen=True)
class Stage:
    """One unit of the pipeline; ``run(ctx, batches, write) -> report`` writes its output rows through ``write``."""

    name: str
    schema: pa.Schema
    config: Callable[[SourceContext], dict]
    run: Callable[[SourceContext, Iterator[pa.RecordBatch], Writer], dict]
    check: Callable[[SourceContext, dict], None] | None = None  # runs on the report, stored or fresh


# --- sample: adapt, sample while reading, normalize ----------------------------------------------------------


def _sample_config(ctx: SourceContext) -> dict:
    o = ctx.options
    size = sample_size(ctx.cap(), o.select, ctx.sample_factor)
    counts_eval = bool(ctx.runner.eval_index.texts)
    return {
        "spec": ctx.spec.model_dump(mode="json"),
        "input": ctx.fetched.sha256,
        "path": str(ctx.fetched.path),  # problems name the file: a copy elsewhere is another output
        "extra_inputs": extra_inputs(ctx.spec.adapter, ctx.fetched.path, ctx.spec),
        **({"files": [str(f.path) for f in ctx.fetched.files]} if ctx.fetched.files else {}),  # problems name them
        "seed": o.seed,
        "max_chars": o.max_chars,
        "on_error": o.on_error,
        "sample_size": size,
        "eval": ctx.runner.eval_fingerprint if counts_eval else None,
    }


def _sample(ctx: SourceContext, _batches: Iterator[pa.RecordBatch], write: Writer) -> dict:
    spec, o = ctx.spec, ctx.options
    adapted = read_source(spec.adapter, ctx.fetched, spec, o.seed)
    ctx.refuse_shared_test_source(adapted.meta)  # before reading every row
    size = sample_size(ctx.cap(), o.select, ctx.sample_factor)
    share = getattr(ctx.runner, "share_splits", None)  # set by an executor that has workers to help
    split = share and adapted.resolve is None  # rows resolved after the sample (KILT) are read in one stream
    plan = plan_source_splits(spec.adapter, ctx.fetched, spec, o.split_bytes) if split else None
    if plan is not None:
        return _sample_in_splits(ctx, adapted.meta, plan, size, write, share)
    sampler = Sampler(size, f"{o.seed}:{spec.name}", ctx.runner.eval_forms)
    tally = ProblemTally(spec.name, o.on_error)
    report = NormalizeReport()
    pace = ReadPace(ctx.runner.progress, spec.name)
    unresolved = Counter()  # rows offered to the sampler that resolve lost: rows lost, not rows given

    def offered() -> Iterator[Record]:
        """The adapter's rows, each offered to the sampler; problems counted aside (or stopping the build)."""
        for item in adapted.rows if adapted.resolve is None else adapted.deferred:
            if isinstance(item, Problem):
                tally.add(item)
                continue
            sampler.offer(item)
            pace.row(sampler.report.rows_read + tally.rows - unresolved.total())
            yield item
        if not sampler.report.rows_read and not tally.count:
            tally.add(_no_rows(ctx.fetched))

    if size is None:  # every row is kept: resolved, normalized and written as it streams
        kept = _resolved(adapted, offered(), tally, unresolved)
        write_in_batches(write, normalize(kept, report, o.max_chars), records_batch)
        sampler.finish()
    else:
        for _ in offered():
            pass
        kept = _resolved(adapted, sampler.finish(), tally, unresolved)
        write_in_batches(write, normalize(kept, report, o.max_chars), records_batch)
    truncated = sampler.truncated  # rows were left out, whatever resolve lost of the sample
    sampler.report.rows_read -= unresolved.total()
    sampler.report.sampled -= unresolved.total()
    pace.report(sampler.report.rows_read + tally.rows)
    sampler.report.passes = 1 + (ctx.sample_factor.bit_length() - 1) // 2  # the factor grows 4x a pass
    return {
        "meta": adapted.meta,
        **tally.summary(),
        "normalize": to_jsonable(report),
        "sample": to_jsonable(sampler.report),
        "truncated": truncated,
    }


def _resolved(adapted: Adapted, records: Iterable[Record], tally: ProblemTally, lost: Counter) -> Iterator[Record]:
    """The kept rows completed by the adapter's ``resolve`` (KILT: passages read for these rows alone); a row it
    cannot complete is a problem, its row counted in ``lost`` (the sampler counted it as given)."""
    if adapted.resolve is None:
        yield from records
        return
    for item in adapted.resolve(records):
        if isinstance(item, Problem):
            tally.add(item)
            lost["rows"] += item.rows or 0
            continue
        yield item


def _sample_in_splits(ctx: SourceContext, meta: dict, plan, size: int | None, write: Writer, share) -> dict:
    """The sample stage over splits read by this worker and the helpers its executor sends (``medi.stages.splits``);
    the parts merged into exactly what one reader of the file gives: rows, counts, problems and their lines."""
    from medi.stages import splits

    spec, o, runner = ctx.spec, ctx.options, ctx.runner
    folder = runner.cache_dir / "splits" / stage_key("sample-splits", _sample_config(ctx), o.split_bytes)
    job = splits.SplitJob(spec.name, str(ctx.fetched.path), size, str(folder))
    read = partial(_sample_part, runner)
    folder.mkdir(parents=True, exist_ok=True)
    share(job.to_json())
    closing = splits.describe(job, plan, o.split_bytes, read)
    pace = ReadPace(runner.progress, spec.name)
    total = splits.finish(job, read, lambda n: None)
    found = list(splits.parts(folder, total))
    readers = len({part.get("reader") for part in found})
    runner.progress(spec.name, f"sample: merging {total} splits (read by {readers} workers)")
    tally = ProblemTally(spec.name, o.on_error)
    for part in found:
        if error := part.get("error"):
            raise (
                SourceError(spec.name, error["reason"], error["message"])
                if error["reason"]
                else MediError(error["message"])
            )
        tally.merge(part["problems"])
    for problem in closing:
        tally.add(problem)
    keys = [np.load(folder / f"part-{n}.keys.npy") for n in range(total)]
    sampled = merge_reports([from_jsonable(SampleReport, part["sample"]) for part in found], keys, size)
    if not sampled.rows_read and not tally.count:
        tally.add(_no_rows(ctx.fetched))
    report = NormalizeReport()
    if size is None:
        rows = (record for n in range(total) for record in _part_records(folder, n))
    else:
        rows = _merged_sample(folder, total, size)
    write_in_batches(write, normalize(rows, report, o.max_chars), records_batch)
    pace.report(sampled.rows_read + tally.rows)
    sampled.sampled = min(size, sampled.rows_read) if size is not None else sampled.rows_read
    sampled.passes = 1 + (ctx.sample_factor.bit_length() - 1) // 2
    splits.remove(folder)
    return {
        "meta": meta,
        **tally.summary(),
        "normalize": to_jsonable(report),
        "sample": to_jsonable(sampled),
        "truncated": size is not None and sampled.rows_read > size,
    }


def _no_rows(fetched: Fetched) -> Problem:
    if fetched.files:
        return Problem(fetched.location, "", f"the {len(fetched.files)} files hold no rows", rows=0)
    return Problem(str(fetched.path), "", "the file holds no rows", rows=0)


def _merged_sample(folder: Path, total: int, size: int) -> Iterator[Record]:
    """What ``merge_samples`` keeps of the parts' samples — the bottom-``size`` by (key, split, arrival), in read
    order — chosen on the keys alone (``part-N.sample.npy``), then only those rows read from each part."""
    tables = [np.load(folder / f"part-{n}.sample.npy") for n in range(total)]
    keys = np.concatenate([table[:, 0] for table in tables])
    arrivals = np.concatenate([table[:, 1] for table in tables])
    parts = np.concatenate([np.full(len(table), n) for n, table in enumerate(tables)])
    rows = np.concatenate([np.arange(len(table)) for table in tables])  # a part holds its sample in arrival order
    kept = np.lexsort((arrivals, parts, keys))[:size]
    for number in range(total):
        picked = np.sort(rows[kept[parts[kept] == number]])
        if len(picked):
            yield from records_of(pq.read_table(folder / f"part-{number}.parquet").take(picked))


def _part_records(folder: Path, number: int) -> Iterator[Record]:
    for batch in StageOutput(folder / f"part-{number}.parquet", {}).batches():
        yield from records_of(batch)


def _sample_part(runner: Runner, job, number: int, split: Split, claim) -> None:
    """Read one split: its own bottom-k sample (every row when uncapped), distinct keys, counts and problems,
    written as ``part-N.*`` in the job folder; a problem that stops the build (--on-error fail) is written as
    the part's error, raised by the owner in split order."""
    from medi.atomic import atomic_path, write_text
    from medi.stages.splits import whoami

    spec, o = runner.catalog.specs[job.source], runner.options
    folder = Path(job.folder)
    sampler = Sampler(job.size, f"{o.seed}:{spec.name}", runner.eval_forms)
    tally = ProblemTally(spec.name, o.on_error)
    error = None

    def offered() -> Iterator[Record]:
        for item in read_split(spec.adapter, Path(job.path), spec, o.seed, split):
            if isinstance(item, Problem):
                tally.add(item)
                continue
            sampler.offer(item)
            if sampler.report.rows_read % PROGRESS_EVERY == 0:
                claim.touch()
            yield item

    try:
        with atomic_path(folder / f"part-{number}.parquet") as path, pq.ParquetWriter(path, RECORD_SCHEMA) as out:
            if job.size is None:
                write_in_batches(out.write_batch, offered(), records_batch)
                sampler.finish_keyed()
            else:
                for _ in offered():
                    pass
                keyed = sampler.finish_keyed()
                write_in_batches(out.write_batch, (record for *_, record in keyed), records_batch)
                with atomic_path(folder / f"part-{number}.sample.npy") as table, table.open("wb") as handle:
                    np.save(handle, np.array([(key, arrival) for key, arrival, _ in keyed], np.uint64).reshape(-1, 2))
        with atomic_path(folder / f"part-{number}.keys.npy") as keys, keys.open("wb") as handle:
            np.save(handle, sampler.unique_keys)
    except MediError as exc:
        reason = exc.reason if isinstance(exc, SourceError) else None
        message = str(exc).removeprefix(f"{spec.name}: ") if reason else str(exc)
        error = {"reason": reason, "message": message}
    part = {"sample": to_jsonable(sampler.report), "problems": tally.summary(), "error": error}
    part["reader"] = whoami()
    write_text(folder / f"part-{number}.json", json.dumps(part))


def help_sample(runner: Runner, job: dict) -> str | None:
    """An idle worker's help with another worker's source: it reads the splits nobody has claimed. A failure is
    returned as text, not raised: the helper gives its split back, and the source's own worker reads it again and
    raises what it finds there."""
    from medi.stages import splits

    try:
        splits.help_with(splits.SplitJob.of(job), partial(_sample_part, runner))
    except Exception as exc:  # reported by the source's worker, which reads the split again
        return f"{type(exc).__name__}: {exc}"
    return None


class ProblemTally:
    """A source's problems: every one counted, the first ``MAX_KEPT_PROBLEMS`` kept, the rows they cost added up
    by why (``malformed_row``: a bad row; ``unreadable``: a damaged block), and how many cost the rest of their file
    (rows not knowable). Under ``--on-error fail`` the first one stops the build."""

    def __init__(self, source: str, on_error: str):
        self.source, self.on_error = source, on_error
        self.count = self.rest_lost = 0
        self.kept: list[Problem] = []
        self.lost: Counter = Counter()

    def add(self, problem: Problem) -> None:
        if self.on_error == "fail":
            raise MediError(f"{self.source}: {problem} (--on-error fail)")
        self.count += 1
        if len(self.kept) < MAX_KEPT_PROBLEMS:
            self.kept.append(problem)
        if problem.rows is None:
            self.rest_lost += 1
        elif problem.rows:
            self.lost["malformed_row" if problem.where else "unreadable"] += problem.rows

    @property
    def rows(self) -> int:
        return sum(self.lost.values())

    def merge(self, summary: dict) -> None:
        """Add a split's tally (its ``summary()``), splits in file order: the problems listed stay the first."""
        self.count += summary["problem_count"]
        self.kept += [Problem(**p) for p in summary["problems"][: MAX_KEPT_PROBLEMS - len(self.kept)]]
        self.lost.update(summary["rows_lost"])
        self.rest_lost += summary["rest_lost"]

    def summary(self) -> dict:
        return {
            "problem_count": self.count,
            "problems": to_jsonable(self.kept),
            "rows_lost": dict(sorted(self.lost.items())),
            "rest_lost": self.rest_lost,
        }


def rows_read(sample_info: dict) -> int:
    """A source's rows read, as the manifest, the summary table and the progress lines all count them: the rows
    the adapter gave plus the rows lost to problems (bad rows, damaged blocks); a file cut mid-stream counts the
    rows before the cut."""
    return (sample_info.get("sample") or {}).get("rows_read", 0) + sum((sample_info.get("rows_lost") or {}).values())


class ReadPace:
    """Rows read so far, reported at most every ``PROGRESS_SECONDS`` (checked every ``PROGRESS_EVERY`` rows):
    a heartbeat off a terminal shows them with rows/s however fast or slow the file reads."""

    def __init__(self, progress: Callable, source: str):
        self.progress, self.source = progress, source
        self.started = self.last = time.perf_counter()
        self.report(0)

    def row(self, rows: int) -> None:
        if rows % PROGRESS_EVERY == 0 and time.perf_counter() - self.last >= PROGRESS_SECONDS:
            self.report(rows)

    def report(self, rows: int) -> None:
        self.last = time.perf_counter()
        self.progress(self.source, "read", rows, self.last - self.started)


SAMPLE = Stage(
    "sample",
    RECORD_SCHEMA,
    _sample_config,
    _sample,
    check=lambda ctx, info: ctx.refuse_shared_test_source(info["meta"]),
)


# --- clean: dedup, decontaminate, filter (all but the token budget) ------------------------------------------


def _clean_config(ctx: SourceContext) -> dict:
    runner = ctx.runner
    decontam = runner.decontam_config()
    return {
        "dedup": asdict(runner.dedup_config()),
        "decontaminate": asdict(decontam),
        "filter": asdict(ctx.filter_config()),
        "encoder": runner.encoder.identity() if decontam.audit else None,
        "eval": runner.eval_fingerprint,
        "datasets": sorted(runner.catalog.datasets_of(ctx.spec, ctx.meta)),
    }


def _clean(ctx: SourceContext, batches: Iterator[pa.RecordBatch], write: Writer) -> dict:
    """Dedup in passes over the sample stage's output, then decontamination and the filters chunk by chunk:
    memory does not grow with the rows (apart from the audit's vectors, when it runs)."""
    runner, spec = ctx.runner, ctx.spec
    dedup_report, decontam_report, filter_report = DedupReport(), DecontamReport(), FilterReport()
    with rereadable(batches, RECORD_SCHEMA) as rows:
        config = runner.dedup_config()
        records = dedup_stream(partial(_records_in, rows), config, dedup_report, symmetric=pairs_symmetric(spec))
        audit = ctx.embed() if runner.decontam_config().audit and runner.eval_index.texts else None
        datasets = runner.catalog.datasets_of(spec, ctx.meta)
        check = partial(
            decontaminate,
            index=runner.eval_index,
            report=decontam_report,
            source=spec.name,
            source_datasets=datasets,
            embed=audit,
        )
        # the audit (layer 4) compares every kept row's vector at once: it takes them all, as before
        records = check(list(records)) if audit else _in_chunks(records, check, decontam_report)
        no_budget = replace(ctx.filter_config(), token_budget=None)
        records = _in_chunks(records, partial(filter_records, config=no_budget, report=filter_report), filter_report)
        write_in_batches(write, records, records_batch)
    return {
        "dedup": to_jsonable(dedup_report),
        "decontaminate": to_jsonable(decontam_report),
        "filter": to_jsonable(filter_report),
    }


def _records_in(rows: Batches) -> Iterator[Record]:
    """A fresh pass over a stage output's rows."""
    for batch in rows.again():
        yield from records_of(batch)


def _in_chunks(records: Iterable[Record], step: Callable[[list[Record]], list[Record]], report) -> Iterator[Record]:
    """``step`` (a list-to-list stage) over ``BATCH_ROWS`` rows at a time, at least once (its checks on the source
    run even when no row is left); ``report.kept`` is the rows kept in all."""
    rows, kept, ran = iter(records), 0, False
    while (chunk := list(islice(rows, BATCH_ROWS))) or not ran:
        ran = True
        for record in step(chunk):
            kept += 1
            yield record
    report.kept = kept


CLEAN = Stage("clean", RECORD_SCHEMA, _clean_config, _clean)


# --- select: the token budget (reads the instructions) and the cap ---------------------------------------------


def _select_config_of(ctx: SourceContext) -> SelectConfig:
    o = ctx.options
    return SelectConfig(ctx.cap(), o.select, o.diverse_share, seed=f"{o.seed}:{ctx.spec.name}")


def _select_config(ctx: SourceContext) -> dict:
    config = _select_config_of(ctx)
    return {
        "select": asdict(config),
        "filter": asdict(ctx.filter_config()),
        "wordings": ctx.longest_wordings(),
        "encoder": ctx.runner.encoder.identity() if config.mode == "diverse" else None,
    }


def _select(ctx: SourceContext, batches: Iterator[pa.RecordBatch], write: Writer) -> dict:
    if ctx.cap() is None:
        return _select_every_row(ctx, batches, write)
    records = [r for batch in batches for r in records_of(batch)]  # a capped source: as many as its sample holds
    budget = FilterReport()
    records = apply_token_budget(records, ctx.filter_config(), budget, ctx.longest_wordings())
    report = SelectReport()
    config = _select_config_of(ctx)
    short = config.max_rows is not None and len(records) < config.max_rows
    resample = short and ctx.infos["sample"]["truncated"]
    if not resample:
        # select sees the rows in key order, so its picks (random positions, vote-k ties) are the same whatever
        # the read order; the kept rows go on in read order
        if not config.picks(len(records)):
            records = select(records, config, report)  # nothing to pick: every row, no key order needed
        else:
            seed = f"{ctx.options.seed}:{ctx.spec.name}"
            arrival = {r.row_id: i for i, r in enumerate(records)}
            by_key = sorted(records, key=lambda r: (content_key(r, seed), r.row_id))
            chosen = select(by_key, config, report, ctx.embed())
            records = sorted(chosen, key=lambda r: arrival[r.row_id])
        write_in_batches(write, records, records_batch)
    return {"budget": to_jsonable(budget), "select": to_jsonable(report), "resample": resample}


def _select_every_row(ctx: SourceContext, batches: Iterator[pa.RecordBatch], write: Writer) -> dict:
    """An uncapped source: its rows streamed through the token budget (two passes over the clean stage's output)."""
    budget = FilterReport()
    with rereadable(batches, RECORD_SCHEMA) as rows:
        records = token_budget_stream(
            partial(_records_in, rows), rows.num_rows, ctx.filter_config(), budget, ctx.longest_wordings()
        )
        kept = _written(write, records)
    report = SelectReport(mode="none", cap=None, kept=kept)
    return {"budget": to_jsonable(budget), "select": to_jsonable(report), "resample": False}


def _written(write: Writer, records: Iterable[Record]) -> int:
    """Write a stream of rows in batches; how many there were."""
    count = 0

    def counted() -> Iterator[Record]:
        nonlocal count
        for record in records:
            count += 1
            yield record

    write_in_batches(write, counted(), records_batch)
    return count


SELECT = Stage("select", RECORD_SCHEMA, _select_config, _select)


# --- mine ----------------------------------------------------------------------------------------------------


GIVEN_NEGATIVES = ("labelled", "mined")  # a source's options.given_negatives: where its given negatives come from


def mine_config(ctx: SourceContext) -> MineConfig:
    fields = {**ctx.options.mining, "seed": ctx.options.seed}
    if ctx.spec.options.get("mining"):
        fields["mode"] = ctx.spec.options["mining"]
    if _given_negatives(ctx.spec) == "labelled":  # an NLI contradiction is a negative by its label, as a Super-NI
        fields["teacher_guards_given"] = False  # class is: the teacher scores it but never replaces it
    return stage_config(MineConfig, fields, "mining")


def _given_negatives(spec: SourceSpec) -> str:
    value = spec.options.get("given_negatives", "mined")
    if value not in GIVEN_NEGATIVES:
        raise MediError(
            f"{spec.file or spec.name}: options.given_negatives must be one of {', '.join(GIVEN_NEGATIVES)} "
            f"(labelled: negatives by a human label, e.g. NLI contradictions, never replaced by the teacher), "
            f"not {value!r}"
        )
    return value


MINE_OUTPUT = 2  # the mine stage's rows: 2 = with provenance (rules, ranks, teacher scores, extra_negs, suspects)


def _mine_config(ctx: SourceContext) -> dict:
    config = mine_config(ctx)
    teacher = mine_teacher(ctx.runner, config)
    return {
        "mine": asdict(config),
        "encoder": ctx.runner.encoder.identity(),
        "output": MINE_OUTPUT,
        "teacher": teacher.identity() if teacher else None,
        "judgements": mine_judgements(ctx).fingerprint(),
    }


def mine_teacher(runner: Runner, config: MineConfig):
    """The teacher (medi.teacher) of ``config``, loaded once per process; None when none is set."""
    if not config.teacher:
        return None
    loaded = runner.__dict__.setdefault("_teachers", {})
    key = (config.teacher, config.teacher_device)
    if key not in loaded:
        from medi.teacher import Teacher

        loaded[key] = Teacher.load(config.teacher, device=config.teacher_device, cache_dir=runner.cache_dir)
    return loaded[key]


def mine_judgements(ctx: SourceContext):
    """The reviewers' judgements of the source's candidates (``judgements/`` in the project; empty when none)."""
    from medi.judgements import load_judgements

    return load_judgements(ctx.runner.catalog.root, ctx.spec.name)


def _mine(ctx: SourceContext, batches: Iterator[pa.RecordBatch], write: Writer) -> dict:
    with rereadable(batches, RECORD_SCHEMA) as rows:
        return _mine_rows(ctx, rows, write)


def _mine_rows(ctx: SourceContext, rows: Batches, write: Writer) -> dict:
    """A pair source streams from the select checkpoint: with nothing to mine batch by batch
    (``given_triples_stream``), else through ``mine_pairs_stream`` (rows on disk, vectors memory-mapped, mined and
    written ROW_CHUNK rows at a time). A Super-NI task is small by nature (a task file holds at most ~6.5k
    instances): its rows are held and mined at once (``mine_task``)."""
    report = MineReport()
    config = mine_config(ctx)
    guards = {"teacher": mine_teacher(ctx.runner, config), "judgements": mine_judgements(ctx)}
    encoder = ctx.runner.encoder
    if _nothing_to_mine(ctx, rows, config, guards):
        triples = given_triples_stream(partial(_records_in, rows), rows.num_rows, encoder, config, report)
    elif ctx.spec.adapter == SUPERNI:
        records = [r for batch in rows.again() for r in records_of(batch)]
        triples = mine_task(records, encoder, config, report, **guards)
    else:
        triples = mine_pairs_stream(partial(_records_in, rows), encoder, config, report, ctx.spec.symmetric, **guards)
    write_in_batches(write, triples, triples_batch)
    return to_jsonable(report)


def _nothing_to_mine(ctx: SourceContext, rows: Batches, config: MineConfig, guards: dict) -> bool:
    """A pair source whose every row keeps its given negative (``given_only``) and holds more rows than are scored:
    decided from a pass over the ``neg`` column alone, which stops at the first row without one."""
    if ctx.spec.adapter == SUPERNI or not given_only(config, **guards) or rows.num_rows <= config.score_rows:
        return False
    negatives = pq.ParquetFile(rows.path, pre_buffer=False).iter_batches(batch_size=rows.rows, columns=["neg"])
    return all(batch.column("neg").null_count == 0 for batch in negatives)


MINE = Stage("mine", TRIPLE_SCHEMA, _mine_config, _mine)

PIPELINE: tuple[Stage, ...] = (SAMPLE, CLEAN, SELECT, MINE)


# --- the local executor --------------------------------------------------------------------------------------


@dataclass
class SourceOutcome:
    """What a source's stages left: where its rows are and every stage's report (JSON-able, crosses processes)."""

    name: str
    fetched: dict | None = None
    infos: dict[str, dict] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)  # stage -> its output file
    reused: list[str] = field(default_factory=list)
    skipped: dict | None = None  # {reason, message} when the source was skipped
    error: str | None = None  # a worker's MediError, raised again by the build

    def output(self, stage: str) -> StageOutput:
        return StageOutput(Path(self.outputs[stage]), self.infos[stage])


def run_source(runner: Runner, spec: SourceSpec, stages: tuple[Stage, ...] = PIPELINE) -> SourceOutcome:
    """fetch, then every stage in order; a stage with a stored output for its key is not run again."""
    ctx = SourceContext(spec, runner)
    runner.progress(spec.name, "fetch")
    ctx.fetched = fetch(
        spec, runner.dirs, runner.catalog.root, remote=runner.options.remote, cache_dir=runner.cache_dir
    )
    while True:
        outcome = SourceOutcome(spec.name, ctx.fetched.summary())
        previous = None
        for stage in stages:
            # keyed by its input's content, not the keys before it: a stage whose input came out the same is
            # not rerun (a new wording reruns the token budget, whose rows are unchanged: mine is reused)
            source_id = sha256_file(previous.path) if previous else ctx.fetched.sha256
            key = stage_key(stage.name, source_id, stage.config(ctx))
            runner.progress(spec.name, stage.name)
            compute = partial(stage.run, ctx, previous.batches() if previous else iter(()))
            before = len(runner.checkpoints.reused)
            output = runner.checkpoints.run(stage.name, spec.name, key, stage.schema, compute)
            if len(runner.checkpoints.reused) > before:
                outcome.reused.append(stage.name)
            if stage.check:
                stage.check(ctx, output.info)
            ctx.infos[stage.name] = output.info
            outcome.infos[stage.name], outcome.outputs[stage.name] = output.info, str(output.path)
            previous = output
            if output.info.get("resample"):
                break
        else:
            return outcome
        ctx.sample_factor *= GROWTH  # the cap was not met from the sample: read again with a larger one


def run_source_safely(runner: Runner, spec: SourceSpec) -> SourceOutcome:
    """``run_source``, with a source problem (under ``--on-error skip``) turned into a skipped outcome."""
    try:
        return run_source(runner, spec)
    except SourceError as exc:
        if runner.options.on_error == "fail":
            raise
        return SourceOutcome(spec.name, skipped={"reason": exc.reason, "message": str(exc)})


# --- reading stage reports back ------------------------------------------------------------------------------


def reports(outcome: SourceOutcome) -> dict:
    """The stage reports of an outcome as their report classes (for the manifest and the contamination file)."""
    infos = outcome.infos
    clean, chosen = infos.get("clean", {}), infos.get("select", {})
    return {
        "normalize": from_jsonable(NormalizeReport, infos.get("sample", {}).get("normalize") or {}),
        "sample": from_jsonable(SampleReport, infos.get("sample", {}).get("sample") or {}),
        "problems": [Problem(**p) for p in infos.get("sample", {}).get("problems") or []],
        "dedup": from_jsonable(DedupReport, clean.get("dedup") or {}),
        "decontaminate": from_jsonable(DecontamReport, clean.get("decontaminate") or {}),
        "filter": _merged_filter(clean.get("filter") or {}, chosen.get("budget") or {}),
        "select": from_jsonable(SelectReport, chosen.get("select") or {}),
        "mine": from_jsonable(MineReport, infos.get("mine") or {}),
    }


def _merged_filter(clean: dict, budget: dict) -> FilterReport:
    """The filter stage as one report: its checks (clean) and the token budget (select)."""
    report = from_jsonable(FilterReport, clean)
    extra = from_jsonable(FilterReport, budget)
    report.dropped = Counter(report.dropped) + Counter(extra.dropped)
    report.tokens, report.tokenizer = extra.tokens or report.tokens, extra.tokenizer or report.tokenizer
    if budget:
        report.kept = extra.kept
    return report
