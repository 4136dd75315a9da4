"""Review instructions and negatives in a browser: export a self-contained page, serve it, import the decisions.

``export_review`` writes ``index.html`` (no server, no network: data, style and script inline) with two views.
Instructions: per source of a release its instruction wordings and a few of its real rows; the reviewer accepts,
edits or rejects each wording. Negatives: per source a seeded sample of rows (rows with suspects first) showing the
query, the positive, the chosen negative and the suspects the teacher removed (release column ``suspects``); the
reviewer marks a suspect "really negative" or "actually positive", and may mark the chosen negative "actually
positive". The page downloads ``decisions.json``; ``import_decisions`` applies the instruction decisions to
``instructions/*.yaml`` with a round-trip YAML edit (comments, order and quoting kept), refusing decisions about
wordings that changed since, and stores the negative decisions as ``judgements/<source>.yaml``
(``medi.judgements``), which the next build's mine stage applies.
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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

from medi.catalog import Catalog, project_root, working_copy
from medi.encode import Encoder, EncoderConfig
from medi.errors import MediError, explain_validation
from medi.judgements import Judgement, Recorded, record_judgements, save_judgements
from medi.outdir import REVIEW, check_out, install
from medi.release import Release, open_release
from medi.stages.instruct import InstructionBook, InstructionEntry, read_instruction_file, write_instruction_file
from medi.stages.select import vote_k

DECISIONS_FORMAT = "medi-review-decisions/2"  # /2 adds the negatives section; /1 files still import
DECISIONS_FORMATS = ("medi-review-decisions/1", DECISIONS_FORMAT)
DATA_MARK = "/*MEDI_REVIEW_DATA*/"
TEXT_LIMIT = 1200  # characters of a row text shown on the page
PICK_METHODS = ("vote-k", "random")
NO_TEACHER = "no teacher ran for this release: no suspects"
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
    negative_rows: int = 5,
    seed: int = 0,
    pick: str = "vote-k",
    root: Path | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """Write ``out_dir/index.html`` for the sources of a release; return its path.

    ``rows_per_source``: rows shown beside the instructions; ``negative_rows``: rows per source in the negatives
    view. ``out_dir`` is new, empty or an earlier review page folder (replaced whole; ``medi.outdir``).
    """
    if negative_rows < 0:
        raise MediError(f"negative rows must be 0 or more, not {negative_rows}")
    check_out(out_dir, REVIEW, replace=True)
    release = open_release(release_dir)
    root = root or project_root()
    catalog, book = Catalog.load(root), InstructionBook.load(root)
    picker = RowPicker(release, rows_per_source, seed, pick, cache_dir)
    sources = [
        _source_view(name, rows, release, catalog, book, picker.pick(name, rows)) for name, rows in release.iter_tasks()
    ]
    teacher = teacher_of(release)
    names = [task["task_name"] for task in release.tasks]
    negatives = [negatives_view(name, release, teacher_of(release, name), negative_rows, seed) for name in names]
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
        "release_path": str(release.folder.resolve()),
        "judgements_root": str(root / "judgements"),
        "text_limit": TEXT_LIMIT,
        "teacher": teacher,
        "negatives_selection": f"rows with suspects first, then rows with a negative; random, seed {seed}",
        "negatives": negatives,
    }
    template = resources.files("medi.authoring").joinpath("review_page.html").read_text(encoding="utf-8")
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

    ``vote-k``: fast vote-k (``medi.stages.select.vote_k``) on the rows' query embeddings from the release's own encoder
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


def teacher_of(release: Release, name: str | None = None) -> str | None:
    """The teacher that guarded the negatives of source ``name`` (its mine report), else of the release (its
    config); None when no teacher ran or the release predates the ``suspects`` column."""
    if "suspects" not in release.dataset.column_names:
        return None
    report = release.manifest["sources"].get(name, {}).get("mining") or {} if name else {}
    if isinstance(report.get("teacher"), dict) and report["teacher"].get("name"):
        return report["teacher"]["name"]
    mining = (release.manifest.get("config") or {}).get("mining") or {}
    return mining.get("teacher") or None


def negatives_view(name: str, release: Release, teacher: str | None, n: int, seed: int) -> dict:
    """One source of the negatives view: a seeded sample of ``n`` rows, rows with suspects first, then rows with a
    negative (those without one have nothing to judge)."""
    table = release.task_table(name)
    has_neg = np.asarray(pc.not_equal(pc.struct_field(table["neg"], "text"), "").fill_null(False))
    if teacher is not None:
        suspect_counts = np.asarray(pc.list_value_length(table["suspects"]).fill_null(0))
    else:
        suspect_counts = np.zeros(len(table), dtype=np.int64)
    with_suspects = np.flatnonzero(suspect_counts > 0).tolist()
    others = np.flatnonzero(has_neg & (suspect_counts == 0)).tolist()
    rng = random.Random(f"{seed}:negatives:{name}")
    picked = rng.sample(with_suspects, min(n, len(with_suspects)))
    picked += rng.sample(others, min(n - len(picked), len(others)))
    rows = table.take(sorted(picked)).to_pylist() if picked else []
    if teacher is None:
        note = NO_TEACHER
    elif not with_suspects:
        note = f"the teacher ({teacher}) removed no candidate in this source"
    else:
        note = None
    return {
        "name": name,
        "teacher": teacher,
        "rows_in_release": len(table),
        "rows_with_negative": int(has_neg.sum()),
        "rows_with_suspects": len(with_suspects),
        "suspects": int(suspect_counts.sum()),
        "note": note,
        "rows": [_negative_row(row) for row in rows],
    }


def _negative_row(row: dict) -> dict:
    """Full texts: a decision names its texts exactly (the page shortens what it shows)."""
    provenance = ("rule", "rank", "teacher_score")
    return {
        "row_id": row["row_id"],
        "query": row["query"],
        "pos": {
            **row["pos"],
            "origin": row["pos_origin"],
            "score": row["pos_score"],
            **{key: row.get(f"pos_{key}") for key in provenance},
        },
        "neg": {
            **row["neg"],
            "origin": row["neg_origin"],
            "score": row["neg_score"],
            **{key: row.get(f"neg_{key}") for key in provenance},
        },
        "extra_negs": [  # negatives 2..N (--negatives N)
            {key: n.get(key) for key in ("text", "origin", "rule", "rank", "score", "teacher_score")}
            for n in row.get("extra_negs") or []
        ],
        "suspects": [
            {key: s.get(key) for key in ("text", "rule", "rank", "score", "teacher_score")}
            for s in row.get("suspects") or []
        ],
        "extra_pos": [p["text"] for p in row.get("extra_pos") or []],
    }


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


class NegativeDecision(BaseModel):
    """A verdict on one text of a row shown in the negatives view: a suspect, or the row's chosen negative."""

    model_config = ConfigDict(extra="forbid")

    row_id: str
    query: str
    text: str
    role: Literal["suspect", "negative"]
    verdict: Literal["positive", "negative"]


class NegativeDecisions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    release: str | None = None  # the release folder the page showed (absolute)
    sources: dict[str, list[NegativeDecision]] = {}


class DecisionsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str
    export_id: str | None = None
    release: str | None = None
    reviewer: str | None = None
    date: dt.date | None = None
    sources: dict[str, SourceDecisions] = {}
    negatives: NegativeDecisions | None = None  # medi-review-decisions/2


@dataclass
class ImportResult:
    """What an import changed: per file the sources touched, and per source what happened; per source the
    judgements stored (``medi.judgements.Recorded``), and notes (e.g. what could not be checked)."""

    files: dict[str, list[str]] = field(default_factory=dict)
    changes: dict[str, str] = field(default_factory=dict)
    judgements: dict[str, Recorded] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


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
    if decisions.format not in DECISIONS_FORMATS:
        raise MediError(f"{path}: format {decisions.format!r} is not one of {', '.join(DECISIONS_FORMATS)}")
    if decisions.negatives is not None and decisions.format != DECISIONS_FORMAT:
        raise MediError(f"{path}: a negatives section needs format {DECISIONS_FORMAT!r}, not {decisions.format!r}")
    _check_negative_shape(decisions, path)
    for name, source in decisions.sources.items():
        for d in source.decisions:
            shown = source.wordings.get(d.field) or []
            if d.index >= len(shown) or shown[d.index] != d.original:
                raise MediError(f"{path}: {name}: {d.field}[{d.index}] does not match the wordings the page showed")
            if d.action == "edit" and not (d.text or "").strip():
                raise MediError(f"{path}: {name}: {d.field}[{d.index}] is an edit without text")
    return decisions


def _check_negative_shape(decisions: DecisionsFile, path: Path) -> None:
    """Every text named, and one verdict per query and text of a source."""
    for name, items in (decisions.negatives.sources if decisions.negatives else {}).items():
        seen: dict[tuple[str, str], str] = {}
        for index, d in enumerate(items):
            where = f"{path}: negatives: {name}[{index}] (row {d.row_id})"
            if not d.query.strip() or not d.text.strip():
                raise MediError(f"{where}: the query or the text is empty")
            if seen.setdefault((d.query, d.text), d.verdict) != d.verdict:
                raise MediError(f"{where}: the same query and text are judged both positive and negative")


def import_decisions(
    path: Path | str, *, root: Path | None = None, reviewer: str | None = None, today: dt.date | None = None
) -> ImportResult:
    """Apply a decisions file: instruction decisions to ``instructions/*.yaml``, negative decisions to
    ``judgements/*.yaml``. Nothing is written if any decision is stale or any file would be invalid."""
    root = working_copy(root, command="medi review import")
    decisions = read_decisions(path)
    book = InstructionBook.load(root)
    reviewer = reviewer or decisions.reviewer
    when = decisions.date or today or dt.date.today()
    result = ImportResult()
    stale = _stale(decisions, book) + _stale_negatives(decisions, result)
    if stale:
        raise MediError(
            f"{path}: stale decisions, nothing imported (the YAML or the release changed since the page was "
            "exported; export the page again):\n  " + "\n  ".join(stale)
        )
    by_file: dict[str, list[str]] = {}
    for name in decisions.sources:
        family = name.split("/", 1)[0]
        by_file.setdefault(book.files.get(name, f"instructions/{family}.yaml"), []).append(name)
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
    stores = _judgement_stores(decisions, root, reviewer, when, result)
    for yaml, data, target in edits:  # all applied and validated in memory first: a bad decision writes nothing
        write_instruction_file(yaml, data, target)
    for recorded, text in stores:
        save_judgements(root, recorded, text)
    return result


def _judgement_stores(
    decisions: DecisionsFile, root: Path, reviewer: str | None, when: dt.date, result: ImportResult
) -> list[tuple[Recorded, str]]:
    """The new text of each source's judgements file (nothing written yet)."""
    stores = []
    for name, items in (decisions.negatives.sources if decisions.negatives else {}).items():
        entries = [
            Judgement(query=d.query, text=d.text, verdict=d.verdict, reviewer=reviewer, date=when) for d in items
        ]
        recorded, text = record_judgements(root, name, entries, dry_run=True)
        result.judgements[name] = recorded
        stores.append((recorded, text))
    return stores


def _stale_negatives(decisions: DecisionsFile, result: ImportResult) -> list[str]:
    """Decisions whose row no longer shows their text in the release the page was exported from. A release that
    is gone cannot be checked: a note says so and the decisions are imported on their shape alone."""
    negatives = decisions.negatives
    if negatives is None or not negatives.sources:
        return []
    folder = Path(negatives.release or decisions.release or "")
    if not (folder / "manifest.json").is_file():
        result.notes.append(f"release {folder} is gone: negative decisions checked for shape only")
        return []
    release = open_release(folder)
    stale = []
    for name, items in negatives.sources.items():
        try:
            table = release.task_table(name)
        except MediError:
            stale.append(f"negatives: {name}: no longer in release {folder}")
            continue
        wanted = pa.array(sorted({d.row_id for d in items}))
        rows = {row["row_id"]: row for row in table.filter(pc.is_in(table["row_id"], wanted)).to_pylist()}
        for d in items:
            row = rows.get(d.row_id)
            if row is None:
                stale.append(f"negatives: {name}: row {d.row_id} is no longer in release {folder}")
            elif row["query"]["text"] != d.query:
                stale.append(f"negatives: {name}: row {d.row_id} has another query now")
            elif d.text not in _candidate_texts(row):
                stale.append(f"negatives: {name}: row {d.row_id} no longer shows the {d.role} {_short(d.text)}")
    return stale


def _candidate_texts(row: dict) -> set[str]:
    """Texts of a row a negative decision may name: its negatives, suspects and reviewer-confirmed positives
    (a release rebuilt with the decision already applied shows the text there)."""
    texts = {row["neg"]["text"]}
    for column in ("extra_negs", "suspects", "extra_pos"):
        texts.update(item["text"] for item in row.get(column) or [])
    return texts


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


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
