"""Normalize: clean whitespace and Unicode, cap lengths, drop rows that carry no text.

Each reason for a drop or change is counted; nothing is dropped silently.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from medi.schema import Record

_SPACES = re.compile(r"[^\S\n]+")
_NEWLINES = re.compile(r"\n{3,}")


@dataclass
class NormalizeReport:
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    changed: Counter = field(default_factory=Counter)


_NEEDS_WORK = re.compile(r"[^\x20-\x7e\n]|  |\n\n\n| \n|\n |^\s|\s$")  # printable ASCII already clean: as is


def _already_clean(text: str) -> bool:
    """Printable ASCII on one line, single spaces, nothing to strip: what most rows are (C-speed checks first)."""
    if text.isascii() and text.isprintable():
        return "  " not in text and text[:1] != " " and text[-1:] != " "
    return not _NEEDS_WORK.search(text)


def clean_text(text: str, max_chars: int) -> tuple[str, bool]:
    """NFC, no control characters, single spaces, at most two newlines in a row; (text, was truncated)."""
    if len(text) <= max_chars and _already_clean(text):
        return text, False
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    text = _NEWLINES.sub("\n\n", _SPACES.sub(" ", text))
    text = "\n".join(line.strip() for line in text.split("\n")).strip()
    if len(text) > max_chars:
        return text[:max_chars].rstrip(), True
    return text, False


def normalize(records: Iterable[Record], report: NormalizeReport, max_chars: int = 8000) -> Iterator[Record]:
    """Yield cleaned records; count drops (``empty_query``, ``empty_pos``, ``no_output``) and changes."""
    for record in records:
        if _untouched(record, max_chars):
            report.kept += 1
            yield record
            continue
        cleaned = _clean_record(record, report, max_chars)
        if cleaned is not None:
            report.kept += 1
            yield cleaned


def _untouched(record: Record, max_chars: int) -> bool:
    """A pair or triplet whose every text is non-empty, within the cap and already clean: kept as it is."""
    query, pos, neg = record.query, record.pos, record.neg
    if not query or not pos or record.outputs or len(query) > max_chars or len(pos) > max_chars:
        return False
    if not (_already_clean(query) and _already_clean(pos)):
        return False
    return neg is None or (bool(neg) and len(neg) <= max_chars and _already_clean(neg))


def _clean_record(record: Record, report: NormalizeReport, max_chars: int) -> Record | None:
    def clean(text: str) -> str:
        result, truncated = clean_text(text, max_chars)
        if truncated:
            report.changed["truncated_text"] += 1
        return result

    query = clean(record.query)
    if not query:
        report.dropped["empty_query"] += 1
        return None
    pos = clean(record.pos) if record.pos is not None else None
    if record.pos is not None and not pos:
        report.dropped["empty_pos"] += 1
        return None
    neg = clean(record.neg) if record.neg is not None else None
    if record.neg is not None and not neg:
        report.changed["empty_neg_to_mine"] += 1
        neg = None
    outputs = tuple(o for o in (clean(o) for o in record.outputs) if o)
    if len(outputs) < len(record.outputs):
        report.changed["empty_output_removed"] += len(record.outputs) - len(outputs)
    if record.pos is None and not outputs:
        report.dropped["no_output"] += 1
        return None
    return Record(row_id=record.row_id, query=query, pos=pos, neg=neg, outputs=outputs)


_PUNCT = re.compile(r"[^\w\s]|_", re.UNICODE)
_WS = re.compile(r"\s+")


_ASCII_FORM = bytes(ord(chr(i).lower()) if chr(i).isalnum() else 32 for i in range(256))


def canonical(text: str) -> str:
    """The comparison form of a text: NFKC, casefolded, punctuation stripped, digits kept, single spaces."""
    if text.isascii():  # the same form, by a byte table (NFKC and casefold are lower() on ASCII)
        return b" ".join(text.encode().translate(_ASCII_FORM).split()).decode()
    return unicode_canonical(text)


def unicode_canonical(text: str) -> str:
    """``canonical`` for any text, the long way (the ASCII byte table must agree with it)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _WS.sub(" ", _PUNCT.sub(" ", text)).strip()


def canonical_word_count(text: str) -> int:
    """``len(canonical(text).split())``, without building the form for ASCII text."""
    if text.isascii():
        return len(text.encode().translate(_ASCII_FORM).split())
    return len(canonical(text).split())
