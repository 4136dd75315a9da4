"""``medi add-source``: scaffold a catalog file and a draft instruction entry for a new source.

The new source is checked before anything is written: a valid name (no path tricks), a known adapter, no
existing source or instruction entry of that name, and its first rows must load through the adapter. Then
``sources/<family>/<name>.yaml`` and an entry in ``instructions/<family>.yaml`` are written; the source builds
with no code change.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from medi.adapters import ADAPTERS, get_adapter
from medi.catalog import SUPERNI, Catalog, SourceSpec, working_copy
from medi.encode import default_cache_dir
from medi.errors import MediError, Problem, SourceError, explain_validation
from medi.fetch import fetch
from medi.schema import Record
from medi.stages.instruct import InstructionBook, read_instruction_file, write_instruction_file

NAME = re.compile(r"^(?P<family>[a-z][a-z0-9_]*)/(?P<stem>[A-Za-z0-9][A-Za-z0-9_.-]*)$")
REVISION = re.compile(r"^[0-9a-f]{40}$")
PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9_./-]*")  # written without quotes in the catalog file
YAML_WORDS = frozenset({"null", "true", "false", "yes", "no", "on", "off", "y", "n"})
INSTRUCTIONS_HEADER = """\
# Instructions for medi (shape: docs/CONTRACTS.md, 'Instructions').
# First wording of a list is the primary, the other two are paraphrases.
# Symmetric sources have only `query`: that wording is used for every text of the source.
"""


@dataclass
class SourceRequest:
    """What ``medi add-source`` was asked for."""

    name: str
    adapter: str
    hub_repo: str | None = None
    file: str | None = None  # path inside the hub repo
    revision: str | None = None
    repo_type: str = "dataset"
    path: str | None = None  # a local file instead of a hub file
    symmetric: bool = False
    description: str | None = None
    licence: str | None = None
    citation: str | None = None
    homepage: str | None = None
    columns: dict[str, str] = field(default_factory=dict)  # table adapter: query/pos/neg column names
    table_format: str | None = None
    mining: str | None = None
    cap: int | None = None  # medi.cap: the select stage keeps at most this many rows


@dataclass
class Scaffolded:
    source_file: Path
    instruction_file: Path
    spec: SourceSpec
    preview: list[Record]
    problems: list[Problem]
    notes: list[str]


def add_source(
    request: SourceRequest,
    *,
    root: Path | None = None,
    data_dirs: list[Path] | None = None,
    remote: bool = True,
    rows: int = 5,
    cache_dir: Path | None = None,
) -> Scaffolded:
    """Check the request, load its first ``rows`` rows, then write the source and its draft instructions."""
    root = working_copy(root, command="medi add-source")
    family, stem = check_name(request.name)
    catalog = Catalog.load(root)
    if request.adapter not in ADAPTERS:
        known = ", ".join(sorted(ADAPTERS))
        raise MediError(f"{request.name}: unknown adapter {request.adapter!r}; known adapters: {known}")
    source_file = root / "sources" / family / f"{stem}.yaml"
    _refuse_duplicates(request.name, source_file, catalog, InstructionBook.load(root), root)
    body, notes = source_body(request, root, catalog)
    try:
        spec = SourceSpec(**body, name=request.name, file=str(source_file.relative_to(root)))
    except ValidationError as exc:
        raise MediError(f"{request.name}: {explain_validation(exc)}") from exc
    preview, problems = load_preview(spec, root, data_dirs or [], remote, rows, cache_dir or default_cache_dir())
    source_file.parent.mkdir(parents=True, exist_ok=True)
    source_file.write_text(source_yaml(request, body), encoding="utf-8")
    try:
        instruction_file = _write_draft_instructions(root, request)
    except Exception:
        source_file.unlink()  # no half-added source
        raise
    return Scaffolded(source_file, instruction_file, spec, preview, problems, notes)


def check_name(name: str) -> tuple[str, str]:
    """``(family, stem)`` of a new source name, or a MediError saying what is wrong with it."""
    match = NAME.match(name or "")
    if not match or ".." in name or name.endswith((".yaml", ".")):
        raise MediError(
            f"bad source name {name!r}: use <family>/<name>, family lowercase letters, digits and _, name letters, "
            "digits, _ . - (no path separators beyond the one slash, no '..', not starting with _ or .)"
        )
    if match["family"] == SUPERNI:
        raise MediError(
            f"{name}: Super-NI tasks are not added by hand; update the split lists and run scripts/make_catalog.py"
        )
    return match["family"], match["stem"]


def _refuse_duplicates(name: str, source_file: Path, catalog: Catalog, book: InstructionBook, root: Path) -> None:
    if source_file.exists() or name in catalog.specs:
        raise MediError(f"{name} already exists ({source_file.relative_to(root)}); pick another name or edit it")
    folded = {n.lower(): n for n in catalog.specs}
    if name.lower() in folded:
        raise MediError(f"{name}: the catalog has {folded[name.lower()]}, which differs only in case")
    if name in book.entries:
        raise MediError(f"{name} already has instructions in {book.files[name]}; remove that entry first")


def source_body(request: SourceRequest, root: Path, catalog: Catalog) -> tuple[dict, list[str]]:
    """The catalog fields of the new source, and notes for the user (unpinned revision, same file as ...)."""
    notes: list[str] = []
    body: dict = {"adapter": request.adapter}
    if request.description:
        body["description"] = request.description
    if bool(request.path) == bool(request.hub_repo):
        raise MediError(f"{request.name}: give either --path (a local file) or --hub-repo with --file")
    if request.path:
        local = Path(request.path).expanduser()
        resolved = (local if local.is_absolute() else Path.cwd() / local).resolve()
        if not resolved.is_file():
            raise MediError(f"{request.name}: --path {request.path}: no such file")
        try:
            body["path"] = str(resolved.relative_to(root.resolve()))
        except ValueError:
            body["path"] = str(resolved)
            notes.append(f"the file is outside {root}; the catalog keeps its absolute path")
    else:
        if not request.file or "/" not in request.hub_repo:
            raise MediError(f"{request.name}: --hub-repo needs the form ORG/NAME and --file the path inside it")
        if request.revision and not REVISION.match(request.revision):
            raise MediError(f"{request.name}: --revision must be a full 40-character commit sha")
        if not request.revision:
            notes.append("no --revision: the source is unpinned and every build will warn; pin a real commit")
        body["upstream"] = {
            "kind": "hub",
            "repo": request.hub_repo,
            "repo_type": request.repo_type,
            "path": request.file,
            "revision": request.revision,
        }
        body["mirror"] = f"{request.hub_repo.split('/')[-1]}/{request.file}"
        for other in catalog.specs.values():
            if other.upstream and (other.upstream.repo, other.upstream.path) == (request.hub_repo, request.file):
                notes.append(f"{other.name} reads the same upstream file")
    body["licence"] = request.licence or "unknown (not recorded by medi add-source; check the dataset card)"
    for key in ("citation", "homepage"):
        if value := getattr(request, key):
            body[key] = value
    body["symmetric"] = request.symmetric
    if request.cap is not None and request.cap < 1:
        raise MediError(f"{request.name}: --cap must be 1 or more, not {request.cap}")
    body["medi"] = {"included": None, "cap": request.cap}
    body["options"] = _options(request)
    return body, notes


def _options(request: SourceRequest) -> dict:
    if request.adapter == "table":
        if not request.columns.get("query") or not request.columns.get("pos"):
            raise MediError(f"{request.name}: the table adapter needs --columns query=COL,pos=COL[,neg=COL]")
        options = {"columns": {"query": request.columns["query"], "pos": request.columns["pos"]}}
        options["columns"]["neg"] = request.columns.get("neg")
        if request.table_format:
            options["format"] = request.table_format
        return options
    if request.adapter == SUPERNI:
        return {"mining": request.mining or "auto"}
    return {}


def load_preview(
    spec: SourceSpec, root: Path, data_dirs: list[Path], remote: bool, rows: int, cache_dir: Path
) -> tuple[list[Record], list[Problem]]:
    """The first ``rows`` rows through the adapter (and the problems met on the way); no rows is an error."""
    try:
        fetched = fetch(spec, data_dirs, root, remote=remote, cache_dir=cache_dir)
        adapted = get_adapter(spec.adapter, spec.name)(fetched.path, spec, 0)
        records: list[Record] = []
        problems: list[Problem] = []
        for item in itertools.islice(adapted.rows, rows * 20):
            (problems if isinstance(item, Problem) else records).append(item)
            if len(records) >= rows:
                break
    except SourceError as exc:
        hint = "" if data_dirs else " (give --data-dir MIRROR for a local copy)"
        raise MediError(f"cannot load the first rows, nothing written: {exc}{hint}") from exc
    if not records:
        found = "; ".join(str(p) for p in problems[:3]) or "the file has no rows"
        raise MediError(f"{spec.name}: the {spec.adapter} adapter read no rows, nothing written: {found}")
    return records, problems


def source_yaml(request: SourceRequest, body: dict) -> str:
    """The catalog file, commented like the shipped ones (JSON strings are valid YAML scalars)."""

    def value(v) -> str:
        if v is None:
            return "null"
        if isinstance(v, str) and PLAIN.fullmatch(v) and v.lower() not in YAML_WORDS:
            return v
        return json.dumps(v, ensure_ascii=False)

    lines = ["# added by medi add-source; fields: sources/README.md. Check licence, symmetric and medi.included."]
    lines.append(f"adapter: {body['adapter']}")
    if "description" in body:
        lines.append(f"description: {value(body['description'])}")
    if "upstream" in body:
        up = body["upstream"]
        lines.append("upstream:")
        lines += [f"  {key}: {value(up[key])}" for key in ("kind", "repo", "repo_type", "path", "revision")]
        lines.append(f"mirror: {value(body['mirror'])}   # path under --data-dir")
    if "path" in body:
        lines.append(f"path: {value(body['path'])}   # a local file: relative to the project root, or absolute")
    lines.append(f"licence: {value(body['licence'])}")
    lines += [f"{key}: {value(body[key])}" for key in ("citation", "homepage") if key in body]
    why = "query and positive are the same kind of text" if request.symmetric else "query -> document"
    lines.append(f"symmetric: {value(body['symmetric'])}   # {why}")
    cap = body["medi"]["cap"]
    known = "not a source of INSTRUCTOR's MEDI as far as known"
    why = f"{known}; a build keeps at most {cap} rows (medi add-source --cap)" if cap else known
    lines.append(f"medi: {{included: null, cap: {value(cap)}}}   # {why}")
    lines.append(f"options: {json.dumps(body['options'])}")
    return "\n".join(lines) + "\n"


def draft_wordings(request: SourceRequest) -> dict[str, list[str]]:
    """Valid placeholder-free drafts a reviewer rewrites: they name the source, not yet its real text type."""
    label = re.sub(r"[_.-]+", " ", request.name.split("/", 1)[1]).strip()
    if request.symmetric:
        return {
            "query": [
                f"Represent the {label} text for retrieving texts with the same meaning:",
                f"Represent the sentence from {label} for finding other sentences that say the same thing:",
                f"Represent the given {label} text for matching it with semantically equivalent texts:",
            ]
        }
    return {
        "query": [
            f"Represent the {label} query for retrieving the document that matches it:",
            f"Represent the question from {label} for finding the passage that answers it:",
            f"Represent the given {label} query for ranking candidate documents by relevance:",
        ],
        "document": [
            f"Represent the {label} document for retrieving the query it matches:",
            f"Represent the passage from {label} for finding the questions that it answers:",
            f"Represent the given {label} document for matching it with relevant queries:",
        ],
    }


def _write_draft_instructions(root: Path, request: SourceRequest) -> Path:
    family = request.name.split("/", 1)[0]
    path = root / "instructions" / f"{family}.yaml"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Sources: family {family}/ (added by medi add-source).\n{INSTRUCTIONS_HEADER}", "utf-8")
    yaml, data = read_instruction_file(path)
    entry = CommentedMap()
    for key, wordings in draft_wordings(request).items():
        entry[key] = CommentedSeq(DoubleQuotedScalarString(w) for w in wordings)
    entry["status"] = "draft"
    entry["reviewer"] = None
    entry["date"] = None
    entry["note"] = "drafted by medi add-source: name the real domain and text type, then review"
    data[request.name] = entry
    data.yaml_set_comment_before_after_key(request.name, before="\n")
    write_instruction_file(yaml, data, path)
    return path
