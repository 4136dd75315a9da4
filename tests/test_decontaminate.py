"""Decontamination against real Super-NI test tasks: the four layers, the build's report, the registry table."""

from __future__ import annotations

import json

import pytest
from support import FIXTURES, MIRROR, TASKS, spec

from medi.adapters import get_adapter
from medi.encode import Encoder, EncoderConfig
from medi.errors import SourceError
from medi.schema import Record
from medi.stages.decontaminate import DecontamConfig, DecontamReport, EvalIndex, EvalSet, decontaminate
from medi.stages.normalize import NormalizeReport, canonical, normalize

ZEST_TEST = "task1562_zest_text_modification"
ZEST_EXCLUDED = "task120_zest_text_modification"
QQP_TEST = "task1345_glue_qqp_question_paraprashing"
CLEAN = FIXTURES / "clean"


def read_task(task: str, folder=TASKS) -> tuple[list[Record], dict]:
    name = f"superni/{task}"
    adapted = get_adapter("superni", name)(folder / f"{task}.json", spec(name, "superni"), 0)
    return list(normalize(adapted.rows, NormalizeReport())), adapted.meta


def eval_set(task: str) -> EvalSet:
    records, meta = read_task(task)
    return EvalSet.from_records(f"eval/{task}", records, meta["Source"])


def test_zest_test_inputs_are_caught_in_the_excluded_train_task():
    index = EvalIndex([eval_set(ZEST_TEST)])
    records, meta = read_task(ZEST_EXCLUDED)
    report = DecontamReport()
    kept = decontaminate(records, index, report, source=f"superni/{ZEST_EXCLUDED}", source_datasets=meta["Source"])
    # 139 of task1562's 142 inputs are task120 inputs after normalisation; each such task120 row goes
    assert report.dropped == {"eval_exact": 139}
    assert len(kept) == len(records) - 139 == 2
    assert report.registry == {f"eval/{ZEST_TEST}": ["zest"]}  # layer 1: same upstream dataset
    summary = report.summary()["eval_sets"][f"eval/{ZEST_TEST}"]
    assert summary["exact"] == 139 and summary["ngram"] == 0
    example = summary["examples"][0]
    assert example["layer"] == "exact" and canonical(example["text"]) == canonical(example["eval_text"])
    test_inputs = {canonical(r.query) for r in read_task(ZEST_TEST)[0]}
    assert not any(canonical(r.query) in test_inputs for r in kept)


def test_ngrams_alone_find_fewer_because_most_inputs_are_short():
    index = EvalIndex([eval_set(ZEST_TEST)])
    records, _ = read_task(ZEST_EXCLUDED)
    by_ngram = [r for r in records if index.ngram_hits(canonical(r.query).split())]
    # 13-grams alone would find 17 (most inputs have under 13 words); 8-grams for 8-12 words bring 123
    assert len(by_ngram) == 123
    thirteen = EvalIndex([eval_set(ZEST_TEST)], DecontamConfig(short_ngram=13))
    assert sum(bool(thirteen.ngram_hits(canonical(r.query).split())) for r in records) == 17


def test_shared_opening_phrases_are_not_ngram_hits():
    # real rows: a train question and a QQP test question share an 8-word opening and nothing else
    index = EvalIndex([EvalSet("eval/qqp", ["How old do you have to be to get welfare and why?"])])
    for text in ("in georgia how old do you have to be to get a tattoo", "how old do you have to be to conceal carry"):
        assert index.ngram_hits(canonical(text).split()) == []
    assert index.ngram_hits(canonical("How old do you have to be to get welfare, and why").split())


def test_one_word_outputs_and_labels_are_not_contamination():
    index = EvalIndex([eval_set(t) for t in (ZEST_TEST, QQP_TEST, "task891_gap_coreference_resolution")])
    capitals, meta = read_task("task1146_country_capital")
    report = DecontamReport()
    assert decontaminate(capitals, index, report, source_datasets=meta["Source"]) == capitals
    assert not report.dropped and not report.hits
    babi, _ = read_task("task082_babi_t1_single_supporting_fact_question_generation")
    labels = EvalIndex([EvalSet.from_records("eval/babi", babi)])
    assert "where is mary" not in labels.exact  # repeated outputs are labels
    assert canonical(babi[0].query) in labels.exact


def test_quora_style_rows_holding_qqp_test_questions_are_removed():
    index = EvalIndex([eval_set(QQP_TEST)])
    name = "st/quora_duplicates"
    path = CLEAN / "embedding-training-data" / "quora_duplicates.jsonl.gz"
    rows = list(get_adapter("st_jsonl", name)(path, spec(name, "st_jsonl", symmetric=True), 0).rows)
    report = DecontamReport()
    kept = decontaminate(rows, index, report, source=name, source_datasets=["qqp"])
    # 20 rows come from task1345's first 100 instances (in the eval slice), 10 from instances it lacks, 1 from GritLM
    assert report.dropped == {"eval_exact": 20}
    assert len(kept) == 11
    assert report.registry == {f"eval/{QQP_TEST}": ["qqp"]}
    assert ["Can someone travel back in time?", "Can we travel in time?"] in [[r.query, r.pos] for r in kept]


def test_registry_refuse_stops_the_source():
    index = EvalIndex([eval_set(QQP_TEST)], DecontamConfig(registry="refuse"))
    with pytest.raises(SourceError, match="shares its upstream dataset"):
        decontaminate([], index, DecontamReport(), source="st/quora_duplicates", source_datasets=["QQP"])


def test_a_contaminated_negative_is_cleared_not_the_row():
    test_rows, _ = read_task(QQP_TEST)
    index = EvalIndex([eval_set(QQP_TEST)])
    nli = [
        json.loads(line)
        for line in (FIXTURES / "mirror" / "gritlm" / "gritlm" / "training" / "toy_data" / "toy_data_embedding.jsonl")
        .read_text(encoding="utf-8")
        .splitlines()
    ]
    row = Record(row_id="r", query=nli[0]["query"], pos=nli[0]["pos"][0], neg=test_rows[0].query)
    report = DecontamReport()
    [kept] = decontaminate([row], index, report)
    assert kept.neg is None and kept.query == row.query
    assert report.changed == {"eval_neg_to_mine": 1}


def test_embedding_audit_lists_paraphrases_and_drops_nothing(cache_dir):
    test_rows, _ = read_task(ZEST_TEST)
    index = EvalIndex([EvalSet(f"eval/{ZEST_TEST}", [r.query for r in test_rows])])
    # task1562's outputs are human rewrites of its inputs: paraphrases, rarely the same words
    rewrites = [Record(row_id=f"rw{i}", query=r.outputs[0], pos=r.outputs[0]) for i, r in enumerate(test_rows)]
    rewrites = [r for r in rewrites if not index.exact_hits(canonical(r.query))]
    encoder = Encoder(EncoderConfig(), cache_dir)
    report = DecontamReport()
    kept = decontaminate(rewrites, index, report, embed=encoder.embed)
    flagged = report.hits[f"eval/{ZEST_TEST}"]["embedding"]
    assert len(rewrites) / 4 < flagged <= len(rewrites)
    assert len(kept) == len(rewrites) - sum(report.dropped.values())  # the audit itself drops nothing
    example = next(e for e in report.examples[f"eval/{ZEST_TEST}"] if e["layer"] == "embedding")
    assert example["cosine"] >= 0.9


def test_a_build_ships_the_contamination_report(make_release, tmp_path):
    qqp = f"eval/{QQP_TEST}"
    release = make_release(
        "st/quora_duplicates,superni/task1146_country_capital",
        tmp_path / "release",
        [CLEAN, MIRROR],  # quora-style rows from clean/, the task1345 test slice from mirror/
        eval_sets=qqp,
    )
    report = json.loads((release.out / "contamination.json").read_text(encoding="utf-8"))
    assert [s["name"] for s in report["eval_sets"]] == [qqp]
    # MTEB model-metadata form: {evaluation set: [splits]}, and per source the sets sharing its upstream dataset
    assert report["training_datasets"] == {qqp: ["train"]}
    assert report["source_shares_dataset_with"] == {"st/quora_duplicates": {qqp: ["train"]}}
    assert report["totals"]["exact"] == 20 and report["totals"]["registry"] == 1
    quora = release.manifest["sources"]["st/quora_duplicates"]
    assert quora["rows_read"] == 31 and quora["rows_kept"] == 11
    assert quora["dropped"]["eval_exact"] == 20
    assert release.manifest["contamination"]["training_datasets"] == {qqp: ["train"]}
    capitals = release.manifest["sources"]["superni/task1146_country_capital"]
    assert capitals["rows_kept"] == capitals["rows_read"]  # one-word answers stay
    test_texts = {canonical(r.query) for r in read_task(QQP_TEST)[0]}
    texts = {canonical(row[side]["text"]) for row in release.dataset for side in ("query", "pos", "neg")}
    assert not texts & test_texts


def test_evaluation_sets_never_build_as_sources(make_release, tmp_path):
    from medi.errors import MediError

    with pytest.raises(MediError, match="evaluation sets"):
        make_release(f"eval/{QQP_TEST}", tmp_path / "release", [MIRROR])
