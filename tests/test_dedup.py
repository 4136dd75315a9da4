"""Dedup on real Super-NI tasks: exact and near duplicates, cross-source repeats, echo negatives."""

from __future__ import annotations

import json
from pathlib import Path

from support import FIXTURES, TASKS, spec

from medi.adapters import get_adapter
from medi.schema import Record
from medi.stages import dedup as dedup_module
from medi.stages.checkpoint import to_jsonable
from medi.stages.dedup import DedupConfig, DedupReport, SeenPairs, dedup, dedup_stream, jaccard, pair_sides, shingles
from medi.stages.normalize import NormalizeReport, canonical, normalize

CLEAN_TASKS = FIXTURES / "clean" / "super-ni" / "tasks"


def task_records(path: Path, adapter: str = "superni") -> list:
    name = f"superni/{path.stem}"
    adapted = get_adapter(adapter, name)(path, spec(name, adapter), 0)
    return list(normalize(adapted.rows, NormalizeReport()))


def test_exact_duplicates_of_a_real_task_are_counted_and_dropped():
    records = task_records(CLEAN_TASKS / "task900_freebase_qa_category_classification.json")
    report = DedupReport()
    kept = dedup(records, DedupConfig(), report)
    # the slice holds all 15 (input, outputs) pairs task900 repeats upstream, and both occurrences of each
    assert report.dropped == {"exact_duplicate": 15}
    assert len(kept) == len(records) - 15
    assert report.same_query_other_pair == 2  # same question, another label: kept, only counted
    keys = [pair_sides(r) for r in kept]
    assert len(keys) == len(set(keys))
    first = report.examples["exact_duplicate"][0]
    dropped = next(r for r in records if r.row_id == first["row_id"])
    original = next(r for r in kept if r.row_id == first["duplicate_of"])
    assert canonical(dropped.query) == canonical(original.query)
    assert records.index(original) < records.index(dropped)  # the first occurrence is the one kept


def test_near_duplicates_need_both_sides_similar():
    stories = task_records(CLEAN_TASKS / "task293_storycommonsense_emotion_text_generation.json")
    report = DedupReport()
    kept = dedup(stories, DedupConfig(), report)
    # same story and sentence, another one-word character, same emotion: 23 such pairs upstream, all in the slice
    assert report.dropped == {"near_duplicate": 23}
    assert len(kept) == len(stories) - 23
    example = report.examples["near_duplicate"][0]
    a, b = (next(r for r in stories if r.row_id == example[key]) for key in ("row_id", "duplicate_of"))
    assert a.query != b.query and a.outputs == b.outputs
    assert len(dedup(stories, DedupConfig(near=False), DedupReport())) == len(stories)


def test_one_passage_with_several_questions_is_not_a_duplicate():
    coqa = task_records(CLEAN_TASKS / "task918_coqa_answer_generation.json")
    by_passage: dict[str, list] = {}
    for record in coqa:
        by_passage.setdefault(record.query.rsplit(", question:", 1)[0], []).append(record)
    assert sorted(len(group) for group in by_passage.values())[-3:] == [10, 10, 10]
    report = DedupReport()
    assert len(dedup(coqa, DedupConfig(), report)) == len(coqa)
    assert not report.dropped
    # as shingle sets the questions on one passage are near-identical: only the answers and the edit cap tell them apart
    group = max(by_passage.values(), key=len)
    sets = [shingles(canonical(r.query), 5) for r in group]
    assert min(jaccard(sets[0], other) for other in sets[1:]) >= 0.9


def test_near_duplicate_threshold_is_a_setting():
    stories = task_records(CLEAN_TASKS / "task293_storycommonsense_emotion_text_generation.json")
    loose, strict = DedupReport(), DedupReport()
    dedup(stories, DedupConfig(near_threshold=0.8), loose)
    dedup(stories, DedupConfig(near_threshold=0.99), strict)
    assert loose.dropped["near_duplicate"] > strict.dropped.get("near_duplicate", 0)


def test_cross_source_repeats_are_reported_and_removed_on_request():
    addsub = task_records(TASKS / "task861_asdiv_addsub_question_answering.json")
    multiop = task_records(CLEAN_TASKS / "task863_asdiv_multiop_question_answering.json")
    for mode, expected_kept in (("report", len(multiop)), ("remove", len(multiop) - 227)):
        seen = SeenPairs()
        dedup(addsub, DedupConfig(across_sources=mode), DedupReport(), source="superni/task861", seen=seen)
        report = DedupReport()
        kept = dedup(multiop, DedupConfig(across_sources=mode), report, source="superni/task863", seen=seen)
        assert report.across == {"superni/task861": 227}
        assert len(kept) == expected_kept


def test_query_equal_to_positive_is_dropped_and_echo_negatives_are_cleared():
    rows = [
        json.loads(line)
        for line in (
            FIXTURES
            / "mirror"
            / "FlagEmbedding"
            / "examples"
            / "finetune"
            / "embedder"
            / "example_data"
            / "retrieval"
            / "nli.jsonl"
        )
        .read_text(encoding="utf-8")
        .splitlines()
    ]
    first, second, third = rows[:3]
    records = [
        Record(row_id="r0", query=first["query"], pos=first["pos"][0], neg=first["neg"][0]),
        # the same sentence as query and positive, up to case and punctuation: no training signal
        Record(row_id="r1", query=second["query"], pos=second["query"].upper().rstrip(".") + " !"),
        # a negative that repeats the positive is cleared, so mining replaces it
        Record(row_id="r2", query=third["query"], pos=third["pos"][0], neg=" " + third["pos"][0].lower()),
    ]
    report = DedupReport()
    kept = dedup(records, DedupConfig(), report)
    assert [r.row_id for r in kept] == ["r0", "r2"]
    assert report.dropped == {"query_equals_pos": 1}
    assert report.changed == {"neg_equals_query_or_pos_to_mine": 1}
    assert kept[0].neg == first["neg"][0] and kept[1].neg is None


def test_symmetric_sources_treat_swapped_pairs_as_duplicates():
    rows = json.loads(
        "["
        + ",".join(
            (
                FIXTURES
                / "mirror"
                / "FlagEmbedding"
                / "examples"
                / "finetune"
                / "embedder"
                / "example_data"
                / "sts"
                / "sts.jsonl"
            )
            .read_text(encoding="utf-8")
            .splitlines()
        )
        + "]"
    )
    a, b = rows[0]["query"], rows[0]["pos"][0]
    records = [Record(row_id="x", query=a, pos=b), Record(row_id="y", query=b, pos=a)]
    assert len(dedup(records, DedupConfig(), DedupReport(), symmetric=True)) == 1
    assert len(dedup(records, DedupConfig(), DedupReport(), symmetric=False)) == 2


def test_the_streamed_passes_keep_what_the_one_pass_loop_keeps(monkeypatch):
    """Within a source, dedup runs in passes over hash partitions (``dedup_stream``); with a ``SeenPairs`` it runs
    the one-pass loop over dictionaries. On real tasks (exact and near duplicates, echo negatives, a symmetric
    source) both keep the same rows and write the same report, also when every partition spills to files."""
    tasks = [*sorted(CLEAN_TASKS.glob("*.json")), *sorted(TASKS.glob("*.json"))]
    records = [r for path in tasks for r in task_records(path)]
    echoes = records[:50]  # real queries, each with its own query as the negative
    records += [Record(f"echo:{i}", r.query, r.query + " answer", r.query) for i, r in enumerate(echoes)]
    for symmetric in (False, True):
        expected_report = DedupReport()
        expected = dedup(records, DedupConfig(), expected_report, symmetric=symmetric, seen=SeenPairs())
        assert {"exact_duplicate", "near_duplicate"} <= set(expected_report.dropped)
        assert expected_report.changed["neg_equals_query_or_pos_to_mine"] == 50
        for spill in (dedup_module.SPILL_BYTES, 1):
            monkeypatch.setattr(dedup_module, "SPILL_BYTES", spill)
            report = DedupReport()
            kept = list(dedup_stream(lambda: iter(records), DedupConfig(), report, symmetric=symmetric))
            assert kept == expected
            assert to_jsonable(report) == to_jsonable(expected_report)
