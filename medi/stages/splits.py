"""Reading one source in parallel splits: a job folder that the source's worker and idle helper workers share.

The worker that runs the source (the owner) writes each split's description (``split-N.json``: a byte range, row
groups, or a block of lines it decoded from a gzip stream, ``block-N.jsonl``) and, once all are known, ``count``.
The owner and every helper the executor sends (``medi.executors``: idle workers, local or Ray) claim splits by
creating ``claim-N`` exclusively, read them and leave ``part-N.*`` (the last file written marks a part finished).
The owner then merges the parts in split order. A claim whose worker died is taken over: its process is gone (same
host) or its claim was not touched for ``STALE_SECONDS`` (a reader touches it as it reads). Parts depend only on
the source's content and the sample's config (the folder's key), so parts left by a killed build are reused.
Everything lives under the cache dir, which Ray nodes share.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from medi.adapters import Split, Stream
from medi.atomic import write_text
from medi.errors import Problem

STALE_SECONDS = 60.0
TOUCH_SECONDS = 5.0
WAIT_SECONDS = 0.05
AHEAD = 4  # blocks of a stream decoded ahead of the readers before the owner reads one itself
SPLITS_EVENT = "medi:splits"  # the progress "source" under which a worker asks its executor for helpers


@dataclass(frozen=True)
class SplitJob:
    """What a helper needs to join: the source, its input, the sample size and the job folder (JSON-able)."""

    source: str
    path: str
    size: int | None
    folder: str

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, data: dict) -> SplitJob:
        return cls(**data)


Reader = Callable[[SplitJob, int, Split, "Claim"], None]  # reads split N and writes its part


class Claim:
    """This process's claim on one split: touched while it reads, so a live reader is never taken over."""

    def __init__(self, path: Path):
        self.path = path
        self.touched = time.monotonic()

    def touch(self) -> None:
        if time.monotonic() - self.touched >= TOUCH_SECONDS:
            self.touched = time.monotonic()
            os.utime(self.path)


def whoami() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def try_claim(folder: Path, number: int) -> Claim | None:
    """Claim split ``number`` (or take over a stale claim); None when another live reader has it."""
    path = folder / f"claim-{number}"
    try:
        handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        if not _stale(path):
            return None
        write_text(path, whoami())  # a dead reader's claim, replaced whole
        return Claim(path)
    with os.fdopen(handle, "w") as claim:
        claim.write(whoami())
    return Claim(path)


def _stale(claim: Path) -> bool:
    try:
        owner = claim.read_text(encoding="utf-8")
        touched = claim.stat().st_mtime
    except (FileNotFoundError, OSError):
        return False  # being replaced: its new owner is alive
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
        return True
    return time.time() - touched > STALE_SECONDS


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return True


def done(folder: Path, number: int) -> bool:
    return (folder / f"part-{number}.json").is_file()


def described(folder: Path, number: int) -> Split | None:
    path = folder / f"split-{number}.json"
    return Split(**{**json.loads(path.read_text(encoding="utf-8"))}) if path.is_file() else None


def count(folder: Path) -> int | None:
    path = folder / "count"
    return int(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_one(job: SplitJob, number: int, read: Reader) -> bool:
    """Claim, read and finish split ``number`` unless it is finished or claimed; whether this process read it."""
    folder = Path(job.folder)
    split = described(folder, number)
    if split is None or done(folder, number) or not (claim := try_claim(folder, number)):
        return False
    try:
        if not done(folder, number):
            read(job, number, split, claim)
    finally:
        if not done(folder, number):
            claim.path.unlink(missing_ok=True)  # a reader that failed gives its split back
    if split.path.startswith(str(folder)):
        Path(split.path).unlink(missing_ok=True)  # a decoded block, read: its bytes are in the part now
    return True


def help_with(job: SplitJob, read: Reader) -> None:
    """A helper's share: read unclaimed splits until every split is known and claimed."""
    folder = Path(job.folder)
    number = 0
    while folder.is_dir():  # the owner removes it once merged: nothing left to help with
        total = count(folder)
        if total is not None and number >= total:
            return
        if described(folder, number) is None:
            time.sleep(WAIT_SECONDS)  # the owner is still decoding
            continue
        read_one(job, number, read)
        number += 1


def describe(job: SplitJob, plan: list[Split] | Stream, block_bytes: int, read: Reader) -> list[Problem]:
    """The owner writes every split's description, then ``count``; a stream's blocks are decoded here (once) and
    the owner reads one itself whenever ``AHEAD`` wait unclaimed. Returns the stream's closing problems."""
    folder = Path(job.folder)
    folder.mkdir(parents=True, exist_ok=True)
    if count(folder) is not None:
        return _closing(folder)  # a killed build described them already
    problems: list[Problem] = []
    if isinstance(plan, Stream):
        number = 0
        for item in plan.blocks(block_bytes):
            if isinstance(item, Problem):
                problems.append(item)
                continue
            lines, first = item
            block = folder / f"block-{number}.jsonl"
            block.write_bytes(lines)
            _describe(folder, number, Split(str(block), first=first))
            number += 1
            _read_ahead(job, number, read)
        total = number
    else:
        for number, split in enumerate(plan):
            _describe(folder, number, split)
        total = len(plan)
    write_text(folder / "closing.json", json.dumps([asdict(p) for p in problems]))
    write_text(folder / "count", str(total))
    return problems


def _describe(folder: Path, number: int, split: Split) -> None:
    write_text(folder / f"split-{number}.json", json.dumps(asdict(split)))


def _closing(folder: Path) -> list[Problem]:
    return [Problem(**p) for p in json.loads((folder / "closing.json").read_text(encoding="utf-8"))]


def _read_ahead(job: SplitJob, known: int, read: Reader) -> None:
    """While decoding: when ``AHEAD`` blocks wait unclaimed, the owner reads the first of them."""
    folder = Path(job.folder)
    waiting = [n for n in range(known) if not (folder / f"claim-{n}").exists()]
    if len(waiting) >= AHEAD:
        read_one(job, waiting[0], read)


def finish(job: SplitJob, read: Reader, progress: Callable[[int], None]) -> int:
    """The owner reads what is left and waits for the helpers' parts (taking over a dead helper's); the count."""
    folder = Path(job.folder)
    total = count(folder) or 0
    for number in range(total):
        read_one(job, number, read)
    for number in range(total):
        while not done(folder, number):
            if not read_one(job, number, read):  # claimed by a live helper: wait for its part
                time.sleep(WAIT_SECONDS)
        progress(number)
    return total


def parts(folder: Path, total: int) -> Iterator[dict]:
    """Each part's report (``part-N.json``), in split order."""
    for number in range(total):
        yield json.loads((folder / f"part-{number}.json").read_text(encoding="utf-8"))


def remove(folder: Path) -> None:
    """The job folder, once its parts are merged into the sample stage's output."""
    shutil.rmtree(folder, ignore_errors=True)
