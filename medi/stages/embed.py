"""Embed: the texts a source's mine stage will embed, known before it runs, so that an executor can embed them
elsewhere first (``medi.executors.ray``'s embedding pool: every source's texts on one pool of GPU actors) and the
mine stage then finds every vector in the shared embedding cache.

``mine_texts`` reads the select stage's output (the mine stage's input) in Arrow batches and gives the (texts, side)
groups ``medi.stages.mine`` passes to ``Encoder.embed_many``:

- a Super-NI task (``mine_task``) of at least ``min_task_rows`` rows: its inputs, and for a generation task every
  output, document side;
- a pair source mined for hard negatives (``mine_pairs``): every query (query side) and the pool — every positive,
  every given negative and, when rows need mining in a symmetric source, the queries too (document side);
- a pair source whose every row keeps its given negative (``given_only``, more rows than ``score_rows``): the queries
  (query side), positives and negatives (document side) of the seeded ``score_rows`` sample only (by default none);
- ``negatives_from`` ``none``: nothing; ``random``: nothing without a scored sample, else the queries and the pool.

A teacher or reviewers' judgements can replace given negatives and so decide whether a pair source is mined; with
either, and for the scored sample of ``random`` negatives, the superset is given (every row's texts, as if mined).
That is harmless: a vector is a function of its text alone (fixed-shape batches), so an extra text costs encoding
time, never other bytes.

``write_requests`` writes the texts of those groups that the cache lacks to a Parquet file (columns ``text``,
``side``, ``length``: prompt and text in characters, for sorting into full batches; ``source``), in bounded memory;
``embed_requests`` embeds a batch of such rows into the cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from medi.catalog import SUPERNI, SourceSpec
from medi.encode import Encoder, text_key
from medi.fetch import sha256_file
from medi.schema import Record, records_of
from medi.stages.checkpoint import BATCH_ROWS, Batches, stage_key
from medi.stages.mine import MineConfig, _score_sample, task_mode
from medi.stages.units import MINE, Runner, SourceContext, mine_config, mine_judgements

SIDES = ("query", "document")
REQUEST_SCHEMA = pa.schema(
    [("text", pa.string()), ("side", pa.string()), ("length", pa.int32()), ("source", pa.string())]
)
Groups = Iterator[tuple[list[str], str]]


def mine_texts(ctx: SourceContext, rows: Batches) -> Groups:
    """The (texts, side) groups the mine stage embeds for ``ctx``'s source from ``rows`` (the select stage's
    output), batch by batch; a text may come more than once."""
    config = mine_config(ctx)
    if not rows.num_rows:
        return
    if ctx.spec.adapter == SUPERNI:
        yield from _task_texts(rows, config)
    elif config.negatives_from == "none" or (config.negatives_from == "random" and config.score_rows == 0):
        return
    elif config.negatives_from == "random":
        yield from _pair_texts(rows, pool_queries=ctx.spec.symmetric)
    else:
        guarded = bool(config.teacher) or bool(mine_judgements(ctx))  # may replace given negatives: the superset
        need = guarded or config.replace_negatives or config.negatives > 1 or _some_row_without_negative(rows)
        if not need and config.score_rows is not None and rows.num_rows > config.score_rows:
            yield from _sample_texts(rows, _score_sample(rows.num_rows, config))  # mine's own seeded draw
        else:
            yield from _pair_texts(rows, pool_queries=ctx.spec.symmetric and need)


def _task_texts(rows: Batches, config: MineConfig) -> Groups:
    """A Super-NI task's inputs and, for a generation task, its outputs (``mine_task`` holds the task's rows too)."""
    records: list[Record] = [r for batch in rows.again() for r in records_of(batch)]
    if len(records) < config.min_task_rows:
        return
    yield [r.query for r in records], "document"
    if task_mode(records, config) == "generation":
        yield [o for r in records for o in r.outputs], "document"


def _pair_texts(rows: Batches, *, pool_queries: bool) -> Groups:
    """Every query (query side) and every positive and given negative (document side), with the queries on the
    document side too when ``pool_queries``."""
    for batch in rows.again():
        queries = batch.column("query").to_pylist()
        yield queries, "query"
        documents = batch.column("pos").to_pylist() + [t for t in batch.column("neg").to_pylist() if t is not None]
        yield documents + (queries if pool_queries else []), "document"


def _sample_texts(rows: Batches, sample: list[int]) -> Groups:
    """The given texts of the rows at positions ``sample`` (``mine._given_scores``)."""
    wanted, start = set(sample), 0
    for batch in rows.again():
        picked = [r for n, r in enumerate(records_of(batch), start) if n in wanted]
        start += batch.num_rows
        if picked:
            yield [r.query for r in picked], "query"
            yield [r.pos for r in picked] + [r.neg for r in picked], "document"


def _some_row_without_negative(rows: Batches) -> bool:
    """A pass over the ``neg`` column alone, stopping at the first row without one."""
    negatives = pq.ParquetFile(rows.path, pre_buffer=False).iter_batches(batch_size=rows.rows, columns=["neg"])
    return any(batch.column("neg").null_count for batch in negatives)


# --- requests: what the cache lacks, written for a pool to embed ------------------------------------------------


def mine_is_stored(ctx: SourceContext, rows: Batches) -> bool:
    """The mine stage's output for these rows is stored and will be reused: it embeds nothing."""
    checkpoints = ctx.runner.checkpoints
    key = stage_key(MINE.name, sha256_file(rows.path), MINE.config(ctx))  # as run_source keys it
    return checkpoints.reuse and (checkpoints.root / MINE.name / f"{key}.json").is_file()


def write_requests(runner: Runner, spec: SourceSpec, select_output: Path, path: Path) -> dict:
    """The texts the source's mine stage will embed and the cache lacks, written to ``path`` (Parquet,
    ``REQUEST_SCHEMA``; no file when there are none): {"texts": written, "cached": found in the cache}. Each
    group's duplicates are dropped, not those of the whole source (that would hold a key per text): the pool sorts
    the requests by text, so the copies meet in one batch, where ``embed_many`` encodes a text once."""
    ctx = SourceContext(spec, runner)
    rows = Batches(select_output, BATCH_ROWS)
    if mine_is_stored(ctx, rows):
        return {"texts": 0, "cached": 0, "mine_stored": True}
    encoder = runner.encoder
    written = cached = 0
    writer: pq.ParquetWriter | None = None
    try:
        for texts, side in mine_texts(ctx, rows):
            prompt = encoder.prompt(side)
            distinct = {text_key(prompt, t): t for t in texts}
            keys = list(distinct)
            missing = [k for k, at in zip(keys, encoder.cache.places(keys)[:, 0].tolist(), strict=True) if at < 0]
            cached += len(keys) - len(missing)
            if not missing:
                continue
            if writer is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(path, REQUEST_SCHEMA)
            writer.write_table(requests_table([distinct[k] for k in missing], side, prompt, spec.name))
            written += len(missing)
    finally:
        if writer is not None:
            writer.close()
    return {"texts": written, "cached": cached, "mine_stored": False}


def requests_table(texts: list[str], side: str, prompt: str, source: str) -> pa.Table:
    lengths = [len(prompt) + len(t) for t in texts]
    columns = [texts, [side] * len(texts), lengths, [source] * len(texts)]
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, REQUEST_SCHEMA, strict=True)],
                                schema=REQUEST_SCHEMA)  # fmt: skip


def embed_requests(encoder: Encoder, batch: pa.Table) -> int:
    """Embed a batch of requests into the encoder's cache; how many texts the model encoded (cached ones: none)."""
    texts, sides = batch.column("text").to_pylist(), batch.column("side").to_pylist()
    groups = [([t for t, s in zip(texts, sides, strict=True) if s == side], side) for side in SIDES]
    before = encoder.texts_encoded
    encoder.embed_many([group for group in groups if group[0]])
    return encoder.texts_encoded - before
