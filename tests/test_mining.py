"""Mining rules on real rows.

- classification tasks (trec, clariq): the positive shares the query's label, the negative does not, each the most
  similar such input;
- generation tasks: the positive maximises cos(x_i, x_j) + cos(y_i, y_j) over j != i (near-duplicates excluded),
  the negative maximises cos(x_i, x_j) - cos(y_i, y_j);
- pair sources: a mined negative is one of the source's own texts, scored below the positive by the margin;
- no negative is its query or its positive.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from rapidfuzz import fuzz
from support import ETD, MIRROR, TASKS, plain, spec, task_file
from typer.testing import CliRunner

from medi.adapters import get_adapter
from medi.cli import app
from medi.encode import Encoder, EncoderConfig
from medi.stages.mine import MineConfig, MineReport, mine_pairs, mine_task
from medi.stages.normalize import NormalizeReport, canonical, normalize

CLASSIFICATION = ("task1289_trec_classification", "task227_clariq_classification")
GENERATION = ("task1146_country_capital", "task1319_country_by_barcode_prefix")
NEAR_DUPLICATE = MineConfig().near_duplicate  # rapidfuzz ratio on the canonical form


@pytest.fixture(scope="module")
def encoder(cache_dir) -> Encoder:
    return Encoder(EncoderConfig(), cache_dir)


def task_records(task: str):
    """The task's rows as the build has them before mining (adapter + normalize)."""
    source = spec(f"superni/{task}", "superni")
    adapted = get_adapter("superni", source.name)(TASKS / f"{task}.json", source, 0)
    return list(normalize(adapted.rows, NormalizeReport()))


def near_duplicate(a: str, b: str) -> bool:
    ca, cb = canonical(a), canonical(b)
    return ca == cb or fuzz.ratio(ca, cb) >= NEAR_DUPLICATE


def labels_by_id(task: str) -> dict[str, frozenset[str]]:
    return {
        i["id"]: frozenset(o.strip().casefold() for o in i["output"] if o.strip()) for i in task_file(task)["Instances"]
    }


def instance_id(ref: str) -> str:
    return ref.split(":", 1)[1]


@pytest.mark.parametrize("task", CLASSIFICATION)
def test_classification_positive_shares_the_label_negative_does_not(mirror_release, task):
    name = f"superni/{task}"
    labels = labels_by_id(task)
    assert 2 <= len(set().union(*labels.values())) <= 6
    source = mirror_release.manifest["sources"][name]
    assert source["mining"]["mode"] == "classification"
    rows = mirror_release.rows_of(name)
    assert len(rows) == source["rows_kept"] > 0.9 * len(labels)
    for row in rows:
        query, pos, neg = (labels[instance_id(row[key])] for key in ("row_id", "pos_ref", "neg_ref"))
        assert query & pos, row["row_id"]
        assert not query & neg, row["row_id"]
        assert row["pos_ref"] != row["row_id"] != row["neg_ref"]
        assert (row["pos_origin"], row["neg_origin"]) == ("mined", "mined")


@pytest.mark.parametrize("task", CLASSIFICATION)
def test_classification_picks_the_most_similar_input(mirror_release, encoder, task):
    """Positive: the nearest input with a shared label; negative: the nearest one without (checked on 12 rows)."""
    records = task_records(task)
    index = {r.row_id: i for i, r in enumerate(records)}
    labels = [frozenset(o.casefold() for o in r.outputs) for r in records]
    inputs = [r.query for r in records]
    x = encoder.embed(inputs)
    cos = x @ x.T
    rows = mirror_release.rows_of(f"superni/{task}")
    for row in rows[:: max(1, len(rows) // 12)]:
        i, p, n = index[row["row_id"]], index[row["pos_ref"]], index[row["neg_ref"]]
        same = [j for j in range(len(records)) if j != i and labels[i] & labels[j]]
        same = [j for j in same if not near_duplicate(inputs[i], inputs[j])]
        assert p in same and cos[i, p] >= cos[i, same].max() - 1e-5
        other = [j for j in range(len(records)) if not labels[i] & labels[j]]
        other = [
            j for j in other if not near_duplicate(inputs[i], inputs[j]) and not near_duplicate(inputs[p], inputs[j])
        ]
        assert n in other and cos[i, n] >= cos[i, other].max() - 1e-5
        assert row["pos_score"] == pytest.approx(cos[i, p], abs=1e-4)
        assert row["neg_score"] == pytest.approx(cos[i, n], abs=1e-4)


@pytest.mark.parametrize("task", GENERATION)
def test_generation_follows_the_cos_plus_cos_rule(encoder, task):
    records = task_records(task)
    report = MineReport()
    triples = mine_task(records, encoder, MineConfig(seed=0), report)
    assert report.mode == "generation"
    assert len(triples) == report.kept == len(records)
    assert report.neg_origin == {"mined": len(records)}

    inputs = [r.query for r in records]
    index = {r.row_id: i for i, r in enumerate(records)}
    x = encoder.embed(inputs)
    y = []
    for r in records:  # a row's output vector: its outputs' unit vectors averaged, back to unit length
        mean = encoder.embed(list(r.outputs)).mean(axis=0)
        y.append(mean / np.linalg.norm(mean))
    y = np.asarray(y)
    together, apart = x @ x.T + y @ y.T, x @ x.T - y @ y.T
    outputs = [{canonical(o) for o in r.outputs} for r in records]

    for triple in triples[:: max(1, len(triples) // 15)]:
        i, p, n = index[triple.row_id], index[triple.pos_ref], index[triple.neg_ref]
        others = [j for j in range(len(records)) if j != i and not near_duplicate(inputs[i], inputs[j])]
        assert p in others, triple.row_id
        assert together[i, p] >= together[i, others].max() - 1e-5, triple.row_id
        assert triple.pos == records[p].query and triple.pos_score == pytest.approx(float(x[i] @ x[p]), abs=1e-5)

        eligible = [j for j in others if not near_duplicate(inputs[p], inputs[j]) and not outputs[i] & outputs[j]]
        assert n in eligible, triple.row_id
        assert apart[i, n] >= apart[i, eligible].max() - 1e-5, triple.row_id

    for triple in triples:
        assert triple.neg != triple.query and triple.neg != triple.pos and triple.pos != triple.query


def test_mining_is_deterministic(encoder):
    records = task_records("task1146_country_capital")
    first = mine_task(records, encoder, MineConfig(seed=0), MineReport())
    again = mine_task(records, encoder, MineConfig(seed=0), MineReport())
    assert [(t.pos_ref, t.neg_ref) for t in first] == [(t.pos_ref, t.neg_ref) for t in again]


def test_too_few_rows_are_counted_not_mined(encoder):
    records = task_records("task1146_country_capital")[:2]
    report = MineReport()
    assert mine_task(records, encoder, MineConfig(), report) == []
    assert report.mode == "too_few_rows" and report.dropped == {"too_few_rows": 2}


@pytest.mark.parametrize("name", ["st/quora_duplicates", "st/flickr30k_captions", "st/searchQA_top5_snippets"])
def test_mined_pair_negatives(mirror_release, name):
    """Pair sources without negatives get one of the source's own texts, below the positive's score by 5 %."""
    source = mirror_release.manifest["sources"][name]
    rows = mirror_release.rows_of(name)
    assert source["mining"]["neg_origin"] == {"mined": len(rows)} and len(rows) == 10
    own_texts = {r["pos"]["text"] for r in rows}
    if source["catalog"]["symmetric"]:
        own_texts |= {r["query"]["text"] for r in rows}
    margin = mirror_release.manifest["mining_defaults"]["relative_margin"]
    for row in rows:
        assert row["neg"]["text"] in own_texts
        assert row["neg_score"] < row["pos_score"] * (1 - margin)
        assert not near_duplicate(row["neg"]["text"], row["query"]["text"])
        assert not near_duplicate(row["neg"]["text"], row["pos"]["text"])


@pytest.mark.parametrize("which", ["mirror_release", "demo_release"])
def test_no_negative_is_its_query_or_positive(request, which):
    release = request.getfixturevalue(which)
    for row in release.dataset:
        assert row["neg"]["text"] != row["query"]["text"], row["row_id"]
        assert row["neg"]["text"] != row["pos"]["text"], row["row_id"]
        assert row["neg_origin"] in ("given", "mined", "fallback")
        assert row["pos_origin"] in ("given", "mined")


def test_rows_without_any_other_label_are_dropped_and_counted(mirror_release):
    """task082: 4 distinct outputs, 1-4 per instance; an instance listing all 4 shares a label with every input,
    so it can have no classification negative: it is dropped as no_negative, and only it."""
    task = "task082_babi_t1_single_supporting_fact_question_generation"
    labels = labels_by_id(task)
    source = mirror_release.manifest["sources"][f"superni/{task}"]
    assert source["mining"]["mode"] == "classification"
    has_negative = {i for i in labels if any(not labels[i] & labels[j] for j in labels)}
    kept = {instance_id(r["row_id"]) for r in mirror_release.rows_of(f"superni/{task}")}
    assert kept == has_negative
    assert source["dropped"] == {"no_negative": len(labels) - len(has_negative)} == {"no_negative": 54}
    assert source["rows_read"] == len(labels) == source["rows_kept"] + 54


# --- given negatives: nothing to mine ----------------------------------------------------------------------


def given_triplets() -> list:
    """The fixture's real msmarco triplets (query, positive and negative all given), as the mine stage gets them."""
    source = spec("st/msmarco-triplets", "st_jsonl")
    adapted = get_adapter("st_jsonl", source.name)(ETD / "msmarco-triplets.jsonl.gz", source, 0)
    records = list(normalize(adapted.rows, NormalizeReport()))
    assert len(records) > 4 and all(r.neg for r in records)
    return records


def test_given_negatives_load_no_encoder_by_default(tmp_path):
    records = given_triplets()
    encoder, report = Encoder(EncoderConfig(), tmp_path / "cache"), MineReport()
    triples = mine_pairs(records, encoder, MineConfig(), report, symmetric=False)
    assert encoder._model is None and encoder.texts_encoded == 0
    assert [(t.query, t.pos, t.neg) for t in triples] == [(r.query, r.pos, r.neg) for r in records]
    assert all(t.neg_origin == "given" and t.pos_score is None and t.neg_score is None for t in triples)
    summary = report.summary()
    assert summary["rows_scored"] == 0 and summary["mean_pos_score"] is None


def test_given_negatives_score_a_seeded_sample_when_asked(encoder, tmp_path):
    records = given_triplets()
    config, report = MineConfig(score_rows=4), MineReport()
    triples = mine_pairs(records, encoder, config, report, symmetric=False)
    scored = [t for t in triples if t.pos_score is not None]
    assert len(scored) == 4 == report.summary()["rows_scored"]
    assert [t.row_id for t in mine_pairs(records, encoder, config, MineReport(), False) if t.pos_score is not None] == [
        t.row_id for t in scored
    ]
    q = encoder.embed([t.query for t in scored], side="query")
    p, n = encoder.embed([t.pos for t in scored]), encoder.embed([t.neg for t in scored])
    assert [t.pos_score for t in scored] == pytest.approx(np.einsum("ij,ij->i", q, p).tolist(), abs=1e-5)
    assert [t.neg_score for t in scored] == pytest.approx(np.einsum("ij,ij->i", q, n).tolist(), abs=1e-5)


def test_score_rows_from_the_command_line(cache_dir, tmp_path):
    """`medi build --score-rows N` scores N given triplets; without it none are, and the table shows no scores."""
    runner = CliRunner(env={"COLUMNS": "240", "NO_COLOR": "1"})
    args = ["build", "--cache-dir", str(cache_dir), "--sources", "st/msmarco-triplets", "--data-dir", str(MIRROR)]
    for rows in (0, 4):
        out = tmp_path / f"scored-{rows}"
        result = runner.invoke(app, [*args, "--out", str(out), "--eval-sets", "none", "--score-rows", str(rows)])
        assert result.exit_code == 0, result.output
        mining = json.loads((out / "manifest.json").read_text())["sources"]["st/msmarco-triplets"]["mining"]
        assert mining["rows_scored"] == rows and mining["kept"] > rows
        assert (mining["mean_pos_score"] is None) == (rows == 0)
        assert f"[1/1] st/msmarco-triplets: read 10, sampled 10, kept {mining['kept']}" in plain(result.output)
        row = next(line for line in plain(result.stdout).splitlines() if line.startswith("st/msmarco"))
        assert row.endswith(" -") == (rows == 0), row  # piped: the summary's aligned line, scores last
    refused = runner.invoke(app, [*args, "--out", str(tmp_path / "negative"), "--score-rows", "-1"])
    assert refused.exit_code == 2 and "--score-rows" in plain(refused.output)
    assert not (tmp_path / "negative").exists()
