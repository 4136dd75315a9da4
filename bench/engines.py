"""The same build on the local engine and on Ray with 1 and 2 workers: wall time and rows/s side by side.

    python bench/engines.py [--sources demo] [--data-dir DIR] [--workers 1,2] [--texts 2000]
    python bench/engines.py --big [--rows 1000000] [--cap 10000] [--engines local,ray]

Each engine runs with every worker count of ``--workers`` (the local engine's ``--workers`` is its process pool).

Each build is ``medi build`` in a fresh process, from an empty cache (``cold``: every stage computed, every text
embedded), then once more on the cache it filled (``warm``: every stage output reused, so what is left is the
engine's own cost). A Ray build starts its own local Ray instance, as a user's first build would: that start is
part of its wall time, and is also timed alone. Printed per build: wall time, rows, rows/s, the ratio to the local
one-process build of the same run, and whether the release is byte-identical to it (two workers embedding at once
from an empty cache can differ in the last bits of scores, on either engine: see the README); then a plain encode of
``--texts`` distinct release texts with the bundled encoder on this machine (texts/s), the figure a GPU-hour
estimate scales from, and beside it each cold Ray build's embedding pool (the Ray Data actor pool that embeds every
mine stage's texts: texts, batches, actors, texts/s from its start, Ray Data's own included, as the build prints it)
as a ratio to that plain encode.

``--big``: one large source on 1 and then 2 workers (issue 20: rows, not sources, are the unit of scale): a
synthetic ``--rows``-row triplet source (negatives given: nothing to mine, uncapped) and a ``--rows``-row pair
source capped at ``--cap`` rows (mined), both gzipped JSONL from ``bench/synthetic.py``, each built from a fresh
cache (``--fresh``; the pair source's embeddings computed once beforehand, unmeasured, so both runs reuse them)
with ``--workers 1`` and ``--workers 2`` on each engine; two workers read the source in splits (``--split-bytes``).
Printed: wall times, the 2-worker/1-worker ratio, whether the two
releases are the same bytes, and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# the Ray engine's line for its embedding pool (medi/executors/ray.py, PoolReport.line)
POOL_LINE = re.compile(
    r"embedding pool encoded ([\d,]+) texts \([\d,]+ requested\) in ([\d,]+) batches on (\d+) actors?"
    r".*?([\d,]+) texts/s"
)


def build(out: Path, cache: Path, sources: str, data_dirs: list[str], engine: str, workers: int) -> dict:
    command = [sys.executable, "-m", "medi.cli", "build", "--sources", sources, "--out", str(out)]
    command += ["--cache-dir", str(cache), "--engine", engine, "--workers", str(workers)]
    for folder in data_dirs:
        command += ["--data-dir", folder]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    rows = json.loads((out / "manifest.json").read_text())["rows"]
    pool = POOL_LINE.search(" ".join(done.stderr.split()))  # rich wraps lines wider than 80 columns
    return {"wall": wall, "rows": rows, "pool": pool}


def big_home(root: Path, rows: int, cap: int, data: Path) -> tuple[dict, dict[str, Path]]:
    """A MEDI_HOME copy with the two synthetic sources (bench/big-triplets, bench/big-pairs) and draft wordings."""
    import shutil

    from synthetic import cached_source

    from medi.catalog import project_root

    home = root / "home"
    shutil.copytree(project_root() / "sources", home / "sources")
    shutil.copytree(project_root() / "instructions", home / "instructions")
    files = {"triplets": cached_source(data, "triplets", rows), "pairs": cached_source(data, "pairs", rows)}
    (home / "sources" / "bench").mkdir()
    for kind, path in files.items():
        capped = f"{{included: true, cap: {cap}}}" if kind == "pairs" else "{included: true, cap: null}"
        (home / "sources" / "bench" / f"big-{kind}.yaml").write_text(
            f"adapter: st_jsonl\npath: {path}\nlicence: synthetic\nsymmetric: false\nmedi: {capped}\n"
        )
    wordings = "".join(
        f"bench/big-{kind}:\n  query: ['Represent the synthetic question for retrieving its passage:']\n"
        f"  document: ['Represent the synthetic passage for retrieval:']\n  status: draft\n"
        for kind in files
    )
    (home / "instructions" / "bench.yaml").write_text(wordings)
    return {**os.environ, "MEDI_HOME": str(home), "HF_HUB_OFFLINE": "1"}, files


def big_build(out: Path, cache: Path, source: str, engine: str, workers: int, env: dict, split_bytes: int) -> float:
    command = [sys.executable, "-m", "medi.cli", "build", "--sources", source, "--out", str(out), "--fresh"]
    command += ["--cache-dir", str(cache), "--engine", engine, "--workers", str(workers)]
    command += ["--split-bytes", str(split_bytes)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def big(args) -> None:
    """One big source on 1 vs 2 workers, per engine: wall ratio and same bytes."""
    data = Path(args.data) if args.data else Path(tempfile.gettempdir()) / "medi-bench-synthetic"
    with tempfile.TemporaryDirectory(prefix="medi-engines-big-") as tmp:
        root = Path(tmp)
        env, files = big_home(root, args.rows, args.cap, data)
        before = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        lines = []
        for kind in ("triplets", "pairs"):
            source = f"bench/big-{kind}"
            if kind == "pairs":  # embeddings of the capped rows computed once, unmeasured: both runs reuse them
                big_build(root / "warm-up", root / f"cache-{kind}", source, "local", 1, env, args.split_bytes)
            for engine in args.engines.split(","):
                walls, outs = {}, {}
                for workers in (1, 2):
                    outs[workers] = root / f"{kind}-{engine}-{workers}"
                    cache = root / f"cache-{kind}"  # shared: embeddings computed once; --fresh recomputes stages
                    walls[workers] = big_build(outs[workers], cache, source, engine, workers, env, args.split_bytes)
                    print(f"  {source} {engine} x{workers}: {walls[workers]:.1f} s", file=sys.stderr)
                same = "yes" if same_bytes(outs[1], outs[2]) else "NO"
                rows = json.loads((outs[1] / "manifest.json").read_text())["rows"]
                size = files[kind].stat().st_size / 1e6
                lines.append(
                    f"| {source} ({args.rows:,} rows, {size:.0f} MB gz; {rows:,} kept) | {engine} | "
                    f"{walls[1]:.1f} s | {walls[2]:.1f} s | {walls[2] / walls[1]:.2f}x | {same} |"
                )
        after = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"\n{os.cpu_count()} CPUs, load average before {before}, after {after}; --split-bytes {args.split_bytes}\n"
        )
        print("| source | engine | 1 worker | 2 workers | ratio | same bytes |")
        print("|---|---|---|---|---|---|")
        print("\n".join(lines))


def same_bytes(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir())
    if names != sorted(p.name for p in b.iterdir()):
        return False
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


def ray_start_seconds() -> float:
    code = "import ray; ray.init(num_cpus=2, logging_level='error'); ray.shutdown()"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    return time.perf_counter() - start


def encode_rate(release: Path, texts: int, cache: Path) -> tuple[int, float]:
    """Texts/s of the bundled encoder over ``texts`` distinct texts of the release (query, positive, negative)."""
    import datasets

    from medi.encode import Encoder

    rows = datasets.load_from_disk(str(release))
    found = list(dict.fromkeys(r["text"] for column in ("query", "pos", "neg") for r in rows[column]))[:texts]
    encoder = Encoder(cache_dir=cache)
    encoder.model  # noqa: B018 -- load time is not encode time
    start = time.perf_counter()
    encoder.embed(found)
    return len(found), len(found) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", default="demo")
    parser.add_argument("--data-dir", action="append", default=[])
    parser.add_argument("--workers", default="1,2", help="Ray worker counts, comma-separated")
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--big", action="store_true", help="one large synthetic source on 1 vs 2 workers")
    parser.add_argument("--rows", type=int, default=1_000_000, help="with --big: rows of each synthetic source")
    parser.add_argument("--cap", type=int, default=10_000, help="with --big: the pair source's cap")
    parser.add_argument("--engines", default="local,ray", help="with --big: engines, comma-separated")
    parser.add_argument("--split-bytes", type=int, default=8 << 20, help="with --big: --split-bytes of the builds")
    parser.add_argument("--data", help="with --big: folder for the synthetic files (kept between runs)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.big:
        big(args)
        return
    counts = [int(n) for n in args.workers.split(",")]
    runs = [("local", n) for n in sorted({1, *counts})] + [("ray", n) for n in counts]
    with tempfile.TemporaryDirectory(prefix="medi-engines-") as tmp:
        root = Path(tmp)
        results = {}
        for engine, workers in runs:
            name = f"{engine} x{workers}"
            out, cache = root / f"{engine}{workers}", root / f"cache-{engine}{workers}"
            cold = build(out, cache, args.sources, args.data_dir, engine, workers)
            warm = build(root / f"warm-{engine}{workers}", cache, args.sources, args.data_dir, engine, workers)
            results[name] = (cold, warm, out)
            print(f"  built {name}: cold {cold['wall']:.1f} s, warm {warm['wall']:.1f} s", file=sys.stderr)
        ray_start = ray_start_seconds()
        local_cold, local_warm, local_out = results["local x1"]
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"\n{args.sources} on {os.cpu_count()} CPUs (load average {load}), no GPU; each a fresh `medi build`\n")
        header = ("engine", "cold wall", "rows/s", "vs local", "warm wall", "vs local", "same bytes")
        print("{:<10} {:>10} {:>8} {:>9} {:>10} {:>9}  {}".format(*header))
        for name, (cold, warm, out) in results.items():
            print(
                f"{name:<10} {cold['wall']:>9.1f}s {cold['rows'] / cold['wall']:>8.1f} "
                f"{cold['wall'] / local_cold['wall']:>8.2f}x {warm['wall']:>9.1f}s "
                f"{warm['wall'] / local_warm['wall']:>8.2f}x  {'yes' if same_bytes(local_out, out) else 'NO'}"
            )
        print(f"\nray.init of a local 2-CPU instance alone: {ray_start:.1f} s")
        count, rate = encode_rate(local_out, args.texts, root / "encode-cache")
        print(f"bundled all-MiniLM-L6-v2, plain encode of {count} distinct release texts on CPU: {rate:.0f} texts/s")
        for name, (cold, _, _) in results.items():
            if pool := cold.get("pool"):
                texts, batches, actors, pool_rate = (int(n.replace(",", "")) for n in pool.groups())
                print(
                    f"{name} cold, embedding pool: {texts:,} texts in {batches} batches on {actors} actor(s), "
                    f"{pool_rate:,} texts/s ({pool_rate / rate:.2f}x the plain encode)"
                )


if __name__ == "__main__":
    main()
