"""Review instructions in a browser: export a self-contained page, serve it, import the reviewer's decisions.

``export_review`` writes ``index.html`` (no server, no network: data, style and script inline) showing per source
of a release its instruction wordings and a few of its real rows. The reviewer accepts, edits or rejects each
wording and downloads ``decisions.json``; ``import_decisions`` applies it to ``instructions/*.yaml`` with a
round-trip YAML edit (comments, order and quoting kept) and refuses decisions about wordings that changed since.
"""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import json
import random
import shutil
import tempfile
import textwrap
import threading
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

from medi.catalog import Catalog, project_root, working_copy
from medi.encode import Encoder, EncoderConfig
from medi.errors import MediError, explain_validation
from medi.instruct import InstructionBook, InstructionEntry, read_instruction_file, write_instruction_file
from medi.outdir import REVIEW, check_out, install
from medi.release import Release, open_release
from medi.select import vote_k

DECISIONS_FORMAT = "medi-review-decisions/1"
DATA_MARK = "/*MEDI_REVIEW_DATA*/"
TEXT_LIMIT = 1200  # characters of a row text shown on the page
PICK_METHODS = ("vote-k", "random")
VOTE_K_POOL = 5000
# release config key -> EncoderConfig field
ENCODER_FIELDS = {
    "encoder": "name",
    "device": "device",
    "batch_size": "batch_size",
    "max_seq_length": "max_seq_length",
    "query_prompt": "query_prompt",
    "document_prompt": "document_prompt",
}
Field = Literal["query", "document"]
NEW_FILE_HEADER = (
    "{file}: instructions for medi (shape: docs/CONTRACTS.md, 'Instructions'), started by medi review import.\n"
    "First wording of a list is the primary, the rest are paraphrases."
)


# ---------------------------------------------------------------- export


def export_review(
    release_dir: Path | str,
    out_dir: Path | str,
    *,
    rows_per_source: int = 3,
    seed: int = 0,
    pick: str = "vote-k",
    root: Path | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """Write ``out_dir/index.html`` for the sources of a release; return its path.

    ``out_dir`` is new, empty or an earlier review page folder (replaced whole; ``medi.outdir``).
    """
    check_out(out_dir, REVIEW, replace=True)
    release = open_release(release_dir)
    root = root or project_root()
    catalog, book = Catalog.load(root), InstructionBook.load(root)
    picker = RowPicker(release, rows_per_source, seed, pick, cache_dir)
    sources = [
        _source_view(name, rows, release, catalog, book, picker.pick(name, rows)) for name, rows in release.iter_tasks()
    ]
    exported_at = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    data = {
        "decisions_format": DECISIONS_FORMAT,
        "export_id": f"{Path(release_dir).name}@{exported_at}",
        "release": str(release.folder),
        "release_rows": release.manifest["rows"],
        "exported_at": exported_at,
        "instructions_root": str(root / "instructions"),
        "selection": picker.method,
        "sources": sources,
    }
    template = resources.files("medi").joinpath("review_page.html").read_text(encoding="utf-8")
    # "</" inside a JSON string would end the <script> element early
    page = template.replace(DATA_MARK, json.dumps(data, ensure_ascii=False).replace("</", "<\\/"))
    out = Path(out_dir)
    out.absolute().parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.absolute().name}.", dir=out.absolute().parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the page is meant to be shared
        (staging / "index.html").write_text(page, encoding="utf-8")
        install(staging, out, REVIEW, replace=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / "index.html"


class RowPicker:
    """Chooses the rows shown per source.

    ``vote-k``: fast vote-k (``medi.select.vote_k``) on the rows' query embeddings from the release's own encoder
    (cache hits when the release was built with this cache), so the rows shown are spread over the source rather
    than clustered; sources above ``VOTE_K_POOL`` rows vote among a seeded sample of that many. ``random``: a
    seeded random sample. Either way the same release and seed show the same rows.
    """

    def __init__(self, release: Release, n: int, seed: int, method: str, cache_dir: Path | None):
        if method not in PICK_METHODS:
            raise MediError(f"unknown row selection {method!r}; use one of {', '.join(PICK_METHODS)}")
        self.release, self.n, self.seed, self.kind, self.cache_dir = release, n, seed, method, cache_dir
        self.method = f"vote-k on query embeddings, seed {seed}" if method == "vote-k" else f"random, seed {seed}"

    def pick(self, name: str, rows) -> list[int]:
        rng = random.Random(f"{self.seed}:{name}")
        if len(rows) <= self.n:
            return list(range(len(rows)))
        if self.kind == "random":
            return sorted(rng.sample(range(len(rows)), self.n))
        pool = sorted(rng.sample(range(len(rows)), VOTE_K_POOL)) if len(rows) > VOTE_K_POOL else range(len(rows))
        texts = [rows[i]["query"]["text"] for i in pool]
        side = "document" if self._adapter(name) == "superni" else "query"  # as the mine stage embedded them
        embeddings = self.encoder.embed(texts, side=side)
        return [pool[int(i)] for i in vote_k(embeddings, self.n)]

    def _adapter(self, name: str) -> str | None:
        return self.release.manifest["sources"].get(name, {}).get("adapter")

    @cached_property
    def encoder(self) -> Encoder:
        config = self.release.manifest.get("config") or {}
        fields = {field: config[key] for key, field in ENCODER_FIELDS.items() if config.get(key) is not None}
        return Encoder(EncoderConfig(**fields), self.cache_dir)


def _source_view(name: str, rows, release: Release, catalog: Catalog, book: InstructionBook, picked) -> dict:
    recorded = release.manifest["sources"].get(name, {})
    spec = catalog.specs.get(name)
    symmetric = spec.symmetric if spec else bool(recorded.get("catalog", {}).get("symmetric"))
    entry = book.entries.get(name)
    if entry is not None:
        document = list(entry.document) if entry.document and not symmetric else None
        wordings = {"query": list(entry.query), "document": document}
        status, file, origin = entry.status, book.files[name], book.files[name]
        reviewer, date, note = entry.reviewer, str(entry.date) if entry.date else None, entry.note
    else:  # drafted at build time (Super-NI task without an entry): the wordings the manifest recorded
        used = recorded.get("instructions", {})
        wordings = {"query": list(used.get("query", [])), "document": None}
        status, file, origin = used.get("status", "draft"), None, used.get("origin", "drafted")
        reviewer = date = note = None
    task = recorded.get("task") or {}
    context = "; ".join(f"{k}: {', '.join(task[k])}" for k in ("Categories", "Domains") if task.get(k))
    if definition := " ".join(task.get("Definition") or []):
        context += f"{'; ' if context else ''}Definition: {textwrap.shorten(definition, 600, placeholder=' …')}"
    return {
        "name": name,
        "symmetric": symmetric,
        "status": status,
        "file": file,
        "origin": origin,
        "reviewer": reviewer,
        "date": date,
        "note": note,
        "context": context,
        "wordings": wordings,
        "rows_in_release": len(rows),
        "rows": [_row_view(rows[i]) for i in picked],
    }


def _row_view(row: dict) -> dict:
    view = {key: row[key] for key in ("row_id", "pos_origin", "neg_origin", "pos_score", "neg_score")}
    for side in ("query", "pos", "neg"):
        text = row[side]["text"]
        view[side] = {
            "instruction": row[side]["instruction"],
            "text": text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + " …",
        }
    return view


def serve_review(folder: Path | str, port: int = 8765, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """An HTTP server for an exported review folder on localhost (call ``serve_forever`` or run it in a thread)."""
    folder = Path(folder)
    if not (folder / "index.html").is_file():
        raise MediError(f"{folder}: no index.html here (run `medi review export` first)")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    try:
        return http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise MediError(f"cannot serve on {host}:{port}: {exc}") from exc


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:
        pass


def serve_in_thread(server: http.server.ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


# ---------------------------------------------------------------- import


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: Field
    index: int
    original: str
    action: Literal["accept", "edit", "reject"]
    text: str | None = None


class SourceDecisions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str | None = None
    origin: str | None = None
    symmetric: bool = False
    wordings: dict[str, list[str] | None]
    note: str | None = None
    decisions: list[Decision] = []


class DecisionsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str
    export_id: str | None = None
    release: str | None = None
    reviewer: str | None = None
    date: dt.date | None = None
    sources: dict[str, SourceDecisions]


@dataclass
class ImportResult:
    """What an import changed: per file the sources touched, and per source what happened."""

    files: dict[str, list[str]] = field(default_factory=dict)
    changes: dict[str, str] = field(default_factory=dict)


def read_decisions(path: Path | str) -> DecisionsFile:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MediError(f"{path}: cannot read decisions ({exc})") from exc
    try:
        decisions = DecisionsFile(**data)
    except (ValidationError, TypeError) as exc:
        raise MediError(f"{path}: {explain_validation(exc)}") from exc
    if decisions.format != DECISIONS_FORMAT:
        raise MediError(f"{path}: format {decisions.format!r} is not {DECISIONS_FORMAT!r}")
    for name, source in decisions.sources.items():
        for d in source.decisions:
            shown = source.wordings.get(d.field) or []
            if d.index >= len(shown) or shown[d.index] != d.original:
                raise MediError(f"{path}: {name}: {d.field}[{d.index}] does not match the wordings the page showed")
            if d.action == "edit" and not (d.text or "").strip():
                raise MediError(f"{path}: {name}: {d.field}[{d.index}] is an edit without text")
    return decisions


def import_decisions(
    path: Path | str, *, root: Path | None = None, reviewer: str | None = None, today: dt.date | None = None
) -> ImportResult:
    """Apply a decisions file to ``instructions/*.yaml``; nothing is written if any decision is stale."""
    root = working_copy(root, command="medi review import")
    decisions = read_decisions(path)
    book = InstructionBook.load(root)
    reviewer = reviewer or decisions.reviewer
    when = decisions.date or today or dt.date.today()
    if stale := _stale(decisions, book):
        raise MediError(
            f"{path}: stale decisions, nothing imported (the YAML changed since the page was exported; "
            "export the page again):\n  " + "\n  ".join(stale)
        )
    by_file: dict[str, list[str]] = {}
    for name in decisions.sources:
        family = name.split("/", 1)[0]
        by_file.setdefault(book.files.get(name, f"instructions/{family}.yaml"), []).append(name)
    result = ImportResult()
    edits = []
    for file, names in by_file.items():
        target = root / file
        yaml, data = read_instruction_file(target)
        if not target.exists():
            data.yaml_set_start_comment(NEW_FILE_HEADER.format(file=file))
        for name in names:
            result.changes[name] = _apply(data, name, decisions.sources[name], reviewer, when)
            _validate(data[name], name, target)
        edits.append((yaml, data, target))
        result.files[file] = names
    for yaml, data, target in edits:  # all applied and validated in memory first: a bad decision writes nothing
        write_instruction_file(yaml, data, target)
    return result


def _validate(node: CommentedMap, name: str, target: Path) -> None:
    try:
        InstructionEntry(**node)
    except (ValidationError, TypeError) as exc:
        message = f"{target}: {name}: the decisions would leave an invalid entry: {explain_validation(exc)}"
        raise MediError(message) from exc


def _stale(decisions: DecisionsFile, book: InstructionBook) -> list[str]:
    stale = []
    for name, source in decisions.sources.items():
        entry = book.entries.get(name)
        if entry is None:
            if source.file:
                stale.append(f"{name}: its entry in {source.file} is gone")
            continue
        if source.file is None:
            stale.append(f"{name}: was a build-time draft on the page, now has an entry in {book.files[name]}")
            continue
        for d in source.decisions:
            current = getattr(entry, d.field) or []
            if d.index >= len(current) or current[d.index] != d.original:
                now = repr(current[d.index]) if d.index < len(current) else "no such wording"
                stale.append(f"{name}: {d.field}[{d.index}] was {d.original!r}, is now {now}")
    return stale


def _apply(data: CommentedMap, name: str, source: SourceDecisions, reviewer: str | None, when: dt.date) -> str:
    is_new = name not in data
    if is_new:
        data[name] = _new_entry(source)
        if len(data) > 1:
            data.yaml_set_comment_before_after_key(name, before="\n")
    node = data[name]
    kept_fields, changes = {}, []
    for field_name in ("query", "document"):
        shown = source.wordings.get(field_name)
        if not shown:
            continue
        chosen = {d.index: d for d in source.decisions if d.field == field_name}
        seq: CommentedSeq = node[field_name]
        for index in sorted(chosen, reverse=True):
            d = chosen[index]
            if d.action == "edit":
                seq[index] = _same_style(seq[index], " ".join(d.text.split()))
                changes.append(f"{field_name}[{index}] edited")
            elif d.action == "reject":
                changes.append(f"{field_name}[{index}] rejected")
        survivors = [i for i in range(len(shown)) if chosen.get(i) is None or chosen[i].action != "reject"]
        if survivors:  # an entry keeps at least one wording per field; all rejected marks the entry rejected
            for index in sorted(set(range(len(shown))) - set(survivors), reverse=True):
                del seq[index]
        kept_fields[field_name] = (len(survivors), len(chosen) == len(shown))
    if (source.note is not None or not is_new) and source.note != node.get("note"):
        _set(node, "note", source.note)
        changes.append("note")
    status = _status(kept_fields, node.get("status", "draft"))
    if status != node.get("status"):
        if not reviewer:
            raise MediError(f"{name}: a reviewer name is needed to mark it {status} (give --reviewer)")
        _set(node, "status", status)
        _set(node, "reviewer", reviewer)
        _set(node, "date", when)
        changes.append(f"status {status}")
    return ", ".join(changes) or "no change"


def _status(fields: dict[str, tuple[int, bool]], current: str) -> str:
    """rejected when a field lost every wording; reviewed when every wording shown got a decision."""
    if any(kept == 0 for kept, _ in fields.values()):
        return "rejected"
    if fields and all(complete for _, complete in fields.values()):
        return "reviewed"
    return current


def _set(node: CommentedMap, key: str, value) -> None:
    if key in node:
        node[key] = value
    else:
        node.insert(len(node), key, value)


def _same_style(old, text: str):
    if isinstance(old, DoubleQuotedScalarString):
        return DoubleQuotedScalarString(text)
    if isinstance(old, SingleQuotedScalarString):
        return SingleQuotedScalarString(text)
    return text


def _new_entry(source: SourceDecisions) -> CommentedMap:
    """An entry for a source that had only a build-time draft: the wordings the page showed."""
    entry = CommentedMap()
    for field_name in ("query", "document"):
        if source.wordings.get(field_name):
            entry[field_name] = CommentedSeq(DoubleQuotedScalarString(w) for w in source.wordings[field_name])
    entry["status"] = "draft"
    entry["reviewer"] = None
    entry["date"] = None
    entry["note"] = f"written by medi review import from the {source.origin or 'draft'}"
    return entry
