"""The pipeline: fetch → adapt → normalize → dedup → decontaminate → filter → select → mine → instruct → shard →
manifest, one source at a time.

``build()`` is what ``medi build`` runs; it returns the manifest it wrote.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import medi
from medi.adapters import get_adapter
from medi.catalog import SUPERNI, Catalog, SourceSpec, spec_summary
from medi.checkpoint import STAGES_DIR, Checkpoints, stage_key
from medi.decontaminate import (
    DecontamConfig,
    DecontamReport,
    EvalIndex,
    contamination_report,
    decontaminate,
    load_eval_sets,
)
from medi.dedup import DedupConfig, DedupReport, SeenPairs, dedup
from medi.encode import BUNDLED, Encoder, EncoderConfig, default_cache_dir
from medi.errors import MediError, Problem, SourceError, explain_validation
from medi.fetch import Fetched, fetch, find_in_mirrors, sha256_file
from medi.filter import FilterConfig, FilterReport, apply_token_budget, filter_records
from medi.instruct import InstructionBook, attach
from medi.manifest import MANIFEST, library_versions, write_manifest
from medi.mine import MineConfig, MineReport, mine_pairs, mine_task
from medi.normalize import NormalizeReport, normalize
from medi.schema import FORMAT_VERSION, Record, Triple
from medi.select import SelectConfig, SelectReport, select
from medi.shard import release_table, write_shards

MAX_LISTED_PROBLEMS = 20
CONTAMINATION = "contamination.json"


class BuildOptions(BaseModel):
    """Everything that decides a release's content (recorded in its manifest)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    shard_rows: int = Field(default=100_000, ge=1)
    on_error: Literal["skip", "fail"] = "skip"
    max_chars: int = Field(default=8000, ge=1)
    instructions: Literal["primary", "paraphrase"] = "primary"
    require_reviewed: bool = False
    remote: bool = True  # download named sources the data dirs lack
    encoder: str = BUNDLED
    device: str = "auto"
    batch_size: int = 64
    max_seq_length: int | None = None
    precision: Literal["fp32", "int8"] = "fp32"  # int8: faster CPU encoding, slightly different neighbours
    query_prompt: str = ""  # prepended to queries before encoding (for models trained with prompts)
    document_prompt: str = ""
    mining: dict = Field(default_factory=dict)  # MineConfig fields
    dedup: dict = Field(default_factory=dict)  # medi.dedup.DedupConfig fields
    decontaminate: dict = Field(default_factory=dict)  # medi.decontaminate.DecontamConfig fields
    eval_sets: str = "mirror"  # mirror: the eval/ sources the data dirs hold; none; or comma-separated eval/ names
    filter: dict = Field(default_factory=dict)  # medi.filter.FilterConfig fields (a source's `filter:` goes on top)
    max_per_source: int | None = Field(default=None, ge=1)  # replaces every source's catalog cap (medi.cap)
    select: Literal["random", "diverse"] = "random"  # how rows over the cap are chosen (diverse: fast vote-k)
    diverse_share: float = Field(default=1.0, ge=0, le=1)  # with select diverse: the rest are picked at random


@dataclass
class Prepared:
    """The prepare stage's output for one source: cleaned records and what reading them found."""

    meta: dict = field(default_factory=dict)
    rows_read: int = 0
    problems: list[Problem] = field(default_factory=list)
    normalize: NormalizeReport = field(default_factory=NormalizeReport)
    records: list[Record] = field(default_factory=list)


@dataclass
class Cleaned:
    """The clean stage's output for one source: records after dedup, decontaminate, filter and select."""

    records: list[Record] = field(default_factory=list)
    dedup: DedupReport = field(default_factory=DedupReport)
    decontaminate: DecontamReport = field(default_factory=DecontamReport)
    filter: FilterReport = field(default_factory=FilterReport)
    select: SelectReport = field(default_factory=SelectReport)

    def dropped(self) -> Counter:
        counts = Counter()
        for report in (self.dedup, self.decontaminate, self.filter):
            counts.update(report.dropped)
        counts.update(self.select.dropped)
        return counts

    def summary(self) -> dict:
        return {
            "dedup": self.dedup.summary(),
            "decontaminate": self.decontaminate.summary(),
            "filter": self.filter.summary(),
            "select": self.select.summary(),
        }


@dataclass
class SourceResult:
    """One source's trip through the stages."""

    spec: SourceSpec
    fetched: Fetched | None = None
    meta: dict = field(default_factory=dict)
    rows_read: int = 0
    problems: list[Problem] = field(default_factory=list)
    normalize: NormalizeReport = field(default_factory=NormalizeReport)
    mining: MineReport = field(default_factory=MineReport)
    instructions: dict = field(default_factory=dict)
    triples: list[Triple] = field(default_factory=list)
    clean: Cleaned = field(default_factory=Cleaned)

    def dropped(self) -> dict[str, int]:
        counts = Counter({"malformed_row": len(self.problems)}) if self.problems else Counter()
        counts.update(self.normalize.dropped)
        counts.update(self.clean.dropped())
        counts.update(self.mining.dropped)
        return dict(sorted(counts.items()))

    def summary(self) -> dict:
        return {
            "adapter": self.spec.adapter,
            "catalog": spec_summary(self.spec),
            "input": self.fetched.summary() if self.fetched else None,
            "task": self.meta or None,  # Super-NI: Definition, Categories, Domains, Source (reviewers read them)
            "rows_read": self.rows_read,
            "rows_kept": len(self.triples),
            "dropped": self.dropped(),
            "changed": dict(sorted(self.normalize.changed.items())),
            "problems": [str(p) for p in self.problems[:MAX_LISTED_PROBLEMS]],
            "clean": self.clean.summary(),
            "mining": self.mining.summary(),
            "instructions": self.instructions,
        }


def build(
    sources: str | list[str],
    out: Path | str,
    data_dirs: list[Path | str] | None = None,
    options: BuildOptions | None = None,
    *,
    cache_dir: Path | None = None,
    console: Console | None = None,
    resume: bool = True,
) -> dict:
    """Build a release of ``sources`` into ``out``; return its manifest.

    With ``resume`` (the default) every stage output already checkpointed under the cache is reused, so a
    killed or repeated build redoes only unfinished work and writes the same bytes; ``resume=False`` recomputes.
    """
    options = options or BuildOptions()
    console = console or Console(stderr=True)
    out = Path(out)
    started = time.perf_counter()
    catalog = Catalog.load()
    specs, source_set = catalog.resolve(sources)
    dirs = [Path(d) for d in data_dirs or []] or ([source_set.data_dir] if source_set and source_set.data_dir else [])
    selection = sources if isinstance(sources, str) else ",".join(sources)
    specs, absent = _present(specs, dirs, selection, catalog)
    book = InstructionBook.load(catalog.root)
    if missing := book.missing(specs, options.require_reviewed):
        raise MediError("sources without usable instructions:\n  " + "\n  ".join(missing))
    pipeline = Pipeline(catalog, book, options, dirs, cache_dir or default_cache_dir(), console, resume)
    results, skipped = pipeline.run(specs)
    if pipeline.checkpoints.reused:
        console.print(f"resumed: reused {len(pipeline.checkpoints.reused)} finished stage outputs")
    manifest = _write_release(out, results, skipped, absent, options, selection, dirs, pipeline)
    manifest_seconds = time.perf_counter() - started
    console.print(f"[green]wrote[/] {out} — {manifest['rows']} rows in {manifest_seconds:.1f} s")
    return manifest


def _present(specs, dirs, selection, catalog) -> tuple[list[SourceSpec], list[str]]:
    """With a data dir and ``all``/families/sets, keep the sources the mirror has; list the others."""
    explicit = {n.strip() for n in selection.split(",")} & set(catalog.specs)
    if not dirs:
        return specs, []
    present, absent = [], []
    for spec in specs:
        has = spec.path or find_in_mirrors(spec, dirs) or spec.name in explicit
        (present if has else absent).append(spec if has else spec.name)
    return present, absent


class Pipeline:
    """Runs the per-source stages; holds the encoder (loaded only if some source needs it)."""

    def __init__(self, catalog, book, options: BuildOptions, dirs, cache_dir: Path, console: Console, resume=True):
        self.catalog, self.book, self.options, self.dirs = catalog, book, options, dirs
        self.cache_dir, self.console = cache_dir, console
        self.checkpoints = Checkpoints(cache_dir / STAGES_DIR, enabled=resume)
        self._encoder: Encoder | None = None
        self._stage = lambda stage: None  # reports the running stage to the progress bar
        self.test_sources = dict(catalog.superni_test_sources)
        self.seen_pairs = SeenPairs()  # pairs of the sources built so far (cross-source duplicates)
        self.contamination: dict[str, DecontamReport] = {}
        self._eval: EvalIndex | None = None
        self.eval_fingerprint: list = []
        self.eval_skipped: dict[str, str] = {}

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            o = self.options
            config = EncoderConfig(
                o.encoder, o.device, o.batch_size, o.max_seq_length, o.query_prompt, o.document_prompt, o.precision
            )
            self._encoder = Encoder(config, self.cache_dir)
        return self._encoder

    def run(self, specs: list[SourceSpec]) -> tuple[list[SourceResult], dict[str, dict]]:
        results, skipped = [], {}
        with self._progress() as progress:
            task = progress.add_task("sources", total=len(specs)) if progress else None
            for spec in specs:
                if progress:
                    self._stage = partial(_show_stage, progress, task, spec.name)
                try:
                    results.append(self.run_source(spec))
                except SourceError as exc:
                    if self.options.on_error == "fail":
                        raise
                    skipped[spec.name] = {"reason": exc.reason, "message": str(exc)}
                    self.console.print(f"[yellow]skipped[/] {exc}")
                if progress:
                    progress.advance(task)
        return results, skipped

    def _progress(self):
        if not self.console.is_terminal:
            return nullcontext(None)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        return Progress(*columns, console=self.console, transient=True)

    def run_source(self, spec: SourceSpec) -> SourceResult:
        """fetch, the checkpointed stages (prepare, clean, mine) with the cheap uncheckpointed steps between them
        (token budget, select, cross-source repeats), then instruct (cheap, always rerun)."""
        result = SourceResult(spec)
        self._stage("fetch")
        result.fetched = fetch(spec, self.dirs, self.catalog.root, remote=self.options.remote, cache_dir=self.cache_dir)
        prepare_key = stage_key("prepare", spec.model_dump(mode="json"), result.fetched.sha256, self._prepare_options())
        self._stage("adapt · normalize")
        prepared = self.checkpoints.run("prepare", spec.name, prepare_key, partial(self._prepare, spec, result.fetched))
        result.meta, result.rows_read, result.problems = prepared.meta, prepared.rows_read, prepared.problems
        result.normalize = prepared.normalize
        self._refuse_shared_test_source(spec, result.meta)
        self._stage("dedup · decontaminate · filter")
        clean_key = stage_key("clean", prepare_key, self._clean_options(spec), self.eval_index_fingerprint())
        result.clean = self.checkpoints.run("clean", spec.name, clean_key, partial(self._clean, spec, prepared))
        self.contamination[spec.name] = result.clean.decontaminate
        self._stage("token budget · select")
        records = self._budget_and_select(spec, result.clean, result.meta)
        config = self._mine_config(spec)
        rows = hashlib.sha256("\n".join(r.row_id for r in records).encode()).hexdigest()
        mine_key = stage_key("mine", clean_key, rows, asdict(config), self.encoder.identity())
        self._stage(f"mine {len(records)} rows")
        mine = partial(self._mine, spec, records, config)
        result.triples, result.mining = self.checkpoints.run("mine", spec.name, mine_key, mine)
        self._stage("instruct")
        wordings = self.book.for_source(spec, result.meta)
        attach(result.triples, wordings, self.options.instructions, self.options.seed)
        result.instructions = wordings.summary()
        return result

    def _clean_options(self, spec: SourceSpec) -> dict:
        """What the checkpointed clean stage reads (not the instructions: the token budget runs after it)."""
        decontam = self._decontam_config()
        return {
            "dedup": asdict(self._dedup_config()),
            "decontaminate": asdict(decontam),
            "filter": asdict(self._filter_config(spec)),
            "encoder": self.encoder.identity() if decontam.audit else None,
        }

    def _dedup_config(self) -> DedupConfig:
        return _stage_config(DedupConfig, self.options.dedup, "dedup")

    def _decontam_config(self) -> DecontamConfig:
        return _stage_config(DecontamConfig, self.options.decontaminate, "decontaminate")

    def _filter_config(self, spec: SourceSpec) -> FilterConfig:
        base = _stage_config(FilterConfig, self.options.filter, "filter")
        try:
            return base.with_overrides(spec.filter)
        except MediError as exc:
            raise MediError(f"{spec.file}: filter: {exc}") from exc

    def _select_config(self, spec: SourceSpec) -> SelectConfig:
        o = self.options
        cap = o.max_per_source or spec.medi.cap
        return SelectConfig(cap, o.select, o.diverse_share, seed=f"{o.seed}:{spec.name}")

    def _longest_wordings(self, spec: SourceSpec, meta: dict) -> dict[str, str]:
        """The longest query and document wording of the source: the token budget counts the worst case."""
        wordings = self.book.for_source(spec, meta)
        found = {
            "query": max(wordings.query, key=len, default=""),
            "document": max(wordings.document, key=len, default=""),
        }
        return {side: text for side, text in found.items() if text}

    @property
    def eval_index(self) -> EvalIndex:
        """The evaluation sets of this build, read once (before the first source is cleaned)."""
        if self._eval is None:
            eval_sets, self.eval_fingerprint, self.eval_skipped = load_eval_sets(
                self.catalog, self.options.eval_sets, self.dirs, self.options, self.cache_dir
            )
            self._eval = EvalIndex(eval_sets, self._decontam_config())
        return self._eval

    def eval_index_fingerprint(self) -> list:
        self.eval_index  # noqa: B018  (loads the sets; their checksums key the clean stage)
        return self.eval_fingerprint

    def _embed(self, spec: SourceSpec):
        return partial(self.encoder.embed, side="document" if spec.adapter == SUPERNI else "query")

    def _clean(self, spec: SourceSpec, prepared: Prepared) -> Cleaned:
        """dedup, decontaminate, filter (all but the token budget): the checkpointed part of cleaning."""
        cleaned = Cleaned()
        records = dedup(
            prepared.records, self._dedup_config(), cleaned.dedup, symmetric=_pairs_symmetric(spec), source=spec.name
        )
        audit = self._embed(spec) if self._decontam_config().audit and self.eval_index.texts else None
        datasets = self.catalog.datasets_of(spec, prepared.meta)
        records = decontaminate(
            records, self.eval_index, cleaned.decontaminate, source=spec.name, source_datasets=datasets, embed=audit
        )
        no_budget = replace(self._filter_config(spec), token_budget=None)
        cleaned.records = filter_records(records, no_budget, cleaned.filter)
        return cleaned

    def _budget_and_select(self, spec: SourceSpec, cleaned: Cleaned, meta: dict) -> list[Record]:
        """Token budget (reads the instructions, so outside the checkpoint), the cap, then cross-source repeats."""
        config = self._filter_config(spec)
        records = apply_token_budget(cleaned.records, config, cleaned.filter, self._longest_wordings(spec, meta))
        cleaned.select = SelectReport()
        records = select(records, self._select_config(spec), cleaned.select, self._embed(spec))
        return self._across_sources(spec, cleaned, records)

    def _across_sources(self, spec: SourceSpec, cleaned: Cleaned, records: list[Record]) -> list[Record]:
        """Count (and with dedup.across_sources=remove, drop) pairs an earlier source of this build already had."""
        config = self._dedup_config()
        report = DedupReport()
        records = dedup(
            records,
            DedupConfig(**{**asdict(config), "near": False}),
            report,
            symmetric=_pairs_symmetric(spec),
            source=spec.name,
            seen=self.seen_pairs,
        )
        cleaned.dedup.across = report.across
        removed = report.dropped.get("duplicate_in_other_source", 0)
        if removed:
            cleaned.dedup.dropped["duplicate_in_other_source"] = removed
        return records

    def _prepare_options(self) -> dict:
        return {k: getattr(self.options, k) for k in ("seed", "max_chars", "on_error")}

    def _prepare(self, spec: SourceSpec, fetched: Fetched) -> Prepared:
        adapted = get_adapter(spec.adapter, spec.name)(fetched.path, spec, self.options.seed)
        prepared = Prepared(meta=adapted.meta)
        self._refuse_shared_test_source(spec, adapted.meta)  # before reading every row
        prepared.records = list(
            normalize(self._rows(adapted.rows, spec, prepared), prepared.normalize, self.options.max_chars)
        )
        return prepared

    def _rows(self, rows, spec: SourceSpec, prepared: Prepared):
        for item in rows:
            if isinstance(item, Problem):
                if self.options.on_error == "fail":
                    raise MediError(f"{spec.name}: {item} (--on-error fail)")
                prepared.problems.append(item)
                continue
            prepared.rows_read += 1
            yield item
        prepared.rows_read += len(prepared.problems)

    def _mine_config(self, spec: SourceSpec) -> MineConfig:
        fields = {**self.options.mining, "seed": self.options.seed}
        if spec.options.get("mining"):
            fields["mode"] = spec.options["mining"]
        return MineConfig(**fields)

    def _mine(self, spec: SourceSpec, records: list[Record], config: MineConfig) -> tuple[list[Triple], MineReport]:
        report = MineReport()
        if spec.adapter == SUPERNI:
            return mine_task(records, self.encoder, config, report), report
        return mine_pairs(records, self.encoder, config, report, spec.symmetric), report

    def _refuse_shared_test_source(self, spec: SourceSpec, meta: dict) -> None:
        """A Super-NI task outside the train split must not share a Source with any test task."""
        if spec.adapter != SUPERNI or spec.stem in self.catalog.superni_train_tasks:
            return
        own = set(meta.get("Source") or [])
        for test_task, test_sources in self._all_test_sources().items():
            if shared := own & set(test_sources):
                raise SourceError(
                    spec.name,
                    "shares_test_source",
                    f"shares Source {sorted(shared)} with Super-NI test task {test_task}; refused to keep "
                    "test data out of the release",
                )

    def _all_test_sources(self) -> dict[str, list[str]]:
        """Shipped table plus the Source of every test task file found in the data dirs."""
        import json

        for data_dir in self.dirs:
            for task in self.catalog.superni_test_tasks - set(self.test_sources):
                path = data_dir / "super-ni" / "tasks" / f"{task}.json"
                if path.is_file():
                    self.test_sources[task] = json.loads(path.read_text(encoding="utf-8")).get("Source") or []
        return self.test_sources


def _stage_config(cls, values: dict, option: str):
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


def _pairs_symmetric(spec: SourceSpec) -> bool:
    """Dedup compares (query, positive) unordered for symmetric pair sources; Super-NI inputs never pair so."""
    return spec.symmetric and spec.adapter != SUPERNI


def _show_stage(progress: Progress, task, source: str, stage: str) -> None:
    progress.update(task, description=f"{source} · {stage}")


def _write_release(out, results, skipped, absent, options, selection, dirs, pipeline) -> dict:
    from medi.outdir import RELEASE, check_out

    check_out(out, RELEASE, replace=True)  # a new or empty folder or an earlier release only (medi/outdir.py)
    tasks = [(r.spec.name, r.triples) for r in results if r.triples]
    table = release_table(tasks)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a release is meant to be shared
    try:
        shards = write_shards(table, staging / "data", options.shard_rows, "MEDI-style release built by medi")
        for path in (staging / "data").iterdir():
            path.rename(staging / path.name)
        (staging / "data").rmdir()
        contamination = _write_contamination(staging, pipeline)
        manifest = _manifest(results, skipped, absent, options, selection, dirs, pipeline, shards, tasks)
        manifest["contamination"] = contamination
        manifest["files"] = _file_checksums(staging)
        write_manifest(staging, manifest)
        _replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _write_contamination(folder: Path, pipeline: Pipeline) -> dict:
    """``contamination.json``: per source and evaluation set, hits per layer with examples; its summary."""
    report = contamination_report(pipeline.contamination, pipeline.eval_index)
    report["skipped_eval_sets"] = pipeline.eval_skipped
    (folder / CONTAMINATION).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    keys = ("eval_sets", "totals", "training_datasets", "source_shares_dataset_with", "skipped_eval_sets")
    return {"file": CONTAMINATION, **{key: report[key] for key in keys}}


def _file_checksums(folder: Path) -> list[dict]:
    """Size and sha256 of every file of the release (the manifest itself excepted)."""
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    return [
        {"file": p.relative_to(folder).as_posix(), "bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in paths
    ]


def _replace(staging: Path, out: Path) -> None:
    """Move the finished release into place; an older release at ``out`` is removed only then (never a folder
    medi did not write, nor one holding files medi did not write: ``medi.outdir``)."""
    from medi.outdir import RELEASE, install

    install(staging, out, RELEASE, replace=True)


def _manifest(results, skipped, absent, options, selection, dirs, pipeline, shards, tasks) -> dict:
    first_row, task_index = 0, []
    for task_id, (name, triples) in enumerate(tasks):
        task_index.append({"task_name": name, "task_id": task_id, "first_row": first_row, "rows": len(triples)})
        first_row += len(triples)
    encoder = pipeline._encoder
    return {
        "format": FORMAT_VERSION,
        "medi_version": medi.__version__,
        "selection": selection,
        "data_dirs": [str(d) for d in dirs],
        "seed": options.seed,
        "config": options.model_dump(mode="json"),
        "mining_defaults": asdict(MineConfig()),
        "encoder": encoder.identity() if encoder else None,
        "versions": library_versions(),
        "rows": first_row,
        "tasks": task_index,
        "shards": shards,
        "sources": {r.spec.name: r.summary() for r in results},
        "skipped_sources": skipped,
        "absent_sources": {"count": len(absent), "names": absent},
    }


class ReleaseConfig(BaseModel):
    """A checked-in release description: ``manifests/<release>/build.yaml``."""

    model_config = ConfigDict(extra="forbid")

    sources: str | list[str]
    data_dirs: list[str] = Field(default_factory=list)
    out: str | None = None
    options: BuildOptions = Field(default_factory=BuildOptions)

    @classmethod
    def load(cls, path: Path) -> ReleaseConfig:
        """Parse and validate; a wrong key or value is an error naming the file and the key."""
        from pydantic import ValidationError

        from medi.catalog import load_yaml

        data = load_yaml(path)
        if not isinstance(data, dict):
            raise MediError(f"{path}: expected a mapping with `sources:` and build options")
        try:
            config = cls(**data)
        except ValidationError as exc:
            raise MediError(f"{path}: {explain_validation(exc)}") from exc
        return config
