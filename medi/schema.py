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
    instructions: tuple[str, str, str] = field(default=("", "", ""))


def text_with_instruction() -> dict:
    return {"instruction": datasets.Value("string"), "text": datasets.Value("string")}


FEATURES = datasets.Features(
    {
        "task_name": datasets.Value("string"),
        "task_id": datasets.Value("int32"),
        "row_id": datasets.Value("string"),
        "query": text_with_instruction(),
        "pos": text_with_instruction(),
        "neg": text_with_instruction(),
        "pos_origin": datasets.Value("string"),
        "neg_origin": datasets.Value("string"),
        "pos_score": datasets.Value("float32"),
        "neg_score": datasets.Value("float32"),
        "pos_ref": datasets.Value("string"),
        "neg_ref": datasets.Value("string"),
    }
)


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
    }


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
