"""The one schema: records between stages, the release's Arrow features, and MEDI rows.

Everything that writes or reads a release (shard, manifest, exports) takes its column names from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import datasets

FORMAT_VERSION = 1
NEG_ORIGINS = ("given", "mined", "fallback")
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
