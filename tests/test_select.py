"""Per-source caps and selection: fast vote-k on real embeddings, random picks, the build's --max-per-source."""

from __future__ import annotations

import numpy as np
import pytest
from support import DEMO_MIRROR, TASKS, spec

from medi.adapters import get_adapter
from medi.encode import Encoder, EncoderConfig
from medi.stages import select as select_module
from medi.stages.checkpoint import to_jsonable
from medi.stages.filter import FilterConfig, FilterReport, apply_token_budget
from medi.stages.normalize import NormalizeReport, normalize
from medi.stages.select import (
    SelectConfig,
    SelectReport,
    knn_graph,
    pick,
    random_pick,
    select,
    token_budget_stream,
    vote_k,
    vote_k_on_graph,
)

TASK_NAMES = (
    "task1289_trec_classification",
    "task227_clariq_classification",
    "task1345_glue_qqp_question_paraprashing",
    "task293_storycommonsense_emotion_text_generation",
    "task1146_country_capital",
    "task082_babi_t1_single_supporting_fact_question_generation",
)


def read_task(task: str) -> list:
    name = f"superni/{task}"
    adapted = get_adapter("superni", name)(TASKS / f"{task}.json", spec(name, "superni"), 0)
    return list(normalize(adapted.rows, NormalizeReport()))


@pytest.fixture(scope="module")
def inputs(cache_dir) -> tuple[np.ndarray, np.ndarray, list]:
    """(embeddings, task of each row, records) of the inputs of six real Super-NI tasks (1,381 rows)."""
    records, tasks = [], []
    for task in TASK_NAMES:
        rows = read_task(task)
        records += rows
        tasks += [task] * len(rows)
    vectors = Encoder(EncoderConfig(), cache_dir).embed([r.query for r in records])
    return vectors, np.array(tasks), records


def coverage(vectors: np.ndarray, chosen: np.ndarray) -> float:
    """Mean over all rows of the cosine to the nearest chosen row: how well the picks stand for the rest."""
    return float((vectors @ vectors[chosen].T).max(axis=1).mean())


def test_vote_k_is_deterministic_and_distinct(inputs):
    vectors, _, _ = inputs
    first, second = vote_k(vectors, 50), vote_k(vectors.copy(), 50)
    assert first.tolist() == second.tolist()
    assert len(set(first.tolist())) == 50
    assert vote_k(vectors, 0).tolist() == []
    assert len(vote_k(vectors[:30], 100)) == 30  # asking for more rows than there are gives them all


def test_vote_k_spreads_further_than_random(inputs):
    vectors, tasks, _ = inputs
    for n in (20, 50):
        diverse = coverage(vectors, vote_k(vectors, n))
        randoms = [coverage(vectors, random_pick(len(vectors), n, seed)) for seed in range(20)]
        assert diverse > max(randoms)  # better than the best of 20 random draws
    assert set(tasks[vote_k(vectors, 20)]) == set(TASK_NAMES)  # the first 20 picks already reach every task


def test_ties_go_to_the_lower_index(inputs):
    # the graph of 40 real rows, twice over (rows i and i + 40 are twins): every vote a row gets, its twin gets too
    vectors, _, _ = inputs
    half = knn_graph(vectors[:40], 5)
    graph = np.vstack([half, half + 40])
    picks = vote_k_on_graph(graph, 20).tolist()
    assert picks[0] < 40
    for position, row in enumerate(picks):
        if row >= 40:
            assert row - 40 in picks[:position]  # a twin is only picked after its lower-index twin
    assert picks == vote_k_on_graph(graph.copy(), 20).tolist()


def test_knn_graph_leaves_out_each_row_itself_even_among_duplicates(inputs):
    vectors, _, _ = inputs
    doubled = np.vstack([vectors[:100], vectors[:100]])
    graph = knn_graph(doubled, 5)
    assert not (graph == np.arange(200)[:, None]).any()
    assert (graph[:100, 0] == np.arange(100, 200)).all()  # each row's twin is its nearest neighbour
    approximate = knn_graph(vectors, 10, index="hnsw")
    exact = knn_graph(vectors, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approximate, exact, strict=True)])
    assert recall > 0.9


def test_mixed_selection_keeps_a_random_tail(inputs):
    vectors, _, _ = inputs
    mixed = pick(vectors, len(vectors), 40, "diverse", seed=3, diverse_share=0.5)
    assert len(set(mixed.tolist())) == 40
    assert mixed[:20].tolist() == vote_k(vectors, 20).tolist()
    assert pick(None, len(vectors), 40, "random", seed=3).tolist() == random_pick(len(vectors), 40, 3).tolist()


def test_select_caps_a_source_and_reports_it(inputs, cache_dir):
    _, tasks, records = inputs
    trec = [r for r, t in zip(records, tasks, strict=True) if t == "task1289_trec_classification"]
    encoder = Encoder(EncoderConfig(), cache_dir)
    report = SelectReport()
    kept = select(trec, SelectConfig(max_rows=30, mode="diverse"), report, encoder.embed)
    assert len(kept) == 30 and report.dropped == {"over_cap": len(trec) - 30}
    assert [trec.index(r) for r in kept] == sorted(trec.index(r) for r in kept)  # original order kept
    under = SelectReport()
    assert select(trec, SelectConfig(max_rows=1000), under) == trec and under.mode == "none"
    a, b = SelectReport(), SelectReport()
    assert select(trec, SelectConfig(30, "random", seed="0:x"), a) == select(
        trec, SelectConfig(30, "random", seed="0:x"), b
    )


def test_build_max_per_source_with_diverse_selection(make_release, tmp_path):
    release = make_release(
        "superni/task1289_trec_classification,st/AllNLI",
        tmp_path / "release",
        [DEMO_MIRROR],
        max_per_source=25,
        select="diverse",
    )
    trec = release.manifest["sources"]["superni/task1289_trec_classification"]
    assert trec["clean"]["select"] == {"mode": "diverse", "cap": 25, "kept": 25, "dropped": {"over_cap": 95}}
    assert trec["rows_kept"] == 25
    allnli = release.manifest["sources"]["st/AllNLI"]
    assert allnli["clean"]["select"]["mode"] == "none"  # 20 rows: under the cap
    assert release.manifest["config"]["max_per_source"] == 25


@pytest.mark.parametrize(
    "settings",
    [
        {"over_budget": "keep", "count_rows": 300},  # counts of a seeded sample of the rows
        {"over_budget": "keep"},  # fewer rows than count_rows: every row counted
        {"over_budget": "drop", "token_budget": 64},  # every row counted chunk by chunk, long rows dropped
        {"token_budget": None},
    ],
)
def test_the_streamed_token_budget_keeps_and_reports_what_the_list_one_does(settings, monkeypatch):
    """An uncapped source's select stage streams its rows through the token budget; on real tasks it keeps the
    same rows and writes the same report as ``apply_token_budget`` over the whole list."""
    monkeypatch.setattr(select_module, "COUNT_ROWS", 100)  # several chunks of the 1,381 rows
    records = [r for task in TASK_NAMES for r in read_task(task)]
    config = FilterConfig(**settings)
    wordings = {"query": "Represent the question for retrieving its answer:", "document": "Represent the answer:"}
    expected_report, report = FilterReport(), FilterReport()
    expected = apply_token_budget(records, config, expected_report, wordings)
    kept = list(token_budget_stream(lambda: iter(records), len(records), config, report, wordings))
    assert kept == expected
    assert to_jsonable(report) == to_jsonable(expected_report)
    if settings.get("over_budget") == "drop":
        assert 0 < report.dropped["over_token_budget"] < len(records)
