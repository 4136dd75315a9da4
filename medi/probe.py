"""``medi probe``: what a release teaches a model — a fixed-budget fine-tune, then the standard evaluations.

Before: the untouched model on every evaluation set, without instructions (the published protocol, variant
``before``) and with them (``before-instructed``). After: for each release (and each left-out source with
``ablate``), a fresh copy of the model fine-tuned for ``steps`` steps with MultipleNegativesRankingLoss over
(query, positive, negative) — every batch from one task, no text twice in a batch, the instruction before each
text as INSTRUCTOR trains — then evaluated with instructions. A row whose negative is empty (a release built with
``--negatives-from none``) trains as a (query, positive) pair with in-batch negatives only.

Same releases, seed and device: the same numbers. The model's own folder is never written; the fine-tuned copies
live in a temporary folder removed at the end. ``<out>/probe.json`` and ``<out>/probe.png`` are written last,
each whole or not at all.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from rich.console import Console

from medi.atomic import atomic_path
from medi.errors import MediError
from medi.options import BUNDLED_ENCODER

if TYPE_CHECKING:  # the libraries load when a probe runs: `medi --help` imports this module for ProbeOptions
    import pyarrow as pa

    from medi.encode import Encoder, EncoderConfig
    from medi.evaluate import EvalTask
    from medi.release import Release

FORMAT = "medi-probe/1"
PROBE_JSON, PROBE_PNG = "probe.json", "probe.png"
BEFORE, BEFORE_INSTRUCTED = "before", "before-instructed"
SIDES = {"anchor": "query", "positive": "pos", "negative": "neg"}
PROGRESS_LINES = 10  # plain progress lines per fine-tune when stderr is not a terminal


class ProbeOptions(BaseModel):
    """Everything ``medi probe`` takes; the command's options are generated from these fields."""

    model_config = ConfigDict(extra="forbid")

    releases: list[Path] = Field(
        min_length=1, description="Release folders (medi build --out)", json_schema_extra={"cli": "argument"}
    )
    evals: list[Path] = Field(
        min_length=1,
        description="Evaluation set folder: STS .tsv/.csv, BEIR folder or classification .jsonl (repeatable)",
        json_schema_extra={"cli": "--eval"},
    )
    model: str = Field(BUNDLED_ENCODER, description="sentence-transformers model folder or Hub id to fine-tune")
    steps: int = Field(200, ge=1, description="Fine-tune steps per release (a GPU takes more)")
    batch_size: int = Field(32, ge=2, description="Rows per training batch (every batch from one task)")
    seed: int = Field(0, description="Seed of the fine-tune: same releases, seed and device, same numbers")
    ablate: list[str] = Field(
        default_factory=list,
        description="Leave-one-source-out variants: source names (repeatable or comma-separated), or each",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto (CUDA when present), cpu or cuda")
    out: Path = Field(Path("probe"), description="Folder for probe.json and probe.png (earlier ones replaced)")
    learning_rate: float = Field(2e-5, gt=0, description="Peak learning rate (AdamW, linear decay)")
    warmup_ratio: float = Field(0.1, ge=0, le=1, description="Share of the steps spent warming up")
    max_seq_length: int | None = Field(
        None, ge=8, description="Tokens per training text (default: the model's own); evaluation uses the model's own"
    )
    eval_batch_size: int = Field(64, ge=1, description="Texts per encoding batch in the evaluations")
    negatives: int | None = Field(
        None,
        ge=0,
        description="Negatives per training row: neg, then extra_negs (default: all a row has; 0: in-batch only)",
    )
    cache_dir: Path | None = Field(None, description="Embedding cache for the untouched model (~/.cache/medi)")

    @classmethod
    def flags(cls) -> dict[str, str]:
        """{field: its command-line flag}; ``argument`` for the positional RELEASE arguments."""
        return {
            name: (field.json_schema_extra or {}).get("cli", "--" + name.replace("_", "-"))
            for name, field in cls.model_fields.items()
        }

    @field_validator("ablate")
    @classmethod
    def _split_commas(cls, names: list[str]) -> list[str]:
        return [name.strip() for entry in names for name in entry.split(",") if name.strip()]


@dataclass
class Variant:
    """One fine-tune: a release, maybe without one of its sources."""

    name: str
    release: Release
    without: str | None = None

    @property
    def release_name(self) -> str:
        return self.release.folder.name


@dataclass
class Plan:
    """A probe's checked inputs: everything is read and loaded before the first fine-tune."""

    out: Path
    tasks: list[EvalTask]
    releases: list[Release]
    variants: list[Variant]
    model: str  # display name
    folder: Path  # the model's folder, copied (never written) by every fine-tune
    device: str
    untouched: Encoder

    def summary(self, options: ProbeOptions) -> str:
        sets = ", ".join(f"{t.name} {t.kind}" for t in self.tasks)
        return (
            f"probe: {self.model} on {self.device}; {len(self.tasks)} eval set(s) ({sets}); {len(self.variants)} "
            f"fine-tune(s) of {options.steps} steps, batch {options.batch_size}, seed {options.seed}"
        )


def probe(options: ProbeOptions, console: Console | None = None) -> dict:
    """Run the probe; write ``probe.json`` and ``probe.png`` into ``options.out``; return the report."""
    console = console or Console(stderr=True)
    say = _sayer(console)
    plan = prepare(options)
    say(plan.summary(options))
    contamination = {r.folder.name: contamination_counts(r, plan.tasks) for r in plan.releases}
    _warn_contamination(say, contamination)
    started = time.perf_counter()
    results, trained = run_variants(plan, options, console)
    report = {
        "format": FORMAT,
        "model": plan.model,
        "seed": options.seed,
        "steps": options.steps,
        "batch_size": options.batch_size,
        "device": plan.device,
        "seconds": round(time.perf_counter() - started, 1),
        "options": options.model_dump(mode="json"),
        "evals": [_eval_entry(t) for t in plan.tasks],
        "releases": [_release_entry(r) for r in plan.releases],
        "variants": trained,
        "results": results,
        "published": published_comparison(plan.model, plan.tasks, results),
        "contamination": contamination,
        "ablation": ablation_summary(plan.variants, plan.tasks, results),
    }
    write_outputs(plan.out, report)
    say(f"wrote {plan.out / PROBE_JSON} and {plan.out / PROBE_PNG}")
    return report


def prepare(options: ProbeOptions) -> Plan:
    """Check every input (a MediError naming the file or option) and load the untouched model."""
    from medi.encode import pick_device

    _check_extras()
    out = check_probe_out(options.out)
    tasks = load_evals(options.evals)
    releases = open_releases(options.releases)
    variants = plan_variants(releases, options.ablate)
    model, folder = _resolve_model(options.model)
    device = pick_device(options.device)
    return Plan(out, tasks, releases, variants, model, folder, device, _untouched_encoder(options, device))


def run_variants(plan: Plan, options: ProbeOptions, console: Console) -> tuple[list[dict], list[dict]]:
    """(results of before, before-instructed and every fine-tuned variant; each fine-tune's summary)."""
    from medi.encode import Encoder

    say = _sayer(console)
    results = evaluate_variant(BEFORE, plan.untouched, plan.tasks, instructed=False, say=say)
    results += evaluate_variant(BEFORE_INSTRUCTED, plan.untouched, plan.tasks, instructed=True, say=say)
    trained = []
    with tempfile.TemporaryDirectory(prefix="medi-probe-") as work:
        for number, variant in enumerate(plan.variants):
            place = Path(work) / f"variant-{number}"
            model_folder, training = fine_tune(plan.folder, variant, options, plan.device, place, console)
            trained.append({"variant": variant.name, "release": variant.release_name, "without": variant.without,
                            **training})  # fmt: skip
            encoder = Encoder(_encoder_config(options, str(model_folder), plan.device), cache_dir=place / "cache")
            results += evaluate_variant(variant.name, encoder, plan.tasks, instructed=True, say=say)
            shutil.rmtree(place)  # a fine-tuned copy is ~100 MB: keep one at a time
    return results, trained


# --- inputs -------------------------------------------------------------------------------------------------------


def _check_extras() -> None:
    """The fine-tune needs accelerate and the plot matplotlib: say so before any work."""
    import importlib.util

    if missing := [name for name in ("accelerate", "matplotlib") if importlib.util.find_spec(name) is None]:
        raise MediError(f"medi probe needs {' and '.join(missing)}: pip install 'medi[probe]'")


def check_probe_out(out: Path) -> Path:
    """``out`` may be new, a folder, or a folder holding an earlier probe's output; anything else is refused."""
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise MediError(f"--out {out}: not a folder (a file or a symbolic link); give a folder for probe.json")
    report, plot = out / PROBE_JSON, out / PROBE_PNG
    ours = report.is_file() and _is_probe_report(report)
    if report.exists() and not ours:
        raise MediError(f"--out {out}: {report} was not written by medi probe; move it away or give another --out")
    if plot.exists() and not ours:
        raise MediError(f"--out {out}: {plot} exists without medi probe's {PROBE_JSON}; move it or give another --out")
    return out


def _is_probe_report(path: Path) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False


def load_evals(folders: list[Path]) -> list[EvalTask]:
    from medi.evaluate import load_eval

    tasks = [load_eval(folder) for folder in folders]
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise MediError(f"--eval: two evaluation folders share a name ({', '.join(map(str, folders))}); rename one")
    return tasks


def open_releases(folders: list[Path]) -> list[Release]:
    from medi.release import open_release

    releases = [open_release(folder) for folder in folders]
    for release in releases:
        if release.manifest["rows"] == 0:
            raise MediError(f"{release.folder}: the release has no rows; nothing to fine-tune on")
    names = [r.folder.name for r in releases]
    if len(set(names)) != len(names) or {BEFORE, BEFORE_INSTRUCTED} & set(names):
        raise MediError(f"releases {', '.join(map(str, folders))}: each needs its own folder name (not before)")
    return releases


def plan_variants(releases: list[Release], ablate: list[str]) -> list[Variant]:
    """Each release, then its leave-one-source-out variants ("<release>-without-<source>")."""
    sources = {r.folder.name: [t["task_name"] for t in r.tasks if t["rows"]] for r in releases}
    everything = {name for names in sources.values() for name in names}
    each = ablate == ["each"]
    if not each and (unknown := [name for name in ablate if name not in everything]):
        known = ", ".join(sorted(everything))
        raise MediError(f"--ablate {', '.join(unknown)}: no release holds such a source (sources: {known}; or each)")
    variants = []
    for release in releases:
        own = sources[release.folder.name]
        variants.append(Variant(release.folder.name, release))
        for source in own if each else [s for s in ablate if s in own]:
            if len(own) == 1:
                raise MediError(f"--ablate {source}: it is the only source of {release.folder}; nothing would be left")
            variants.append(Variant(f"{release.folder.name}-without-{source}", release, source))
    return variants


def _encoder_config(options: ProbeOptions, model: str, device: str) -> EncoderConfig:
    from medi.encode import EncoderConfig

    return EncoderConfig(name=model, device=device, batch_size=options.eval_batch_size)


def _resolve_model(name: str) -> tuple[str, Path]:
    from medi.encode import resolve_model_path

    try:
        return resolve_model_path(name)
    except MediError as exc:
        raise MediError(f"--model {name}: {exc}") from exc


def _untouched_encoder(options: ProbeOptions, device: str) -> Encoder:
    """The model to evaluate before any fine-tune, loaded now: a folder that is not a sentence-transformers model
    fails before any work."""
    from medi.encode import Encoder

    try:
        encoder = Encoder(_encoder_config(options, options.model, device), cache_dir=options.cache_dir)
        encoder.model  # noqa: B018 (loads it)
    except MediError as exc:
        raise MediError(f"--model {options.model}: {exc}") from exc
    except Exception as exc:  # a foreign folder fails in many ways (safetensors, config JSON, tokenizer files)
        reason = f"{type(exc).__name__}: {exc}"
        raise MediError(f"--model {options.model}: cannot load it as a sentence-transformers model ({reason})") from exc
    return encoder


# --- training -----------------------------------------------------------------------------------------------------


def training_data(release: Release, without: str | None, folder: Path, negatives: int | None = None):
    """``DatasetDict`` {task: rows} of (anchor, positive, negative, negative_2 ...) texts with their instructions
    before them: a row's negatives are ``neg`` then ``extra_negs`` (a build's ``--negatives N``), at most
    ``negatives`` (None: all).

    A task whose rows hold different numbers of negatives (none: an empty ``neg``) becomes one dataset per count, so
    every batch stays one task and one shape. Each is written to ``folder`` as Arrow and memory-mapped: the release
    is never held whole.
    """
    import datasets
    import pyarrow as pa

    folder.mkdir(parents=True, exist_ok=True)
    parts = {}
    for task in release.tasks:
        name = task["task_name"]
        if name == without or not task["rows"]:
            continue
        for rank, (count, part) in enumerate(_by_negative_count(release.task_table(name), negatives)):
            path = folder / f"{len(parts)}.arrow"
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, part.schema) as writer:
                writer.write_table(part)
            fullest = rank == 0 and count > 0  # the rows with the most negatives keep the task's name
            label = name if fullest else f"{name} ({_negatives_label(count)})"
            parts[label] = datasets.Dataset.from_file(str(path))
    return datasets.DatasetDict(parts)


def _negatives_label(count: int) -> str:
    return {0: "no negative", 1: "1 negative"}.get(count, f"{count} negatives")


def _by_negative_count(table: pa.Table, limit: int | None) -> list[tuple[int, pa.Table]]:
    """The task's rows as (anchor, positive, negative, negative_2 ...) tables, one per negatives count, most first."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = {"anchor": instructed(table.column("query")), "positive": instructed(table.column("pos"))}
    negatives = _row_negatives(table, limit)
    counts = pa.array([len(n) for n in negatives], pa.int32())
    tables = []
    for count in sorted(set(counts.to_pylist()), reverse=True):
        keep = pc.equal(counts, count)
        rows = [n for n, k in zip(negatives, counts.to_pylist(), strict=True) if k == count]
        part = {k: v.filter(keep) for k, v in columns.items()}
        for j in range(count):
            part["negative" if j == 0 else f"negative_{j + 1}"] = pa.array([n[j] for n in rows], pa.string())
        tables.append((count, pa.table(part)))
    return tables


def _row_negatives(table: pa.Table, limit: int | None) -> list[list[str]]:
    """Each row's instructed negative texts in rank order: ``neg`` (when not empty), then ``extra_negs``."""
    from medi.evaluate import with_instruction

    first = instructed(table.column("neg")).to_pylist()
    texts = table.column("neg").combine_chunks().field("text").to_pylist()
    extras = table.column("extra_negs").to_pylist() if "extra_negs" in table.column_names else [[]] * len(first)
    rows = []
    for head, text, extra in zip(first, texts, extras, strict=True):
        row = ([head] if text else []) + [with_instruction(e["instruction"], e["text"]) for e in extra or () if text]
        rows.append(row if limit is None else row[:limit])
    return rows


def instructed(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """``instruction text`` per row (``medi.evaluate.with_instruction``), the text alone where there is none."""
    import pyarrow.compute as pc

    instruction = pc.fill_null(pc.struct_field(column, "instruction"), "")
    text = pc.fill_null(pc.struct_field(column, "text"), "")
    bare = pc.or_(pc.equal(instruction, ""), pc.match_substring_regex(instruction, r"\s$"))
    separator = pc.if_else(bare, "", " ")
    return pc.binary_join_element_wise(instruction, separator, text, "")


def fine_tune(
    model_folder: Path, variant: Variant, options: ProbeOptions, device: str, work: Path, console: Console
) -> tuple[Path, dict]:
    """Fine-tune a fresh copy of the model on the variant's rows; (saved copy in ``work``, training summary)."""
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.base.sampler import BatchSamplers, MultiDatasetBatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import PrinterCallback, set_seed
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    data = training_data(variant.release, variant.without, work / "data", options.negatives)
    rows = sum(len(d) for d in data.values())
    _sayer(console)(
        f"train {variant.name}: {options.steps} steps of batch {options.batch_size} over {rows:,} rows "
        f"in {len(data)} task(s)"
    )
    set_seed(options.seed)  # dropout and the model card's example picks draw from the global generators
    model = SentenceTransformer(str(model_folder), device=device)
    own_length = model.max_seq_length
    if options.max_seq_length:
        model.max_seq_length = options.max_seq_length
    trainer = _trainer_class(SentenceTransformerTrainer)(
        model=model,
        args=_training_args(options, device, work / "trainer", BatchSamplers, MultiDatasetBatchSamplers),
        train_dataset=data,
        loss=MultipleNegativesRankingLoss(model),
        callbacks=[_progress_callback(variant.name, options.steps, console)],
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log line to stdout, where the table goes
    started = time.perf_counter()
    output = trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    model.max_seq_length = own_length  # the evaluation reads the saved copy's own length
    model.save(str(work / "model"), create_model_card=False)
    del trainer, model
    return work / "model", {
        "rows": rows,
        "tasks": len(data),
        "negatives": max((sum(c.startswith("negative") for c in d.column_names) for d in data.values()), default=0),
        "steps": output.global_step,
        "loss": round(output.training_loss, 6),
        "loss_first": round(losses[0], 6) if losses else None,
        "loss_last": round(losses[-1], 6) if losses else None,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _training_args(options: ProbeOptions, device: str, folder: Path, batch_samplers, multi_samplers):
    from sentence_transformers import SentenceTransformerTrainingArguments

    return SentenceTransformerTrainingArguments(
        output_dir=str(folder),
        max_steps=options.steps,
        per_device_train_batch_size=options.batch_size,
        learning_rate=options.learning_rate,
        warmup_steps=options.warmup_ratio,  # a float is a share of the steps (transformers 5)
        seed=options.seed,
        data_seed=options.seed,
        full_determinism=device == "cuda",  # deterministic kernels; CPU kernels already repeat run to run
        batch_sampler=batch_samplers.NO_DUPLICATES,
        multi_dataset_batch_sampler=multi_samplers.PROPORTIONAL,
        dataloader_num_workers=0,
        dataloader_drop_last=False,  # a task smaller than a batch still trains
        use_cpu=device == "cpu",
        save_strategy="no",
        report_to="none",
        logging_steps=max(1, options.steps // PROGRESS_LINES),
        disable_tqdm=True,
    )


def _trainer_class(base: type) -> type:
    class Trainer(base):
        def add_model_card_callback(self, default_args_dict: dict) -> None:
            """No model card: the copy is thrown away (and its widget examples print a progress bar)."""

    return Trainer


def _progress_callback(name: str, steps: int, console: Console):
    from transformers import TrainerCallback

    say = _sayer(console)
    started = time.perf_counter()

    class Progress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                elapsed = time.perf_counter() - started
                say(f"train {name}: step {state.global_step}/{steps}, loss {float(logs['loss']):.4f}, {elapsed:.0f} s")

    return Progress()


# --- evaluation ---------------------------------------------------------------------------------------------------


def evaluate_variant(variant: str, encoder: Encoder, tasks: list[EvalTask], *, instructed: bool, say) -> list[dict]:
    """One result per (evaluation set, metric); the main metric first, marked ``main``."""
    results = []
    for task in tasks:
        started = time.perf_counter()
        scores = task.evaluate(encoder.embed, instructed)
        main = scores[task.main_metric]
        say(f"{variant} on {task.name}: {task.main_metric} {main:.4f} ({time.perf_counter() - started:.0f} s)")
        for metric in [task.main_metric, *(m for m in task.metrics if m != task.main_metric)]:
            results.append({"variant": variant, "eval": task.name, "kind": task.kind, "metric": metric,
                            "value": round(float(scores[metric]), 6), "main": metric == task.main_metric,
                            "instructed": instructed})  # fmt: skip
    return results


def main_value(results: list[dict], variant: str, eval_name: str) -> float | None:
    for r in results:
        if r["variant"] == variant and r["eval"] == eval_name and r["main"]:
            return r["value"]
    return None


def published_comparison(model: str, tasks: list[EvalTask], results: list[dict]) -> list[dict]:
    """The before-numbers next to probe.yaml's published scores of the same model."""
    rows = []
    for task in tasks:
        entry = task.published(model)
        if entry is None:
            continue
        for metric, value in entry.items():
            measured = next((r["value"] for r in results if (r["variant"], r["eval"], r["metric"]) ==
                             (BEFORE, task.name, metric)), None)  # fmt: skip
            if metric == "source" or measured is None:
                continue
            rows.append({"eval": task.name, "metric": metric, "published": value, "before": measured,
                         "difference": round(measured - float(value), 6), "source": entry["source"]})  # fmt: skip
    return rows


def ablation_summary(variants: list[Variant], tasks: list[EvalTask], results: list[dict]) -> list[dict]:
    """What each left-out source adds: the full release's main metric minus the variant's without it."""
    rows = []
    for variant in variants:
        if variant.without is None:
            continue
        for task in tasks:
            full = main_value(results, variant.release_name, task.name)
            less = main_value(results, variant.name, task.name)
            rows.append({"release": variant.release_name, "source": variant.without, "eval": task.name,
                         "metric": task.main_metric, "full": full, "without": less,
                         "adds": round(full - less, 6)})  # fmt: skip
    return rows


# --- contamination ------------------------------------------------------------------------------------------------


def contamination_counts(release: Release, tasks: list[EvalTask]) -> dict[str, dict]:
    """{eval set: {rows, exact, ngram, examples}}: release rows holding an evaluation text, found as the
    decontaminate stage finds them (canonical exact match, then n-gram coverage), for the sets with any."""
    from medi.stages.decontaminate import EvalIndex
    from medi.stages.decontaminate import EvalSet as IndexedSet
    from medi.stages.normalize import canonical
    from medi.stages.report import MAX_EXAMPLES

    index = EvalIndex([IndexedSet(t.name, t.texts()) for t in tasks])
    found: dict[str, dict] = {}
    columns = release.dataset.data.table.select(["row_id", *SIDES.values()])
    for batch in columns.to_batches(max_chunksize=4096):
        for row in batch.to_pylist():
            hits: dict[str, tuple[str, str, str]] = {}
            for side in SIDES.values():
                form = canonical(row[side]["text"] or "")
                layer, numbers = "exact", index.exact_hits(form)
                if not numbers:
                    layer, numbers = "ngram", [n for n, _ in index.ngram_hits(form.split())]
                for number in numbers:
                    name = index.sets[index.texts[number].set_index].name
                    hits.setdefault(name, (layer, side, index.texts[number].text))
            for name, (layer, side, eval_text) in hits.items():
                entry = found.setdefault(name, {"rows": 0, "exact": 0, "ngram": 0, "examples": []})
                entry["rows"] += 1
                entry[layer] += 1
                if len(entry["examples"]) < MAX_EXAMPLES:
                    entry["examples"].append({"row_id": row["row_id"], "field": side, "layer": layer,
                                              "text": row[side]["text"], "eval_text": eval_text})  # fmt: skip
    return found


def _warn_contamination(say, contamination: dict[str, dict]) -> None:
    for release, per_set in contamination.items():
        for name, entry in per_set.items():
            say(
                f"warning: {entry['rows']} row(s) of {release} hold text of eval set {name} "
                f"({entry['exact']} exact, {entry['ngram']} n-gram); its after-numbers are not a clean measurement"
            )


# --- output -------------------------------------------------------------------------------------------------------


def markdown_table(report: dict) -> str:
    """Main metric per variant and evaluation set, with the difference from ``before``."""
    evals = [(e["name"], e["main_metric"]) for e in report["evals"]]
    variants = list(dict.fromkeys(r["variant"] for r in report["results"]))
    lines = ["| variant | " + " | ".join(f"{name} {metric}" for name, metric in evals) + " |"]
    lines.append("| --- |" + " --- |" * len(evals))
    for variant in variants:
        cells = []
        for name, _ in evals:
            value = main_value(report["results"], variant, name)
            base = main_value(report["results"], BEFORE, name)
            cells.append(f"{value:.4f}" if variant == BEFORE else f"{value:.4f} ({value - base:+.4f})")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ablation_table(report: dict) -> str:
    if not report["ablation"]:
        return ""
    lines = ["| release | source left out | eval set | metric | full | without | source adds |"]
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    for r in report["ablation"]:
        lines.append(f"| {r['release']} | {r['source']} | {r['eval']} | {r['metric']} | {r['full']:.4f} | "
                     f"{r['without']:.4f} | {r['adds']:+.4f} |")  # fmt: skip
    return "\n".join(lines)


def published_lines(report: dict) -> list[str]:
    return [
        f"{p['eval']} {p['metric']}: before {p['before']:.4f}, published {p['published']:.4f} "
        f"({p['difference']:+.4f}; {' '.join(p['source'].split())})"
        for p in report["published"]
    ]


def write_outputs(out: Path, report: dict) -> None:
    """The plot, then probe.json (its presence marks a finished probe); each renamed into place whole."""
    out.mkdir(parents=True, exist_ok=True)
    _replace_atomically(out / PROBE_PNG, lambda path: write_plot(report, path))
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    _replace_atomically(out / PROBE_JSON, lambda path: path.write_text(text, encoding="utf-8"))


def _replace_atomically(target: Path, write) -> None:
    with atomic_path(target) as temporary:  # whole, flushed, then renamed over the target
        write(temporary)


def write_plot(report: dict, path: Path) -> None:
    """Grouped bars: one group per evaluation set (its main metric), one bar per variant."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    evals = [(e["name"], e["main_metric"]) for e in report["evals"]]
    variants = list(dict.fromkeys(r["variant"] for r in report["results"]))
    width = 0.8 / len(variants)
    figure, axes = plt.subplots(figsize=(max(6, 1.2 + len(evals) * len(variants) * 0.5) + 2.5, 4.5))
    for number, variant in enumerate(variants):
        values = [main_value(report["results"], variant, name) or 0.0 for name, _ in evals]
        positions = np.arange(len(evals)) + (number - (len(variants) - 1) / 2) * width
        bars = axes.bar(positions, values, width, label=variant)
        axes.bar_label(bars, fmt="%.3f", fontsize=7, rotation=90, padding=2)
    axes.set_xticks(np.arange(len(evals)), [f"{name}\n({metric})" for name, metric in evals])
    axes.set_ylim(0, 1.1)
    axes.set_ylabel("score (0-1)")
    axes.set_title(f"medi probe: {report['model']}, {report['steps']} steps, seed {report['seed']}")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=120)
    plt.close(figure)


def _eval_entry(task: EvalTask) -> dict:
    query, document = task.instructions
    return {"name": task.name, "kind": task.kind, "folder": str(task.folder), "main_metric": task.main_metric,
            "metrics": list(task.metrics), "instructions": {"query": query, "document": document}}  # fmt: skip


def _release_entry(release: Release) -> dict:
    return {"name": release.folder.name, "folder": str(release.folder), "rows": release.manifest["rows"],
            "sources": [t["task_name"] for t in release.tasks]}  # fmt: skip


def _sayer(console: Console):
    def say(line: str) -> None:
        console.print(line, highlight=False, markup=False, soft_wrap=True)

    return say
