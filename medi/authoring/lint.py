"""Lint the instruction templates: every catalog source checked, each finding with its file and line.

Errors (the build would refuse or the wording breaks the unified pattern) make ``medi instructions lint`` exit 1;
warnings point at wordings a reviewer should look at again, and at every entry still a draft (exit 0).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import ValidationError
from rapidfuzz import fuzz
from rapidfuzz.process import cdist

from medi.catalog import SUPERNI, Catalog, SourceSpec, project_root
from medi.errors import MediError, explain_validation
from medi.stages.instruct import DRAFTING_FILE, PATTERN, InstructionEntry, draft_superni, read_instruction_file

Level = Literal["error", "warning"]
MIN_WORDINGS = 3  # a primary and at least two paraphrases, as MEDI2 keeps per source
MIN_WORDS, MAX_CHARS = 6, 160
PARAPHRASE_TOO_CLOSE = 92  # rapidfuzz ratio of a paraphrase to its primary
NEAR_DUPLICATE = 90  # rapidfuzz ratio of two unrelated sources' primaries
PLACEHOLDER = re.compile(r"\{[^}]*\}|<[^>]*>|\b(?:TODO|TBD|FIXME|XXX)\b|\.\.\.|…")
# name words that say nothing about which dataset a source is (st/yahoo_answers_title_answer -> {yahoo})
GENERIC_NAME_WORDS = frozenset((
    "pairs", "pair", "train", "triplets", "triplet", "data", "embedding", "toy", "title", "titles", "question",
    "questions", "answer", "answers", "text", "body", "abstract", "abstracts", "duplicates", "duplicate", "captions",
    "citations", "top5", "snippets", "splitted", "multikilt",
))  # fmt: skip


@dataclass(frozen=True)
class Finding:
    level: Level
    file: str
    line: int | None
    source: str
    code: str
    message: str

    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass
class LintReport:
    findings: list[Finding] = field(default_factory=list)
    sources: int = 0  # catalog sources checked
    entries: int = 0  # instruction entries read
    drafted: int = 0  # Super-NI tasks without an entry (drafted from their task file at build time)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    def as_dict(self) -> dict:
        return {
            "sources": self.sources,
            "entries": self.entries,
            "drafted_at_build_time": self.drafted,
            "errors": len(self.errors),
            "warnings": len(self.findings) - len(self.errors),
            "findings": [asdict(f) for f in self.findings],
        }


@dataclass
class _Entry:
    name: str
    file: str
    node: object  # the ruamel map, for line numbers
    entry: InstructionEntry
    start: int  # 1-based line of the entry's name

    def line(self, key: str | None = None, index: int | None = None) -> int:
        """1-based line of the entry, of one of its keys, or of one wording of a list."""
        if key is None:
            return self.start
        if index is not None:
            return self.node[key].lc.item(index)[0] + 1
        return self.node.lc.key(key)[0] + 1 if key in self.node else self.line()


def lint(root: Path | None = None) -> LintReport:
    """Check ``instructions/`` of ``root`` against the catalog of ``root``."""
    root = root or project_root()
    catalog = Catalog.load(root)
    report = LintReport(sources=len(catalog.specs))
    entries = _read_entries(root, report)
    report.entries = len(entries)
    drafting = root / "instructions" / DRAFTING_FILE
    for name, spec in sorted(catalog.specs.items()):
        if name in entries:
            continue
        if spec.adapter == SUPERNI and drafting.exists():
            report.drafted += 1
        else:
            report.findings.append(
                Finding("error", f"instructions/{spec.family}.yaml", None, name, "missing", "no instruction entry")
            )
    for item in entries.values():
        spec = catalog.specs.get(item.name)
        if spec is None:
            report.findings.append(_at(item, "error", "unknown-source", "no such source in the catalog (sources/)"))
            continue
        report.findings.extend(_check_entry(item, spec))
    report.findings.extend(_near_duplicates(list(entries.values()), catalog))
    if drafting.exists():
        report.findings.extend(_check_drafting(drafting, root))
    report.findings.sort(key=lambda f: (f.file, f.line or 0, f.code))
    return report


def _read_entries(root: Path, report: LintReport) -> dict[str, _Entry]:
    entries: dict[str, _Entry] = {}
    for path in sorted((root / "instructions").glob("*.yaml")):
        if path.name.startswith("_"):
            continue
        file = str(path.relative_to(root))
        try:
            _, data = read_instruction_file(path)
        except MediError as exc:
            report.findings.append(Finding("error", file, None, "", "yaml", str(exc)))
            continue
        for name, node in data.items():
            line = data.lc.key(name)[0] + 1
            if name in entries:
                message = f"entry repeated: already in {entries[name].file}:{entries[name].line()}"
                report.findings.append(Finding("error", file, line, name, "duplicate-entry", message))
                continue
            try:
                entry = InstructionEntry(**(node or {}))
            except (ValidationError, TypeError) as exc:
                report.findings.append(Finding("error", file, line, name, "invalid", explain_validation(exc)))
                continue
            entries[name] = _Entry(name, file, node, entry, line)
    return entries


def _at(item: _Entry, level: Level, code: str, message: str, key=None, index=None) -> Finding:
    return Finding(level, item.file, item.line(key, index), item.name, code, message)


def _check_entry(item: _Entry, spec: SourceSpec) -> Iterator[Finding]:
    entry = item.entry
    excepted = entry.status == "reviewed" and bool((entry.note or "").strip())
    for key in ("query", "document"):
        wordings = getattr(entry, key) or []
        for index, text in enumerate(wordings):
            for level, code, message in check_wording(text, excepted):
                yield _at(item, level, code, f"{key}[{index}]: {message}", key, index)
        if wordings:
            yield from _check_paraphrases(item, key, wordings)
    if spec.symmetric and entry.document:
        yield _at(item, "warning", "unused-document", "symmetric source: the build uses the query wordings for "
                  "every text, so the document wordings are never used", "document")  # fmt: skip
    if not spec.symmetric:
        if not entry.document:
            yield _at(item, "error", "no-document", "asymmetric source needs document wordings", "query")
        elif shared := set(entry.query) & set(entry.document):
            yield _at(item, "error", "query-equals-document", f"asymmetric source: query and document share the "
                      f"wording {sorted(shared)[0]!r}; say what each side is", "document")  # fmt: skip
    yield from _check_status(item)


def check_wording(text: str, excepted: bool = False) -> list[tuple[Level, str, str]]:
    """Problems of one wording: (level, code, message). ``excepted``: a reviewed entry with a note may break the
    pattern (the note says why); placeholders and stray whitespace are errors regardless."""
    found: list[tuple[Level, str, str]] = []
    if not excepted:
        if not text.startswith("Represent "):
            found.append(("error", "pattern", 'must start with "Represent " (or be reviewed with a note)'))
        if not text.endswith(":"):
            found.append(("error", "pattern", 'must end with ":" (or be reviewed with a note)'))
        if not found and not PATTERN.match(text):
            found.append(("error", "pattern", 'needs a text type and an objective: "Represent the (domain) (text '
                          'type) for (objective):"'))  # fmt: skip
    if PLACEHOLDER.search(text):
        found.append(("error", "placeholder", f"placeholder left in {PLACEHOLDER.search(text).group(0)!r}"))
    if text != text.strip() or "  " in text or " :" in text or "\n" in text:
        found.append(("error", "whitespace", "stray whitespace"))
    if len(text.split()) < MIN_WORDS:
        found.append(("warning", "length", f"only {len(text.split())} words; say the text type and objective"))
    if len(text) > MAX_CHARS:
        found.append(("warning", "length", f"{len(text)} characters (over {MAX_CHARS}); keep it one short clause"))
    return found


def _check_paraphrases(item: _Entry, key: str, wordings: list[str]) -> Iterator[Finding]:
    if len(wordings) < MIN_WORDINGS:
        yield _at(item, "warning", "paraphrases", f"{key}: {len(wordings)} wording(s); want a primary and at "
                  f"least {MIN_WORDINGS - 1} paraphrases", key)  # fmt: skip
    seen: dict[str, int] = {}
    for index, text in enumerate(wordings):
        if text in seen:
            yield _at(item, "error", "duplicate-wording", f"{key}[{index}] repeats {key}[{seen[text]}]", key, index)
            continue
        seen[text] = index
        score = fuzz.ratio(text, wordings[0])
        if index and score >= PARAPHRASE_TOO_CLOSE:
            yield _at(item, "warning", "paraphrase-too-close", f"{key}[{index}] is {score:.0f}% like the primary; "
                      "a paraphrase should reword it", key, index)  # fmt: skip


def _check_status(item: _Entry) -> Iterator[Finding]:
    entry = item.entry
    if entry.status in ("reviewed", "rejected"):
        if not (entry.reviewer or "").strip():
            yield _at(item, "error", "reviewer", f"status {entry.status} needs a reviewer", "status")
        if entry.date is None:
            yield _at(item, "error", "date", f"status {entry.status} needs a date (YYYY-MM-DD)", "status")
    if isinstance(entry.date, str):
        try:
            dt.date.fromisoformat(entry.date)
        except ValueError:
            yield _at(item, "error", "date", f"date {entry.date!r} is not YYYY-MM-DD", "date")
    if entry.status == "draft":
        yield _at(item, "warning", "draft", "draft wordings: a build that includes this source warns until they are "
                  "reviewed (medi review; --require-reviewed refuses it)", "status")  # fmt: skip
    if entry.status == "rejected":
        yield _at(item, "warning", "rejected", "rejected: the build refuses this source until it is rewritten",
                  "status")  # fmt: skip


def related(a: str, b: str) -> bool:
    """Two sources drawn from the same dataset (st/msmarco-triplets, flagembedding/msmarco)."""
    return a == b or bool(_name_words(a) & _name_words(b))


def _name_words(name: str) -> set[str]:
    words = set(re.split(r"[^a-z0-9]+", name.split("/", 1)[-1].lower())) - GENERIC_NAME_WORDS
    return {w for w in words if len(w) > 1 and not w.isdigit()}


def _near_duplicates(items: list[_Entry], catalog: Catalog) -> Iterator[Finding]:
    """Primary wordings of unrelated sources that read the same: one of them does not describe its data."""
    primaries = [(item, key) for item in items if item.name in catalog.specs for key in ("query", "document")
                 if getattr(item.entry, key)]  # fmt: skip
    texts = [getattr(item.entry, key)[0] for item, key in primaries]
    if len(texts) < 2:
        return
    scores = cdist(texts, texts, scorer=fuzz.ratio, score_cutoff=NEAR_DUPLICATE, workers=1)
    for i, j in zip(*scores.nonzero(), strict=True):
        (a, key_a), (b, key_b) = primaries[i], primaries[j]
        if i < j and not related(a.name, b.name):
            message = (f"{key_a}[0] is {scores[i, j]:.0f}% like the {key_b}[0] of unrelated source {b.name} "
                       f"({b.file}:{b.line(key_b, 0)}); name this source's own text type and domain")  # fmt: skip
            yield _at(a, "warning", "near-duplicate", message, key_a, 0)


def _check_drafting(path: Path, root: Path) -> Iterator[Finding]:
    """Every category of the Super-NI drafting tables renders a wording that passes the pattern."""
    _, tables = read_instruction_file(path)
    file = str(path.relative_to(root))
    for category in tables.get("categories") or {}:
        meta = {"Categories": [category], "Domains": []}
        for text in draft_superni(meta, tables):
            for level, code, message in check_wording(text):
                line = tables["categories"].lc.key(category)[0] + 1
                yield Finding(level, file, line, f"category {category}", code, f"draft {text!r}: {message}")
