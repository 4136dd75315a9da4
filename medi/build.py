"""The build: fetch → sample (adapt, normalize) → clean (dedup, decontaminate, filter) → select → mine, per source
(``medi.stages.units``: each stage an Arrow-batch unit with its config and report, stored on disk as it finishes), then
instruct → shard → manifest, streamed source by source into the release.

``build()`` is what ``medi build`` runs; it returns the manifest it wrote. Who runs the sources' stages is an
executor's business (``medi.executors``: this process, a process pool or Ray, asked for by name); the release is
the same bytes whichever runs them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

import medi
from medi.catalog import Catalog, SourceSpec, spec_summary
from medi.encode import default_cache_dir
from medi.errors import MediError, explain_validation
from medi.executors import execute, executor_name, problems_said
from medi.fetch import find_in_mirrors, sha256_file
from medi.options import EXECUTION_OPTIONS, BuildOptions
from medi.progress import BuildProgress
from medi.release.manifest import MANIFEST, library_versions, write_manifest
from medi.release.shard import ShardWriter, release_batch
from medi.schema import FORMAT_VERSION, records_of, triples_of
from medi.stages.decontaminate import contamination_report
from medi.stages.dedup import DedupConfig, DedupReport, SeenPairs, dedup
from medi.stages.instruct import attach
from medi.stages.mine import MineConfig
from medi.stages.units import (
    Runner,
    check_stage_options,
    pairs_symmetric,
    reports,
    rows_read,
)

MAX_LISTED_PROBLEMS = 20
CONTAMINATION = "contamination.json"


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

    With ``resume`` (the default) every stage output already stored under the cache is reused, so a killed or
    repeated build redoes only unfinished work and writes the same bytes; ``resume=False`` recomputes.
    """
    from medi.outdir import RELEASE, check_out

    options = options or BuildOptions()
    console = console or Console(stderr=True)
    out = Path(out)
    check_out(out, RELEASE, replace=True)  # refuse a foreign --out before any work
    started = time.perf_counter()
    catalog = Catalog.load()
    specs, source_set = catalog.resolve(sources)
    dirs = [Path(d) for d in data_dirs or []] or ([source_set.data_dir] if source_set and source_set.data_dir else [])
    for folder in dirs:
        if not folder.is_dir():
            raise MediError(f"--data-dir {folder}: no such folder")
    selection = sources if isinstance(sources, str) else ",".join(sources)
    specs, absent = _present(specs, dirs, selection, catalog)
    runner = Runner(options, dirs, cache_dir or default_cache_dir(), reuse=resume)
    if missing := runner.book.missing(specs, options.require_reviewed):
        raise MediError("sources without usable instructions:\n  " + "\n  ".join(missing))
    with BuildProgress(console, len(specs)) as progress:
        runner.progress = progress.update
        outcomes = execute(executor_name(options), specs, runner, progress)
        reused = sum(len(o.reused) for o in outcomes)
        if reused:
            console.print(f"resumed: reused {reused} finished stage outputs", highlight=False)
        manifest = _write_release(out, specs, outcomes, absent, options, selection, dirs, runner)
    _say_losses(console, manifest)
    _say_drafts(console, manifest)
    if manifest["rows"] == 0:
        why = "every selected source was skipped or emptied (see above)" if specs else "no source was selected"
        raise MediError(f"nothing written to {out}: the build kept 0 rows; {why}")
    console.print(f"[green]wrote[/] {out} — {manifest['rows']} rows in {time.perf_counter() - started:.1f} s")
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


# --- the release: instruct → shard → manifest, streamed source by source --------------------------------------


def _write_release(out, specs, outcomes, absent, options, selection, dirs, runner) -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a release is meant to be shared
    try:
        writer = ShardWriter(staging / "data", options.shard_rows, "MEDI-style release built by medi")
        by_name = {spec.name: spec for spec in specs}
        summaries, tasks, contamination = {}, [], {}
        seen = SeenPairs()
        built = [o for o in outcomes if not o.skipped]
        for outcome in built:
            spec = by_name[outcome.name]
            last = outcome is built[-1]
            rows, across = _write_source(writer, spec, outcome, runner, seen, len(tasks), last)
            if rows:
                tasks.append(
                    {"task_name": spec.name, "task_id": len(tasks), "first_row": writer.rows - rows, "rows": rows}
                )
            summaries[spec.name], contamination[spec.name] = _source_summary(spec, outcome, runner, rows, across)
        shards = writer.close()
        for path in (staging / "data").iterdir():
            path.rename(staging / path.name)
        (staging / "data").rmdir()
        skipped = {o.name: o.skipped for o in outcomes if o.skipped}
        manifest = _manifest(summaries, skipped, absent, options, selection, dirs, runner, shards, tasks)
        manifest["contamination"] = _write_contamination(staging, contamination, runner)
        manifest["files"] = _file_checksums(staging)
        write_manifest(staging, manifest)
        if manifest["rows"]:  # a release of 0 rows is not one: refused (build() says why), an earlier one kept
            _replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _write_source(writer, spec, outcome, runner, seen: SeenPairs, task_id: int, last: bool) -> tuple[int, DedupReport]:
    """Stream one source's mined rows into the shards with their instructions; count (or drop, with
    ``dedup.across_sources: remove``) pairs an earlier source of this build already had."""
    config = runner.dedup_config()
    across = DedupReport()
    keep_ids = None
    if seen or not last:  # nothing to compare with, nothing to remember for: a lone source skips it
        selected = [r for batch in outcome.output("select").batches() for r in records_of(batch)]
        kept = dedup(
            selected,
            DedupConfig(**{**asdict(config), "near": False}),
            across,
            symmetric=pairs_symmetric(spec),
            source=spec.name,
            seen=seen,
        )
        keep_ids = {r.row_id for r in kept} if config.across_sources == "remove" else None
    meta = outcome.infos["sample"]["meta"] or {}
    wordings = runner.book.for_source(spec, meta)
    rows = 0
    for batch in outcome.output("mine").batches():
        triples = [t for t in triples_of(batch) if keep_ids is None or t.row_id in keep_ids]
        if not triples:
            continue
        attach(triples, wordings, runner.options.instructions, runner.options.seed)
        writer.write(release_batch(spec.name, task_id, triples))
        rows += len(triples)
    mined = outcome.infos["mine"].get("kept", 0)
    across.dropped = Counter({"duplicate_in_other_source": mined - rows}) if mined > rows else Counter()
    return rows, across


def _source_summary(spec, outcome, runner, rows: int, across: DedupReport) -> tuple[dict, object]:
    found = reports(outcome)
    found["dedup"].across = across.across
    found["dedup"].dropped.update(across.dropped)
    dropped = Counter()
    sample = found["sample"]
    info = outcome.infos["sample"]
    dropped.update(info.get("rows_lost") or {})  # what the problems cost: rows_read counts them
    if sample.size is not None and sample.rows_read > sample.sampled:
        dropped["not_sampled"] = sample.rows_read - sample.sampled
    for name in ("normalize", "dedup", "decontaminate", "filter", "select", "mine"):
        dropped.update(found[name].dropped)
    meta = outcome.infos["sample"]["meta"] or {}
    wordings = runner.book.for_source(spec, meta)
    summary = {
        "adapter": spec.adapter,
        "catalog": spec_summary(spec),
        "input": outcome.fetched,
        "task": meta or None,  # Super-NI: Definition, Categories, Domains, Source (reviewers read them)
        "rows_read": rows_read(info),
        "rows_kept": rows,
        "sample": sample.summary(),
        "dropped": dict(sorted(dropped.items())),
        "changed": dict(sorted(found["normalize"].changed.items())),
        "problem_count": info["problem_count"],
        "rows_lost": info.get("rows_lost") or {},
        "rest_lost": info.get("rest_lost", 0),
        "problems": [str(p) for p in found["problems"][:MAX_LISTED_PROBLEMS]],
        "clean": {
            "dedup": found["dedup"].summary(),
            "decontaminate": found["decontaminate"].summary(),
            "filter": found["filter"].summary(),
            "select": found["select"].summary(),
        },
        "mining": found["mine"].summary(),
        "instructions": wordings.summary(),
    }
    return summary, found["decontaminate"]


def _say_losses(console: Console, manifest: dict) -> None:
    """One stderr line per source with problems, saying what they cost, and the total: nothing is lost quietly."""
    problems = rows = rest = 0
    for name, source in manifest["sources"].items():
        if source.get("problem_count"):
            problems += source["problem_count"]
            rows += sum((source.get("rows_lost") or {}).values())
            rest += source.get("rest_lost", 0)
            first = source["problems"][0] if source["problems"] else "?"
            console.print(f"[yellow]problems[/] {name}: {problems_said(source)}; first: {first}", highlight=False)
    for name, why in manifest["skipped_sources"].items():
        console.print(f"[yellow]skipped[/] {name}: {_without_name(why['message'], name)}", highlight=False)
    if problems:
        rest_said = f", and the rest of {rest} file(s) cut short" if rest else ""
        console.print(
            f"[yellow]{problems} problem(s)[/]: {rows:,} rows lost{rest_said}; listed in the manifest; "
            "--on-error fail stops instead",
            highlight=False,
        )


def _say_drafts(console: Console, manifest: dict) -> None:
    """A warning naming the sources whose instruction wordings in this release are drafts, not reviewed."""
    if names := manifest["draft_instructions"]["names"]:
        console.print(
            f"[yellow]warning:[/] {len(names)} source(s) carry draft instruction wordings, not reviewed: "
            f"{', '.join(names)}; review them (medi review export / import) or refuse drafts with --require-reviewed",
            highlight=False,
        )


def _draft_instructions(summaries: dict, options: BuildOptions) -> dict:
    """The sources whose wordings in the release are drafts (none enter with ``instructions: none``)."""
    drafts = [] if options.instructions == "none" else [
        name for name, s in summaries.items() if s["instructions"]["status"] == "draft"
    ]  # fmt: skip
    return {"count": len(drafts), "names": drafts}


def _without_name(message: str, name: str) -> str:
    return message[len(name) + 2 :] if message.startswith(f"{name}: ") else message


def _write_contamination(folder: Path, reports_by_source: dict, runner: Runner) -> dict:
    """``contamination.json``: per source and evaluation set, hits per layer with examples; its summary."""
    report = contamination_report(reports_by_source, runner.eval_index)
    report["skipped_eval_sets"] = runner.eval_skipped
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


def _manifest(summaries, skipped, absent, options, selection, dirs, runner, shards, tasks) -> dict:
    mined = any(s["mining"]["kept"] for s in summaries.values())
    return {
        "format": FORMAT_VERSION,
        "medi_version": medi.__version__,
        "selection": selection,
        "data_dirs": [str(d) for d in dirs],
        "seed": options.seed,
        "config": options.model_dump(mode="json", exclude=EXECUTION_OPTIONS),
        "mining_defaults": asdict(MineConfig()),
        "encoder": runner.encoder.identity() if mined else None,
        "teacher": _teacher(summaries),
        "versions": library_versions(),
        "rows": sum(t["rows"] for t in tasks),
        "tasks": tasks,
        "shards": shards,
        "sources": summaries,
        "skipped_sources": skipped,
        "absent_sources": {"count": len(absent), "names": absent},
        "draft_instructions": _draft_instructions(summaries, options),
    }


def _teacher(summaries: dict) -> dict | None:
    """The teacher that guarded the mined negatives (one per build: each source's mine report names it), or None."""
    return next((t for s in summaries.values() if (t := s["mining"].get("teacher"))), None)


class ReleaseConfig(BaseModel):
    """A checked-in release description: ``manifests/<release>/build.yaml``."""

    model_config = ConfigDict(extra="forbid")

    sources: str | list[str]
    data_dirs: list[str] = Field(default_factory=list)
    out: str | None = None
    options: BuildOptions = Field(default_factory=BuildOptions)

    @staticmethod
    def find(path: Path) -> Path:
        """``path`` as given, else the shipped config under medi's home: ``--config manifests/demo/build.yaml``
        works from any folder, an installed package included."""
        from medi.catalog import project_root

        path = Path(path)
        if path.exists() or path.is_absolute():
            return path
        shipped = project_root() / path
        return shipped if shipped.exists() else path

    def data_dir_paths(self) -> list[Path]:
        """The config's data dirs: relative ones from the current folder, else from medi's home (``demo/mirror``)."""
        return [ReleaseConfig.find(Path(d)) for d in self.data_dirs]

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
            check_stage_options(config.options)
        except ValidationError as exc:
            raise MediError(f"{path}: {explain_validation(exc)}") from exc
        except MediError as exc:
            raise MediError(f"{path}: {exc}") from exc
        return config
