"""Instruct: attach to every text the instruction written for its source in ``instructions/*.yaml``.

Super-NI tasks without an explicit entry get a draft rendered from their own task file (Categories,
Domains) with the tables in ``instructions/_superni_drafting.yaml``; the manifest marks such drafts.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.representer import RoundTripRepresenter

from medi.adapters import row_rng
from medi.catalog import SUPERNI, SourceSpec, load_yaml
from medi.errors import MediError, explain_validation
from medi.schema import Triple

DRAFTING_FILE = "_superni_drafting.yaml"
STATUSES = ("draft", "reviewed", "rejected")
# "Represent the (domain) (text type) for (objective):" -- the subject before " for " names the text type.
PATTERN = re.compile(r"^Represent (?P<subject>\S.*?) (?:for|to) (?P<objective>\S.*):$")


class InstructionEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: list[str]
    document: list[str] | None = None
    status: Literal["draft", "reviewed", "rejected"] = "draft"
    reviewer: str | None = None
    date: dt.date | str | None = None  # dt.: a bare `date` here would name this very field
    note: str | None = None

    @field_validator("query", "document")
    @classmethod
    def _non_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("needs at least one wording")
        return value


@dataclass(frozen=True)
class SourceInstructions:
    """The wordings a build uses for one source: primary first, then paraphrases."""

    query: tuple[str, ...]
    document: tuple[str, ...]
    status: str
    origin: str  # file path, or "drafted from the task file"

    def summary(self) -> dict:
        return {
            "query": list(self.query),
            "document": list(self.document),
            "status": self.status,
            "origin": self.origin,
        }


@dataclass
class InstructionBook:
    """All instruction entries keyed by source name, with the file each came from."""

    entries: dict[str, InstructionEntry]
    files: dict[str, str]
    drafting: dict

    @classmethod
    def load(cls, root: Path) -> InstructionBook:
        folder = root / "instructions"
        entries, files = {}, {}
        for path in sorted(folder.glob("*.yaml")):
            if path.name.startswith("_"):
                continue
            for name, body in (load_yaml(path) or {}).items():
                if name in entries:
                    raise MediError(f"{path}: {name} already has instructions in {files[name]}")
                try:
                    entries[name] = InstructionEntry(**(body or {}))
                except (ValidationError, TypeError) as exc:
                    raise MediError(f"{path}: {name}: {explain_validation(exc)}") from exc
                files[name] = str(path.relative_to(root))
        drafting_path = folder / DRAFTING_FILE
        drafting = load_yaml(drafting_path) if drafting_path.exists() else {}
        return cls(entries=entries, files=files, drafting=drafting or {})

    def missing(self, specs: list[SourceSpec], require_reviewed: bool = False) -> list[str]:
        """Names of sources the build cannot instruct (no entry, rejected, or a draft when reviewed is required)."""
        problems = []
        for spec in specs:
            entry = self.entries.get(spec.name)
            if entry is None:
                if spec.adapter == SUPERNI and self.drafting and not require_reviewed:
                    continue
                problems.append(f"{spec.name}: no entry in instructions/{spec.family}.yaml")
            elif entry.status == "rejected":
                problems.append(f"{spec.name}: its instructions in {self.files[spec.name]} are rejected")
            elif require_reviewed and entry.status != "reviewed":
                problems.append(f"{spec.name}: its instructions in {self.files[spec.name]} are {entry.status}")
        return problems

    def for_source(self, spec: SourceSpec, meta: dict) -> SourceInstructions:
        entry = self.entries.get(spec.name)
        if entry is None:
            wordings = tuple(draft_superni(meta, self.drafting))
            return SourceInstructions(wordings, wordings, "draft", "drafted from the task file")
        query = tuple(entry.query)
        document = tuple(entry.document) if entry.document and not spec.symmetric else query
        return SourceInstructions(query, document, entry.status, self.files[spec.name])


def draft_superni(meta: dict, tables: dict) -> list[str]:
    """Wordings for a Super-NI task from its first Category and Domain and the drafting tables.

    A category the tables lack takes its text type from the task's Definition ("Given a sentence, ...").
    """
    default = tables.get("default", {})
    category = (meta.get("Categories") or [""])[0]
    domain_key = ((meta.get("Domains") or [""])[0] or "").split(" -> ")[0].strip()
    by_category = tables.get("categories", {}).get(category) or {}
    fields = {
        "text_type": by_category.get("text_type")
        or _text_type_of(meta.get("Definition"))
        or default.get("text_type", "text"),
        "objective": by_category.get("objective") or default.get("objective", "retrieving similar texts"),
        "domain": tables.get("domains", {}).get(domain_key, default.get("domain", "")),
    }
    templates = tables.get("templates") or ["Represent the {domain} {text_type} for {objective}:"]
    return [_tidy(t.format(**fields)) for t in templates]


TEXT_TYPES = (
    "question", "sentence", "passage", "paragraph", "dialogue", "conversation", "review", "tweet", "story",
    "article", "claim", "statement", "utterance", "premise", "title", "word", "text",
)  # fmt: skip


def _text_type_of(definition: list[str] | str | None) -> str | None:
    """The first kind of text a Definition says the task is given ("You are given a question ..." -> question)."""
    text = " ".join(definition) if isinstance(definition, list) else definition or ""
    words = re.findall(r"[a-z]+", text.lower())
    for index, word in enumerate(words):
        if word in {"given", "provided", "receive"}:
            for later in words[index + 1 : index + 8]:
                if later.rstrip("s") in TEXT_TYPES:
                    return later.rstrip("s")
    return None


def draft_entry(meta: dict, tables: dict, origin: str) -> dict:
    """A ``draft`` instruction entry for a Super-NI task, to be written to ``instructions/superni.yaml``."""
    category = ", ".join(meta.get("Categories") or []) or "none"
    domain = ", ".join(meta.get("Domains") or []) or "none"
    return {
        "query": draft_superni(meta, tables),
        "status": "draft",
        "reviewer": None,
        "date": None,
        "note": f"drafted from {origin} (Categories: {category}; Domains: {domain})",
    }


def write_superni_drafts(root: Path, tasks_dir: Path, tasks: list[str] | None = None) -> list[str]:
    """Draft entries in ``instructions/superni.yaml`` for catalog Super-NI tasks whose task file is in ``tasks_dir``.

    Tasks that already have an entry are left alone; returns the names written. A person then reviews the
    drafts (``medi review``) instead of writing them from scratch.
    """
    from ruamel.yaml.comments import CommentedSeq
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    from medi.catalog import Catalog, working_copy

    working_copy(root, command="medi instructions draft")
    catalog, book = Catalog.load(root), InstructionBook.load(root)
    wanted = tasks or [s.stem for s in catalog.specs.values() if s.adapter == SUPERNI]
    path = root / "instructions" / "superni.yaml"
    if not path.exists():
        path.write_text(SUPERNI_HEADER, encoding="utf-8")
    yaml, data = read_instruction_file(path)
    written = []
    for task in sorted(wanted):
        name = f"{SUPERNI}/{task}"
        if name not in catalog.specs:
            raise MediError(f"{name} is not a Super-NI train task of the catalog")
        task_file = tasks_dir / f"{task}.json"
        if name in book.entries or not task_file.is_file():
            continue
        try:
            meta = json.loads(task_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise MediError(f"{task_file}: not a readable task file ({exc})") from exc
        body = draft_entry(meta, book.drafting, f"{task_file.name}")
        entry = CommentedMap(body)
        entry["query"] = CommentedSeq(DoubleQuotedScalarString(w) for w in body["query"])
        data[name] = entry
        if len(data) > 1:
            data.yaml_set_comment_before_after_key(name, before="\n")
        written.append(name)
    write_instruction_file(yaml, data, path)
    return written


SUPERNI_HEADER = """\
# Sources: Super-NI train tasks (allenai/natural-instructions tasks/<task>.json).
# Drafts written by `medi instructions draft` from each task's Categories, Domains and Definition with the
# tables in _superni_drafting.yaml; review them with `medi review`. Tasks without an entry here are drafted
# the same way at build time. Super-NI texts are all task inputs, so one (symmetric) wording list per task.
"""


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip().replace(" :", ":")
    return text if text.endswith(":") else text + ":"


def attach(triples: list[Triple], wordings: SourceInstructions, mode: str, seed: int) -> None:
    """Set each triple's (query, pos, neg) instructions: the primary, a per-row paraphrase, or none (``none``, an
    ablation: every instruction empty). A row without a negative (empty text) gets no negative instruction."""
    for triple in triples:
        if mode == "paraphrase":
            rng = row_rng(seed, triple.row_id + "#instruction")
            query, document = rng.choice(wordings.query), rng.choice(wordings.document)
        elif mode == "none":
            query = document = ""
        else:
            query, document = wordings.query[0], wordings.document[0]
        triple.instructions = (query, document, document if triple.neg else "")


def _represent_none(representer: RoundTripRepresenter, data: None):
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


def instruction_yaml(text: str = "") -> YAML:
    """A round-trip YAML that writes a file back as it was: comments, order, quotes, its list indentation, ``null``."""
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long wording onto two lines
    indented = re.search(r"^( +)- ", text, re.MULTILINE)
    sequence = len(indented.group(1)) if indented else 2  # "  query:" then "    - " is sequence 4, offset 2
    yaml.indent(mapping=2, sequence=sequence, offset=sequence - 2)
    yaml.representer.add_representer(type(None), _represent_none)
    return yaml


def read_instruction_file(path: Path):
    """``(yaml, data)``: a file of ``instructions/`` loaded for editing (data is a ruamel CommentedMap)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    yaml = instruction_yaml(text)
    try:
        data = yaml.load(text)
    except Exception as exc:  # ruamel raises several unrelated error types for bad YAML
        raise MediError(f"{path}: invalid YAML: {exc}") from exc
    if data is None:  # empty, or comments only: keep the comments as the new mapping's header
        data = CommentedMap()
        header = [re.sub(r"^# ?", "", line) for line in text.splitlines() if line.startswith("#")]
        if header:
            data.yaml_set_start_comment("\n".join(header))
    return yaml, data


def write_instruction_file(yaml: YAML, data, path: Path) -> None:
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    path.write_text(buffer.getvalue(), encoding="utf-8")
