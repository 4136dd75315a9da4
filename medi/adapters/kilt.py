"""KILT tasks from the upstream files: each task row's input joined with the text of its first provenance passage.

A KILT task row (``MIRROR/KILT/<task>-train-kilt.jsonl``, or the Hub's Parquet of the same rows) names its evidence
only by Wikipedia page id and paragraph range (``output[].provenance[].wikipedia_id / start_paragraph_id /
end_paragraph_id``); the text lives in the knowledge source (``kilt_knowledgesource.json``, one page per line:
``wikipedia_id``, ``wikipedia_title``, ``text`` = list of paragraphs, 5.9M pages, 35 GB).

One pass over the knowledge source serves every KILT task of a build, on any executor: it writes an index (page id
-> byte offset, length and line of the page's line) and the file's sha256 into the cache dir, keyed by the file's
path, size and mtime, under a file lock so concurrent workers build it once (``KnowledgeIndex``).

The join comes after the sample, for the kept rows alone. The reader's ``deferred`` rows carry, in place of the
passage, a span reference (``span_reference``: NUL, ``kilt span``, NUL, ``page <id> paragraphs <start> to <end>``)
that names the passage exactly: the sample key, the exact-duplicate count and the row ids come from (input, page id,
paragraph range). No reference reaches a release: the sample stage hands the rows it keeps to ``resolve`` before
normalize (a capped source its sample, an uncapped one its stream), and normalize would strip the NULs of any text
that got past it; a derived passage in that form is a problem. ``resolve`` reads, in blocks of ``BLOCK_ROWS`` rows,
only the pages they name, in file order (memory holds a block's pages and a few recent ones), and turns a row whose
page or paragraph the knowledge source lacks into a Problem with file and line. So a task of 2.28M rows of which a
few thousand are kept seeks a few thousand pages. Rows with no provenance (or no input) are Problems as they are
read. ``rows`` is every row joined (``resolve`` over the deferred rows), for every other reader (previews, tests).
The knowledge-source summary says ``pages_named`` (distinct pages named by every row read), ``pages_needed`` (by the
rows joined) and ``pages_found``.

What the sample stage counts over every row read sees the deferred rows: ``eval_exact_read`` (rows with a text equal
to an evaluation text) checks the inputs of unsampled rows, not their passages, and a row the join loses was still
offered to the sampler (the stage counts it as lost, not given). Decontamination of the kept rows (clean stage) checks
their real passages.

A hand-made derived row ``{"input", "passage"}`` is taken as it is, so a derived file (``options.derived``, which
fetch prefers when a data dir holds it) needs no knowledge source. Options: ``knowledge_source`` (default
``kilt_knowledgesource.json``; a relative path is taken from the task file's folder), ``derived``.
"""

from __future__ import annotations

import hashlib
import json
import re
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import BinaryIO

import numpy as np
import xxhash
from filelock import FileLock

from medi.adapters import Adapted, RowOrProblem, adapter
from medi.adapters.table import jsonl_rows, parquet_rows
from medi.atomic import atomic_write, write_text
from medi.catalog import SourceSpec, user_cache_dir
from medi.errors import MediError, Problem, SourceError
from medi.fetch import file_identity, remember_sha256
from medi.schema import Record

KNOWLEDGE_SOURCE = "kilt_knowledgesource.json"
# A page line starts {"_id": "290", "wikipedia_id": "290", ...}: read the id without parsing the whole page (pages
# are kilobytes of JSON; the anchors further on hold the ids of linked pages, so only the line's start is matched).
PAGE_ID = re.compile(rb'\A\s*\{\s*(?:"_id"\s*:\s*"[^"]*"\s*,\s*)?"wikipedia_id"\s*:\s*"?([^",}\s]+)')
INDEX_DIR = "kilt-index"  # under the cache dir
BLOCK_ROWS = 2048  # task rows whose pages are read together, in file order
RECENT_PAGES = 1024  # pages kept between blocks (rows of a task file often cite the same page in a run)
KEY, OFFSET, LENGTH, LINE = range(4)  # the index's rows: one column per page line, sorted by KEY
# A deferred row's passage: NUL never survives normalize (a control character), so no release text can hold it.
SPAN_MARK = "\x00kilt span\x00"
SPAN_REFERENCE = re.compile(r"\x00kilt span\x00page (.+) paragraphs (\d+) to (\d+)\Z", re.DOTALL)

_cache_home: Path | None = None


def use_cache_dir(cache_dir: Path | None) -> None:
    """Keep knowledge-source indexes under the build's cache dir (the Runner calls this in every process)."""
    global _cache_home
    _cache_home = cache_dir


@dataclass
class ReadCounts:
    """What this process read of knowledge sources: full passes (index builds) and the bytes of seeked pages."""

    passes: int = 0
    pass_bytes: int = 0
    page_reads: int = 0
    page_bytes: int = 0


READS = ReadCounts()


@dataclass
class Page:
    title: str
    text: list  # the page's paragraphs as the file has them


@adapter("kilt")
def read_kilt(path: Path, spec: SourceSpec, seed: int) -> Adapted:
    if not has_provenance(task_rows(path, spec.name)):  # a derived {input, passage} file, or nothing to join
        return Adapted(rows=_records(path, spec.name), meta={"kilt_input": "derived rows"})
    index = KnowledgeIndex.open(knowledge_source_path(path, spec), spec.name)
    summary = {"file": str(index.path), **index.facts}  # the page counts are added once rows are read and joined
    meta = {"kilt_input": "upstream rows", "knowledge_source": summary}
    resolve = partial(resolve_spans, index=index, file=str(path), summary=summary)
    deferred = _records(path, spec.name, summary)
    return Adapted(rows=resolve(_records(path, spec.name, summary)), meta=meta, deferred=deferred, resolve=resolve)


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


def has_provenance(rows) -> bool:
    """Whether some row names a provenance page (read up to the first that does: the first row of a task file)."""
    return any(isinstance(_row_span(item), tuple) for item in rows)


def _row_span(item) -> tuple[str, int, int] | str | None:
    if isinstance(item, Problem) or not isinstance(item[1], dict):
        return None
    return _span(item[1])


# --- the index: one pass over the knowledge source ----------------------------------------------------------------


def page_key(page_id: str) -> int:
    return xxhash.xxh3_64_intdigest(page_id.encode())


@dataclass
class KnowledgeIndex:
    """The knowledge source's page lines by page id (a keyed hash; the page read back confirms its id), and
    ``facts``: the file's bytes, sha256 and page lines, from the same pass."""

    path: Path
    rows: np.ndarray  # (4, pages) uint64: KEY, OFFSET, LENGTH, LINE; sorted by key, file order within a key
    facts: dict

    @classmethod
    def open(cls, path: Path, source: str = "kilt") -> KnowledgeIndex:
        """The index of ``path`` from the cache dir, built there first (once, whoever asks first) when the file is
        new or its size or mtime changed."""
        folder = (_cache_home or user_cache_dir()) / INDEX_DIR
        folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
        rows_path, facts_path = folder / f"{name}.npy", folder / f"{name}.json"
        with FileLock(folder / f"{name}.lock"):
            stored = _stored_facts(facts_path)
            if stored.get("identity") != file_identity(path):
                stored = build_index(path, rows_path, facts_path, source)
        rows = np.load(rows_path, mmap_mode="r") if stored["index_rows"] else np.zeros((4, 0), np.uint64)
        facts = {"bytes": stored["bytes"], "sha256": stored["sha256"], "pages_in_file": stored["pages_in_file"]}
        return cls(path, rows, facts)

    def lines_of(self, page_ids: list[str]) -> list[tuple[int, int, int, str]]:
        """(offset, length, line, page id) of every indexed line whose key is a wanted page's, in file order."""
        keys = np.array([page_key(p) for p in page_ids], dtype=np.uint64)
        first = np.searchsorted(self.rows[KEY], keys, side="left")
        last = np.searchsorted(self.rows[KEY], keys, side="right")
        found = [
            (int(self.rows[OFFSET, i]), int(self.rows[LENGTH, i]), int(self.rows[LINE, i]), page_id)
            for page_id, start, end in zip(page_ids, first.tolist(), last.tolist(), strict=True)
            for i in range(start, end)
        ]
        return sorted(found)


def _stored_facts(facts_path: Path) -> dict:
    try:
        return json.loads(facts_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def build_index(path: Path, rows_path: Path, facts_path: Path, source: str) -> dict:
    """One streaming pass: every page line's id, offset, length and line number, and the file's sha256. A line
    whose id is not at its start is parsed for it; a line with neither is not indexed (it cannot be told apart
    from an unneeded page)."""
    identity = file_identity(path)
    keys, offsets, lengths, lines = (array("Q") for _ in range(4))
    digest = hashlib.sha256()
    offset = pages = 0
    try:
        with path.open("rb") as handle:
            for line_number, line in enumerate(handle, start=1):
                digest.update(line)
                if not line.isspace():  # stops at the first other byte: no copy of a kilobyte-long page line
                    pages += 1
                    if (page_id := _line_page_id(line)) is not None:
                        keys.append(page_key(page_id))
                        offsets.append(offset)
                        lengths.append(len(line))
                        lines.append(line_number)
                offset += len(line)
    except OSError as exc:
        raise SourceError(source, "malformed_file", f"{path}: unreadable ({exc})", path) from exc
    if file_identity(path) != identity:
        raise SourceError(source, "malformed_file", f"{path}: changed while it was being read; build again", path)
    READS.passes += 1
    READS.pass_bytes += offset
    rows = np.array([np.frombuffer(c, dtype=np.uint64) for c in (keys, offsets, lengths, lines)]).reshape(4, -1)
    rows = np.ascontiguousarray(rows[:, np.argsort(rows[KEY], kind="stable")])
    with atomic_write(rows_path, "wb") as handle:
        np.save(handle, rows)
    facts = {
        "identity": identity,
        "bytes": offset,
        "sha256": digest.hexdigest(),
        "pages_in_file": pages,
        "index_rows": rows.shape[1],
    }
    write_text(facts_path, json.dumps(facts))  # last: its existence marks the index complete
    remember_sha256(path, identity, facts["sha256"], facts_path.parent.parent)
    return facts


def _line_page_id(line: bytes) -> str | None:
    if match := PAGE_ID.match(line):
        return match.group(1).decode("utf-8", "replace")
    try:
        return _page_id(json.loads(line))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _page_id(page: object) -> str | None:
    if not isinstance(page, dict):
        return None
    value = page.get("wikipedia_id", page.get("_id"))
    return None if value is None else str(value)


class PageReader:
    """The pages a block of task rows names, read through the index in file order; the most recent kept."""

    def __init__(self, index: KnowledgeIndex, handle: BinaryIO):
        self.index, self.handle = index, handle
        self.recent: OrderedDict[str, Page | None] = OrderedDict()
        self.reported: set[int] = set()  # lines already reported unreadable
        self.needed, self.found = array("Q"), array("Q")  # keys of the pages rows named and of those found

    def pages(self, page_ids: set[str]) -> tuple[dict[str, Page | None], list[Problem]]:
        wanted = {p: self.recent[p] for p in page_ids if p in self.recent}
        missing = sorted(page_ids - wanted.keys())
        read, problems = self._read(missing)
        for page_id in missing:
            wanted[page_id] = read.get(page_id)
            self.needed.append(page_key(page_id))
            if wanted[page_id] is not None:
                self.found.append(page_key(page_id))
        for page_id, page in wanted.items():
            self.recent[page_id] = page
            self.recent.move_to_end(page_id)
        while len(self.recent) > RECENT_PAGES:
            self.recent.popitem(last=False)
        return wanted, problems

    def _read(self, page_ids: list[str]) -> tuple[dict[str, Page], list[Problem]]:
        """The pages by id (a later line with the same id replaces an earlier one, as one pass would keep it)."""
        pages, problems = {}, []
        for offset, length, line_number, page_id in self.index.lines_of(page_ids) if page_ids else []:
            self.handle.seek(offset)
            line = self.handle.read(length)
            READS.page_reads += 1
            READS.page_bytes += length
            try:
                page = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                if line_number not in self.reported:  # not a row: the rows that need the page are problems too
                    self.reported.add(line_number)
                    problems.append(Problem(str(self.index.path), f"line {line_number}", f"invalid JSON: {exc}", 0))
                continue
            if _page_id(page) == page_id and isinstance(page.get("text"), list):
                pages[page_id] = Page(str(page.get("wikipedia_title") or ""), page["text"])
        return pages, problems

    def counts(self) -> dict:
        """Distinct pages the rows named, and of those the ones the knowledge source has."""
        return {"pages_needed": _distinct(self.needed), "pages_found": _distinct(self.found)}


def _distinct(keys: array) -> int:
    return len(np.unique(np.frombuffer(keys, dtype=np.uint64))) if keys else 0


# --- task rows joined with their passages ------------------------------------------------------------------------


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


def span_reference(page_id: str, start: int, end: int) -> str:
    """A deferred row's passage: names the page and paragraphs (``resolve_spans`` reads them). Its comparison form
    (``medi.stages.sample.text_form``: letters and digits) is ``kiltspanpage<id>paragraphs<start>to<end>``, one form a
    span for KILT's numeric page ids."""
    return f"{SPAN_MARK}page {page_id} paragraphs {start} to {end}"


def referenced_span(text: str | None) -> tuple[str, int, int] | None:
    """(page id, start, end) of a span reference, or None for any other text."""
    if text is None or not text.startswith(SPAN_MARK) or not (found := SPAN_REFERENCE.match(text)):
        return None
    return found[1], int(found[2]), int(found[3])


def _records(path: Path, source: str, summary: dict | None = None) -> Iterator[RowOrProblem]:
    """The task rows in file order: a task row's passage as a span reference (``summary``: None for a derived file;
    it gets ``pages_named`` when every row has been read)."""
    named = array("Q")
    for item in task_rows(path, source):
        row = item if isinstance(item, Problem) else _record(item, source, str(path), upstream=summary is not None)
        if summary is not None and isinstance(row, Record) and (span := referenced_span(row.pos)):
            named.append(page_key(span[0]))
        yield row
    if summary is not None:
        summary["pages_named"] = _distinct(named)


def resolve_spans(
    rows: Iterable[RowOrProblem], index: KnowledgeIndex, file: str, summary: dict
) -> Iterator[RowOrProblem]:
    """The rows with their span references replaced by the passages, block by block, each block's pages read first
    (in file order); other rows and problems pass as they are, in place. A row whose page or paragraphs the knowledge
    source lacks is a Problem with the task file's line; ``summary`` gets the page counts when every row is joined."""
    rows = iter(rows)
    with index.path.open("rb") as handle:
        reader = PageReader(index, handle)
        while block := list(islice(rows, BLOCK_ROWS)):
            spans = [referenced_span(row.pos) if isinstance(row, Record) else None for row in block]
            pages, problems = reader.pages({span[0] for span in spans if span})
            yield from problems
            for row, span in zip(block, spans, strict=True):
                yield row if span is None else _joined(row, span, pages.get(span[0]), index.path, file)
    summary.update(reader.counts())


def _joined(row: Record, span: tuple[str, int, int], page: Page | None, knowledge: Path, file: str) -> RowOrProblem:
    passage, missing = _passage(page, knowledge, *span)
    if passage is None:
        return Problem(file, _where(row.row_id.rsplit(":", 1)[1]), missing)
    return Record(row_id=row.row_id, query=row.query, pos=passage)


def _where(locator: str) -> str:
    return f"line {locator[1:]}" if locator.startswith("L") else f"row {locator[1:]}"


def _record(item: tuple[str, object], source: str, file: str, upstream: bool) -> RowOrProblem:
    """A task row with its passage as a span reference, or a derived row with its passage; a Problem when neither."""
    locator, row = item
    row_id, where = f"{source}:{locator}", _where(locator)
    if not isinstance(row, dict):
        return Problem(file, where, f"expected an object, got {type(row).__name__}")
    query = row.get("input")
    if not isinstance(query, str) or not query.strip():
        hint = " (KILT's TriviaQA files leave it out: fill it with KILT's scripts/get_triviaqa_input.py)"
        return Problem(file, where, f"no input text{hint if 'output' in row else ''}")
    if "output" not in row:
        passage = row.get("passage")
        if isinstance(passage, str) and passage.startswith(SPAN_MARK):
            return Problem(file, where, "the passage starts with medi's span-reference mark (NUL, 'kilt span', NUL)")
        if isinstance(passage, str):
            return Record(row_id=row_id, query=query, pos=passage)
        return Problem(file, where, "neither a KILT task row (output) nor a derived row (passage string)")
    span = _span(row)
    if isinstance(span, str):
        return Problem(file, where, span)
    if not upstream:  # not reached: a file with a valid span is read as upstream rows
        return Problem(file, where, "a KILT task row in a file read as derived rows: no knowledge source to join")
    return Record(row_id=row_id, query=query, pos=span_reference(*span))


def _passage(page: Page | None, knowledge: Path | None, page_id: str, start: int, end: int) -> tuple[str | None, str]:
    """(title, newline, paragraphs start..end; "") or (None, what the knowledge source lacks)."""
    if page is None:
        return None, f"provenance page {page_id} is not in {knowledge or 'the knowledge source'}"
    text = page.text
    missing = [pid for pid in range(start, end + 1) if pid >= len(text) or not isinstance(text[pid], str)]
    if missing:
        listed = ", ".join(map(str, missing))
        return (
            None,
            f"page {page_id} ({page.title!r}) has {len(text)} paragraphs; missing provenance paragraph(s) {listed}",
        )
    texts = [text[pid].strip() for pid in range(start, end + 1)]
    if start == 0 and texts and texts[0] == page.title.strip():  # paragraph 0 is the page's title line
        texts = texts[1:]
    return "\n".join([page.title.strip(), *texts]), ""
