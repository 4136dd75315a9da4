"""The mine stage streams a pair source with nothing to mine (issue 20, item 4): when every row keeps its given
negative, its rows go from the select checkpoint to the mine checkpoint batch by batch, and the output is byte for
byte what the list path (``mine_pairs`` over every row held at once) writes, report included.

Real data: the demo's MS MARCO hard negatives (demo/mirror, see demo/PROVENANCE.md): st/msmarco-triplets (one given
negative a row) and flagembedding/msmarco (several given negatives a query: one row each); st/quora_duplicates has
no negatives, so it is mined as before.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support import DEMO_MIRROR

from medi.build import BuildOptions
from medi.schema import TRIPLE_SCHEMA, records_of, triples_batch
from medi.stages.checkpoint import Checkpoints, to_jsonable, write_in_batches
from medi.stages.mine import MineReport, mine_pairs
from medi.stages.units import (
    CLEAN,
    MINE,
    SAMPLE,
    SELECT,
    Runner,
    SourceContext,
    _nothing_to_mine,
    mine_config,
    run_source,
)

GIVEN = ("st/msmarco-triplets", "flagembedding/msmarco")


def runner_with(cache_dir: Path, tmp_path: Path, **mining) -> Runner:
    """A runner on the demo mirror whose stage outputs are its own (embeddings from the session's cache)."""
    runner = Runner(BuildOptions(eval_sets="none", mining=mining), [DEMO_MIRROR], cache_dir)
    runner.checkpoints = Checkpoints(tmp_path / "stages")
    return runner


def list_path_output(runner: Runner, name: str, selected: Path, folder: Path) -> tuple[bytes, dict]:
    """The mine stage's file and report as the list path makes them: every selected row held, ``mine_pairs``."""
    ctx = SourceContext(runner.catalog.specs[name], runner)
    records = records_of(pq.read_table(selected))
    report = MineReport()

    def compute(write) -> dict:
        triples = mine_pairs(records, runner.encoder, mine_config(ctx), report, ctx.spec.symmetric)
        write_in_batches(write, triples, triples_batch)
        return to_jsonable(report)

    output = Checkpoints(folder).run("mine", name, "list", TRIPLE_SCHEMA, compute)
    return output.path.read_bytes(), output.info


@pytest.mark.parametrize("score_rows", [0, 4])
@pytest.mark.parametrize("name", GIVEN)
def test_a_source_with_nothing_to_mine_streams_the_same_bytes(name, score_rows, cache_dir, tmp_path):
    runner = runner_with(cache_dir, tmp_path, score_rows=score_rows)
    outcome = run_source(runner, runner.catalog.specs[name], (SAMPLE, CLEAN, SELECT, MINE))
    selected, mined = outcome.output("select"), outcome.output("mine")
    assert selected.rows > score_rows and mined.rows == selected.rows
    ctx = SourceContext(runner.catalog.specs[name], runner)
    guards = {"teacher": None, "judgements": None}
    assert _nothing_to_mine(ctx, selected.batches(), mine_config(ctx), guards)  # the streamed path ran
    data, info = list_path_output(runner, name, selected.path, tmp_path / "list")
    assert mined.path.read_bytes() == data
    assert mined.info == info
    assert info["scored"] == score_rows and info["neg_origin"] == {"given": selected.rows}
    assert len(info["pos_scores"]) == score_rows  # the same seeded sample scored on both paths


def test_a_source_without_given_negatives_is_mined_from_the_list(cache_dir, tmp_path):
    runner = runner_with(cache_dir, tmp_path)
    spec = runner.catalog.specs["st/quora_duplicates"]
    outcome = run_source(runner, spec, (SAMPLE, CLEAN, SELECT, MINE))
    ctx = SourceContext(spec, runner)
    assert not _nothing_to_mine(ctx, outcome.output("select").batches(), mine_config(ctx), {})
    assert outcome.infos["mine"]["neg_origin"].get("mined", 0) > 0


def test_more_negatives_than_given_are_mined(cache_dir, tmp_path):
    """negatives: 2 needs a mined negative beside each given one: not streamed, mined as before."""
    runner = runner_with(cache_dir, tmp_path, negatives=2)
    spec = runner.catalog.specs["st/msmarco-triplets"]
    outcome = run_source(runner, spec, (SAMPLE, CLEAN, SELECT, MINE))
    ctx = SourceContext(spec, runner)
    assert not _nothing_to_mine(ctx, outcome.output("select").batches(), mine_config(ctx), {})
    assert outcome.infos["mine"]["negatives_per_row"].get("2", 0) > 0


@pytest.mark.parametrize(
    ("name", "mining"),
    [
        ("st/quora_duplicates", {}),
        ("st/msmarco-triplets", {"negatives": 2}),
        ("flagembedding/msmarco", {"negatives": 3}),
    ],
)
def test_a_mined_source_streams_the_list_paths_bytes(name, mining, cache_dir, tmp_path):
    """A pair source with rows to mine goes from the select checkpoint through ``mine_pairs_stream`` (rows on disk,
    vectors memory-mapped, written a chunk at a time): the bytes and report of ``mine_pairs`` over every row held."""
    runner = runner_with(cache_dir, tmp_path, **mining)
    outcome = run_source(runner, runner.catalog.specs[name], (SAMPLE, CLEAN, SELECT, MINE))
    selected, mined = outcome.output("select"), outcome.output("mine")
    data, info = list_path_output(runner, name, selected.path, tmp_path / "list")
    assert mined.path.read_bytes() == data
    assert mined.info == info
    assert info["kept"] == selected.rows and info["removed"]["margin"] + info["examined"] > 0
