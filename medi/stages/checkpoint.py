"""Stage outputs on disk: what makes a build resumable, streamable and runnable by several processes.

A stage's output for one source is a Parquet file of its rows plus a JSON file of its report, stored under a key
that hashes everything the stage depends on (its input's key, the options it reads, the encoder identity, medi's
own code). Both are written under temporary names, flushed to disk and renamed into place (``medi.atomic``: the
store may sit on shared storage), the JSON last, so the JSON's existence is the completion marker: a build killed
at any point, or a node that crashed, leaves either a whole output or none, and a rerun skips every stage whose key
it finds. Reports round-trip through JSON (``to_jsonable`` / ``from_jsonable``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
import types
import typing
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from itertools import islice
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

import medi
from medi.atomic import atomic_path, write_text

STAGES_DIR = "stages"
BATCH_ROWS = 8192
# modules that only read a finished release or talk to people: editing them cannot change a stage's output
NOT_PIPELINE = {
    *("cli.py", "export.py", "verify.py", "stats.py", "publish.py", "review.py", "lint.py", "scaffold.py"),
    *("progress.py", "ray_engine.py", "outdir.py", "atomic.py"),  # where and how a build runs, not what it makes
    "embed.py",  # lists the texts mine will embed, for a pool to embed first: the mine stage's vectors are its own
}  # and medi/executors/: who runs the stages


@cache
def code_fingerprint() -> str:
    """A hash of medi's pipeline source: a code change invalidates every checkpoint, never silently reused."""
    root = Path(medi.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*.py") if p.name not in NOT_PIPELINE and p.parent.name != "executors"):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def stage_key(*parts: object) -> str:
    """A stable hash of JSON-able parts (dicts in key order, paths as strings) plus medi's code."""
    text = json.dumps([code_fingerprint(), *parts], sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class StageOutput:
    """One finished stage output: its rows (read back in batches) and its report."""

    path: Path
    info: dict

    @property
    def rows(self) -> int:
        return pq.ParquetFile(self.path).metadata.num_rows

    def batches(self, rows: int = BATCH_ROWS) -> Batches:
        return Batches(self.path, rows)

    def table(self) -> pa.Table:
        return pq.read_table(self.path)


class Batches:
    """A stage output's rows as Arrow batches: an iterator like any stream, which a stage that passes over its input
    more than once (dedup, the token budget) reads again (``again``) instead of holding it."""

    def __init__(self, path: Path, rows: int = BATCH_ROWS):
        self.path, self.rows = path, rows
        self._first: Iterator[pa.RecordBatch] | None = None

    def __iter__(self) -> Batches:
        return self

    def __next__(self) -> pa.RecordBatch:
        if self._first is None:
            self._first = self.again()
        return next(self._first)

    def again(self) -> Iterator[pa.RecordBatch]:
        # pre_buffer would fetch every row group ahead of the first batch: memory growing with the file
        return pq.ParquetFile(self.path, pre_buffer=False).iter_batches(batch_size=self.rows)

    @property
    def num_rows(self) -> int:
        return pq.ParquetFile(self.path).metadata.num_rows


@contextmanager
def rereadable(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[Batches]:
    """``batches`` as ``Batches``: a stage output as it is, any other stream first copied to a temporary file."""
    if isinstance(batches, Batches):
        yield batches
        return
    with tempfile.TemporaryDirectory(prefix="medi-stream-") as folder:
        path = Path(folder) / "rows.parquet"
        with pq.ParquetWriter(path, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
        yield Batches(path)


Writer = Callable[[pa.RecordBatch], None]


class Checkpoints:
    """``<root>/<stage>/<key>.parquet`` + ``.json``, one pair per (stage, inputs); counts what was reused.

    With ``reuse=False`` (``--fresh``) every stage is recomputed and its output replaced.
    """

    def __init__(self, root: Path, reuse: bool = True):
        self.root = root
        self.reuse = reuse
        self.reused: list[tuple[str, str]] = []
        self.computed: list[tuple[str, str]] = []

    def run(
        self, stage: str, source: str, key: str, schema: pa.Schema, compute: Callable[[Writer], dict]
    ) -> StageOutput:
        """The stored output when there is one; else ``compute(write)`` — it writes its row batches through
        ``write`` and returns its report — stored atomically."""
        data, info_path = self.root / stage / f"{key}.parquet", self.root / stage / f"{key}.json"
        if self.reuse and info_path.is_file() and data.is_file():
            self.reused.append((stage, source))
            return StageOutput(data, json.loads(info_path.read_text(encoding="utf-8")))
        data.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(data) as partial, pq.ParquetWriter(partial, schema, compression="zstd") as writer:
            info = compute(lambda batch: writer.write_batch(batch) if batch.num_rows else None)
        text = json.dumps(info, ensure_ascii=False, sort_keys=True)
        write_text(info_path, text)  # last: its existence marks the output complete
        self.computed.append((stage, source))
        return StageOutput(data, json.loads(text))  # as a rerun reads it back: same key order, same types


def write_in_batches(write: Writer, rows: Iterable, to_batch: Callable[[list], pa.RecordBatch]) -> None:
    """Write ``rows`` (a list, or a stream consumed as it goes) through ``write`` as batches of ``BATCH_ROWS``."""
    rows = iter(rows)
    while chunk := list(islice(rows, BATCH_ROWS)):
        write(to_batch(chunk))


# --- reports to JSON and back --------------------------------------------------------------------------


def to_jsonable(value: object) -> object:
    """Dataclasses (reports, problems) as dicts, tuples as lists, paths as strings; the rest as is."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def from_jsonable(hint: object, data: object) -> object:
    """``data`` (from ``to_jsonable``) rebuilt as the type ``hint``: dataclasses, Counters, dicts, lists, tuples."""
    if data is None:
        return None
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return hint(**{k: from_jsonable(hints.get(k), v) for k, v in data.items()})
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Counter or origin is Counter:
        return Counter(data)
    if origin in (types.UnionType, typing.Union):
        concrete = [a for a in args if a is not type(None)]
        return from_jsonable(concrete[0], data) if len(concrete) == 1 else data
    if origin is dict and args:
        return {k: from_jsonable(args[1], v) for k, v in data.items()}
    if origin is list and args:
        return [from_jsonable(args[0], v) for v in data]
    if origin is tuple and args:
        item = args[0]
        return tuple(from_jsonable(item, v) for v in data)
    return data


def stages_info(cache_dir: Path) -> dict:
    """Finished stage outputs and bytes per stage."""
    root = cache_dir / STAGES_DIR
    info = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        files = [p for p in folder.iterdir() if p.suffix in (".parquet", ".json")]
        outputs = sum(p.suffix == ".json" for p in files)
        info[folder.name] = {"checkpoints": outputs, "bytes": sum(f.stat().st_size for f in files)}
    return info


def clear_stages(cache_dir: Path) -> int:
    """Remove every stage output (they are all recomputable); return how many outputs were removed."""
    root = cache_dir / STAGES_DIR
    removed = 0
    for path in root.glob("*/*") if root.is_dir() else []:
        if path.suffix in (".parquet", ".json", ".pkl", ".tmp"):  # .tmp: left by a build killed mid-write
            removed += path.suffix == ".json" or path.suffix == ".pkl"
            path.unlink()
    return removed
