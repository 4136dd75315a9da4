"""Ablation switches of ``medi build`` (issue 18): where negatives come from, and instructions removed.

- ``mining.negatives_from random``: a seeded random in-source negative, never the query or the positive nor a
  near-duplicate of them; Super-NI rows keep the mined rule's conditions (no shared label) and their positives;
- ``mining.negatives_from none``: an empty negative, nothing embedded for it; the release verifies, its stats
  read, the exports whose trainers need a negative refuse it and st-triplets writes anchor/positive pairs;
- ``instructions none``: every instruction empty, everything else byte-for-byte the release of ``primary``.

Rows are the real fixture rows (tests/fixtures/README.md) and the demo mirror (demo/PROVENANCE.md).
"""

from __future__ import annotations

import json

import pytest
from support import DEMO_MIRROR, ETD, TASKS, spec

import medi
from medi.adapters import get_adapter
from medi.build import BuildOptions
from medi.encode import Encoder, EncoderConfig
from medi.errors import MediError
from medi.release import open_release
from medi.release.export import export
from medi.release.stats import release_stats
from medi.release.verify import verify_release
from medi.stages.mine import MineConfig, MineReport, mine_pairs, mine_task
from medi.stages.normalize import NormalizeReport, canonical, normalize

# one Super-NI classification task, one pair source mined by default, one with given negatives (symmetric)
SOURCES = "superni/task1289_trec_classification,st/quora_duplicates,st/AllNLI"
NEAR_DUPLICATE = MineConfig().near_duplicate


@pytest.fixture(scope="module")
def encoder(cache_dir) -> Encoder:
    return Encoder(EncoderConfig(), cache_dir)


def adapted(name: str, adapter: str, path) -> list:
    source = spec(name, adapter)
    return list(normalize(get_adapter(adapter, source.name)(path, source, 0).rows, NormalizeReport()))


def trec_records() -> list:
    return adapted("superni/task1289_trec_classification", "superni", TASKS / "task1289_trec_classification.json")


def msmarco_triplets() -> list:
    """Real msmarco triplets: query, positive and a given negative."""
    records = adapted("st/msmarco-triplets", "st_jsonl", ETD / "msmarco-triplets.jsonl.gz")
    assert len(records) > 4 and all(r.neg for r in records)
    return records


def near(a: str, b: str) -> bool:
    from rapidfuzz import fuzz

    ca, cb = canonical(a), canonical(b)
    return ca == cb or fuzz.ratio(ca, cb) >= NEAR_DUPLICATE


def mine(records, encoder, **config) -> tuple[list, MineReport]:
    report = MineReport()
    return mine_pairs(records, encoder, MineConfig(**config), report, symmetric=False), report


# --- mining ---------------------------------------------------------------------------------------------------


def test_random_pair_negatives_are_seeded_in_source_texts_and_replace_given_ones(encoder):
    records = msmarco_triplets()
    triples, report = mine(records, encoder, negatives_from="random")
    assert report.neg_origin == {"random": len(records)} and report.summary()["negatives_from"] == "random"
    pool = {r.pos for r in records} | {r.neg for r in records}
    for record, triple in zip(records, triples, strict=True):
        assert (triple.query, triple.pos) == (record.query, record.pos)
        assert triple.neg in pool
        assert not near(triple.neg, triple.query) and not near(triple.neg, triple.pos), triple.row_id
    assert [t.neg for t in triples] != [r.neg for r in records]  # the given negatives are replaced
    again, _ = mine(records, encoder, negatives_from="random")
    assert [t.neg for t in again] == [t.neg for t in triples]
    other_seed, _ = mine(records, encoder, negatives_from="random", seed=1)
    assert [t.neg for t in other_seed] != [t.neg for t in triples]


def test_random_negatives_are_scored_like_given_ones_when_asked(encoder):
    records = msmarco_triplets()
    triples, report = mine(records, encoder, negatives_from="random", score_rows=4)
    scored = [t for t in triples if t.neg_score is not None]
    assert len(scored) == 4 == report.summary()["rows_scored"]
    q = encoder.embed([t.query for t in scored], side="query")
    n = encoder.embed([t.neg for t in scored])
    assert [t.neg_score for t in scored] == pytest.approx([float(a @ b) for a, b in zip(q, n, strict=True)], abs=1e-5)


def test_random_superni_negatives_keep_the_rule_and_the_positives(encoder):
    records = trec_records()
    labels = {r.row_id: {canonical(o) for o in r.outputs} for r in records}
    mined = mine_task(records, encoder, MineConfig(), MineReport())
    report = MineReport()
    randomised = mine_task(records, encoder, MineConfig(negatives_from="random"), report)
    assert report.mode == "classification" and report.neg_origin == {"random": len(randomised)}
    assert [(t.row_id, t.pos_ref) for t in randomised] == [(t.row_id, t.pos_ref) for t in mined]
    ids = set(labels)
    for triple in randomised:
        assert triple.neg_ref in ids and triple.neg_ref not in (triple.row_id, triple.pos_ref)
        assert not labels[triple.neg_ref] & labels[triple.row_id], triple.row_id  # no shared label
        assert not near(triple.neg, triple.query) and not near(triple.neg, triple.pos)
    assert sum(a.neg_ref != b.neg_ref for a, b in zip(randomised, mined, strict=True)) > len(mined) // 2
    again = mine_task(records, encoder, MineConfig(negatives_from="random"), MineReport())
    assert [t.neg_ref for t in again] == [t.neg_ref for t in randomised]


def test_no_negatives_embed_nothing_for_pairs(tmp_path):
    records = msmarco_triplets()
    encoder = Encoder(EncoderConfig(), tmp_path / "cache")
    triples, report = mine(records, encoder, negatives_from="none", score_rows=None)
    assert encoder._model is None and encoder.texts_encoded == 0
    assert [(t.query, t.pos, t.neg, t.neg_origin) for t in triples] == [(r.query, r.pos, "", "none") for r in records]
    assert all(t.neg_score is None and t.neg_ref is None for t in triples)
    assert report.summary()["neg_origin"] == {"none": len(records)}


def test_no_negatives_keep_the_superni_positives(encoder):
    records = trec_records()
    mined = mine_task(records, encoder, MineConfig(), MineReport())
    without = mine_task(records, encoder, MineConfig(negatives_from="none"), MineReport())
    assert [(t.row_id, t.pos, t.pos_score) for t in without] == [(t.row_id, t.pos, t.pos_score) for t in mined]
    assert {(t.neg, t.neg_origin, t.neg_score, t.neg_ref) for t in without} == {("", "none", None, None)}


def test_an_unknown_rule_names_the_option(tmp_path):
    options = BuildOptions(mining={"negatives_from": "hardest"})
    with pytest.raises(MediError, match=r"mining: negatives_from must be one of mined, random, none, not 'hardest'"):
        medi.build(SOURCES, tmp_path / "out", [DEMO_MIRROR], options, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "out").exists()


# --- releases -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def releases(make_release, tmp_path_factory) -> dict:
    """The same sources built four ways: the default, random negatives, no negatives, no instructions."""
    variants = {
        "mined": {},
        "random": {"mining": {"negatives_from": "random"}},
        "none": {"mining": {"negatives_from": "none"}},
        "no-instructions": {"instructions": "none"},
    }
    root = tmp_path_factory.mktemp("ablations")
    return {name: make_release(SOURCES, root / name, [DEMO_MIRROR], **opts) for name, opts in variants.items()}


def rows(release) -> list[dict]:
    return release.dataset.to_list()


def test_a_release_without_negatives_verifies_and_reads(releases):
    release = releases["none"]
    assert verify_release(release.out).ok
    assert release.manifest["config"]["mining"] == {"negatives_from": "none"}
    table = rows(release)
    assert len(table) == releases["mined"].manifest["rows"]
    assert {(r["neg"]["text"], r["neg"]["instruction"], r["neg_origin"]) for r in table} == {("", "", "none")}
    assert [(r["row_id"], r["query"], r["pos"]) for r in table] == [
        (r["row_id"], r["query"], r["pos"]) for r in rows(releases["mined"])
    ]
    for name, source in release.manifest["sources"].items():
        assert source["mining"]["negatives_from"] == "none", name
        assert source["mining"]["neg_origin"] == {"none": source["rows_kept"]}
    stats = release_stats(open_release(release.out))
    assert all(s["lengths"]["neg"]["max"] == 0 for s in stats["sources"].values())


def test_exports_of_a_release_without_negatives(releases, tmp_path):
    release = open_release(releases["none"].out)
    for fmt in ("instructor", "medi2"):
        with pytest.raises(MediError, match=f"negatives_from none.*the {fmt} format's trainer needs a negative"):
            export(release, fmt, tmp_path / fmt)
        assert not (tmp_path / fmt).exists() and not list(tmp_path.glob(f"{fmt}*"))
    export(release, "st-triplets", tmp_path / "st")
    import datasets

    saved = datasets.load_from_disk(str(tmp_path / "st"))
    assert all(split.column_names == ["anchor", "positive"] for split in saved.values())
    sidecar = json.loads((tmp_path / "st" / "medi_export.json").read_text())
    assert sidecar["splits"]


def test_random_negatives_release(releases):
    release = releases["random"]
    assert verify_release(release.out).ok
    table, mined = rows(release), rows(releases["mined"])
    assert [(r["row_id"], r["query"], r["pos"]) for r in table] == [(r["row_id"], r["query"], r["pos"]) for r in mined]
    assert {r["neg_origin"] for r in table} == {"random"}
    by_source = {}
    for row in table:
        by_source.setdefault(row["task_name"], []).append(row)
    for name, source_rows in by_source.items():
        own = {r["pos"]["text"] for r in source_rows} | {r["query"]["text"] for r in source_rows}
        own |= {r["neg"]["text"] for r in mined if r["task_name"] == name}  # given negatives are in-source too
        for row in source_rows:
            neg = row["neg"]["text"]
            assert neg in own, row["row_id"]
            assert not near(neg, row["query"]["text"]) and not near(neg, row["pos"]["text"]), row["row_id"]
        assert release.manifest["sources"][name]["mining"]["negatives_from"] == "random"
    assert sum(a["neg"]["text"] != b["neg"]["text"] for a, b in zip(table, mined, strict=True)) > len(table) // 2


def test_instructions_none_changes_only_the_instructions(releases):
    plain, primary = rows(releases["no-instructions"]), rows(releases["mined"])
    assert releases["no-instructions"].manifest["config"]["instructions"] == "none"
    assert {r[side]["instruction"] for r in plain for side in ("query", "pos", "neg")} == {""}
    assert all(r[side]["instruction"] for r in primary for side in ("query", "pos", "neg"))

    def without_instructions(row: dict) -> dict:
        return {key: value["text"] if isinstance(value, dict) else value for key, value in row.items()}

    assert [without_instructions(r) for r in plain] == [without_instructions(r) for r in primary]
    assert verify_release(releases["no-instructions"].out).ok
