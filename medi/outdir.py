"""Output paths: medi writes only into a new path, an empty folder, or an earlier medi output of the same kind.

Anything else is refused with a ``MediError`` naming the path, and nothing is touched: a file where a folder goes
(or the other way round), a folder medi did not write, a medi output of another kind, a symbolic link, and an
earlier output of the same kind that holds files medi did not write (plots, notes) — those are named, so the user
can move them out; a rebuild never deletes or carries them. ``replace=False`` (export without ``--overwrite``)
also refuses an earlier output of the same kind.

How medi knows an earlier output of its own, and which of its files it wrote:

- ``release``: ``manifest.json`` (``format`` and ``shards``); the files the manifest lists;
- ``st-triplets``, ``parquet``, ``st-ntuple``, ``beir``: ``medi_export.json`` (``format`` and ``files``), written
  into the export;
- ``medi2``, ``flagembedding``, ``tevatron``: ``.<name>.medi-export.json`` beside the folder — their trainers load
  every JSON(L) file inside it as data;
- ``instructor`` (one file): it starts as medi writes one, ``[`` then a newline then ``{"query": [``;
- ``review``: ``index.html`` holding medi's review page, and nothing else.

``check_out`` runs before any work, ``install`` again right before the finished output is swapped into place.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import uuid
from pathlib import Path

from medi.atomic import fsync_folder, fsync_tree
from medi.errors import MediError

RELEASE, INSTRUCTOR, MEDI2, ST_TRIPLETS, PARQUET, REVIEW = (
    "release",
    "instructor",
    "medi2",
    "st-triplets",
    "parquet",
    "review",
)
FLAGEMBEDDING, ST_NTUPLE, TEVATRON, BEIR = ("flagembedding", "st-ntuple", "tevatron", "beir")
KINDS = (RELEASE, INSTRUCTOR, MEDI2, ST_TRIPLETS, PARQUET, REVIEW, FLAGEMBEDDING, ST_NTUPLE, TEVATRON, BEIR)
RECORD_INSIDE = (ST_TRIPLETS, PARQUET, ST_NTUPLE, BEIR)
RECORD_BESIDE = (MEDI2, FLAGEMBEDDING, TEVATRON)  # every file in the folder is data to the trainer
EXPORT_RECORD = "medi_export.json"  # inside the RECORD_INSIDE exports
MANIFEST = "manifest.json"
OLD_RELEASE_FILES = {"state.json", "dataset_info.json", "contamination.json"}  # manifests without a `files` list
INSTRUCTOR_OPENINGS = (b'[\n{"query": [', b"[\n]")  # what medi.release.export writes first (rows, or none)
REVIEW_TITLE = "<title>medi · instruction review</title>"
REVIEW_PAGE = "index.html"
LISTED = 10  # foreign files named in a refusal

WHAT = {
    RELEASE: "a release",
    INSTRUCTOR: "a medi instructor export",
    MEDI2: "a medi medi2 export",
    ST_TRIPLETS: "a medi st-triplets export",
    PARQUET: "a medi parquet export",
    REVIEW: "a medi review page folder",
    FLAGEMBEDDING: "a medi flagembedding export",
    ST_NTUPLE: "a medi st-ntuple export",
    TEVATRON: "a medi tevatron export",
    BEIR: "a medi beir export",
}
WRITER = {
    RELEASE: "medi build writes a folder",
    INSTRUCTOR: "--format instructor writes one JSON file",
    MEDI2: "--format medi2 writes a folder",
    ST_TRIPLETS: "--format st-triplets writes a folder",
    PARQUET: "--format parquet writes a folder",
    REVIEW: "medi review export writes a folder",
    FLAGEMBEDDING: "--format flagembedding writes a folder",
    ST_NTUPLE: "--format st-ntuple writes a folder",
    TEVATRON: "--format tevatron writes a folder",
    BEIR: "--format beir writes a folder",
}


def check_out(out: Path | str, kind: str, *, replace: bool) -> None:
    """Refuse (``MediError``) unless medi may write a ``kind`` output at ``out``; touches nothing."""
    out = Path(out)
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    if out.is_symlink():
        raise MediError(f"{out}: is a symbolic link; give the path it points to ({os.readlink(out)}) or another --out")
    for parent in out.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise MediError(f"{out}: {parent} is not a folder")
            break
    if not out.exists():
        return
    if kind == INSTRUCTOR:
        _check_file(out, replace)
    else:
        _check_folder(out, kind, replace)


def install(staging: Path, out: Path | str, kind: str, *, replace: bool) -> None:
    """Move the finished output ``staging`` (beside ``out``) into place; an earlier output goes only then.

    ``out`` is checked again first (it may have changed while the output was written); on refusal ``staging`` is
    left for the caller to remove and ``out`` is untouched.
    """
    out = Path(out)
    check_out(out, kind, replace=replace)
    if kind in RECORD_INSIDE:
        _write_export_record(staging, kind)
    fsync_tree(staging)  # on disk before its name appears: a crash never leaves a named, half-flushed output
    if kind == INSTRUCTOR:
        os.replace(staging, out)  # one file: atomic
        fsync_folder(out.absolute().parent)
        return
    out = out.absolute()  # `.` has no name to put beside it
    _remove_leftovers(out)
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    if out.exists():
        out.rename(old)
    staging.rename(out)
    fsync_folder(out.parent)
    if old.exists():
        shutil.rmtree(old)
    if kind in RECORD_BESIDE:
        _write_sibling_record(out, kind)


def _remove_leftovers(out: Path) -> None:
    """Earlier outputs an interrupted swap left beside ``out`` (``.<name>.old-<8 hex>``, or ``.<name>.old`` as
    older medi named them): only medi names folders so, and one may be half removed, past recognising by marker."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.old(-[0-9a-f]{{8}})?")
    for path in out.parent.glob(f".{glob.escape(out.name)}.old*"):
        if pattern.fullmatch(path.name) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)


def medi_kind(folder: Path) -> str | None:
    """Which kind of medi output ``folder`` is, from its marker; None when it is not one of medi's."""
    if _json(folder / MANIFEST, ("format", "shards")) is not None:
        return RELEASE
    record = _json(folder / EXPORT_RECORD, ("format",))
    if record is not None and record["format"] in RECORD_INSIDE:
        return record["format"]
    sibling = _json(_sibling_record(folder), ("format", "files"))
    if sibling is not None and sibling["format"] in RECORD_BESIDE:
        return sibling["format"]
    page = folder / REVIEW_PAGE
    if page.is_file() and REVIEW_TITLE in page.read_text(encoding="utf-8", errors="replace")[:4096]:
        return REVIEW
    return None


def foreign_files(folder: Path, kind: str) -> list[str]:
    """Files under ``folder`` (relative, posix) that medi did not write as a ``kind`` output."""
    found = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink())
    ours = _medi_files(folder, kind)
    return [name for name in found if name not in ours]


def _check_file(out: Path, replace: bool) -> None:
    if out.is_dir():
        raise MediError(f"{out}: is a folder; {WRITER[INSTRUCTOR]}")
    if not out.is_file():
        raise MediError(f"{out}: is not a regular file; {WRITER[INSTRUCTOR]}")
    with out.open("rb") as handle:
        opening = handle.read(max(map(len, INSTRUCTOR_OPENINGS)))
    if not opening.startswith(INSTRUCTOR_OPENINGS):
        raise MediError(
            f"{out}: exists and is not {WHAT[INSTRUCTOR]} (medi replaces only a file it wrote); "
            "remove it yourself or choose another --out"
        )
    if not replace:
        raise MediError(f"{out}: already exists; give --overwrite to replace it")


def _check_folder(out: Path, kind: str, replace: bool) -> None:
    if out.is_file():
        raise MediError(f"{out}: is a file; {WRITER[kind]}")
    if not out.is_dir():
        raise MediError(f"{out}: is not a folder; {WRITER[kind]}")
    if not any(out.iterdir()):
        return
    found = medi_kind(out)
    if found is None:
        raise MediError(
            f"{out}: is not empty and not {WHAT[kind]} (it holds {_listing(sorted(p.name for p in out.iterdir()))}); "
            f"medi writes only into a new folder, an empty one or {WHAT[kind]} it wrote earlier: "
            "choose another --out"
        )
    if found != kind:
        raise MediError(f"{out}: is {WHAT[found]}, not {WHAT[kind]}; choose another --out")
    if foreign := foreign_files(out, kind):
        raise MediError(
            f"{out}: holds files medi did not write: {_listing(foreign)}; move them out of the folder (replacing "
            f"{WHAT[kind]} replaces the whole folder) or choose another --out"
        )
    if not replace:
        raise MediError(f"{out}: already exists; give --overwrite to replace it")


def _medi_files(folder: Path, kind: str) -> set[str]:
    if kind == RELEASE:
        manifest = _json(folder / MANIFEST, ("format", "shards")) or {}
        listed = {entry.get("file") for entry in (manifest.get("files") or []) + manifest.get("shards", [])}
        return listed | {MANIFEST} | (set() if manifest.get("files") else OLD_RELEASE_FILES)
    if kind in RECORD_INSIDE:
        record = _json(folder / EXPORT_RECORD, ("format",)) or {}
        if "files" in record:
            return set(record["files"]) | {EXPORT_RECORD}
        splits = record.get("splits") or {}  # an st-triplets export from before the `files` list
        inside = {p.relative_to(folder).as_posix() for s in splits for p in (folder / s).rglob("*")}
        return inside | {EXPORT_RECORD, "dataset_dict.json"}
    if kind in RECORD_BESIDE:
        return set((_json(_sibling_record(folder), ("files",)) or {}).get("files", []))
    if kind == REVIEW:
        return {REVIEW_PAGE}
    return set()


def _write_export_record(staging: Path, kind: str) -> None:
    """Add the ``files`` list (and ``format``) to the export's ``medi_export.json``, creating it if needed."""
    path = staging / EXPORT_RECORD
    record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    record.update(format=kind, files=[name for name in files if name != EXPORT_RECORD])
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _sibling_record(folder: Path) -> Path:
    folder = folder.absolute()
    return folder.with_name(f".{folder.name}.medi-export.json")


def _write_sibling_record(folder: Path, kind: str) -> None:
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    record = {"format": kind, "folder": folder.name, "files": files}
    _sibling_record(folder).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def _json(path: Path, keys: tuple[str, ...]) -> dict | None:
    """A JSON object file holding ``keys``, or None (missing, unreadable, not JSON, other keys)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) and all(key in value for key in keys) else None


def _listing(names: list[str]) -> str:
    """``a.txt, plots/ (4 files)``: files under a top folder are counted, not each named."""
    grouped: dict[str, int] = {}
    for name in names:
        top, _, rest = name.partition("/")
        key = f"{top}/" if rest else top
        grouped[key] = grouped.get(key, 0) + 1
    items = [f"{key} ({n} file{'s' * (n != 1)})" if key.endswith("/") else key for key, n in grouped.items()]
    shown = ", ".join(items[:LISTED])
    return shown + (f" and {len(items) - LISTED} more" if len(items) > LISTED else "")
