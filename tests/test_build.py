"""The demo build end to end, the release layout and manifest, and determinism."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import datasets
import pytest
from support import DEMO_MIRROR, MIRROR, RELEASE_FILES, json_lines, release_texts

import medi
from medi.encode import Encoder, EncoderConfig
from medi.release import load_manifest
from medi.schema import FEATURES, medi_row
from medi.stages.instruct import InstructionBook


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_demo_release_loads_with_the_schema(demo_release):
    dataset = datasets.load_from_disk(str(demo_release.out))
    assert dataset.features == FEATURES
    assert len(dataset) == demo_release.manifest["rows"] > 0
    assert sorted(p.name for p in demo_release.out.iterdir()) == sorted(RELEASE_FILES)
    assert load_manifest(demo_release.out) == demo_release.manifest


def test_demo_release_covers_the_demo_set(demo_release, catalog):
    demo = catalog.sets["demo"]
    manifest = demo_release.manifest
    assert demo.data_dir == DEMO_MIRROR
    assert manifest["data_dirs"] == [str(DEMO_MIRROR)]
    assert list(manifest["sources"]) == demo.sources
    assert manifest["skipped_sources"] == {} and manifest["absent_sources"] == {"count": 0, "names": []}
    for name, source in manifest["sources"].items():
        assert source["input"]["origin"] == "mirror", name
        assert source["rows_kept"] > 0, name
        assert source["rows_read"] == source["rows_kept"] + sum(source["dropped"].values()), name


def test_every_instruction_is_a_represent_wording(demo_release):
    for row in demo_release.dataset:
        for side in ("query", "pos", "neg"):
            instruction = row[side]["instruction"]
            assert instruction.startswith("Represent ") and instruction.endswith(":"), (row["row_id"], instruction)
            assert "  " not in instruction and " :" not in instruction
        assert row["pos"]["instruction"] == row["neg"]["instruction"]


def test_instructions_follow_the_catalog(demo_release, catalog):
    """Symmetric sources use one wording for every text; Super-NI tasks without an entry get a marked draft."""
    entries = InstructionBook.load(catalog.root).entries
    first = {}
    for row in demo_release.dataset:
        first.setdefault(row["task_name"], row)
    for name, source in demo_release.manifest["sources"].items():
        row, wordings = first[name], source["instructions"]
        assert row["query"]["instruction"] == wordings["query"][0]
        assert row["pos"]["instruction"] == wordings["document"][0]
        if catalog.specs[name].symmetric:
            assert wordings["query"] == wordings["document"]
        if name.startswith("superni/") and name not in entries:
            assert wordings["origin"] == "drafted from the task file" and wordings["status"] == "draft"
        else:
            assert wordings["origin"] == f"instructions/{catalog.specs[name].family}.yaml"


def test_rows_per_task_match_the_manifest(demo_release):
    manifest = demo_release.manifest
    dataset = demo_release.dataset
    counts = Counter(dataset["task_name"])
    assert counts == {t["task_name"]: t["rows"] for t in manifest["tasks"]}
    assert counts == {name: s["rows_kept"] for name, s in manifest["sources"].items() if s["rows_kept"]}
    assert sum(counts.values()) == manifest["rows"] == sum(s["rows"] for s in manifest["shards"])


def test_rows_are_grouped_by_task(demo_release):
    manifest = demo_release.manifest
    task_ids = demo_release.dataset["task_id"]
    assert task_ids == sorted(task_ids)
    assert [t["task_id"] for t in manifest["tasks"]] == list(range(len(manifest["tasks"])))
    names = demo_release.dataset["task_name"]
    for task in manifest["tasks"]:
        block = slice(task["first_row"], task["first_row"] + task["rows"])
        assert set(names[block]) == {task["task_name"]} and set(task_ids[block]) == {task["task_id"]}


def test_shard_checksums_match_the_files(demo_release):
    shards = demo_release.manifest["shards"]
    assert [s["file"] for s in shards] == ["data-00000-of-00001.arrow"]
    for shard in shards:
        assert sha256(demo_release.out / shard["file"]) == shard["sha256"]


def test_source_inputs_are_checksummed(demo_release):
    for name, source in demo_release.manifest["sources"].items():
        path = DEMO_MIRROR / source["input"]["location"]
        assert source["input"]["sha256"] == sha256(path), name
        assert source["input"]["bytes"] == path.stat().st_size, name


def test_medi_layout_rows(demo_release):
    row = demo_release.dataset[0]
    converted = medi_row(row)
    assert converted["query"] == [row["query"]["instruction"], row["query"]["text"]]
    assert converted["pos"] == [row["pos"]["instruction"], row["pos"]["text"]]
    assert converted["neg"] == [row["neg"]["instruction"], row["neg"]["text"]]
    assert (converted["task_name"], converted["task_id"]) == (row["task_name"], row["task_id"])


def test_given_texts_survive_the_build(demo_release):
    """st/AllNLI triplets come through as written (query, positive and negative all given)."""
    raw = json_lines(DEMO_MIRROR / "embedding-training-data" / "AllNLI.jsonl.gz")
    rows = demo_release.rows_of("st/AllNLI")
    assert [[r["query"]["text"], r["pos"]["text"], r["neg"]["text"]] for r in rows] == [
        [" ".join(t.split()) for t in triplet] for triplet in raw
    ]
    assert {(r["pos_origin"], r["neg_origin"]) for r in rows} == {("given", "given")}


def test_several_shards(demo_release, make_release, tmp_path):
    release = make_release("demo", tmp_path / "sharded", shard_rows=300)
    shards = release.manifest["shards"]
    assert len(shards) == -(-release.manifest["rows"] // 300) > 1
    assert sorted(p.name for p in release.out.glob("data-*.arrow")) == [s["file"] for s in shards]
    for shard in shards:
        assert sha256(release.out / shard["file"]) == shard["sha256"]
    assert release.dataset.to_list() == demo_release.dataset.to_list()


# --- determinism --------------------------------------------------------------------------------------------


def cache_chunks(cache_dir) -> set[str]:
    return {p.name for p in (cache_dir / "embeddings").rglob("*.npy")}


def test_same_seed_same_bytes_and_the_cache_is_hit(demo_release, make_release, cache_dir, tmp_path):
    before = cache_chunks(cache_dir)
    again = make_release("demo", tmp_path / "again")
    assert cache_chunks(cache_dir) == before, "the second build embedded texts again"
    for name in RELEASE_FILES:
        assert (again.out / name).read_bytes() == (demo_release.out / name).read_bytes(), name

    # the build embedded every row it scored; rows whose negatives were all given are not embedded by default
    scored = again.dataset.filter(lambda row: row["pos_score"] is not None)
    unscored = again.dataset.filter(lambda row: row["pos_score"] is None)
    assert len(scored) and {row["neg_origin"] for row in unscored} <= {"given"}
    encoder = Encoder(EncoderConfig(), cache_dir)
    texts = release_texts(scored)
    vectors = encoder.embed(texts)
    assert encoder.texts_encoded == 0 and encoder.cache.misses == 0
    assert vectors.shape == (len(texts), 384)
    assert encoder.identity()["cache_key"] == again.manifest["encoder"]["cache_key"]


def test_rebuild_into_the_same_folder(make_release, tmp_path):
    out = tmp_path / "release"
    first = make_release("st/AllNLI", out, [MIRROR])
    manifest_bytes = (out / "manifest.json").read_bytes()
    second = make_release("st/AllNLI", out, [MIRROR])
    assert first.manifest == second.manifest and (out / "manifest.json").read_bytes() == manifest_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release"]  # no staging or .old folder left behind


def test_another_seed_picks_other_texts(make_release, tmp_path):
    """Seed decides which two members of a set become query and positive, and which listed negative is used."""
    sources = "st/flickr30k_captions,gritlm/toy_data_embedding"
    releases = {seed: make_release(sources, tmp_path / f"seed{seed}", [MIRROR], seed=seed) for seed in (0, 1)}
    assert releases[1].manifest["seed"] == 1

    pairs = {
        seed: [(r["query"]["text"], r["pos"]["text"]) for r in rel.rows_of("st/flickr30k_captions")]
        for seed, rel in releases.items()
    }
    assert pairs[0] != pairs[1]
    sets = [
        set(" ".join(t.split()) for t in v["set"])
        for v in json_lines(MIRROR / "embedding-training-data" / "flickr30k_captions.jsonl.gz")
    ]
    for seed in (0, 1):
        assert [set(p) for p in pairs[seed]] == sets

    negatives = {
        seed: [r["neg"]["text"] for r in rel.rows_of("gritlm/toy_data_embedding")] for seed, rel in releases.items()
    }
    assert negatives[0] != negatives[1]
    assert (releases[0].out / "data-00000-of-00001.arrow").read_bytes() != (
        releases[1].out / "data-00000-of-00001.arrow"
    ).read_bytes()


def test_manifest_records_how_it_was_made(demo_release):
    manifest = demo_release.manifest
    assert manifest["format"] == 1 and manifest["medi_version"] == medi.__version__
    assert manifest["selection"] == "demo" and manifest["seed"] == 0
    assert manifest["config"]["encoder"] == "bundled:all-MiniLM-L6-v2"
    assert manifest["encoder"]["normalized"] is True and len(manifest["encoder"]["weights_sha256"]) == 64
    assert {"datasets", "pyarrow", "numpy", "torch"} <= set(manifest["versions"])
    json.dumps(manifest)  # plain JSON all the way down


@pytest.mark.parametrize("name", ["state.json", "dataset_info.json"])
def test_release_metadata_files_are_json(demo_release, name):
    assert isinstance(json.loads((demo_release.out / name).read_text()), dict)


def test_a_stale_old_release_folder_does_not_block_the_next_build(make_release, tmp_path):
    out = tmp_path / "release"
    make_release("st/AllNLI", out, [MIRROR])
    stale = tmp_path / ".release.old"  # what an interrupted replacement of an older release leaves behind
    stale.mkdir()
    (stale / "data-00000-of-00001.arrow").write_bytes(b"partly removed")
    again = make_release("st/AllNLI", out, [MIRROR])
    assert again.manifest["rows"] == 20
    assert load_manifest(out) == again.manifest
