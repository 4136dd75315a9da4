"""The one schema: records between stages, the release's Arrow features, and MEDI rows.

Everything that writes or reads a release (shard, manifest, exports) takes its column names from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import datasets
import pyarrow as pa

FORMAT_VERSION = 1
NEG_ORIGINS = ("given", "mined", "fallback", "random", "none")  # random / none: mining.negatives_from
POS_ORIGINS = ("given", "mined")
# the rule that produced a text (the finer provenance beside the origins): given, a candidate list (dense, bm25),
# INSTRUCTOR's Super-NI rule, a random fallback, the random / none ablations, or a reviewer's confirmation
RULES = ("given", "dense", "bm25", "superni", "fallback", "random", "none", "review")
SUSPECT_RULES = ("teacher_relative", "teacher_max_score")


@dataclass(slots=True)
class Record:
    """One row as an adapter reads it, before mining.

    Pair sources fill ``pos`` (and maybe ``neg``); Super-NI fills ``outputs`` and leaves ``pos`` empty.
    ``row_id`` is ``<source>:<locator>``, the locator pointing back at the source row (``L17`` = line 17,
    an instance id for Super-NI).
    """

    row_id: str
    query: str
    pos: str | None = None
    neg: str | None = None
    outputs: tuple[str, ...] = ()


@dataclass(slots=True)
class Triple:
    """A finished training row: query, positive, negative, with where each text came from."""

    row_id: str
    query: str
    pos: str
    neg: str
    pos_origin: str
    neg_origin: str
    pos_score: float | None = None
    neg_score: float | None = None
    pos_ref: str | None = None
    neg_ref: str | None = None
    pos_rule: str | None = None
    neg_rule: str | None = None
    pos_rank: int | None = None
    neg_rank: int | None = None
    pos_teacher_score: float | None = None
    neg_teacher_score: float | None = None
    # negatives 2..N: {text, origin, rule, rank, score, teacher_score, ref}; extra positives (reviewer-confirmed):
    # {text, rule, score, teacher_score, ref}; suspects the teacher removed: {text, rule, rank, score,
    # teacher_score, ref}. Instructions are attached at release time (the negative's / positive's own).
    extra_negs: list[dict] = field(default_factory=list)
    extra_pos: list[dict] = field(default_factory=list)
    suspects: list[dict] = field(default_factory=list)
    instructions: tuple[str, str, str] = field(default=("", "", ""))


def text_with_instruction() -> dict:
    return {"instruction": datasets.Value("string"), "text": datasets.Value("string")}


_STRING, _INT, _FLOAT = datasets.Value("string"), datasets.Value("int32"), datasets.Value("float32")
EXTRA_NEG_FEATURE = {
    "instruction": _STRING,
    "text": _STRING,
    "origin": _STRING,
    "rule": _STRING,
    "rank": _INT,
    "score": _FLOAT,
    "teacher_score": _FLOAT,
    "ref": _STRING,
}
EXTRA_POS_FEATURE = {
    "instruction": _STRING,
    "text": _STRING,
    "rule": _STRING,
    "score": _FLOAT,
    "teacher_score": _FLOAT,
    "ref": _STRING,
}
SUSPECT_FEATURE = {
    "text": _STRING,
    "rule": _STRING,
    "rank": _INT,
    "score": _FLOAT,
    "teacher_score": _FLOAT,
    "ref": _STRING,
}

# the release of medi before issue 19's provenance columns; releases with exactly these features stay readable
BASE_FEATURES = datasets.Features(
    {
        "task_name": _STRING,
        "task_id": _INT,
        "row_id": _STRING,
        "query": text_with_instruction(),
        "pos": text_with_instruction(),
        "neg": text_with_instruction(),
        "pos_origin": _STRING,
        "neg_origin": _STRING,
        "pos_score": _FLOAT,
        "neg_score": _FLOAT,
        "pos_ref": _STRING,
        "neg_ref": _STRING,
    }
)
PROVENANCE_FEATURES = {
    "pos_rule": _STRING,
    "neg_rule": _STRING,
    "pos_rank": _INT,
    "neg_rank": _INT,
    "pos_teacher_score": _FLOAT,
    "neg_teacher_score": _FLOAT,
    "extra_negs": [EXTRA_NEG_FEATURE],
    "extra_pos": [EXTRA_POS_FEATURE],
    "suspects": [SUSPECT_FEATURE],
}
FEATURES = datasets.Features({**BASE_FEATURES, **PROVENANCE_FEATURES})
READABLE_FEATURES = (FEATURES, BASE_FEATURES)  # what medi reads: today's schema, or the one before provenance


def release_row(task_name: str, task_id: int, triple: Triple) -> dict:
    """The Arrow row of a triple, in FEATURES' column order."""
    q_instr, p_instr, n_instr = triple.instructions
    return {
        "task_name": task_name,
        "task_id": task_id,
        "row_id": triple.row_id,
        "query": {"instruction": q_instr, "text": triple.query},
        "pos": {"instruction": p_instr, "text": triple.pos},
        "neg": {"instruction": n_instr, "text": triple.neg},
        "pos_origin": triple.pos_origin,
        "neg_origin": triple.neg_origin,
        "pos_score": triple.pos_score,
        "neg_score": triple.neg_score,
        "pos_ref": triple.pos_ref,
        "neg_ref": triple.neg_ref,
        "pos_rule": triple.pos_rule,
        "neg_rule": triple.neg_rule,
        "pos_rank": triple.pos_rank,
        "neg_rank": triple.neg_rank,
        "pos_teacher_score": triple.pos_teacher_score,
        "neg_teacher_score": triple.neg_teacher_score,
        "extra_negs": [{"instruction": n_instr, **_fields(n, EXTRA_NEG_FEATURE)} for n in triple.extra_negs],
        "extra_pos": [{"instruction": p_instr, **_fields(p, EXTRA_POS_FEATURE)} for p in triple.extra_pos],
        "suspects": [_fields(s, SUSPECT_FEATURE) for s in triple.suspects],
    }


def _fields(item: dict, feature: dict) -> dict:
    """``item``'s values of ``feature``'s fields but the instruction (missing ones null)."""
    return {name: item.get(name) for name in feature if name != "instruction"}


def medi_row(row: dict) -> dict:
    """A release row in INSTRUCTOR's MEDI layout: ``[instruction, text]`` pairs plus the task keys."""
    return {
        "query": [row["query"]["instruction"], row["query"]["text"]],
        "pos": [row["pos"]["instruction"], row["pos"]["text"]],
        "neg": [row["neg"]["instruction"], row["neg"]["text"]],
        "task_name": row["task_name"],
        "task_id": row["task_id"],
    }


# --- stage outputs as Arrow: records before mining, triples after ------------------------------------------

RECORD_SCHEMA = pa.schema(
    [
        ("row_id", pa.string()),
        ("query", pa.string()),
        ("pos", pa.string()),
        ("neg", pa.string()),
        ("outputs", pa.list_(pa.string())),
    ]
)


def _struct_list(feature: dict) -> pa.DataType:
    """A stage checkpoint's list column of ``feature``'s structs, without the instruction (attached at release)."""
    kinds = {"string": pa.string(), "int32": pa.int32(), "float32": pa.float32()}
    return pa.list_(pa.struct([(n, kinds[v.dtype]) for n, v in feature.items() if n != "instruction"]))


TRIPLE_SCHEMA = pa.schema(
    [
        ("row_id", pa.string()),
        ("query", pa.string()),
        ("pos", pa.string()),
        ("neg", pa.string()),
        ("pos_origin", pa.string()),
        ("neg_origin", pa.string()),
        ("pos_score", pa.float32()),
        ("neg_score", pa.float32()),
        ("pos_ref", pa.string()),
        ("neg_ref", pa.string()),
        ("pos_rule", pa.string()),
        ("neg_rule", pa.string()),
        ("pos_rank", pa.int32()),
        ("neg_rank", pa.int32()),
        ("pos_teacher_score", pa.float32()),
        ("neg_teacher_score", pa.float32()),
        ("extra_negs", _struct_list(EXTRA_NEG_FEATURE)),
        ("extra_pos", _struct_list(EXTRA_POS_FEATURE)),
        ("suspects", _struct_list(SUSPECT_FEATURE)),
    ]
)


def records_batch(records: list[Record]) -> pa.RecordBatch:
    columns = {
        "row_id": [r.row_id for r in records],
        "query": [r.query for r in records],
        "pos": [r.pos for r in records],
        "neg": [r.neg for r in records],
        "outputs": [list(r.outputs) for r in records],
    }
    return pa.RecordBatch.from_pydict(columns, schema=RECORD_SCHEMA)


def records_of(batch: pa.RecordBatch | pa.Table) -> list[Record]:
    columns = batch.to_pydict()
    return [
        Record(row_id, query, pos, neg, tuple(outputs or ()))
        for row_id, query, pos, neg, outputs in zip(
            columns["row_id"], columns["query"], columns["pos"], columns["neg"], columns["outputs"], strict=True
        )
    ]


def triples_batch(triples: list[Triple]) -> pa.RecordBatch:
    names = TRIPLE_SCHEMA.names
    return pa.RecordBatch.from_pydict({n: [getattr(t, n) for t in triples] for n in names}, schema=TRIPLE_SCHEMA)


def triples_of(batch: pa.RecordBatch | pa.Table) -> list[Triple]:
    columns = batch.to_pydict()
    names = TRIPLE_SCHEMA.names
    return [
        Triple(**dict(zip(names, values, strict=True))) for values in zip(*(columns[n] for n in names), strict=True)
    ]
