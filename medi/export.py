"""Exports: a release in the layouts other trainers read.

- ``instructor``: one JSON array of MEDI rows for INSTRUCTOR's ``train.py`` (batches never span two tasks);
- ``medi2``: GritLM's MEDI2 layout, one JSONL file per source in a folder;
- ``st-triplets``: a ``datasets`` folder sentence-transformers trains on directly;
- ``parquet``: one Parquet file per source under ``data/<source>/`` (what ``medi publish`` uploads).
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medi.atomic import atomic_path
from medi.errors import MediError
from medi.fetch import sha256_file
from medi.outdir import check_out, install
from medi.release import Release
from medi.schema import FEATURES, medi_row

FORMATS = ("instructor", "medi2", "st-triplets", "parquet")
BATCH_POLICIES = ("trim", "pad")
INSTRUCTOR_PREFIX = "Represent "
INSTRUCTOR_SEPARATOR = "!@#$%^&**!@#$%^&**"  # train.py joins instruction and text with it, then splits on it
ST_INSTRUCTIONS = ("prefix", "prompts")
SIDES = ("query", "pos", "neg")
ST_COLUMNS = {"query": "anchor", "pos": "positive", "neg": "negative"}
READ_BATCH = 2_000

PARQUET_FILE = "train-00000-of-00001.parquet"  # the Hub's split-from-filename convention: split "train"
PARQUET_ROW_GROUP = 10_000


def parquet_path(source: str) -> str:
    """Where a source's rows go, relative to the export folder (and to a Hub dataset repo's root)."""
    return f"data/{source}/{PARQUET_FILE}"


def write_parquet_per_source(release: Release, folder: Path | str) -> list[dict]:
    """Write one Parquet file per source under ``folder/data/<source>/``; same release, same bytes.

    Returns ``[{source, path, rows, bytes, sha256}]`` in release order; ``path`` is relative to ``folder``
    (posix, the path in a Hub repo). The schema carries the release's ``datasets`` Features, so
    ``datasets.load_dataset("parquet", ...)`` gives back the same nested columns.
    """
    folder = Path(folder)
    written = []
    for task in release.tasks:
        table = _with_features(release.task_table(task["task_name"]))
        relative = parquet_path(task["task_name"])
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(table, path)
        written.append(
            {
                "source": task["task_name"],
                "path": relative,
                "rows": table.num_rows,
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
            }
        )
    return written


def _with_features(table: pa.Table) -> pa.Table:
    """The table with the ``huggingface`` schema metadata ``datasets`` reads its Features from."""
    metadata = {"huggingface": json.dumps({"info": {"features": FEATURES.to_dict()}}, sort_keys=True)}
    return table.replace_schema_metadata(metadata)


def _write_atomically(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as partial:
        pq.write_table(table, partial, compression="zstd", row_group_size=PARQUET_ROW_GROUP, write_statistics=True)


@dataclass
class TaskExport:
    """What an export did to one task (source): rows in the release, rows written, padding rows added."""

    task_name: str
    task_id: int
    rows: int
    written: int
    added: int = 0
    in_batch_repeats: int = 0  # padding rows sharing a batch with their original (task smaller than a batch)

    @property
    def dropped(self) -> int:
        return self.rows - (self.written - self.added)


def export(
    release: Release,
    fmt: str,
    out: Path | str,
    *,
    batch_size: int | None = None,
    batch_policy: str = "trim",
    seed: int = 0,
    st_instructions: str = "prefix",
    overwrite: bool = False,
) -> dict:
    """Write ``release`` in format ``fmt`` to ``out``; return a report (per task: rows, written, dropped, added).

    ``batch_size`` / ``batch_policy`` apply to ``instructor`` only: INSTRUCTOR's trainer cuts the file into
    consecutive batches and drops every batch that spans two tasks or is short, so each task is trimmed
    (default: its last ``rows % batch_size`` rows are left out — exactly the rows the trainer would lose) or
    padded (rows of the same task repeated, seeded, taken from its earlier batches so no batch holds a row twice
    when the task has a full batch) to a multiple of ``batch_size``.
    """
    if fmt not in FORMATS:
        raise MediError(f"unknown export format {fmt!r}; one of {', '.join(FORMATS)}")
    if batch_policy not in BATCH_POLICIES:
        raise MediError(f"unknown batch policy {batch_policy!r}; one of {', '.join(BATCH_POLICIES)}")
    if batch_size is not None and (batch_size < 1 or fmt != "instructor"):
        raise MediError("--batch-size is a positive number, for --format instructor only")
    if st_instructions not in ST_INSTRUCTIONS:
        raise MediError(f"unknown st-triplets instruction mode {st_instructions!r}; one of prefix, prompts")
    out = Path(out)
    _check_target(out, fmt, release.folder, overwrite)
    _check_negatives(release, fmt)
    release.check_shards()
    plans = [_plan(task, batch_size, batch_policy, seed) for task in release.tasks]
    writer = {
        "instructor": _write_instructor,
        "medi2": _write_medi2,
        "st-triplets": lambda r, o, p: _write_st_triplets(r, o, p, st_instructions),
        "parquet": _write_parquet,
    }[fmt]
    files = writer(release, out, plans)
    tasks = [{**asdict(plan), "dropped": plan.dropped} for plan, _ in plans]
    return {
        "format": fmt,
        "out": str(out),
        "release": str(release.folder),
        "rows": sum(t["written"] for t in tasks),
        "batch_size": batch_size,
        "batch_policy": batch_policy if batch_size else None,
        "dropped": sum(t["dropped"] for t in tasks),
        "added": sum(t["added"] for t in tasks),
        "tasks_written": sum(1 for t in tasks if t["written"]),
        "tasks_left_out": [t["task_name"] for t in tasks if t["rows"] and not t["written"]],  # all rows trimmed
        "tasks": tasks,
        "files": files,
    }


def _check_target(out: Path, fmt: str, release_folder: Path, overwrite: bool) -> None:
    """Refuse what --overwrite must not delete: the release itself, and all but an earlier export of ``fmt``."""
    resolved, release_folder = out.resolve(), release_folder.resolve()
    if resolved == release_folder or resolved in release_folder.parents:
        raise MediError(f"{out}: would replace the release {release_folder}; export somewhere else")
    check_out(out, fmt, replace=overwrite)  # a new path, an empty folder or an earlier export of fmt


def without_negatives(release: Release) -> bool:
    """Whether the release was built with ``mining.negatives_from: none`` (every negative text empty)."""
    return (release.manifest.get("config", {}).get("mining") or {}).get("negatives_from") == "none"


def _check_negatives(release: Release, fmt: str) -> None:
    """INSTRUCTOR's and GritLM's trainers take a negative from every row: refuse a release that has none, rather
    than write rows whose empty negative they would train on as a text."""
    if fmt in ("instructor", "medi2") and without_negatives(release):
        raise MediError(
            f"{release.folder}: built with mining.negatives_from none (no negatives); the {fmt} format's trainer "
            "needs a negative in every row: export st-triplets (anchor/positive, in-batch negatives) or parquet"
        )


def _plan(task: dict, batch_size: int | None, policy: str, seed: int) -> tuple[TaskExport, list[int]]:
    """The row offsets (within the task) to write, in order, and what that does to the task."""
    n = task["rows"]
    plan = TaskExport(task["task_name"], task["task_id"], n, n)
    if not batch_size or n % batch_size == 0:
        return plan, list(range(n))
    rest = n % batch_size
    if policy == "trim":
        plan.written = n - rest
        return plan, list(range(n - rest))
    need = batch_size - rest
    rng = random.Random(f"{seed}:{task['task_name']}")
    earlier = n - rest  # rows of the task's full batches: repeating them keeps the last batch free of twins
    if earlier >= need:
        extra = rng.sample(range(earlier), need)
    else:
        order = list(range(n))
        rng.shuffle(order)
        extra = (order * (need // n + 1))[:need]
        plan.in_batch_repeats = need
    plan.written, plan.added = n + need, need
    return plan, list(range(n)) + extra


def _task_rows(release: Release, plan: TaskExport, offsets: list[int]) -> Iterator[dict]:
    table = release.task_table(plan.task_name)
    for start in range(0, len(offsets), READ_BATCH):
        yield from table.take(offsets[start : start + READ_BATCH]).to_pylist()


def _staging(out: Path) -> Path:
    staging = out.with_name(out.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging) if staging.is_dir() else staging.unlink()
    return staging


def _publish(staging: Path, out: Path, fmt: str) -> None:
    """Swap the finished export into place (the old one, if any, goes only once the new one is complete)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        install(staging, out, fmt, replace=True)  # checked again: replaces only an earlier export of fmt
    except MediError:
        shutil.rmtree(staging) if staging.is_dir() else staging.unlink()
        raise


def instructor_row(row: dict) -> dict:
    """A release row as INSTRUCTOR's ``train.py`` reads it, checked against its assertions.

    INSTRUCTOR joins instruction and text with no separator, so a wording that ends in ':' gets the trailing
    space MEDI's wordings have ("Represent the Wikipedia question for retrieving supporting documents: ").
    """
    medi = medi_row(row)
    for side in SIDES:
        instruction, text = medi[side]
        if instruction and not instruction.startswith(INSTRUCTOR_PREFIX):
            raise MediError(f"row {row['row_id']}: {side} instruction {instruction!r} does not start with 'Represent '")
        if INSTRUCTOR_SEPARATOR in instruction or INSTRUCTOR_SEPARATOR in text:
            raise MediError(f"row {row['row_id']}: {side} holds INSTRUCTOR's separator {INSTRUCTOR_SEPARATOR!r}")
        if instruction and not instruction[-1].isspace():
            medi[side][0] = instruction + " "
    return medi


def _write_instructor(release: Release, out: Path, plans: list) -> list[dict]:
    staging = _staging(out)
    staging.parent.mkdir(parents=True, exist_ok=True)
    with staging.open("w", encoding="utf-8") as handle:
        handle.write("[")
        separator = "\n"
        for plan, offsets in plans:
            for row in _task_rows(release, plan, offsets):
                handle.write(separator + json.dumps(instructor_row(row), ensure_ascii=False))
                separator = ",\n"
        handle.write("\n]\n")
    _publish(staging, out, "instructor")
    return [_file_entry(out, out.name, sum(p.written for p, _ in plans))]


def split_name(source: str) -> str:
    """A source name as a file stem / ``datasets`` split name (``superni/task1146_x`` -> ``superni.task1146_x``)."""
    return re.sub(r"[^\w.]", "_", source.replace("/", "."))


def _unique_split_names(plans: list) -> dict[str, str]:
    names: dict[str, str] = {}
    for plan, _ in plans:
        name = split_name(plan.task_name)
        if name in names:
            raise MediError(f"sources {names[name]!r} and {plan.task_name!r} map to the same file name {name!r}")
        names[name] = plan.task_name
    return names


def medi2_row(row: dict) -> dict:
    """GritLM's MEDI2 layout: ``query`` an [instruction, text] pair, ``pos`` and ``neg`` lists of pairs."""
    return {
        "query": [row["query"]["instruction"], row["query"]["text"]],
        "pos": [[row["pos"]["instruction"], row["pos"]["text"]]],
        "neg": [[row["neg"]["instruction"], row["neg"]["text"]]],
    }


def _write_medi2(release: Release, out: Path, plans: list) -> list[dict]:
    """One ``<source>.jsonl`` per source and nothing else: GritLM loads every file of the folder as a dataset."""
    names = _unique_split_names(plans)
    staging = _staging(out)
    staging.mkdir(parents=True)
    files = []
    for (plan, offsets), name in zip(plans, names, strict=True):
        path = staging / f"{name}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for row in _task_rows(release, plan, offsets):
                handle.write(json.dumps(medi2_row(row), ensure_ascii=False) + "\n")
        files.append({"source": plan.task_name, **_file_entry(path, path.name, plan.written)})
    _publish(staging, out, "medi2")
    return files


def _write_st_triplets(release: Release, out: Path, plans: list, mode: str) -> list[dict]:
    """A ``DatasetDict`` with one split per source and exactly the columns anchor/positive/negative (anchor/positive
    for a release without negatives: sentence-transformers' MultipleNegativesRankingLoss then uses in-batch ones).

    sentence-transformers tokenizes every column but ``label``/``score`` as a text, so instructions cannot be
    columns of their own: ``prefix`` puts each row's instruction before its text ("Represent …: text");
    ``prompts`` leaves the texts bare and writes ``medi_export.json`` whose ``prompts`` is the per-split,
    per-column dict ``SentenceTransformerTrainingArguments(prompts=...)`` takes (one wording per source and side).
    Trained as a DatasetDict, every batch comes from one source, as in INSTRUCTOR.
    """
    names = _unique_split_names(plans)
    splits, prompts = {}, {}
    sides = SIDES[:2] if without_negatives(release) else SIDES  # no negatives: anchor/positive pairs
    for (plan, _), name in zip(plans, names, strict=True):
        table = release.task_table(plan.task_name)
        if mode == "prefix":
            columns = {ST_COLUMNS[side]: _prefixed(table.column(side)) for side in sides}
        else:
            columns = {ST_COLUMNS[side]: pc.struct_field(table.column(side), "text") for side in sides}
            prompts[name] = {ST_COLUMNS[side]: _one_prompt(table, side, plan.task_name) for side in sides}
        splits[name] = datasets.Dataset(pa.table(columns))
    staging = _staging(out)
    datasets.disable_progress_bars()
    datasets.DatasetDict(splits).save_to_disk(str(staging))
    sidecar = {"format": "st-triplets", "instructions": mode, "splits": names, "prompts": prompts or None}
    (staging / "medi_export.json").write_text(json.dumps(sidecar, indent=2, ensure_ascii=False) + "\n")
    _publish(staging, out, "st-triplets")
    return [
        {"source": names[name], "split": name, "rows": len(dataset), "path": f"{name}"}
        for name, dataset in splits.items()
    ]


def _prefixed(column: pa.ChunkedArray) -> pa.ChunkedArray:
    instruction = pc.struct_field(column, "instruction")
    text = pc.struct_field(column, "text")
    joined = pc.binary_join_element_wise(instruction, text, " ")
    return pc.if_else(pc.equal(instruction, ""), text, joined)


def _one_prompt(table: pa.Table, side: str, task_name: str) -> str:
    wordings = pc.unique(pc.struct_field(table.column(side), "instruction")).to_pylist()
    if len(wordings) != 1:
        raise MediError(
            f"{task_name}: {len(wordings)} {side} instructions (paraphrases vary per row); "
            "--st-instructions prompts needs one per source and side: use --st-instructions prefix"
        )
    return wordings[0] + " " if wordings[0] else ""


def _write_parquet(release: Release, out: Path, plans: list) -> list[dict]:
    staging = _staging(out)
    files = write_parquet_per_source(release, staging)
    _publish(staging, out, "parquet")
    return files


def _file_entry(path: Path, name: str, rows: int) -> dict:
    return {"path": name, "rows": rows, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
