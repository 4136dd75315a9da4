"""The same build on the local engine and on Ray with 1 and 2 workers: wall time and rows/s side by side.

    python bench/engines.py [--sources demo] [--data-dir DIR] [--workers 1,2] [--texts 2000]

Each engine runs with every worker count of ``--workers`` (the local engine's ``--workers`` is its process pool).

Each build is ``medi build`` in a fresh process, from an empty cache (``cold``: every stage computed, every text
embedded), then once more on the cache it filled (``warm``: every stage output reused, so what is left is the
engine's own cost). A Ray build starts its own local Ray instance, as a user's first build would: that start is
part of its wall time, and is also timed alone. Printed per build: wall time, rows, rows/s, the ratio to the local
one-process build of the same run, and whether the release is byte-identical to it (two workers embedding at once
from an empty cache can differ in the last bits of scores, on either engine: see the README); then a plain encode of
``--texts`` distinct release texts with the bundled encoder on this machine (texts/s), the figure a GPU-hour
estimate scales from.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


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
    return {"wall": wall, "rows": rows}


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
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
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


if __name__ == "__main__":
    main()
