"""Instruct: attach to every text the instruction written for its source in ``instructions/*.yaml``.

Super-NI tasks without an explicit entry get a draft rendered from their own task file (Categories,
Domains) with the tables in ``instructions/_superni_drafting.yaml``; the manifest marks such drafts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from medi.adapters import row_rng
from medi.catalog import SUPERNI, SourceSpec, load_yaml
from medi.errors import MediError, explain_validation
from medi.schema import Triple

DRAFTING_FILE = "_superni_drafting.yaml"


class InstructionEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: list[str]
    document: list[str] | None = None
    status: Literal["draft", "reviewed", "rejected"] = "draft"
    reviewer: str | None = None
    date: date | str | None = None
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
    """Wordings for a Super-NI task from its first Category and Domain and the drafting tables."""
    default = tables.get("default", {})
    category = (meta.get("Categories") or [""])[0]
    domain_key = ((meta.get("Domains") or [""])[0] or "").split(" -> ")[0].strip()
    by_category = tables.get("categories", {}).get(category) or {}
    fields = {
        "text_type": by_category.get("text_type") or default.get("text_type", "text"),
        "objective": by_category.get("objective") or default.get("objective", "retrieving similar texts"),
        "domain": tables.get("domains", {}).get(domain_key, default.get("domain", "")),
    }
    templates = tables.get("templates") or ["Represent the {domain} {text_type} for {objective}:"]
    return [_tidy(t.format(**fields)) for t in templates]


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip().replace(" :", ":")
    return text if text.endswith(":") else text + ":"


def attach(triples: list[Triple], wordings: SourceInstructions, mode: str, seed: int) -> None:
    """Set each triple's (query, pos, neg) instructions: the primary, or a per-row paraphrase."""
    for triple in triples:
        if mode == "paraphrase":
            rng = row_rng(seed, triple.row_id + "#instruction")
            query, document = rng.choice(wordings.query), rng.choice(wordings.document)
        else:
            query, document = wordings.query[0], wordings.document[0]
        triple.instructions = (query, document, document)
