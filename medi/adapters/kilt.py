"""KILT tasks from the upstream files: each task row's input joined with the text of its first provenance passage.

A KILT task row (``MIRROR/KILT/<task>-train-kilt.jsonl``, or the Hub's Parquet of the same rows) names its evidence
only by Wikipedia page id and paragraph range (``output[].provenance[].wikipedia_id / start_paragraph_id /
end_paragraph_id``); the text lives in the knowledge source (``kilt_knowledgesource.json``, one page per line:
``wikipedia_id``, ``wikipedia_title``, ``text`` = list of paragraphs, 5.9M pages, 35 GB). The adapter reads the task
file once to collect the pages and paragraphs its rows need, streams the knowledge source once keeping only those
paragraphs (memory grows with the needed pages, never with the 5.9M others), then reads the task file again and
yields ``Record(query=input, pos=title + newline + paragraphs start..end)``. Rows with no provenance, or whose page or
paragraph the knowledge source lacks, are Problems with file and line.

A hand-made derived row ``{"input", "passage"}`` is taken as it is, so a derived file (``options.derived``, which
fetch prefers when a data dir holds it) needs no knowledge source. Options: ``knowledge_source`` (default
``kilt_knowledgesource.json``; a relative path is taken from the task file's folder), ``derived``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from medi.adapters import Adapted, RowOrProblem, adapter
from medi.adapters.table import jsonl_rows, parquet_rows
from medi.catalog import SourceSpec
from medi.errors import MediError, Problem, SourceError
from medi.schema import Record

KNOWLEDGE_SOURCE = "kilt_knowledgesource.json"
# A page line starts {"_id": "290", "wikipedia_id": "290", ...}: read the id without parsing the whole page (pages
# are kilobytes of JSON; the anchors further on hold the ids of linked pages, so only the line's start is matched).
PAGE_ID = re.compile(rb'\A\s*\{\s*(?:"_id"\s*:\s*"[^"]*"\s*,\s*)?"wikipedia_id"\s*:\s*"?([^",}\s]+)')

Needed = dict[str, set[int]]  # wikipedia_id -> paragraph ids the selected rows use


@dataclass
class Page:
    title: str
    paragraphs: dict[int, str]  # only the paragraphs some row needs
    count: int  # paragraphs on the page


@dataclass
class KnowledgePages:
    """The needed pages of one pass over the knowledge source, and facts about the file."""

    path: Path
    pages: dict[str, Page] = field(default_factory=dict)
    lines: int = 0
    bytes: int = 0
    sha256: str = ""
    problems: list[Problem] = field(default_factory=list)

    def summary(self, needed: Needed) -> dict:
        return {
            "file": str(self.path),
            "bytes": self.bytes,
            "sha256": self.sha256,
            "pages_in_file": self.lines,
            "pages_needed": len(needed),
            "pages_found": len(self.pages),
        }


@adapter("kilt")
def read_kilt(path: Path, spec: SourceSpec, seed: int) -> Adapted:
    needed = needed_paragraphs(task_rows(path, spec.name))
    if not needed:  # a derived {input, passage} file, or nothing to join
        return Adapted(rows=_records(path, spec.name, None), meta={"kilt_input": "derived rows"})
    source_path = knowledge_source_path(path, spec)
    knowledge = load_pages(source_path, needed, spec.name)
    meta = {"kilt_input": "upstream rows", "knowledge_source": knowledge.summary(needed)}
    return Adapted(rows=_records(path, spec.name, knowledge), meta=meta)


def _configured_knowledge_source(task_file: Path, spec: SourceSpec) -> Path | None:
    """Where ``options.knowledge_source`` points (relative to the task file), or None when it is not a path."""
    option = spec.options.get("knowledge_source") or KNOWLEDGE_SOURCE
    if not isinstance(option, str):
        return None
    return Path(option) if Path(option).is_absolute() else task_file.parent / option


def _knowledge_source_input(task_file: Path, spec: SourceSpec) -> list[Path]:
    found = _configured_knowledge_source(task_file, spec)
    return [found] if found else []


read_kilt.extra_inputs = _knowledge_source_input


def knowledge_source_path(task_file: Path, spec: SourceSpec) -> Path:
    found = _configured_knowledge_source(task_file, spec)
    if found is None:
        option = spec.options.get("knowledge_source")
        raise MediError(f"{spec.file}: options.knowledge_source must be a path, not {option!r}")
    if not found.is_file():
        raise SourceError(
            spec.name,
            "missing_file",
            f"KILT knowledge source not found at {found} (needed to join {task_file.name} with its provenance "
            f"passages; download http://dl.fbaipublicfiles.com/KILT/kilt_knowledgesource.json beside the task file, "
            f"or give a derived {{input, passage}} file: options.derived)",
            found,
        )
    return found


def task_rows(path: Path, source: str) -> Iterator[tuple[str, object] | Problem]:
    """(locator, row) per task row: ``L<line>`` for JSONL, ``R<index>`` for Parquet; Problems for bad lines."""
    return parquet_rows(path, source) if path.suffix == ".parquet" else jsonl_rows(path)


def needed_paragraphs(rows) -> Needed:
    """The paragraphs each page must supply: the first provenance's start..end of every upstream row."""
    needed: Needed = {}
    for item in rows:
        if isinstance(item, Problem) or not isinstance(item[1], dict):
            continue
        span = _span(item[1])
        if isinstance(span, tuple):
            page, start, end = span
            needed.setdefault(page, set()).update(range(start, end + 1))
    return needed


def load_pages(path: Path, needed: Needed, source: str = "kilt") -> KnowledgePages:
    """One streaming pass over the knowledge source keeping only the needed pages' needed paragraphs.

    A line whose id is not needed is never parsed; the file's sha256 is computed on the way.
    """
    knowledge = KnowledgePages(path)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for line_number, line in enumerate(handle, start=1):
                digest.update(line)
                knowledge.bytes += len(line)
                if line.isspace():  # stops at the first other byte: no copy of a kilobyte-long page line
                    continue
                knowledge.lines += 1
                _keep_page(line, line_number, needed, knowledge)
    except OSError as exc:
        raise SourceError(source, "malformed_file", f"{path}: unreadable ({exc})", path) from exc
    knowledge.sha256 = digest.hexdigest()
    return knowledge


def _keep_page(line: bytes, line_number: int, needed: Needed, knowledge: KnowledgePages) -> None:
    match = PAGE_ID.match(line)
    if match and match.group(1).decode("utf-8", "replace") not in needed:
        return
    try:
        page = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        if match:  # a needed page that cannot be read; other unreadable lines cannot be told apart from unneeded
            # not a row: the task rows that need the page are each a problem of their own
            problem = Problem(str(knowledge.path), f"line {line_number}", f"invalid JSON: {exc}", rows=0)
            knowledge.problems.append(problem)
        return
    page_id = _page_id(page)
    if page_id not in needed or not isinstance(page.get("text"), list):
        return
    text = page["text"]
    wanted = {pid: text[pid] for pid in needed[page_id] if pid < len(text) and isinstance(text[pid], str)}
    knowledge.pages[page_id] = Page(str(page.get("wikipedia_title") or ""), wanted, len(text))


def _page_id(page: object) -> str | None:
    if not isinstance(page, dict):
        return None
    value = page.get("wikipedia_id", page.get("_id"))
    return None if value is None else str(value)


def _span(row: dict) -> tuple[str, int, int] | str:
    """(page id, start, end) of the row's first provenance, or why there is none."""
    for output in _listed(row.get("output")):
        for provenance in _listed(output.get("provenance")) if isinstance(output, dict) else []:
            if isinstance(provenance, dict) and provenance.get("wikipedia_id") not in (None, ""):
                start = provenance.get("start_paragraph_id")
                end = provenance.get("end_paragraph_id", start)
                end = start if end is None else end
                if not isinstance(start, int) or not isinstance(end, int) or start < 0 or end < start:
                    return f"provenance paragraph range {start!r}..{end!r} is not a range of paragraph ids"
                return str(provenance["wikipedia_id"]), start, end
    return "no provenance (no output names a Wikipedia page)"


def _listed(value: object) -> list:
    """A list field as a list: KILT's ``output`` and ``provenance`` are lists; any other value names nothing."""
    return value if isinstance(value, list) else []


def _records(path: Path, source: str, knowledge: KnowledgePages | None) -> Iterator[RowOrProblem]:
    if knowledge is not None:
        yield from knowledge.problems
    for item in task_rows(path, source):
        if isinstance(item, Problem):
            yield item
            continue
        locator, row = item
        yield _record(row, f"{source}:{locator}", str(path), _where(locator), knowledge)


def _where(locator: str) -> str:
    return f"line {locator[1:]}" if locator.startswith("L") else f"row {locator[1:]}"


def _record(row: object, row_id: str, file: str, where: str, knowledge: KnowledgePages | None) -> RowOrProblem:
    if not isinstance(row, dict):
        return Problem(file, where, f"expected an object, got {type(row).__name__}")
    query = row.get("input")
    if not isinstance(query, str) or not query.strip():
        hint = " (KILT's TriviaQA files leave it out: fill it with KILT's scripts/get_triviaqa_input.py)"
        return Problem(file, where, f"no input text{hint if 'output' in row else ''}")
    if "output" not in row:
        passage = row.get("passage")
        if isinstance(passage, str):
            return Record(row_id=row_id, query=query, pos=passage)
        return Problem(file, where, "neither a KILT task row (output) nor a derived row (passage string)")
    span = _span(row)
    if isinstance(span, str):
        return Problem(file, where, span)
    passage, missing = _passage(knowledge, *span)
    if passage is None:
        return Problem(file, where, missing)
    return Record(row_id=row_id, query=query, pos=passage)


def _passage(knowledge: KnowledgePages | None, page_id: str, start: int, end: int) -> tuple[str | None, str]:
    """(title, newline, paragraphs start..end; "") or (None, what the knowledge source lacks)."""
    page = knowledge.pages.get(page_id) if knowledge else None
    if page is None:
        where = knowledge.path if knowledge else "the knowledge source"
        return None, f"provenance page {page_id} is not in {where}"
    missing = [pid for pid in range(start, end + 1) if pid not in page.paragraphs]
    if missing:
        listed = ", ".join(map(str, missing))
        return (
            None,
            f"page {page_id} ({page.title!r}) has {page.count} paragraphs; missing provenance paragraph(s) {listed}",
        )
    texts = [page.paragraphs[pid].strip() for pid in range(start, end + 1)]
    if start == 0 and texts and texts[0] == page.title.strip():  # paragraph 0 is the page's title line
        texts = texts[1:]
    return "\n".join([page.title.strip(), *texts]), ""
