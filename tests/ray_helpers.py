"""Code that tests/test_ray.py runs inside Ray worker processes (they import it through PYTHONPATH)."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import numpy as np

from medi.encode import KEY_BYTES, EmbeddingCache, Encoder

KEYSPACE = 600  # keys the cache hammer draws from
DIM = 32


def install_faults() -> None:
    """Ray's ``worker_process_setup_hook``: while ``$MEDI_TEST_FAULTS/armed`` exists, the first worker that starts
    mining a Super-NI task kills its own process with SIGKILL, mid-stage — once: it leaves ``fired`` (its pid)."""
    folder = os.environ.get("MEDI_TEST_FAULTS")
    if not folder:
        return
    import medi.stages.units

    real = medi.stages.units.mine_task

    def mine_task(*args, **kwargs):
        if Path(folder, "armed").exists():
            try:
                with open(Path(folder, "fired"), "x") as handle:
                    handle.write(str(os.getpid()))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    medi.stages.units.mine_task = mine_task


def key_of(number: int) -> bytes:
    return hashlib.blake2b(str(number).encode(), digest_size=KEY_BYTES).digest()


def vector_of(number: int) -> np.ndarray:
    """The one right vector of key ``number`` (so any mix-up or half-read chunk shows)."""
    return np.random.default_rng(number).standard_normal(DIM).astype(np.float32)


def wait_for_all(barrier: Path, me: str, count: int) -> None:
    """Start together: each worker leaves a file and waits until ``count`` are there."""
    barrier.mkdir(parents=True, exist_ok=True)
    (barrier / me).touch()
    while len(list(barrier.iterdir())) < count:
        time.sleep(0.01)


def hammer_cache(root: str, worker: int, rounds: int, barrier: str, workers: int) -> dict:
    """Write a chunk and read the whole key space back, ``rounds`` times, while other workers do the same."""
    cache = EmbeddingCache(Path(root), "shared")
    rng = np.random.default_rng(worker)
    wrote: set[int] = set()
    seen_from_others = 0
    wait_for_all(Path(barrier), f"hammer-{worker}", workers)
    for _ in range(rounds):
        numbers = [int(n) for n in rng.choice(KEYSPACE, 40, replace=False)]
        cache.put([key_of(n) for n in numbers], np.stack([vector_of(n) for n in numbers]))
        wrote.update(numbers)
        matrix, missing = cache.lookup([key_of(n) for n in range(KEYSPACE)])
        found = set(range(KEYSPACE)) - set(missing)
        assert wrote <= found, "a key this worker wrote is missing"
        for n in found:
            assert np.array_equal(matrix[n], vector_of(n)), f"key {n}: another vector than was written"
        seen_from_others = max(seen_from_others, len(found - wrote))
    return {"wrote": sorted(wrote), "seen_from_others": seen_from_others}


def embed_texts(cache_dir: str, texts: list[str], calls: int, barrier: str, workers: int) -> np.ndarray:
    """The bundled encoder embedding ``texts`` in ``calls`` embed calls (each writes its chunk) into a shared cache."""
    encoder = Encoder(cache_dir=Path(cache_dir))
    encoder.model  # noqa: B018 -- load before the barrier, so the workers' writes overlap
    wait_for_all(Path(barrier), f"embed-{os.getpid()}", workers)
    step = -(-len(texts) // calls)
    return np.vstack([encoder.embed(texts[i : i + step]) for i in range(0, len(texts), step)])
