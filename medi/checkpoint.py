"""Stage checkpoints: what makes a build resumable.

A stage's output for one source is stored under a key that hashes everything it depends on (its inputs'
checksums, the options it reads, the encoder identity, medi's own code). The file is written under a temporary
name and renamed into place, so its existence is the completion marker: a build killed at any point leaves
either a whole checkpoint or none, and a rerun skips every stage whose key it finds.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TypeVar

import medi

T = TypeVar("T")
STAGES_DIR = "stages"
# modules that only read a finished release or talk to people: editing them cannot change a stage's output
NOT_PIPELINE = {"cli.py", "export.py", "verify.py", "stats.py", "publish.py", "review.py", "lint.py", "scaffold.py"}


@cache
def code_fingerprint() -> str:
    """A hash of medi's pipeline source: a code change invalidates every checkpoint, never silently reused."""
    root = Path(medi.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*.py") if p.name not in NOT_PIPELINE):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def stage_key(*parts: object) -> str:
    """A stable hash of JSON-able parts (dicts in key order, paths as strings) plus medi's code."""
    text = json.dumps([code_fingerprint(), *parts], sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Checkpoints:
    """``<root>/<stage>/<key>.pkl`` files, one per (stage, source, inputs); counts what was reused."""

    def __init__(self, root: Path, enabled: bool = True):
        self.root = root
        self.enabled = enabled
        self.reused: list[tuple[str, str]] = []
        self.computed: list[tuple[str, str]] = []

    def run(self, stage: str, source: str, key: str, compute: Callable[[], T]) -> T:
        """The stage's stored output when there is one; else compute, store atomically, return."""
        path = self.root / stage / f"{key}.pkl"
        if self.enabled and path.is_file():
            with path.open("rb") as handle:
                value = pickle.load(handle)
            self.reused.append((stage, source))
            return value
        value = compute()
        if self.enabled:
            _atomic_pickle(path, value)
        self.computed.append((stage, source))
        return value


def _atomic_pickle(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pkl")
    try:
        with os.fdopen(fd, "wb") as handle:
            pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stages_info(cache_dir: Path) -> dict:
    """Checkpoint files and bytes per stage."""
    root = cache_dir / STAGES_DIR
    info = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        files = list(folder.glob("*.pkl"))
        info[folder.name] = {"checkpoints": len(files), "bytes": sum(f.stat().st_size for f in files)}
    return info


def clear_stages(cache_dir: Path) -> int:
    """Remove every checkpoint (they are all recomputable); return how many were removed."""
    root = cache_dir / STAGES_DIR
    removed = 0
    for path in root.glob("*/*.pkl") if root.is_dir() else []:
        path.unlink()
        removed += 1
    return removed
