"""Reviewer judgements of mined negatives: ``judgements/<source>.yaml`` in the project, one file per source.

A person reviewing a release's negatives (the review page's negatives view) marks a candidate text "actually
positive" or "really negative" for a query; ``medi review import`` stores these here and the next build's mine
stage applies them (a positive is never that query's negative and becomes an extra positive; a negative is allowed
even when the teacher suspects it). Shape (docs/CONTRACTS.md, 'Reviewer judgements')::

    # medi judgements: ...            <- the header medi's own files carry; medi edits no other file
    format: medi-judgements/1
    source: st/msmarco-triplets
    judgements:
      - query: "<exact release query text>"
        text: "<exact candidate text>"
        verdict: positive             # or negative
        reviewer: name                # optional
        date: 2026-12-06              # optional
        note: "..."                   # optional
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from medi.atomic import write_text
from medi.catalog import project_root
from medi.errors import MediError, explain_validation
from medi.yamlio import load_yaml

FORMAT = "medi-judgements/1"
FOLDER = "judgements"
VERDICTS = ("positive", "negative")
Verdict = Literal["positive", "negative"]
HEADER_MARK = "medi judgements:"  # first comment line of every file medi writes; medi edits no file without it
HEADER = (
    "medi judgements: reviewer verdicts on mined candidates of {source}, written by `medi review import`\n"
    "(shape: docs/CONTRACTS.md, 'Reviewer judgements'). The next build applies them: a positive is never the\n"
    "query's negative and becomes an extra positive; a negative stays allowed when the teacher suspects it."
)


class Judgement(BaseModel):
    """One verdict: is ``text`` a positive or a negative for ``query`` (exact release texts)?"""

    model_config = ConfigDict(extra="forbid")

    query: str
    text: str
    verdict: Verdict
    reviewer: str | None = None
    date: dt.date | None = None
    note: str | None = None

    @field_validator("query", "text")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty")
        return value


class JudgementsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str
    source: str
    judgements: list[dict] = []


def file_name(source: str) -> str:
    """``judgements/<source with / replaced by __>.yaml``, relative to the project root."""
    return f"{FOLDER}/{source.replace('/', '__')}.yaml"


@dataclass
class Judgements:
    """The judgements of one source (empty when it has no file)."""

    source: str
    file: Path | None = None
    entries: list[Judgement] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._verdicts = {(j.query, j.text): j.verdict for j in self.entries}

    def __len__(self) -> int:
        return len(self._verdicts)

    def __bool__(self) -> bool:
        return bool(self._verdicts)

    def verdict(self, query: str, text: str) -> Verdict | None:
        return self._verdicts.get((query, text))

    def positives(self, query: str) -> list[str]:
        """Texts judged positive for ``query``, in file order."""
        return [text for (q, text), verdict in self._verdicts.items() if q == query and verdict == "positive"]

    def negatives(self, query: str) -> list[str]:
        """Texts judged negative for ``query`` (allowed as its negatives even when the teacher suspects them)."""
        return [text for (q, text), verdict in self._verdicts.items() if q == query and verdict == "negative"]

    def fingerprint(self) -> str:
        """A hash of the verdicts (not reviewer, date or note), for the mine stage's config: a changed verdict
        reruns mining, a file edited without changing a verdict does not. ``""`` when there are none, so a source
        without judgements keeps the stage config (and cache) it had before judgements existed."""
        if not self._verdicts:
            return ""
        canonical = json.dumps(sorted([q, t, v] for (q, t), v in self._verdicts.items()), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def load_judgements(root: Path | None, source: str) -> Judgements:
    """The judgements of ``source`` under ``root`` (default ``project_root()``); empty when there is no file. A
    malformed file is a MediError naming the file and the entry."""
    path = (root or project_root()) / file_name(source)
    if not path.is_file():
        return Judgements(source)
    return Judgements(source, path, _entries(load_yaml(path), path, source))


def _entries(data, path: Path, source: str) -> list[Judgement]:
    if not isinstance(data, dict):
        raise MediError(f"{path}: expected a mapping with format, source and judgements (docs/CONTRACTS.md)")
    try:
        body = JudgementsFile(**data)
    except (ValidationError, TypeError) as exc:
        raise MediError(f"{path}: {explain_validation(exc)}") from exc
    if body.format != FORMAT:
        raise MediError(f"{path}: format {body.format!r} is not {FORMAT!r}")
    if body.source != source:
        raise MediError(f"{path}: source {body.source!r}, but this file holds the judgements of {source!r}")
    entries, seen = [], {}
    for index, raw in enumerate(body.judgements):
        where = f"{path}: judgements[{index}]"
        try:
            entry = Judgement(**raw)
        except (ValidationError, TypeError) as exc:
            raise MediError(f"{where}: {explain_validation(exc)}") from exc
        key = (entry.query, entry.text)
        if key in seen and seen[key][1] != entry.verdict:
            raise MediError(
                f"{where}: judged {entry.verdict}, but judgements[{seen[key][0]}] judged the same query and text "
                f"{seen[key][1]} (query {_short(entry.query)}, text {_short(entry.text)})"
            )
        seen.setdefault(key, (index, entry.verdict))
        entries.append(entry)
    return entries


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


# ---------------------------------------------------------------- writing (medi review import)


@dataclass
class Recorded:
    """What ``record_judgements`` did to one source's file."""

    file: str
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    positives: int = 0  # verdicts given, by kind
    negatives: int = 0


def record_judgements(
    root: Path, source: str, judgements: Iterable[Judgement], *, dry_run: bool = False
) -> tuple[Recorded, str]:
    """Merge ``judgements`` into ``root/judgements/<source>.yaml`` (round trip: comments and order kept; a verdict
    on a query and text already in the file replaces it in place). Returns what changed and the new file text;
    writes it unless ``dry_run``. A file without medi's header was not written by medi and is refused."""
    path = root / file_name(source)
    yaml, data = _read_for_edit(path, source)
    result = Recorded(file_name(source))
    items: CommentedSeq = data["judgements"]
    where = {(str(node["query"]), str(node["text"])): node for node in items}
    for entry in judgements:
        if entry.verdict == "positive":
            result.positives += 1
        else:
            result.negatives += 1
        node = where.get((entry.query, entry.text))
        if node is None:
            node = where[(entry.query, entry.text)] = _node(entry)
            items.append(node)
            result.added += 1
        elif _same(node, entry):
            result.unchanged += 1
        else:
            for key, value in _node(entry).items():
                node[key] = value
            for key in [k for k in node if k not in _node(entry)]:
                del node[key]
            result.changed += 1
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    text = buffer.getvalue()
    _entries(_reload(text), path, source)  # what is written must load back
    if not dry_run:
        save_judgements(root, result, text)
    return result, text


def save_judgements(root: Path, recorded: Recorded, text: str) -> None:
    """Write a file ``record_judgements(..., dry_run=True)`` prepared, when it changes anything (whole or not)."""
    if recorded.added or recorded.changed:
        path = root / recorded.file
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, text)


def _read_for_edit(path: Path, source: str) -> tuple[YAML, CommentedMap]:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # a long text stays on one line
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.representer.ignore_aliases = lambda data: True  # one date shared by many entries: no &id001 / *id001
    if not path.exists():
        data = CommentedMap([("format", FORMAT), ("source", source), ("judgements", CommentedSeq())])
        data.yaml_set_start_comment(HEADER.format(source=source))
        return yaml, data
    text = path.read_text(encoding="utf-8")
    if not text.lstrip().startswith(f"# {HEADER_MARK}"):
        raise MediError(
            f"{path}: not written by medi (its first line is not the '# {HEADER_MARK} ...' header), so medi will "
            "not edit it; move it aside, or add the header to let medi review import merge into it"
        )
    try:
        data = yaml.load(text)
    except Exception as exc:  # ruamel raises several unrelated error types for bad YAML
        raise MediError(f"{path}: invalid YAML: {exc}") from exc
    _entries(_reload(text), path, source)
    if data.get("judgements") is None:
        data["judgements"] = CommentedSeq()
    return yaml, data


def _reload(text: str):
    return YAML(typ="safe", pure=True).load(text)


def _node(entry: Judgement) -> CommentedMap:
    node = CommentedMap()
    node["query"] = DoubleQuotedScalarString(entry.query)
    node["text"] = DoubleQuotedScalarString(entry.text)
    node["verdict"] = entry.verdict
    for key in ("reviewer", "date", "note"):
        if (value := getattr(entry, key)) is not None:
            node[key] = value if key == "date" else DoubleQuotedScalarString(value)
    return node


def _same(node: CommentedMap, entry: Judgement) -> bool:
    fresh = _node(entry)
    return set(node) == set(fresh) and all(str(node[k]) == str(fresh[k]) for k in fresh)
