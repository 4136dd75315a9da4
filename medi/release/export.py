"""Exports: a release in the layouts other trainers read.

- ``instructor``: one JSON array of MEDI rows for INSTRUCTOR's ``train.py`` (batches never span two tasks);
- ``medi2``: GritLM's MEDI2 layout, one JSONL file per source in a folder;
- ``st-triplets``: a ``datasets`` folder sentence-transformers trains on directly;
- ``parquet``: one Parquet file per source under ``data/<source>/`` (what ``medi publish`` uploads);
- ``flagembedding``: FlagEmbedding's fine-tune JSONL, one file per source (its trainer takes a file as a dataset);
- ``st-ntuple``: sentence-transformers' n-tuple columns (anchor, positive, negative_1 … negative_n), a split per
  source, the prompts in the folder's dataset card;
- ``tevatron``: Tevatron's query / positive_passages / negative_passages JSONL, one file per source;
- ``beir``: a BEIR folder per source (corpus.jsonl, queries.jsonl, qrels/train.tsv), ids derived from the text.

A release row holds one negative in ``neg``; a build with several negatives per row carries negatives 2..N in the
list column ``extra_negs`` (with ``neg_teacher_score`` / ``pos_teacher_score`` beside ``neg_score``). The exports
read those columns where the release has them, and ``negatives=`` chooses how many to write.
"""

from __future__ import annotations

import hashlib
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
from huggingface_hub import DatasetCardData

from medi.atomic import atomic_path
from medi.errors import MediError
from medi.fetch import sha256_file
from medi.outdir import check_out, install
from medi.release import Release
from medi.schema import FEATURES, medi_row

FORMATS = ("instructor", "medi2", "st-triplets", "parquet", "flagembedding", "st-ntuple", "tevatron", "beir")
SEVERAL_NEGATIVES = ("medi2", "flagembedding", "st-ntuple", "tevatron", "beir")  # formats --negatives applies to
EXTRA_NEGS = "extra_negs"  # negatives 2..N of a row, when the build wrote several
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
    """The table with the ``huggingface`` schema metadata ``datasets`` reads its Features from (its own columns':
    a release from before the provenance columns has fewer)."""
    features = datasets.Features({name: FEATURES[name] for name in table.column_names})
    metadata = {"huggingface": json.dumps({"info": {"features": features.to_dict()}}, sort_keys=True)}
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
    negatives: int | None = None  # most negatives a written row holds (formats that write several)

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
    negatives: int | None = None,
    overwrite: bool = False,
) -> dict:
    """Write ``release`` in format ``fmt`` to ``out``; return a report (per task: rows, written, dropped, added).

    ``batch_size`` / ``batch_policy`` apply to ``instructor`` only: INSTRUCTOR's trainer cuts the file into
    consecutive batches and drops every batch that spans two tasks or is short, so each task is trimmed
    (default: its last ``rows % batch_size`` rows are left out — exactly the rows the trainer would lose) or
    padded (rows of the same task repeated, seeded, taken from its earlier batches so no batch holds a row twice
    when the task has a full batch) to a multiple of ``batch_size``.

    ``negatives`` (``SEVERAL_NEGATIVES`` formats): write at most that many negatives per row (default: all the
    release has); ``st-ntuple`` leaves out the rows that hold fewer than its columns need.
    """
    if fmt not in FORMATS:
        raise MediError(f"unknown export format {fmt!r}; one of {', '.join(FORMATS)}")
    if batch_policy not in BATCH_POLICIES:
        raise MediError(f"unknown batch policy {batch_policy!r}; one of {', '.join(BATCH_POLICIES)}")
    if batch_size is not None and (batch_size < 1 or fmt != "instructor"):
        raise MediError("--batch-size is a positive number, for --format instructor only")
    if st_instructions not in ST_INSTRUCTIONS:
        raise MediError(f"unknown st-triplets instruction mode {st_instructions!r}; one of prefix, prompts")
    _check_negatives_option(fmt, negatives)
    out = Path(out)
    _check_target(out, fmt, release.folder, overwrite)
    _check_negatives(release, fmt)
    release.check_shards()
    plans = [_plan(task, batch_size, batch_policy, seed) for task in release.tasks]
    limit = 0 if without_negatives(release) else negatives
    writer = {
        "instructor": _write_instructor,
        "medi2": lambda r, o, p: _write_medi2(r, o, p, limit),
        "st-triplets": lambda r, o, p: _write_st_triplets(r, o, p, st_instructions),
        "parquet": _write_parquet,
        "flagembedding": lambda r, o, p: _write_flagembedding(r, o, p, limit),
        "st-ntuple": lambda r, o, p: _write_st_ntuple(r, o, p, st_instructions, limit),
        "tevatron": lambda r, o, p: _write_tevatron(r, o, p, limit),
        "beir": lambda r, o, p: _write_beir(r, o, p, limit),
    }[fmt]
    files = writer(release, out, plans)
    tasks = [{**asdict(plan), "dropped": plan.dropped} for plan, _ in plans]
    return {
        "format": fmt,
        "negatives": negatives,
        "notes": _notes(release, fmt, files),
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


def _check_negatives_option(fmt: str, negatives: int | None) -> None:
    if negatives is None:
        return
    if fmt not in SEVERAL_NEGATIVES:
        raise MediError(f"--negatives applies to --format {', '.join(SEVERAL_NEGATIVES)}; {fmt} writes one negative")
    if negatives < 0 or (fmt == "medi2" and negatives < 1):
        least = 1 if fmt == "medi2" else 0
        raise MediError(f"--negatives is a number of {least} or more for --format {fmt}, not {negatives}")


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


def medi2_row(row: dict, negatives: int | None = None) -> dict:
    """GritLM's MEDI2 layout: ``query`` an [instruction, text] pair, ``pos`` and ``neg`` lists of pairs (``neg``: the
    row's negatives in rank order, at most ``negatives``)."""
    return {
        "query": [row["query"]["instruction"], row["query"]["text"]],
        "pos": [[row["pos"]["instruction"], row["pos"]["text"]]],
        "neg": [[n.instruction, n.text] for n in negatives_of(row, negatives)],
    }


def _write_medi2(release: Release, out: Path, plans: list, negatives: int | None) -> list[dict]:
    """One ``<source>.jsonl`` per source and nothing else: GritLM loads every file of the folder as a dataset."""

    def lines(plan: TaskExport, offsets: list[int], info: dict) -> Iterator[dict]:
        for row in _task_rows(release, plan, offsets):
            yield medi2_row(row, negatives)

    return _write_jsonl_per_source(out, plans, "medi2", lines)


def _write_jsonl_per_source(out: Path, plans: list, fmt: str, lines) -> list[dict]:
    """One ``<split>.jsonl`` per source, from ``lines(plan, offsets, info)``; what it puts in ``info`` (a dict)
    goes into the file's entry of the report."""
    names = _unique_split_names(plans)
    staging = _staging(out)
    staging.mkdir(parents=True)
    files = []
    for (plan, offsets), name in zip(plans, names, strict=True):
        path = staging / f"{name}.jsonl"
        info: dict = {}
        with path.open("w", encoding="utf-8") as handle:
            for line in lines(plan, offsets, info):
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        files.append({"source": plan.task_name, **_file_entry(path, path.name, plan.written), **info})
    _publish(staging, out, fmt)
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
            prompts[name] = {ST_COLUMNS[side]: _one_prompt(table.column(side), side, plan.task_name) for side in sides}
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


def _one_prompt(column: pa.ChunkedArray, side: str, task_name: str) -> str:
    wordings = _wordings(column)
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


# --- several negatives: the row's texts as the trainers take them ----------------------------------------------


@dataclass(frozen=True)
class Passage:
    """A text of a release row, its instruction, and the teacher's score against the row's query (None: no teacher
    scored it)."""

    instruction: str
    text: str
    teacher_score: float | None = None

    def prefixed(self) -> str:
        """``"<instruction> <text>"`` (the text alone when the instruction is empty), as st-triplets' prefix mode."""
        return f"{self.instruction} {self.text}" if self.instruction else self.text


def query_of(row: dict) -> Passage:
    return Passage(row["query"]["instruction"], row["query"]["text"])


def positive_of(row: dict) -> Passage:
    return Passage(row["pos"]["instruction"], row["pos"]["text"], row.get("pos_teacher_score"))


def negatives_of(row: dict, limit: int | None = None) -> list[Passage]:
    """The row's negatives in rank order, at most ``limit`` (None: all): ``neg``, then ``extra_negs`` where the
    release has that column; none when ``neg`` is empty (a build with ``mining.negatives_from: none``)."""
    if limit == 0 or not row["neg"]["text"]:
        return []
    first = Passage(row["neg"]["instruction"], row["neg"]["text"], row.get("neg_teacher_score"))
    extra = [Passage(n["instruction"], n["text"], n.get("teacher_score")) for n in row.get(EXTRA_NEGS) or ()]
    return [first, *extra][:limit]


def negative_counts(table: pa.Table, limit: int | None = None) -> pa.ChunkedArray:
    """Per row of a release table, the negatives ``negatives_of`` gives: 0 where ``neg`` is empty, else 1 plus the
    length of ``extra_negs``; at most ``limit``."""
    has_negative = pc.not_equal(pc.struct_field(table.column("neg"), "text"), "")
    counts = pc.cast(has_negative, pa.int64())
    if EXTRA_NEGS in table.column_names:
        extra = pc.cast(pc.fill_null(pc.list_value_length(table.column(EXTRA_NEGS)), 0), pa.int64())
        counts = pc.add(counts, pc.if_else(has_negative, extra, 0))
    return counts if limit is None else pc.min_element_wise(counts, pa.scalar(limit, pa.int64()))


def content_id(text: str) -> str:
    """A text's id: 16 hex digits of its BLAKE2b hash, so the same text has the same id in every row and export."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def with_trailing_space(instruction: str) -> str:
    """An instruction to put right before a text (trainers join the two with nothing between); '' stays ''."""
    return instruction + " " if instruction and not instruction[-1].isspace() else instruction


def _count_range(counts: pa.ChunkedArray) -> tuple[int, int]:
    bounds = pc.min_max(counts).as_py()
    return (bounds["min"] or 0, bounds["max"] or 0)


# --- flagembedding ---------------------------------------------------------------------------------------------

FLAG_ONE_NEGATIVE, FLAG_NORMAL = "only_1neg", "normal"


def flagembedding_row(row: dict, negatives: int | None, *, scores: bool, kind: str) -> dict:
    """A row as FlagEmbedding's fine-tune data reads it.

    The query stays bare and its instruction goes into ``prompt``, which the trainer puts in
    ``query_instruction_format`` ('{}{}' by default, hence the trailing space) in place of
    ``--query_instruction_for_retrieval``. FlagEmbedding has one passage instruction for all its data and MEDI one
    per source and side, so each positive and negative carries its own: ``"<instruction> <text>"``.
    ``pos_scores``/``neg_scores`` are the teacher's scores, written only when ``scores`` (every text of the file has
    one: the trainer softmaxes a row's scores into distillation targets and fails on a missing one).
    """
    pos, negs = positive_of(row), negatives_of(row, negatives)
    line = {"query": row["query"]["text"], "pos": [pos.prefixed()], "neg": [n.prefixed() for n in negs]}
    if scores:
        line["pos_scores"] = [pos.teacher_score]
        line["neg_scores"] = [n.teacher_score for n in negs]
    line["prompt"] = with_trailing_space(row["query"]["instruction"])
    line["type"] = kind
    return line


def teacher_scored(table: pa.Table, negatives: int | None = None) -> bool:
    """Whether a teacher scored every positive and every negative ``negatives_of`` gives for the table's rows."""
    if not {"pos_teacher_score", "neg_teacher_score"} <= set(table.column_names):
        return False
    if table.column("pos_teacher_score").null_count:
        return False
    with_negative = table.filter(pc.greater(negative_counts(table, negatives), 0))
    if with_negative.column("neg_teacher_score").null_count:
        return False
    if EXTRA_NEGS not in table.column_names or negatives == 1:
        return True
    stop = None if negatives is None else negatives - 1
    extra = pc.list_flatten(pc.list_slice(with_negative.column(EXTRA_NEGS), 0, stop))
    return pc.struct_field(extra, "teacher_score").null_count == 0


def _write_flagembedding(release: Release, out: Path, plans: list, negatives: int | None) -> list[dict]:
    """One ``<split>.jsonl`` per source (FlagEmbedding takes each file of a folder as one dataset, and with
    ``--same_dataset_within_batch`` draws every batch from one file). ``type`` is ``only_1neg`` where every row holds
    exactly one negative (the trainer then groups the positive with that one instead of repeating it
    ``--train_group_size - 1`` times), else ``normal``; never a ``symmetric_*`` type, which would make the trainer
    put the prompt before passages that carry their own instruction already."""

    def lines(plan: TaskExport, offsets: list[int], info: dict) -> Iterator[dict]:
        table = release.task_table(plan.task_name)
        fewest, most = _count_range(negative_counts(table, negatives))
        scores = teacher_scored(table, negatives)
        kind = FLAG_ONE_NEGATIVE if fewest == most == 1 else FLAG_NORMAL
        plan.negatives = most
        info.update(type=kind, scores="teacher" if scores else None, negatives=[fewest, most])
        for row in _task_rows(release, plan, offsets):
            yield flagembedding_row(row, negatives, scores=scores, kind=kind)

    return _write_jsonl_per_source(out, plans, "flagembedding", lines)


# --- tevatron --------------------------------------------------------------------------------------------------


def tevatron_row(row: dict, negatives: int | None = None) -> dict:
    """A row in Tevatron's training layout. Tevatron prefixes every query and every passage with one string
    (``--query_prefix`` / ``--passage_prefix``), so each text carries its own instruction: ``"<instruction> <text>"``.
    Ids come from the bare text (``content_id``): a query or passage in several rows has one id; the title is empty
    (MEDI texts have none)."""
    query = query_of(row)
    return {
        "query_id": content_id(query.text),
        "query": query.prefixed(),
        "positive_passages": [_tevatron_passage(positive_of(row))],
        "negative_passages": [_tevatron_passage(n) for n in negatives_of(row, negatives)],
    }


def _tevatron_passage(passage: Passage) -> dict:
    return {"docid": content_id(passage.text), "title": "", "text": passage.prefixed()}


def _write_tevatron(release: Release, out: Path, plans: list, negatives: int | None) -> list[dict]:
    """One ``<split>.jsonl`` per source: Tevatron reads a file (``--dataset_path``) of one row per line."""

    def lines(plan: TaskExport, offsets: list[int], info: dict) -> Iterator[dict]:
        fewest, most = _count_range(negative_counts(release.task_table(plan.task_name), negatives))
        plan.negatives = most
        info.update(negatives=[fewest, most])
        for row in _task_rows(release, plan, offsets):
            yield tevatron_row(row, negatives)

    return _write_jsonl_per_source(out, plans, "tevatron", lines)


# --- beir ------------------------------------------------------------------------------------------------------

BEIR_QRELS_HEADER = "query-id\tcorpus-id\tscore\n"


def _write_beir(release: Release, out: Path, plans: list, negatives: int | None) -> list[dict]:
    """A BEIR folder per source: ``corpus.jsonl`` (positives and negatives, each text once), ``queries.jsonl`` and
    ``qrels/train.tsv`` (each query with its positives, score 1; negatives are documents without a qrels line).
    Ids come from the text (``content_id``), so a text that is a query and a document has one id, which BEIR's
    evaluation then leaves out of that query's results. Texts are bare; each line also holds the instruction MEDI
    gives the text (the first row's, where a text recurs), which BEIR's loader passes over."""
    names = _unique_split_names(plans)
    staging = _staging(out)
    staging.mkdir(parents=True)
    files = []
    for (plan, offsets), name in zip(plans, names, strict=True):
        counts = _write_beir_source(release, plan, offsets, staging / name, negatives)
        files.append({"source": plan.task_name, "path": name, "rows": plan.written, **counts})
    record = {"format": "beir", "splits": names}
    (staging / "medi_export.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    _publish(staging, out, "beir")
    return files


def _write_beir_source(release: Release, plan: TaskExport, offsets: list[int], folder: Path, negatives) -> dict:
    (folder / "qrels").mkdir(parents=True)
    queries_seen: set[str] = set()
    documents_seen: set[str] = set()
    pairs_seen: set[tuple[str, str]] = set()
    most = 0
    with (
        (folder / "corpus.jsonl").open("w", encoding="utf-8") as corpus,
        (folder / "queries.jsonl").open("w", encoding="utf-8") as queries,
        (folder / "qrels" / "train.tsv").open("w", encoding="utf-8") as qrels,
    ):
        qrels.write(BEIR_QRELS_HEADER)
        for row in _task_rows(release, plan, offsets):
            query, positive, negs = query_of(row), positive_of(row), negatives_of(row, negatives)
            most = max(most, len(negs))
            query_id = content_id(query.text)
            if query_id not in queries_seen:
                queries_seen.add(query_id)
                queries.write(_json_line({"_id": query_id, "text": query.text, "instruction": query.instruction}))
            for passage in (positive, *negs):
                doc_id = content_id(passage.text)
                if doc_id not in documents_seen:
                    documents_seen.add(doc_id)
                    line = {"_id": doc_id, "title": "", "text": passage.text, "instruction": passage.instruction}
                    corpus.write(_json_line(line))
            pair = (query_id, content_id(positive.text))
            if pair not in pairs_seen:
                pairs_seen.add(pair)
                qrels.write(f"{pair[0]}\t{pair[1]}\t1\n")
    plan.negatives = most
    return {"queries": len(queries_seen), "documents": len(documents_seen), "qrels": len(pairs_seen)}


def _json_line(value: dict) -> str:
    return json.dumps(value, ensure_ascii=False) + "\n"


# --- st-ntuple -------------------------------------------------------------------------------------------------


def ntuple_columns(table: pa.Table, n: int) -> dict[str, pa.ChunkedArray]:
    """The n-tuple's columns as (instruction, text) structs: anchor, positive, negative_1 … negative_n."""
    columns = {"anchor": table.column("query"), "positive": table.column("pos")}
    for k in range(1, n + 1):
        columns[f"negative_{k}"] = table.column("neg") if k == 1 else pc.list_element(table.column(EXTRA_NEGS), k - 2)
    return columns


def _write_st_ntuple(release: Release, out: Path, plans: list, mode: str, negatives: int | None) -> list[dict]:
    """A ``DatasetDict``, a split per source, with the columns sentence-transformers' n-tuple losses take: anchor,
    positive, negative_1 … negative_n, n the most negatives a row of the source holds (at most ``negatives``).
    Rows holding fewer are left out (counted as dropped), as sentence-transformers' own n-tuple output does.
    Instructions as in st-triplets (``prefix`` or ``prompts``); ``README.md`` is the dataset card naming each
    split's source, rows, negatives and prompts."""
    names = _unique_split_names(plans)
    splits, prompts, wordings, widths = {}, {}, {}, {}
    for (plan, _), name in zip(plans, names, strict=True):
        table = release.task_table(plan.task_name)
        counts = negative_counts(table, negatives)
        n = _count_range(counts)[1]
        kept = table.filter(pc.greater_equal(counts, n))
        plan.written, plan.negatives, widths[name] = kept.num_rows, n, n
        columns = ntuple_columns(kept, n)
        wordings[name] = {column: _wordings(values) for column, values in columns.items()}
        if mode == "prefix":
            texts = {column: _prefixed(values) for column, values in columns.items()}
        else:
            texts = {column: pc.struct_field(values, "text") for column, values in columns.items()}
            prompts[name] = {column: _one_prompt(values, column, plan.task_name) for column, values in columns.items()}
        splits[name] = datasets.Dataset(pa.table(texts))
    staging = _staging(out)
    datasets.disable_progress_bars()
    datasets.DatasetDict(splits).save_to_disk(str(staging))
    record = {"format": "st-ntuple", "instructions": mode, "splits": names, "negatives": widths}
    record["prompts"] = prompts or None
    (staging / "medi_export.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    card = ntuple_card(names, {name: len(split) for name, split in splits.items()}, widths, wordings, mode)
    (staging / "README.md").write_text(card, encoding="utf-8")
    _publish(staging, out, "st-ntuple")
    return [
        {"source": names[name], "split": name, "rows": len(dataset), "negatives": widths[name], "path": name}
        for name, dataset in splits.items()
    ]


def _wordings(column: pa.ChunkedArray) -> list[str]:
    return pc.unique(pc.struct_field(column, "instruction")).to_pylist()


def ntuple_card(names: dict, rows: dict, widths: dict, wordings: dict, mode: str) -> str:
    """The export's dataset card: YAML metadata, how to train on it, and per split its source and prompts."""
    metadata = DatasetCardData(tags=["sentence-transformers", "medi"], task_categories=["sentence-similarity"])
    how = (
        "Each text starts with its instruction (`<instruction> <text>`), the prompts below."
        if mode == "prefix"
        else "Texts are bare: give `medi_export.json`'s `prompts` (per split and column, the wordings below) to "
        "`SentenceTransformerTrainingArguments(prompts=...)`."
    )
    lines = [
        "---",
        metadata.to_yaml(),
        "---",
        "",
        "# medi st-ntuple export",
        "",
        "`datasets.load_from_disk` gives a `DatasetDict`, one split per source, with the columns "
        "`anchor, positive, negative_1 … negative_n` sentence-transformers' `MultipleNegativesRankingLoss` takes. "
        + how,
        "",
        "| split | source | rows | negatives | prompts |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, source in names.items():
        shown = "<br>".join(f"{column}: {_prompt_cell(found)}" for column, found in wordings[name].items())
        lines.append(f"| {name} | {source} | {rows[name]} | {widths[name]} | {shown} |")
    return "\n".join(lines) + "\n"


def _prompt_cell(wordings: list[str]) -> str:
    if len(wordings) == 1:
        return "`" + wordings[0].replace("|", "\\|").replace("`", "'") + "`" if wordings[0] else "(none)"
    return f"{len(wordings)} wordings (paraphrased per row)"


def _notes(release: Release, fmt: str, files: list[dict]) -> list[str]:
    """What a user of the export must know before training: rows without negatives, files without scores."""
    notes = []
    bare = [f["path"] for f in files if fmt in ("flagembedding", "tevatron") and f["negatives"][0] == 0]
    if bare:
        notes.append(
            f"{len(bare)} of {len(files)} files hold rows without a negative ({', '.join(bare[:3])}"
            f"{', …' if len(bare) > 3 else ''}): train with --train_group_size 1 (in-batch negatives only; "
            f"{'Tevatron v1: --train_n_passages 1' if fmt == 'tevatron' else 'FlagEmbedding divides by the count'}"
            ") — a larger group fails on such a row"
        )
    unscored = [f["path"] for f in files if fmt == "flagembedding" and f.get("scores") is None]
    if unscored and any(_has_teacher_scores(release.task_table(f["source"])) for f in files):
        notes.append(
            f"{len(unscored)} of {len(files)} files have no pos_scores/neg_scores (some of their texts have no "
            "teacher score): leave --knowledge_distillation off for them"
        )
    return notes


def _has_teacher_scores(table: pa.Table) -> bool:
    """Whether a teacher scored any positive of the table (every release has the column; without a teacher it is
    all null)."""
    if "pos_teacher_score" not in table.column_names:
        return False
    column = table.column("pos_teacher_score")
    return column.null_count < len(column)


def _file_entry(path: Path, name: str, rows: int) -> dict:
    return {"path": name, "rows": rows, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
