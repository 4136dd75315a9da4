"""Mine: turn records into (query, positive, negative) triples.

Super-NI tasks (rows with outputs, no positive) are paired by INSTRUCTOR's rules within the task:
- classification-like tasks: positive = the most similar input with a shared label, negative = the most
  similar input with no shared label;
- generation tasks: positive maximises cos(x_i, x_j) + cos(y_i, y_j), negative maximises
  cos(x_i, x_j) - cos(y_i, y_j). Both are inner products of concatenated vectors, [x, y]·[x', ±y'], so one
  exact faiss search answers each.

Pair sources get a hard negative from the source's own texts where a row has none: the most similar
candidate that is not the query, not its positive, not a near-duplicate of either, and scores below
(1 - relative_margin) x the positive's score. The window widens (x4) when the filter empties it; a row still
without a negative gets a random in-source text, flagged ``fallback``.

Ablations (``negatives_from``): ``random`` gives every row a seeded random in-source negative under the same
validity rules instead of the hardest one (a given negative is replaced too); ``none`` gives no negative (an empty
text, origin ``none``: in-batch negatives only). Positives are chosen as by default either way.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from rapidfuzz import fuzz

from medi.adapters import row_rng
from medi.normalize import canonical
from medi.schema import Record, Triple
from medi.search import Searcher

Accept = Callable[[int, int, float], bool]  # (row, candidate, score) -> usable
NEGATIVES_FROM = ("mined", "random", "none")
FIRST_K = 1  # candidates below the ceiling a row gets first on exact search (most take the first)


@dataclass
class MineConfig:
    mode: str = "auto"  # auto | classification | generation (a source's options.mining overrides)
    window: int = 32
    max_window: int | None = None  # None: widen up to the whole corpus
    relative_margin: float = 0.05
    absolute_margin: float | None = None  # when set, used instead of the relative margin
    near_duplicate: float = 95.0  # rapidfuzz ratio (0-100) on canonical text
    classification_max_labels: int = 100
    classification_max_label_share: float = 0.2
    min_task_rows: int = 3
    replace_negatives: bool = False
    # where negatives come from, an ablation switch: mined (hard negatives, the default), random (a seeded random
    # in-source text; a given negative is replaced too) or none (no negative: empty neg text, in-batch only)
    negatives_from: str = "mined"
    index: str = "flat"
    seed: int = 0
    # a source whose given negatives all stay has nothing to mine: embed a seeded sample of this many rows for the
    # pos / neg scores, or none (0: the encoder is not even loaded), or every row (None)
    score_rows: int | None = 0

    def __post_init__(self) -> None:
        if self.negatives_from not in NEGATIVES_FROM:
            raise ValueError(f"negatives_from must be one of {', '.join(NEGATIVES_FROM)}, not {self.negatives_from!r}")
        if self.score_rows is not None and self.score_rows < 0:
            raise ValueError(f"score_rows must be 0 or more (or null: every row), not {self.score_rows}")


@dataclass
class MineReport:
    """What mining kept, dropped and how, for one source."""

    mode: str = "pairs"
    negatives_from: str = "mined"  # the rule that made the negatives (MineConfig.negatives_from)
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    pos_origin: Counter = field(default_factory=Counter)
    neg_origin: Counter = field(default_factory=Counter)
    widened: int = 0
    scored: int | None = None  # rows scored, when only a sample was (given negatives, nothing to mine)
    pos_scores: list[float] = field(default_factory=list)
    neg_scores: list[float] = field(default_factory=list)

    def add(self, triple: Triple) -> None:
        self.kept += 1
        self.pos_origin[triple.pos_origin] += 1
        self.neg_origin[triple.neg_origin] += 1
        if triple.pos_score is not None and triple.neg_score is not None:  # unscored rows: see score_rows
            self.pos_scores.append(triple.pos_score)
            self.neg_scores.append(triple.neg_score)

    def summary(self) -> dict:
        pos, neg = np.array(self.pos_scores), np.array(self.neg_scores)
        return {
            "mode": self.mode,
            "negatives_from": self.negatives_from,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "pos_origin": dict(sorted(self.pos_origin.items())),
            "neg_origin": dict(sorted(self.neg_origin.items())),
            "fallbacks": self.neg_origin.get("fallback", 0),
            "rows_needing_wider_window": self.widened,
            "rows_scored": self.scored if self.scored is not None else self.kept,
            "mean_pos_score": round(float(pos.mean()), 4) if len(pos) else None,
            "mean_neg_score": round(float(neg.mean()), 4) if len(neg) else None,
            "share_neg_ge_pos": round(float((neg >= pos).mean()), 4) if len(pos) else None,
        }


class NearDuplicates:
    """Canonical forms of a list of texts (computed when first needed), and a near-duplicate test."""

    def __init__(self, texts: list[str], threshold: float):
        self.texts = texts
        self._forms: list[str | None] = [None] * len(texts)
        self.threshold = threshold

    def form(self, i: int) -> str:
        if (known := self._forms[i]) is None:
            known = self._forms[i] = canonical(self.texts[i])
        return known

    def same(self, a: int, b: int) -> bool:
        return self.same_text(self.form(a), self.form(b))

    def same_text(self, a: str, b: str) -> bool:
        if a == b:
            return True
        return fuzz.ratio(a, b, score_cutoff=self.threshold) > 0


def first_accepted(
    searcher: Searcher,
    queries: np.ndarray,
    accept: Accept,
    cfg: MineConfig,
    report: MineReport,
    ceilings: np.ndarray | None = None,
):
    """For each query row, the best-ranked candidate that ``accept`` takes: {row: (candidate, score)}.

    Candidates scoring at or above the row's ceiling (if given) are never taken. On exact CPU search every row
    gets the exact top candidates below its ceiling in one masked pass (a matmul and a top-k: cheaper than faiss'
    heap top-k and no window spent on texts above the ceiling); on faiss indexes the window widens x4 instead.
    Rows whose candidates are all refused by ``accept`` widen x4 in either case; ``report.widened`` counts the
    rows whose first ``cfg.window`` candidates held none.
    """
    limit = min(searcher.max_k, cfg.max_window or searcher.ntotal)
    window = min(cfg.window, limit)
    rows = list(range(len(queries)))
    chosen: dict[int, tuple[int, float]] = {}
    if ceilings is None or not searcher.can_search_below:
        report.widened += len(_widening(searcher.search, queries, ceilings, rows, accept, window, limit, chosen))
        return chosen
    # most rows take their first candidate below the ceiling: a small top-k first, widened only for the rest
    left = _widening(searcher.search_below, queries, ceilings, rows, accept, window, limit, chosen, FIRST_K)
    report.widened += len(left)
    return chosen


def _widening(search, queries, ceilings, rows, accept, window, limit, chosen, first_k=None) -> list[int]:
    """Search ``rows`` with ``first_k`` (else ``window``) candidates, x4 for those whose candidates ``accept`` all
    refused, up to ``limit``.

    Fills ``chosen``; returns the rows the first ``window`` candidates left without one.
    """
    k, seen, after_window = min(first_k or window, window), 0, None
    while rows:
        scores, ids = search(queries[rows], k, None if ceilings is None else ceilings[rows])
        left = []
        for row, row_scores, row_ids in zip(rows, scores.tolist(), ids.tolist(), strict=True):
            if (hit := _first(row, row_scores[seen:], row_ids[seen:], accept)) is None:
                left.append(row)
            else:
                chosen[row] = hit
        if k == window:
            after_window = left
        if k >= limit:
            break
        rows, seen, k = left, k, min(k * 4, window if k < window else limit)
    return after_window or []


def _first(row: int, scores: list[float], ids: list[int], accept: Accept) -> tuple[int, float] | None:
    for score, cand in zip(scores, ids, strict=True):
        if cand >= 0 and accept(row, cand, score):
            return cand, score
    return None


# --- Super-NI: pairs by the INSTRUCTOR rules -------------------------------------------------------------


def task_mode(records: list[Record], cfg: MineConfig) -> str:
    """``classification`` when the task's outputs form a small label set, else ``generation``.

    Rule: at most ``classification_max_labels`` distinct canonical outputs, and no more than
    ``classification_max_label_share`` of the row count (trec: 6 labels / 5,376 rows; a QA task: thousands).
    """
    if cfg.mode in ("classification", "generation"):
        return cfg.mode
    labels = {canonical(o) for r in records for o in r.outputs}
    small = len(labels) <= cfg.classification_max_labels
    return (
        "classification" if small and len(labels) <= cfg.classification_max_label_share * len(records) else "generation"
    )


def mine_task(records: list[Record], encoder, cfg: MineConfig, report: MineReport) -> list[Triple]:
    """Pair the inputs of one Super-NI task; every row left unpaired is counted by reason."""
    if len(records) < cfg.min_task_rows:
        report.mode = "too_few_rows"
        report.dropped["too_few_rows"] += len(records)
        return []
    report.mode, report.negatives_from = task_mode(records, cfg), cfg.negatives_from
    inputs = [r.query for r in records]
    x = encoder.embed(inputs)
    dups = NearDuplicates(inputs, cfg.near_duplicate)
    labels = [frozenset(canonical(o) for o in r.outputs) for r in records]
    if report.mode == "classification":
        pos_search = neg_search = Searcher(x, index=cfg.index)
        query_vectors = x
    else:
        y = _output_vectors(records, encoder)
        pos_search = Searcher(np.hstack([x, y]), index=cfg.index)
        neg_search = Searcher(np.hstack([x, -y]), index=cfg.index)
        query_vectors = np.hstack([x, y])

    def pos_ok(i: int, j: int, _score: float) -> bool:
        shares_label = bool(labels[i] & labels[j]) or report.mode == "generation"
        return j != i and shares_label and not dups.same(i, j)

    positives = first_accepted(pos_search, query_vectors, pos_ok, cfg, report)

    def neg_ok(i: int, j: int, _score: float) -> bool:
        p = positives[i][0]
        return not (labels[i] & labels[j]) and not dups.same(i, j) and not dups.same(p, j)

    with_pos = sorted(positives) if cfg.negatives_from == "mined" else []  # random / none: no negative search
    found = first_accepted(neg_search, query_vectors[with_pos], lambda r, j, s: neg_ok(with_pos[r], j, s), cfg, report)
    negatives = {with_pos[r]: hit for r, hit in found.items()}
    return _task_triples(records, x, positives, negatives, neg_ok, cfg, report)


def _output_vectors(records: list[Record], encoder) -> np.ndarray:
    """Each row's output embedding: the mean of its outputs' unit vectors, renormalised."""
    flat = [o for r in records for o in r.outputs]
    vectors = encoder.embed(flat)
    out, start = [], 0
    for r in records:
        mean = vectors[start : start + len(r.outputs)].mean(axis=0)
        out.append(mean / max(np.linalg.norm(mean), 1e-12))
        start += len(r.outputs)
    return np.asarray(out, dtype=np.float32)


def _task_triples(records, x, positives, negatives, neg_ok, cfg, report) -> list[Triple]:
    triples = []
    for i, record in enumerate(records):
        if i not in positives:
            report.dropped["no_positive"] += 1
            continue
        j = positives[i][0]
        if (negative := _task_negative(i, records, negatives, lambda c, i=i: neg_ok(i, c, 0.0), cfg)) is None:
            report.dropped["no_negative"] += 1
            continue
        k, origin = negative
        triple = Triple(
            row_id=record.row_id,
            query=record.query,
            pos=records[j].query,
            neg=records[k].query if k is not None else "",
            pos_origin="mined",
            neg_origin=origin,
            pos_score=float(x[i] @ x[j]),
            neg_score=float(x[i] @ x[k]) if k is not None else None,
            pos_ref=records[j].row_id,
            neg_ref=records[k].row_id if k is not None else None,
        )
        report.add(triple)
        triples.append(triple)
    return triples


def _task_negative(
    i: int, records: list[Record], negatives: dict, ok: Callable[[int], bool], cfg: MineConfig
) -> tuple[int | None, str] | None:
    """(row of the negative, its origin) by ``cfg.negatives_from``; (None, "none") for no negative; None: none found.

    ``random`` takes a seeded random row that ``ok`` accepts (the mined rule's conditions: no shared label, not a
    near-duplicate of the query or its positive), so only the choice among valid rows differs from ``mined``.
    """
    if cfg.negatives_from == "none":
        return None, "none"
    if cfg.negatives_from == "random":
        k = _random_pick(len(records), ok, row_rng(cfg.seed, records[i].row_id + "#random-negative"))
        return None if k is None else (k, "random")
    if i in negatives:
        return negatives[i][0], "mined"
    k = _random_candidate(len(records), ok, cfg.seed, records[i].row_id)
    return None if k is None else (k, "fallback")


def _random_pick(size: int, ok: Callable[[int], bool], rng: random.Random, draws: int = 32) -> int | None:
    """A random index in ``range(size)`` that ``ok`` accepts: a few uniform draws (no O(size) shuffle per row on a
    large source), then every index in a shuffled order when those all failed."""
    for _ in range(draws if size else 0):
        if ok(candidate := rng.randrange(size)):
            return candidate
    order = list(range(size))
    rng.shuffle(order)
    return next((c for c in order if ok(c)), None)


def _random_candidate(size: int, ok: Callable[[int], bool], seed: int, row_id: str) -> int | None:
    """A random index that ``ok`` accepts, the same on every run for this row."""
    order = list(range(size))
    row_rng(seed, row_id + "#fallback").shuffle(order)
    return next((c for c in order if ok(c)), None)


# --- pair sources: hard negatives ------------------------------------------------------------------------


def mine_pairs(records: list[Record], encoder, cfg: MineConfig, report: MineReport, symmetric: bool) -> list[Triple]:
    """Keep given positives (and negatives unless replacing them); mine a negative where a row has none.

    When every row keeps its given negative there is nothing to mine: only a seeded sample of ``score_rows`` rows
    (by default none) is embedded for the scores (and the quality report); the other rows carry no scores.
    """
    report.mode, report.negatives_from = "pairs", cfg.negatives_from
    if not records:
        return []
    if cfg.negatives_from != "mined":
        return _pairs_without_mining(records, encoder, cfg, report, symmetric)
    need = [i for i, r in enumerate(records) if r.neg is None or cfg.replace_negatives]
    if not need and cfg.score_rows is not None and len(records) > cfg.score_rows:
        return _given_triples(records, encoder, cfg, report)
    queries = [r.query for r in records]
    pool = list(dict.fromkeys([r.pos for r in records] + [r.neg for r in records if r.neg is not None]))
    if symmetric and need:
        pool = list(dict.fromkeys(pool + queries))
    # the pool holds every positive and given negative: one call embeds it with the queries (one cache lookup, and
    # uncached texts of both sides share encode batches)
    q, pool_vectors = encoder.embed_many([(queries, "query"), (pool, "document")])
    in_pool = {text: i for i, text in enumerate(pool)}
    pos_scores = np.einsum("ij,ij->i", q, pool_vectors[[in_pool[r.pos] for r in records]])
    mined = _mine_negatives(records, need, q, pos_scores, pool, pool_vectors, in_pool, cfg, report) if need else {}
    given = [i for i in range(len(records)) if i not in mined and records[i].neg is not None]
    neg_vectors = pool_vectors[[in_pool[records[i].neg] for i in given]] if given else np.zeros((0, q.shape[1]))
    given_scores = {i: float(q[i] @ v) for i, v in zip(given, neg_vectors, strict=True)}
    triples = []
    for i, record in enumerate(records):
        if i in mined:
            neg, score, origin = mined[i]
        elif i in given_scores:
            neg, score, origin = record.neg, given_scores[i], "given"
        else:
            report.dropped["no_negative"] += 1
            continue
        triples.append(_triple(record, neg, origin, float(pos_scores[i]), score, report))
    return triples


def _given_triples(records: list[Record], encoder, cfg: MineConfig, report: MineReport) -> list[Triple]:
    """Every row with its given negative; scores for a seeded sample of ``cfg.score_rows`` rows only."""
    scored = sorted(random.Random(f"{cfg.seed}:scores").sample(range(len(records)), cfg.score_rows))
    report.scored = len(scored)
    scores = _given_scores([records[i] for i in scored], encoder) if scored else []  # none: no encoder loaded
    by_row = dict(zip(scored, scores, strict=True))
    return [_triple(r, r.neg, "given", *by_row.get(i, (None, None)), report) for i, r in enumerate(records)]


def _given_scores(records: list[Record], encoder) -> list[tuple[float, float]]:
    """(pos score, neg score) of each record's given texts."""
    # one call for the queries and both document sides: their texts share length buckets, fewer part-filled batches
    q, documents = encoder.embed_many(
        [([r.query for r in records], "query"), ([r.pos for r in records] + [r.neg for r in records], "document")]
    )
    p, n = documents[: len(records)], documents[len(records) :]
    return list(zip(np.einsum("ij,ij->i", q, p).tolist(), np.einsum("ij,ij->i", q, n).tolist(), strict=True))


def _triple(record: Record, neg: str, origin: str, pos_score, neg_score, report: MineReport) -> Triple:
    triple = Triple(
        row_id=record.row_id,
        query=record.query,
        pos=record.pos,
        neg=neg,
        pos_origin="given",
        neg_origin=origin,
        pos_score=pos_score,
        neg_score=neg_score,
    )
    report.add(triple)
    return triple


def _mine_negatives(
    records, need, q, pos_scores, pool, pool_vectors, in_pool, cfg, report
) -> dict[int, tuple[str, float, str]]:
    """{row: (negative text, score, origin)} for the rows in ``need`` (``in_pool``: each pool text's position)."""
    searcher = Searcher(pool_vectors, index=cfg.index)
    dups = NearDuplicates(pool, cfg.near_duplicate)
    positive_at = [in_pool[records[i].pos] for i in need]  # positives (and symmetric queries) share the pool's forms
    query_forms: dict[int, str] = {}

    def query_form(r: int) -> str:
        if (form := query_forms.get(r)) is None:
            text = records[need[r]].query
            form = query_forms[r] = dups.form(in_pool[text]) if text in in_pool else canonical(text)
        return form

    def too_close(r: int, cand: int) -> bool:
        form = dups.form(cand)
        return dups.same_text(query_form(r), form) or dups.same_text(dups.form(positive_at[r]), form)

    pos = pos_scores[need]
    if cfg.absolute_margin is not None:
        ceilings = pos - cfg.absolute_margin
    else:
        ceilings = np.where(pos > 0, pos * (1 - cfg.relative_margin), pos)

    def accept(r: int, cand: int, _score: float) -> bool:
        return not too_close(r, cand)

    found = first_accepted(searcher, q[need], accept, cfg, report, ceilings)
    result = {}
    for r, i in enumerate(need):
        if r in found:
            cand, score = found[r]
            result[i] = (pool[cand], score, "mined")
            continue
        cand = _random_candidate(len(pool), lambda c, r=r: not too_close(r, c), cfg.seed, records[i].row_id)
        if cand is not None:
            result[i] = (pool[cand], float(q[i] @ pool_vectors[cand]), "fallback")
    return result


# --- ablations: random or no negatives (MineConfig.negatives_from) -----------------------------------------------


def _pairs_without_mining(records: list[Record], encoder, cfg: MineConfig, report: MineReport, symmetric: bool):
    """Pair rows with a seeded random in-source negative (``random``; a given negative is replaced too) or with
    none (``none``: an empty negative text, nothing embedded for it).

    No encoder is needed to choose: with ``random`` a seeded sample of ``score_rows`` rows (every row: null) is
    embedded for the scores, as for given negatives; with ``none`` nothing is embedded.
    """
    if cfg.negatives_from == "none":
        return [_triple(r, "", "none", None, None, report) for r in records]
    negatives = _random_pair_negatives(records, cfg, symmetric)
    with_negative = [i for i in range(len(records)) if i in negatives]
    report.dropped["no_negative"] += len(records) - len(with_negative)
    rows = [Record(records[i].row_id, records[i].query, records[i].pos, negatives[i]) for i in with_negative]
    size = len(rows) if cfg.score_rows is None else min(cfg.score_rows, len(rows))
    scored = sorted(random.Random(f"{cfg.seed}:scores").sample(range(len(rows)), size))
    report.scored = len(scored)
    scores = dict(zip(scored, _given_scores([rows[i] for i in scored], encoder), strict=True)) if scored else {}
    return [_triple(r, r.neg, "random", *scores.get(i, (None, None)), report) for i, r in enumerate(rows)]


def _random_pair_negatives(records: list[Record], cfg: MineConfig, symmetric: bool) -> dict[int, str]:
    """{row: a seeded random text of the mining pool (positives, given negatives, symmetric queries) that is not a
    near-duplicate of the row's query or positive}; rows with no such text are left out."""
    pool = list(dict.fromkeys([r.pos for r in records] + [r.neg for r in records if r.neg is not None]))
    if symmetric:
        pool = list(dict.fromkeys(pool + [r.query for r in records]))
    dups = NearDuplicates(pool, cfg.near_duplicate)
    negatives = {}
    for i, record in enumerate(records):
        own = (canonical(record.query), canonical(record.pos))

        def ok(candidate: int, own=own) -> bool:
            return not any(dups.same_text(form, dups.form(candidate)) for form in own)

        picked = _random_pick(len(pool), ok, row_rng(cfg.seed, record.row_id + "#random-negative"))
        if picked is not None:
            negatives[i] = pool[picked]
    return negatives
