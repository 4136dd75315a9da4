"""The build's options, in one place: ``BuildOptions`` (what decides a release's content, recorded in its manifest)
and ``STAGE_FLAGS`` (the few keys of its stage dicts that ``medi build`` offers as flags).

``medi build``'s flags are generated from both (``medi.cli``): a field's default, ``Literal`` choices, ge/le bounds
and ``description`` become the flag's default, choices, range and help. A new ``BuildOptions`` field is a new flag
with no CLI change. This module loads only pydantic, so that ``medi --help`` stays fast; ``medi.build`` re-exports
``BuildOptions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

BUNDLED_ENCODER = "bundled:all-MiniLM-L6-v2"  # medi.encode.BUNDLED (kept equal by tests/test_cli.py)


class BuildOptions(BaseModel):
    """Everything that decides a release's content (recorded in its manifest)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(default=0, description="Seed of every random choice (same inputs and seed: same bytes)")
    shard_rows: int = Field(default=100_000, ge=1, description="Rows per Arrow shard")
    on_error: Literal["skip", "fail"] = Field(
        default="skip", description="skip: report and skip bad rows and sources; fail: stop at the first"
    )
    max_chars: int = Field(default=8000, ge=1, description="Texts longer than this are cut")
    instructions: Literal["primary", "paraphrase", "none"] = Field(
        default="primary",
        description="primary wording, paraphrase (one wording per row, by the seed) or none (no instruction: an "
        "ablation)",
    )
    require_reviewed: bool = Field(default=False, description="Refuse sources whose instructions are drafts")
    remote: bool = Field(default=True, description="Download named sources the data dirs lack")
    encoder: str = Field(default=BUNDLED_ENCODER, description="sentence-transformers model name or folder")
    device: str = Field(default="auto", description="auto (CUDA when present), cpu or cuda")
    batch_size: int = Field(default=64, ge=1, description="Texts per encoder batch")
    max_seq_length: int | None = Field(default=None, ge=1, description="Encoder tokens per text (default: the model's)")
    precision: Literal["fp32", "int8"] = Field(
        default="fp32",
        description="fp32, or int8 (CPU; ~1.5x faster encoding but, with MiniLM, only 70% of 10-NN kept and 28% of "
        "negatives above their positive under fp32: measure with bench/mine_vs_st.py --int8 first)",
    )
    query_prompt: str = Field(default="", description="Prepended to queries before encoding (for prompted models)")
    document_prompt: str = Field(default="", description="Prepended to documents before encoding")
    mining: dict = Field(default_factory=dict, description="MineConfig fields (medi/stages/mine.py)")
    dedup: dict = Field(default_factory=dict, description="DedupConfig fields (medi/stages/dedup.py)")
    decontaminate: dict = Field(
        default_factory=dict, description="DecontamConfig fields (medi/stages/decontaminate.py)"
    )
    eval_sets: str = Field(
        default="mirror",
        description="Decontaminate against: mirror (eval sets in the data dirs), all, none, or comma-separated eval/ "
        "names",
    )
    filter: dict = Field(
        default_factory=dict,
        description="FilterConfig fields (medi/stages/filter.py); a source's own `filter:` goes on top",
    )
    max_per_source: int | None = Field(
        default=None, ge=1, description="Keep at most N rows per source (replaces the catalog's MEDI caps)"
    )
    select: Literal["random", "diverse"] = Field(
        default="random", description="Rows over a cap: random, or diverse (fast vote-k over their embeddings)"
    )
    diverse_share: float = Field(
        default=1.0, ge=0, le=1, description="With select diverse: the share picked by vote-k, the rest at random"
    )
    workers: int = Field(default=1, ge=1, description="Sources built in parallel, one per process (same release bytes)")
    engine: Literal["local", "ray"] = Field(
        default="local", description="local, or ray: sources run on a Ray cluster (pip install 'medi[ray]')"
    )
    ray_address: str | None = Field(
        default=None, description="With engine ray: the cluster host:port (default: RAY_ADDRESS, a local `ray start`, "
        "or a new one)"
    )  # fmt: skip
    split_bytes: int = Field(
        default=64 << 20, ge=1024, description="With workers > 1 or engine ray: a source's input larger than this "
        "is read in splits of about this many bytes (JSONL line ranges, Parquet row groups, gzip line blocks) by "
        "idle workers; same release bytes"
    )  # fmt: skip


# how a build runs, not what it makes: left out of the manifest, whose bytes are the same for every engine
EXECUTION_OPTIONS = {"workers", "engine", "ray_address", "split_bytes"}
STAGE_OPTIONS = ("mining", "dedup", "decontaminate", "filter")  # dicts of a stage config's fields: no flag of their own


@dataclass(frozen=True)
class StageFlag:
    """A ``medi build`` flag for one key of a stage dict (``--score-rows`` sets ``mining.score_rows``).

    Its default, choices and bounds are the stage config's (tests/test_cli.py checks them against MineConfig,
    DedupConfig, DecontamConfig and FilterConfig, which load numpy and more: too heavy for ``medi --help``)."""

    flag: str
    option: str  # the BuildOptions dict: mining, dedup, decontaminate or filter
    key: str  # the stage config's field
    annotation: Any  # the flag's type: int, str or a Literal of the choices
    default: Any
    help: str
    ge: int | None = None
    none_at: Any = None  # the flag value that means the stage config's None (--token-budget 0: no count)

    def config_value(self, value: Any) -> Any:
        """The value the stage dict gets for the flag's ``value``."""
        return None if self.none_at is not None and value == self.none_at else value


STAGE_FLAGS = (
    StageFlag("--score-rows", "mining", "score_rows", int, 0, ge=0,
              help="Given negatives, nothing to mine: embed a seeded sample of N rows for the scores"),
    StageFlag("--negatives-from", "mining", "negatives_from", Literal["mined", "random", "none"], "mined",
              help="mined (hard negatives), random (a seeded random text of the source) or none (no negatives: "
              "in-batch only); an ablation switch"),
    StageFlag("--negatives", "mining", "negatives", int, 1, ge=1,
              help="Negatives per row: neg, then extra_negs (1: MEDI's shape)"),
    StageFlag("--negative-sampling", "mining", "negative_sampling", Literal["top", "random"], "top",
              help="top (the N hardest that pass every rule) or random (N seeded random ones of the window's)"),
    StageFlag("--candidates", "mining", "candidates", Literal["dense", "bm25", "hybrid"], "dense",
              help="Negative candidates: dense (the encoder), bm25 (bm25s) or hybrid (both, rank-merged)"),
    StageFlag("--teacher", "mining", "teacher", str, "none", none_at="none",
              help="A sentence-transformers bi-encoder or CrossEncoder (folder or name) that removes suspected "
              "false negatives (none: no teacher)"),
    StageFlag("--teacher-device", "mining", "teacher_device", str, "cpu", help="The teacher's device (cpu, cuda)"),
    StageFlag("--teacher-guards-given", "mining", "teacher_guards_given", bool, True,
              help="The teacher replaces a given negative it suspects by a mined one (RLHN); off: only scores it"),
    StageFlag("--eval-shared", "decontaminate", "registry", Literal["mark", "refuse"], "mark",
              help="A source sharing an eval set's upstream dataset: mark (report) or refuse"),
    StageFlag("--across-sources", "dedup", "across_sources", Literal["report", "remove"], "report",
              help="Pairs seen in an earlier source: report or remove"),
    StageFlag("--token-budget", "filter", "token_budget", int, 512, ge=0, none_at=0,
              help="Tokens per side incl. the instruction (0: no count)"),
    StageFlag("--tokenizer", "filter", "tokenizer", str, "bundled",
              help="Token counter: bundled (all-MiniLM-L6-v2) or a tokenizer folder/tokenizer.json"),
)  # fmt: skip

STAGE_FLAG_BY_NAME = {flag.flag.removeprefix("--").replace("-", "_"): flag for flag in STAGE_FLAGS}


def with_flags(base: BuildOptions, given: dict[str, Any]) -> tuple[BuildOptions, list[str]]:
    """``base`` with the flags given on the command line on top (parameter name -> value: a BuildOptions field, or
    a StageFlag's name such as ``score_rows``), and one line per value a flag changed: ``--seed 7 overrides seed
    0``."""
    from pydantic import ValidationError

    from medi.errors import MediError, explain_validation

    data = base.model_dump()
    changed = []
    for name, value in given.items():
        if flag := STAGE_FLAG_BY_NAME.get(name):
            stage = data[flag.option] = dict(data[flag.option])
            key, before = f"{flag.option}.{flag.key}", stage.get(flag.key, "not set")
            stage[flag.key] = after = flag.config_value(value)
            shown = _shown_flag(name, value)
        else:
            key, before, after = name, data[name], value
            data[name] = value
            shown = _shown_flag(name, value)
        if before != after:
            changed.append(f"{shown} overrides {key}: {before}")
    try:
        return BuildOptions(**data), changed
    except ValidationError as exc:
        raise MediError(f"build options: {explain_validation(exc)}") from exc


def _shown_flag(name: str, value: Any) -> str:
    flag = name.replace("_", "-")
    if isinstance(value, bool):
        return f"--{flag}" if value else f"--no-{flag}"
    return f"--{flag} {value}"
