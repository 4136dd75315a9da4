"""Mine: turn records into (query, positive, negatives) rows, each text with its provenance.

Super-NI tasks (rows with outputs, no positive) are paired by INSTRUCTOR's rules within the task:
- classification-like tasks: positive = the most similar input with a shared label, negative = the most
  similar input with no shared label;
- generation tasks: positive maximises cos(x_i, x_j) + cos(y_i, y_j), negative maximises
  cos(x_i, x_j) - cos(y_i, y_j). Both are inner products of concatenated vectors, [x, y]·[x', ±y'], so one
  exact faiss search answers each.

Pair sources get hard negatives from the source's own texts where a row has none (or, with ``negatives`` N > 1,
negatives 2..N beside a given one). Candidates come from the encoder (``dense``), BM25 (``bm25``, medi.lexical) or
both merged by reciprocal rank (``hybrid``); then the rules remove, in this order, a candidate scoring at or above
(1 - relative_margin) x the row's own positive (``margin``), a text a reviewer judged positive for the query
(``judged_positive``), the query or a positive of any row sharing the query text (``self_or_duplicate``: several
rows with one query never get each other's positives as negatives), a near-duplicate of any of those or of a negative
already chosen for the row (``near_duplicate``), and, when a teacher is set, a suspected false negative
(``teacher_relative``: teacher(q, c) >= teacher_relative x teacher(q, pos); ``teacher_max_score``) unless a
reviewer judged it negative. A given negative is held to the reviewers' verdicts and the teacher too (RLHN,
arXiv 2505.16967, finds false negatives among given hard negatives such as MS MARCO's): one judged positive, or
one the teacher suspects (``teacher_guards_given``, on by default) unless judged negative, does not stay; it is
counted (``given_judged_positive``, ``given_teacher_relative``, ``given_teacher_max_score``), listed among the
row's suspects (or its extra positives) and the row is mined like one without a negative. The first N survivors are the
negatives (``negative_sampling: top``), or N seeded random ones of the window's survivors (``random``). The window
widens (x4) for rows left short; a row still short gets random in-source texts that pass the same rules but the margin,
flagged ``fallback``. Every removal is counted per rule; each text carries its rule, rank among the candidates, the
miner's score and the teacher's. In Super-NI classification tasks the labels decide what is negative: the teacher scores
candidates there but removes none.

Ablations (``negatives_from``): ``random`` gives every row seeded random in-source negatives under the same
validity rules instead of the hardest ones (a given negative is replaced too); ``none`` gives no negative (an empty
text, origin ``none``: in-batch negatives only). Positives are chosen as by default either way.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path

import numpy as np
from rapidfuzz import fuzz

from medi.adapters import row_rng
from medi.schema import Record, Triple
from medi.search import Searcher
from medi.stages.normalize import canonical

Accept = Callable[[int, int, float], bool]  # (row, candidate, score) -> usable
NEGATIVES_FROM = ("mined", "random", "none")
NEGATIVE_SAMPLING = ("top", "random")
CANDIDATES = ("dense", "bm25", "hybrid")
# given negatives that do not stay (the row gets a mined negative instead): a reviewer judged the text positive for
# the query, or the teacher suspects it (``teacher_guards_given``); tried before any candidate
GIVEN_RULES = ("given_judged_positive", "given_teacher_relative", "given_teacher_max_score")
# the rules that remove candidates (and given negatives), in the order they are tried (the manifest counts each;
# shared_label is INSTRUCTOR's classification rule, Super-NI only)
REMOVAL_RULES = (
    *GIVEN_RULES,
    "margin",
    "judged_positive",
    "self_or_duplicate",
    "shared_label",
    "near_duplicate",
    "teacher_relative",
    "teacher_max_score",
)
ROW_CHUNK = 4096  # rows whose candidate lists are walked together (bounded memory)
TEACHER_BATCH = 512  # (query, candidate) pairs per teacher call


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
    negatives: int = 1  # negatives per row: neg, then extra_negs (1: MEDI's shape)
    negative_sampling: str = "top"  # top: the N best survivors; random: N seeded random survivors of the window
    candidates: str = "dense"  # dense (the encoder), bm25 (medi.lexical) or hybrid (both, reciprocal-rank merged)
    teacher: str | None = None  # a sentence-transformers bi-encoder or CrossEncoder (folder or name): guards negatives
    teacher_device: str = "cpu"
    teacher_relative: float | None = 0.95  # suspect: teacher(q, c) >= this x teacher(q, pos) (NV-Retriever)
    teacher_max_score: float | None = None  # suspect: teacher(q, c) >= this
    keep_suspects: int = 3  # suspects kept per row (the review's negatives view shows them)
    # a given negative the teacher suspects is replaced by a mined one (RLHN: given hard negatives hold false
    # negatives too); false: the teacher only scores given negatives
    teacher_guards_given: bool = True

    def __post_init__(self) -> None:
        if self.negatives_from not in NEGATIVES_FROM:
            raise ValueError(f"negatives_from must be one of {', '.join(NEGATIVES_FROM)}, not {self.negatives_from!r}")
        if self.score_rows is not None and self.score_rows < 0:
            raise ValueError(f"score_rows must be 0 or more (or null: every row), not {self.score_rows}")
        for name, choices in (("negative_sampling", NEGATIVE_SAMPLING), ("candidates", CANDIDATES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, not {getattr(self, name)!r}")
        if self.negatives < 1:
            raise ValueError(f"negatives must be 1 or more, not {self.negatives}")
        if self.keep_suspects < 0:
            raise ValueError(f"keep_suspects must be 0 or more, not {self.keep_suspects}")
        if self.teacher_relative is not None and self.teacher_relative <= 0:
            raise ValueError(f"teacher_relative must be above 0 (or null: off), not {self.teacher_relative}")


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
    removed: Counter = field(default_factory=Counter)  # candidates removed, by rule (REMOVAL_RULES)
    examined: int = 0  # candidates the rules looked at (ranked ahead of the last one chosen)
    rows_without_candidate: int = 0  # rows whose candidate lists held no survivor (fallback or nothing)
    negatives_per_row: Counter = field(default_factory=Counter)  # "0", "1", ...: rows holding that many negatives
    judgements_applied: int = 0  # reviewer verdicts that changed a row (removed, allowed or added a text)
    teacher: dict | None = None  # the teacher's identity (name, kind, weights_sha256) when one guarded the negatives
    pos_rule: Counter = field(default_factory=Counter)
    neg_rule: Counter = field(default_factory=Counter)

    def add(self, triple: Triple) -> None:
        self.kept += 1
        self.pos_origin[triple.pos_origin] += 1
        self.neg_origin[triple.neg_origin] += 1
        self.pos_rule[triple.pos_rule] += 1
        self.neg_rule[triple.neg_rule] += 1
        self.negatives_per_row[str(int(bool(triple.neg)) + len(triple.extra_negs))] += 1
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
            "pos_rule": dict(sorted(self.pos_rule.items())),
            "neg_rule": dict(sorted(self.neg_rule.items())),
            "candidates_examined": self.examined,
            "removed": {rule: self.removed.get(rule, 0) for rule in REMOVAL_RULES},
            "rows_without_candidate": self.rows_without_candidate,
            "negatives_per_row": dict(sorted(self.negatives_per_row.items(), key=lambda kv: int(kv[0]))),
            "judgements_applied": self.judgements_applied,
            "teacher": self.teacher,
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


def first_accepted(searcher: Searcher, queries: np.ndarray, accept: Accept, cfg: MineConfig, report: MineReport):
    """For each query row, the best-ranked candidate that ``accept`` takes: {row: (candidate, score, rank)}.

    The window widens x4 for rows whose candidates ``accept`` all refused; ``report.widened`` counts the rows whose
    first ``cfg.window`` candidates held none.
    """
    limit = min(searcher.max_k, cfg.max_window or searcher.ntotal)
    k, seen, rows = min(cfg.window, limit), 0, list(range(len(queries)))
    chosen: dict[int, tuple[int, float, int]] = {}
    first_round = True
    while rows:
        scores, ids = searcher.search(queries[rows], k)
        left = []
        for row, row_scores, row_ids in zip(rows, scores.tolist(), ids.tolist(), strict=True):
            hit = next(
                (
                    (cand, score, seen + at + 1)
                    for at, (score, cand) in enumerate(zip(row_scores[seen:], row_ids[seen:], strict=True))
                    if cand >= 0 and accept(row, cand, score)
                ),
                None,
            )
            if hit is None:
                left.append(row)
            else:
                chosen[row] = hit
        if first_round:
            report.widened += len(left)
            first_round = False
        if k >= limit:
            break
        rows, seen, k = left, k, min(k * 4, limit)
    return chosen


# --- the walk down candidate lists: rules, teacher, sampling ---------------------------------------------------


@dataclass(slots=True)
class Found:
    """A candidate that survived the cheap rules: its position, scores and, once the teacher ran, its verdict."""

    cand: int
    rank: int | None
    score: float | None
    rule: str  # the list it came from: dense, bm25, superni (or fallback)
    teacher_score: float | None = None
    suspect: str | None = None  # teacher_relative / teacher_max_score


@dataclass
class RowWalk:
    """One row's walk: the negatives chosen, the suspects, and the candidates already decided."""

    chosen: list[Found] = field(default_factory=list)
    pending: list[Found] = field(default_factory=list)
    suspects: list[Found] = field(default_factory=list)
    decided: set[int] = field(default_factory=set)
    counted_above: bool = False

    @property
    def taken(self) -> list[int]:
        return [f.cand for f in self.chosen] + [f.cand for f in self.pending]


# a row's candidate list: [(candidate, miner score, list rule, rank)], and how many ranked ahead of it were left out
# by the margin before the list was made (exact below-ceiling search)
Candidates = tuple[list[tuple[int, float, str, int]], int]
Fetch = Callable[[list[int], int], list[Candidates]]
Cheap = Callable[[int, int, float, RowWalk], str | None]  # (row, candidate, score, walk) -> the removing rule
Judge = Callable[[list[tuple[int, Found]]], None]  # sets teacher_score / suspect on each (row, found)


@dataclass
class Walker:
    """Walks rows down their candidate lists: ``cheap`` rules first, then ``judge`` (the teacher) on the survivors
    in batches, until each row holds ``cfg.negatives`` (or, sampling at random, every survivor of the window)."""

    fetch: Fetch
    limit: int  # the most candidates a list may hold
    cheap: Cheap
    judge: Judge | None
    cfg: MineConfig
    report: MineReport
    first_k: int | None = None  # a smaller first look (exact below-ceiling search: most rows take their first)
    start: Callable[[int], RowWalk] = lambda _row: RowWalk()

    def walk(self, rows: list[int]) -> dict[int, RowWalk]:
        walks = {r: self.start(r) for r in rows}
        window = min(self.cfg.window, self.limit)
        k = min(self.first_k or window, window)
        while rows:
            lists = dict(zip(rows, self.fetch(rows, k), strict=True))
            self._rounds(walks, lists, k, window)
            left = [r for r in rows if len(walks[r].chosen) < self.cfg.negatives]
            if k == window:
                self.report.widened += len(left)
            if k >= self.limit:
                break
            rows, k = left, min(k * 4, window if k < window else self.limit)
        return walks

    def _wanted(self, k: int, window: int) -> float:
        """Negatives a row collects at this width: every survivor of the window when sampling at random."""
        return math.inf if self.cfg.negative_sampling == "random" and k <= window else self.cfg.negatives

    def _rounds(self, walks: dict[int, RowWalk], lists: dict[int, Candidates], k: int, window: int) -> None:
        """Take each row's next survivors of the cheap rules, let the teacher judge them all at once, again while a
        row is short and its list has more."""
        wanted = self._wanted(k, window)
        cursors = dict.fromkeys(lists, 0)
        active = list(lists)
        while active:
            batch = []
            for r in active:
                batch += self._advance(r, walks[r], lists[r], cursors, wanted)
            if self.judge and batch:
                self.judge(batch)
            for r, found in batch:
                walk = walks[r]
                walk.pending.remove(found)
                if found.suspect:
                    self.report.removed[found.suspect] += 1
                    walk.suspects.append(found)
                else:
                    walk.chosen.append(found)
            active = [r for r in active if cursors[r] < len(lists[r][0]) and len(walks[r].chosen) < wanted]

    def _advance(self, r: int, walk: RowWalk, candidates: Candidates, cursors: dict, wanted: float) -> list:
        listed, above = candidates
        if not walk.counted_above:
            walk.counted_above = True
            self.report.removed["margin"] += above
            self.report.examined += above
        taken, need = [], wanted - len(walk.chosen)
        at = cursors[r]
        while at < len(listed) and len(taken) < need:
            cand, score, rule, rank = listed[at]
            at += 1
            if cand < 0 or cand in walk.decided:
                continue
            walk.decided.add(cand)
            self.report.examined += 1
            if reason := self.cheap(r, cand, score, walk):
                self.report.removed[reason] += 1
                continue
            found = Found(cand, rank, score, rule)
            walk.pending.append(found)
            taken.append((r, found))
        cursors[r] = at
        return taken


def _listed(ids: list[int], scores: list[float], rule: str, ahead: int = 0) -> list[tuple[int, float, str, int]]:
    """A candidate list from a search's row: the real ids (not -1), ranked after the ``ahead`` left out."""
    real = [(c, s) for c, s in zip(ids, scores, strict=True) if c >= 0]
    return [(c, s, rule, ahead + at + 1) for at, (c, s) in enumerate(real)]


def sampled(walk: RowWalk, count: int, cfg: MineConfig, row_id: str) -> list[Found]:
    """The row's ``count`` negatives: the first survivors, or seeded random ones (kept in rank order)."""
    if cfg.negative_sampling == "random" and len(walk.chosen) > count:
        rng = row_rng(cfg.seed, row_id + "#sampling")
        return [walk.chosen[i] for i in sorted(rng.sample(range(len(walk.chosen)), count))]
    return walk.chosen[:count]


def suspect_rule(score: float, positive: float, cfg: MineConfig) -> str | None:
    """Why the teacher suspects a candidate of being a false negative, or None."""
    if cfg.teacher_relative is not None:
        bar = positive * cfg.teacher_relative if positive > 0 else positive
        if score >= bar:
            return "teacher_relative"
    if cfg.teacher_max_score is not None and score >= cfg.teacher_max_score:
        return "teacher_max_score"
    return None


class Guard:
    """The teacher and the reviewers' verdicts for one source's rows (either may be absent)."""

    def __init__(self, teacher, judgements, cfg: MineConfig, report: MineReport):
        self.teacher, self.judgements, self.cfg, self.report = teacher, judgements, cfg, report
        if teacher is not None:
            report.teacher = teacher.identity()

    def scores(self, queries: Sequence[str], texts: Sequence[str]) -> list[float] | None:
        """The teacher's scores of (query, text) pairs, in batches; None without a teacher."""
        if self.teacher is None:
            return None
        out: list[float] = []
        for start in range(0, len(queries), TEACHER_BATCH):
            part = slice(start, start + TEACHER_BATCH)
            out += np.asarray(self.teacher.score(list(queries[part]), list(texts[part])), dtype=np.float32).tolist()
        return out

    def verdict(self, query: str, text: str) -> str | None:
        return self.judgements.verdict(query, text) if self.judgements else None

    def judge(self, pairs: list[tuple[str, str, float, Found]], remove: bool = True) -> None:
        """(query, candidate text, teacher(q, pos), found): sets the teacher score and, unless a reviewer judged the
        text negative for the query (or ``remove`` is off: scores only), the suspect rule."""
        scores = self.scores([q for q, *_ in pairs], [t for _, t, *_ in pairs])
        if scores is None:
            return
        for (query, text, positive, found), score in zip(pairs, scores, strict=True):
            found.teacher_score = score
            rule = suspect_rule(score, positive, self.cfg) if remove else None
            if rule and self.verdict(query, text) == "negative":
                self.report.judgements_applied += 1  # a reviewer's "really negative" outranks the teacher
                rule = None
            found.suspect = rule

    def replaced_given(self, records: list[Record], teacher: list[tuple[float | None, float | None]]) -> dict:
        """{row: the rule} of the given negatives that do not stay: judged positive by a reviewer
        (``given_judged_positive``) or, with ``teacher_guards_given``, suspected by the teacher against the row's
        positive (``given_teacher_relative`` / ``given_teacher_max_score``) unless a reviewer judged it negative.
        ``teacher`` holds each row's (teacher(q, pos), teacher(q, given neg))."""
        guarding = self.teacher is not None and self.cfg.teacher_guards_given
        if self.cfg.replace_negatives or not (guarding or self.judgements):
            return {}
        replaced = {}
        for i, (record, (positive, score)) in enumerate(zip(records, teacher, strict=True)):
            if record.neg is None:
                continue
            self.report.examined += 1
            verdict = self.verdict(record.query, record.neg)
            rule = "judged_positive" if verdict == "positive" else None
            if rule is None and guarding and score is not None:
                rule = suspect_rule(score, positive, self.cfg)
                if rule and verdict == "negative":
                    self.report.judgements_applied += 1  # a reviewer's "really negative" outranks the teacher
                    rule = None
            if rule:
                self.report.removed[f"given_{rule}"] += 1
                self.report.judgements_applied += rule == "judged_positive"
                replaced[i] = rule
        return replaced

    def extra_positives(self, query: str, own: set[str]) -> list[str]:
        """Texts reviewers judged positive for ``query``, beyond the row's own texts."""
        if not self.judgements:
            return []
        return [t for t in self.judgements.positives(query) if t not in own]


def suspects_of(walk: RowWalk, texts: Callable[[int], str], refs: Callable[[int], str | None], keep: int) -> list:
    """The row's best ``keep`` suspects by teacher score; a given negative the teacher replaced is always one."""

    def order(f: Found) -> tuple:
        return -(f.teacher_score or 0.0), f.rank or 0

    given = [f for f in walk.suspects if f.rule == "given"][:keep]
    mined = sorted((f for f in walk.suspects if f.rule != "given"), key=order)
    best = sorted(given + mined[: keep - len(given)], key=order)
    return [
        {"text": texts(f.cand), "rule": f.suspect, "rank": f.rank, "score": f.score, "teacher_score": f.teacher_score,
         "ref": refs(f.cand)}
        for f in best
    ]  # fmt: skip


def fallback_fill(
    walk: RowWalk,
    size: int,
    ok: Callable[[int, RowWalk], bool],
    judge: Callable[[Found], None],
    count: int,
    cfg: MineConfig,
    row_id: str,
) -> None:
    """Fill a short row with seeded random candidates that ``ok`` takes (the rules but the margin) and the teacher
    does not suspect; the same order on every run for this row (and, for one negative, medi's earlier choice)."""
    order = list(range(size))
    row_rng(cfg.seed, row_id + "#fallback").shuffle(order)
    for cand in order:
        if len(walk.chosen) >= count:
            return
        if cand in walk.taken or not ok(cand, walk):
            continue
        found = Found(cand, None, None, "fallback")
        judge(found)
        if not found.suspect:
            walk.chosen.append(found)


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


def mine_task(
    records: list[Record], encoder, cfg: MineConfig, report: MineReport, teacher=None, judgements=None
) -> list[Triple]:
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
    task = TaskRules(records, inputs, labels, dups, positives, Guard(teacher, judgements, cfg, report))
    task.classification = report.mode == "classification"
    with_pos = sorted(positives)
    task.teacher_positives(with_pos)
    walks: dict[int, RowWalk] = {}
    if cfg.negatives_from == "mined":  # random / none: no negative search
        limit = min(neg_search.max_k, cfg.max_window or neg_search.ntotal)
        judge = task.judge if task.teacher_pos else None
        walker = Walker(task.fetcher(neg_search, query_vectors), limit, task.cheap, judge, cfg, report)
        for start in range(0, len(with_pos), ROW_CHUNK):
            walks.update(walker.walk(with_pos[start : start + ROW_CHUNK]))
    return _task_triples(records, x, task, walks, cfg, report)


class TaskRules:
    """The rules of one Super-NI task's negatives (rows are record indices; candidates too)."""

    def __init__(self, records, inputs, labels, dups: NearDuplicates, positives: dict, guard: Guard):
        self.records, self.inputs, self.labels, self.dups = records, inputs, labels, dups
        self.positives, self.guard = positives, guard
        self.classification = False  # labels decide: the teacher scores but removes nothing
        by_query: dict[str, list[int]] = {}
        for i, text in enumerate(inputs):
            by_query.setdefault(text, []).append(i)
        # rows sharing an input share their positives' exclusion (none may be the other's negative)
        groups = list(by_query.values())
        own_of_group = [{*rows, *(positives[j][0] for j in rows if j in positives)} for rows in groups]
        self.own = {i: own_of_group[n] for n, rows in enumerate(groups) for i in rows}
        self.teacher_pos: dict[int, float] = {}

    def teacher_positives(self, rows: list[int]) -> None:
        scores = self.guard.scores([self.inputs[i] for i in rows], [self.inputs[self.positives[i][0]] for i in rows])
        if scores is not None:
            self.teacher_pos = dict(zip(rows, scores, strict=True))

    def fetcher(self, searcher: Searcher, vectors: np.ndarray) -> Fetch:
        def fetch(rows: list[int], k: int) -> list[Candidates]:
            scores, ids = searcher.search(vectors[rows], k)
            return [
                (_listed(row_ids, row_scores, "superni"), 0)
                for row_scores, row_ids in zip(scores.tolist(), ids.tolist(), strict=True)
            ]

        return fetch

    def cheap(self, i: int, j: int, _score: float, walk: RowWalk) -> str | None:
        if self.guard.verdict(self.inputs[i], self.inputs[j]) == "positive":
            self.guard.report.judgements_applied += 1
            return "judged_positive"
        if j in self.own[i] or self.inputs[j] == self.inputs[i]:
            return "self_or_duplicate"
        if self.labels[i] & self.labels[j]:
            return "shared_label"
        if self.too_close(i, j, walk):
            return "near_duplicate"
        return None

    def too_close(self, i: int, j: int, walk: RowWalk) -> bool:
        return any(self.dups.same(k, j) for k in (*self.own[i], *walk.taken))

    def fallback_ok(self, i: int, j: int, walk: RowWalk) -> bool:
        return (
            j not in self.own[i]
            and not (self.labels[i] & self.labels[j])
            and self.guard.verdict(self.inputs[i], self.inputs[j]) != "positive"
            and not self.too_close(i, j, walk)
        )

    def judge(self, batch: list[tuple[int, Found]]) -> None:
        # a candidate with another label is a true negative: in classification tasks the teacher only scores it
        pairs = [(self.inputs[i], self.inputs[f.cand], self.teacher_pos[i], f) for i, f in batch]
        self.guard.judge(pairs, remove=not self.classification)

    def extra_positives(self, i: int, x: np.ndarray, report: MineReport) -> list[dict]:
        """Inputs a reviewer judged positive for row ``i``'s input, beyond it and its positive (rule ``review``)."""
        own = {self.inputs[i], self.inputs[self.positives[i][0]]}
        texts = self.guard.extra_positives(self.inputs[i], own)
        if not texts:
            return []
        report.judgements_applied += len(texts)
        at = {text: k for k, text in enumerate(self.inputs)}
        teacher = self.guard.scores([self.inputs[i]] * len(texts), texts)
        return [
            {"text": t, "rule": "review", "teacher_score": teacher[n] if teacher else None,
             "score": float(x[i] @ x[at[t]]) if t in at else None,
             "ref": self.records[at[t]].row_id if t in at else None}
            for n, t in enumerate(texts)
        ]  # fmt: skip

    def judge_one(self, i: int, found: Found) -> None:
        self.judge([(i, found)]) if self.teacher_pos else None


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


def _task_triples(records, x, task: TaskRules, walks: dict[int, RowWalk], cfg, report) -> list[Triple]:
    triples = []
    for i, record in enumerate(records):
        if i not in task.positives:
            report.dropped["no_positive"] += 1
            continue
        j, _, pos_rank = task.positives[i]
        negatives = _task_negatives(i, records, task, walks.get(i), cfg, report)
        if negatives is None:
            report.dropped["no_negative"] += 1
            continue
        picks = [_task_pick(x, i, f, records) for f in negatives]
        first = picks[0] if picks else {"text": "", "origin": "none", "rule": "none"}
        walk = walks.get(i) or RowWalk()
        triple = Triple(
            row_id=record.row_id,
            query=record.query,
            pos=records[j].query,
            neg=first["text"],
            pos_origin="mined",
            neg_origin=first["origin"],
            pos_score=float(x[i] @ x[j]),
            neg_score=first.get("score"),
            pos_ref=records[j].row_id,
            neg_ref=first.get("ref"),
            pos_rule="superni",
            neg_rule=first["rule"],
            pos_rank=pos_rank,
            neg_rank=first.get("rank"),
            pos_teacher_score=task.teacher_pos.get(i),
            neg_teacher_score=first.get("teacher_score"),
            extra_negs=picks[1:],
            extra_pos=task.extra_positives(i, x, report),
            suspects=suspects_of(walk, lambda c: records[c].query, lambda c: records[c].row_id, cfg.keep_suspects),
        )
        report.add(triple)
        triples.append(triple)
    return triples


def _task_pick(x, i: int, found: Found, records) -> dict:
    k = found.cand
    origin = {"superni": "mined", "fallback": "fallback", "random": "random"}[found.rule]
    return {
        "text": records[k].query,
        "origin": origin,
        "rule": found.rule,
        "rank": found.rank,
        "score": float(x[i] @ x[k]),
        "teacher_score": found.teacher_score,
        "ref": records[k].row_id,
    }


def _task_negatives(i: int, records, task: TaskRules, walk: RowWalk | None, cfg, report) -> list[Found] | None:
    """Row ``i``'s negatives by ``cfg.negatives_from``: [] for none; None when not one was found.

    ``random`` takes seeded random rows the mined rule's conditions accept (no shared label, not a near-duplicate
    of the query, its positive or a negative already taken), so only the choice among valid rows differs.
    """
    if cfg.negatives_from == "none":
        return []
    if cfg.negatives_from == "random":
        walk = RowWalk()
        rng = row_rng(cfg.seed, records[i].row_id + "#random-negative")
        while len(walk.chosen) < cfg.negatives:
            k = _random_pick(len(records), lambda c: c not in walk.taken and task.fallback_ok(i, c, walk), rng)
            if k is None:
                break
            walk.chosen.append(Found(k, None, None, "random"))
        return walk.chosen or None
    walk = walk or RowWalk()
    if not walk.chosen:
        report.rows_without_candidate += 1
    chosen = sampled(walk, cfg.negatives, cfg, records[i].row_id)
    if len(chosen) < cfg.negatives:
        walk.chosen = list(chosen)
        fallback_fill(walk, len(records), lambda c, w: task.fallback_ok(i, c, w), partial(task.judge_one, i),
                      cfg.negatives, cfg, records[i].row_id)  # fmt: skip
        chosen = walk.chosen
    return chosen or None


def _random_pick(size: int, ok: Callable[[int], bool], rng: random.Random, draws: int = 32) -> int | None:
    """A random index in ``range(size)`` that ``ok`` accepts: a few uniform draws (no O(size) shuffle per row on a
    large source), then every index in a shuffled order when those all failed."""
    for _ in range(draws if size else 0):
        if ok(candidate := rng.randrange(size)):
            return candidate
    order = list(range(size))
    rng.shuffle(order)
    return next((c for c in order if ok(c)), None)


# --- pair sources: hard negatives ------------------------------------------------------------------------


def mine_pairs(
    records: list[Record], encoder, cfg: MineConfig, report: MineReport, symmetric: bool, teacher=None, judgements=None
) -> list[Triple]:
    """``mine_pairs_stream`` of a list of records, as a list."""
    return list(mine_pairs_stream(lambda: records, encoder, cfg, report, symmetric, teacher, judgements))


def mine_pairs_stream(
    records: Callable[[], Iterable[Record]],
    encoder,
    cfg: MineConfig,
    report: MineReport,
    symmetric: bool,
    teacher=None,
    judgements=None,
) -> Iterator[Triple]:
    """Keep given positives (and negatives unless replacing them); mine negatives where a row has fewer than
    ``cfg.negatives`` (a given negative that stays is the first). A given negative judged positive by a reviewer,
    or suspected by the teacher (``teacher_guards_given``), does not stay: it is listed in the row's suspects (or
    extra positives) and the row is mined like one without a negative.

    When every row keeps its given negative there is nothing to mine: only a seeded sample of ``score_rows`` rows
    (by default none) is embedded for the scores (and the quality report); the other rows carry no scores. A
    teacher scores every row's positive and given negative all the same; once it (or a reviewer) replaces one given
    negative, the source is mined, embedded whole, and every row is scored.

    Bounded memory (issue 20): ``records()`` is one pass over the rows; their texts go to files on disk
    (``RowStore``), read back by position; the pool is found by 128-bit digests (``Pool``), the query and pool
    vectors are memory-mapped (``Encoder.embed_mapped``), and rows are walked, finished and yielded ROW_CHUNK
    rows to mine at a time. What stays in memory per row: a few numpy arrays (offsets, digests, pool ids, scores:
    ~120 bytes a row) and, in the report, each row's two scores. Held whole only where the work is small or needs
    it: the random / none ablations, a teacher's or reviewers' guard of the given negatives, the rows of a source
    with nothing to mine (``_given_triples``; the mine stage streams those itself), and bm25 / hybrid candidates
    (their index holds the pool's texts).
    """
    report.mode, report.negatives_from = "pairs", cfg.negatives_from
    with tempfile.TemporaryDirectory(prefix="medi-mine-") as scratch:
        store = RowStore(Path(scratch), records())
        try:
            if len(store):
                guard = Guard(teacher, judgements, cfg, report)
                yield from _pairs_from_store(store, records, encoder, cfg, report, symmetric, guard)
        finally:
            store.close()


def _pairs_from_store(
    store: RowStore, records: Callable[[], Iterable[Record]], encoder, cfg: MineConfig, report: MineReport,
    symmetric: bool, guard: Guard,
) -> Iterator[Triple]:  # fmt: skip
    if cfg.negatives_from != "mined":
        yield from _pairs_without_mining(list(records()), encoder, cfg, report, symmetric, guard)
        return
    held, teacher_scores, replaced = None, None, {}
    if guard.teacher is not None or guard.judgements:  # the guard of the given negatives: every row at once
        held = list(records())
        kept = [Record(r.row_id, r.query, r.pos) for r in held] if cfg.replace_negatives else held
        teacher_scores = _teacher_pairs(kept, guard)
        replaced = guard.replaced_given(held, teacher_scores)
    need = store.need(cfg.replace_negatives or cfg.negatives > 1, replaced)
    if not len(need) and cfg.score_rows is not None and len(store) > cfg.score_rows:
        held = held if held is not None else list(records())
        yield from _given_triples(held, encoder, cfg, report, teacher_scores or [(None, None)] * len(held))
        return
    del held
    pool = Pool(store, symmetric and len(need) > 0)
    # the pool holds every positive and given negative: embedded with the queries, into memory-mapped matrices
    q, pool_vectors = encoder.embed_mapped(
        [(store.column_chunks("query", EMBED_CHUNK), len(store), "query"),
         (pool.text_chunks(EMBED_CHUNK), len(pool), "document")],
        store.folder,
    )  # fmt: skip
    rows = PairRows(store, pool, q, pool_vectors, cfg, guard)
    if teacher_scores is not None:
        rows.take_verdicts(teacher_scores, replaced)
    yield from rows.triples(need, report)


EMBED_CHUNK = 8_192  # texts looked up in the cache (and embedded when missing) at a time: 12 MB of vectors
STORE_CHUNK = 8_192  # rows written to a RowStore at a time
DIGEST_BYTES = 16
_DIGEST = np.dtype((np.void, DIGEST_BYTES))


def digests(texts: Iterable[str | None]) -> np.ndarray:
    """128-bit blake2b digests of ``texts`` (a ``_DIGEST`` array; zeros for None): equal texts, equal digests."""
    empty = bytes(DIGEST_BYTES)
    joined = b"".join(
        hashlib.blake2b(t.encode(), digest_size=DIGEST_BYTES).digest() if t is not None else empty for t in texts
    )
    return np.frombuffer(joined, dtype=_DIGEST).copy()


class TextColumn:
    """One column of texts in a file (utf-8, back to back) and their offsets, read back by position with ``pread``:
    not memory-mapped, so the pages read never stay in the process' memory."""

    def __init__(self, path: Path):
        self.path = path
        self._out = path.open("wb")
        self._ends: list[np.ndarray] = [np.zeros(1, np.int64)]
        self._null: list[np.ndarray] = []
        self._size = 0
        self._fd: int | None = None

    def extend(self, texts: list[str | None]) -> None:
        data = [t.encode() if t is not None else b"" for t in texts]
        lengths = np.fromiter(map(len, data), dtype=np.int64, count=len(data))
        self._out.write(b"".join(data))
        self._ends.append(self._size + np.cumsum(lengths))
        self._size += int(lengths.sum())
        self._null.append(np.fromiter((t is None for t in texts), dtype=bool, count=len(texts)))

    def seal(self) -> None:
        self._out.close()
        self.offsets = np.concatenate(self._ends)
        self.null = np.concatenate(self._null) if self._null else np.zeros(0, bool)
        del self._ends, self._null
        self._fd = os.open(self.path, os.O_RDONLY)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not self._out.closed:
            self._out.close()

    def __getitem__(self, i: int) -> str | None:
        if self.null[i]:
            return None
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        return os.pread(self._fd, end - start, start).decode()

    def span(self, start: int, stop: int) -> list[str | None]:
        """The texts of rows ``start`` to ``stop`` (one read)."""
        base = int(self.offsets[start])
        blob = os.pread(self._fd, int(self.offsets[stop]) - base, base)
        ends = (self.offsets[start : stop + 1] - base).tolist()
        nulls = self.null[start:stop].tolist()
        return [None if nulls[k] else blob[ends[k] : ends[k + 1]].decode() for k in range(stop - start)]


class RowStore:
    """A pair source's rows on disk (row_id, query, pos, neg: a ``TextColumn`` each), written in one pass, with
    the digests of their queries, positives and given negatives."""

    COLUMNS = ("row_id", "query", "pos", "neg")

    def __init__(self, folder: Path, records: Iterable[Record]):
        self.folder = folder
        self.columns = {name: TextColumn(folder / f"{name}.txt") for name in self.COLUMNS}
        found: dict[str, list[np.ndarray]] = {"query": [], "pos": [], "neg": []}
        records = iter(records)
        try:
            while chunk := list(islice(records, STORE_CHUNK)):
                for name, column in self.columns.items():
                    texts = [getattr(r, name) for r in chunk]
                    column.extend(texts)
                    if name in found:
                        found[name].append(digests(texts))
        finally:
            for column in self.columns.values():
                column.seal()
        self.digests = {n: np.concatenate(parts) if parts else np.empty(0, _DIGEST) for n, parts in found.items()}
        self.has_neg = ~self.columns["neg"].null

    def __len__(self) -> int:
        return len(self.has_neg)

    def close(self) -> None:
        for column in self.columns.values():
            column.close()

    def record(self, i: int) -> Record:
        return Record(*(self.columns[name][i] for name in self.COLUMNS))

    def column_chunks(self, name: str, size: int) -> Iterator[list[str]]:
        column = self.columns[name]
        for start in range(0, len(self), size):
            yield column.span(start, min(start + size, len(self)))

    def need(self, every_row: bool, replaced: dict[int, str]) -> np.ndarray:
        """The rows to mine: every row (replacing negatives, or more than one a row), else those without a given
        negative or whose given negative does not stay (``replaced``)."""
        if every_row:
            return np.arange(len(self))
        need = ~self.has_neg
        need[list(replaced)] = True
        return np.flatnonzero(need)


class Pool:
    """The candidate pool of a pair source: every distinct positive and given negative (and query, for a symmetric
    source) in first-occurrence order — ``dict.fromkeys`` of the positives, then the given negatives, then the
    queries — found by their digests; a text is read back from the row it first occurs in."""

    def __init__(self, store: RowStore, with_queries: bool):
        self.store, rows = store, len(store)
        self.with_neg = np.flatnonzero(store.has_neg)
        parts = [store.digests["pos"], store.digests["neg"][self.with_neg]]
        if with_queries:
            parts.append(store.digests["query"])
        unique, first, inverse = np.unique(np.concatenate(parts), return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")  # pool id -> unique digest
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))  # unique digest -> pool id
        self.first = first[order]  # the element (positives, negatives, queries) each pool id was first met as
        ids = rank[inverse.ravel()]
        self.pos_id = ids[:rows]
        self.neg_id = np.full(rows, -1, dtype=np.int64)
        self.neg_id[self.with_neg] = ids[rows : rows + len(self.with_neg)]
        self._sorted, self._rank = unique, rank

    def __len__(self) -> int:
        return len(self.first)

    def __getitem__(self, pid: int) -> str:
        element, rows, negs = int(self.first[pid]), len(self.store), len(self.with_neg)
        if element < rows:
            return self.store.columns["pos"][element]
        if element < rows + negs:
            return self.store.columns["neg"][int(self.with_neg[element - rows])]
        return self.store.columns["query"][element - rows - negs]

    def id_of(self, text: str) -> int | None:
        """The pool id of ``text``, None when it is not in the pool."""
        wanted = digests([text])
        at = int(np.searchsorted(self._sorted, wanted[0]))
        if at < len(self._sorted) and self._sorted[at] == wanted[0]:
            return int(self._rank[at])
        return None

    def text_chunks(self, size: int) -> Iterator[list[str]]:
        for start in range(0, len(self), size):
            yield [self[pid] for pid in range(start, min(start + size, len(self)))]

    def texts(self) -> list[str]:
        """Every pool text, in memory (bm25 / hybrid candidates index them)."""
        return [text for chunk in self.text_chunks(EMBED_CHUNK) for text in chunk]


def _row_dots(q: np.ndarray, vectors: np.ndarray, ids: np.ndarray, block: int = EMBED_CHUNK) -> np.ndarray:
    """q[i] . vectors[ids[i]] for every row, a block of rows at a time (never every gathered vector at once)."""
    out = np.empty(len(ids), dtype=np.float32)
    for start in range(0, len(ids), block):
        rows = slice(start, start + block)
        out[rows] = np.einsum("ij,ij->i", np.asarray(q[rows]), vectors[ids[rows]])
    return out


class PairRows:
    """One pair source's rows (on disk: ``RowStore``), its candidate pool (every positive and given negative, and
    the queries of a symmetric source) with their memory-mapped vectors, and the rules of its negatives. What a
    rule reads of a row or candidate (texts, canonical forms, own texts) is kept for the chunk of rows being
    walked only (``forget``)."""

    def __init__(self, store: RowStore, pool: Pool, q, pool_vectors, cfg: MineConfig, guard: Guard):
        self.store, self.pool, self.q, self.pool_vectors, self.cfg, self.guard = (
            store, pool, q, pool_vectors, cfg, guard
        )  # fmt: skip
        self.pos_scores = _row_dots(q, pool_vectors, pool.pos_id)
        if cfg.absolute_margin is not None:
            self.ceilings = self.pos_scores - cfg.absolute_margin
        else:
            self.ceilings = np.where(self.pos_scores > 0, self.pos_scores * (1 - cfg.relative_margin), self.pos_scores)
        # rows sharing a query text, by digest: none of their positives (nor a reviewer's) is that query's negative
        self._by_query = np.argsort(store.digests["query"], kind="stable")
        self._query_sorted = store.digests["query"][self._by_query]
        self.teacher_pos: dict[int, float] = {}
        self.teacher_given: dict[int, float] = {}
        self.replaced: dict[int, str] = {}
        self.forget()

    def forget(self) -> None:
        """Drop what was kept for the chunk of rows just walked."""
        self._records: dict[int, Record] = {}
        self._texts: dict[int, str] = {}
        self._pool_forms: dict[int, str] = {}
        self._forms: dict[str, str] = {}
        self._own: dict[int, list[str]] = {}

    def take_verdicts(self, teacher: list[tuple[float | None, float | None]], replaced: dict[int, str]) -> None:
        """The teacher's scores of every row's positive and given negative (``_teacher_pairs``), and the rows whose
        given negative does not stay (``Guard.replaced_given``)."""
        if self.guard.teacher is not None:
            self.teacher_pos = {i: pos for i, (pos, _) in enumerate(teacher)}
            self.teacher_given = {i: neg for i, (_, neg) in enumerate(teacher) if neg is not None}
        self.replaced = replaced

    def record(self, i: int) -> Record:
        if (known := self._records.get(i)) is None:
            known = self._records[i] = self.store.record(i)
        return known

    def text(self, cand: int) -> str:
        """The pool text ``cand``."""
        if (known := self._texts.get(cand)) is None:
            known = self._texts[cand] = self.pool[cand]
        return known

    def given_stays(self, i: int) -> bool:
        """Row ``i`` keeps its given negative as its first (not replaced by config, a reviewer or the teacher)."""
        return bool(self.store.has_neg[i]) and not self.cfg.replace_negatives and i not in self.replaced

    def start_walk(self, i: int) -> RowWalk:
        """Row ``i``'s walk before any candidate: a given negative that did not stay is decided (never taken again;
        a teacher's suspect is listed among the row's suspects)."""
        walk = RowWalk()
        if (rule := self.replaced.get(i)) is not None:
            given = int(self.pool.neg_id[i])
            walk.decided.add(given)
            if rule != "judged_positive":  # a confirmed positive is an extra positive, not a suspect
                score = float(self.q[i] @ self.pool_vectors[given])
                walk.suspects.append(Found(given, None, score, "given", self.teacher_given.get(i), rule))
        return walk

    # --- forms and rules

    def pool_form(self, cand: int) -> str:
        if (known := self._pool_forms.get(cand)) is None:
            known = self._pool_forms[cand] = canonical(self.text(cand))
        return known

    def form_of(self, text: str) -> str:
        if (form := self._forms.get(text)) is None:
            form = self._forms[text] = canonical(text)
        return form

    def same(self, a: int, b: int) -> bool:
        """Pool texts ``a`` and ``b`` are near-duplicates."""
        return _near(self.pool_form(a), self.pool_form(b), self.cfg.near_duplicate)

    def siblings(self, i: int) -> set[str]:
        """The positives of every row sharing row ``i``'s query text, and the texts reviewers judged positive
        for it."""
        record = self.record(i)
        wanted = self.store.digests["query"][i]
        start = int(np.searchsorted(self._query_sorted, wanted, side="left"))
        stop = int(np.searchsorted(self._query_sorted, wanted, side="right"))
        texts = {self.store.columns["pos"][int(r)] for r in self._by_query[start:stop]}
        texts.update(self.guard.extra_positives(record.query, set()))
        return texts

    def own_texts(self, i: int) -> list[str]:
        """The texts row ``i``'s negatives must differ from: its query, the positives of every row sharing it, and
        a given negative that stays first."""
        if (known := self._own.get(i)) is None:
            record = self.record(i)
            given = [record.neg] if self.given_stays(i) else []
            known = self._own[i] = [record.query, *sorted(self.siblings(i)), *given]
        return known

    def cheap(self, i: int, cand: int, score: float, walk: RowWalk, margin: bool = True) -> str | None:
        text, query = self.text(cand), self.record(i).query
        if margin and score >= self.ceilings[i]:
            return "margin"
        if self.guard.verdict(query, text) == "positive":
            self.guard.report.judgements_applied += margin  # counted once, as a removed candidate
            return "judged_positive"
        own = self.own_texts(i)
        if text in own:
            return "self_or_duplicate"
        form, threshold = self.pool_form(cand), self.cfg.near_duplicate
        if any(_near(self.form_of(t), form, threshold) for t in own) or any(self.same(c, cand) for c in walk.taken):
            return "near_duplicate"
        return None

    def judge(self, batch: list[tuple[int, Found]]) -> None:
        self.guard.judge([(self.record(i).query, self.text(f.cand), self.teacher_pos[i], f) for i, f in batch])

    # --- mining

    def triples(self, need: np.ndarray, report: MineReport) -> Iterator[Triple]:
        """Every row's triple, in row order: the rows in ``need`` are walked ROW_CHUNK at a time, finished, and
        each row up to the chunk's last is yielded before the next chunk is walked."""
        fetch, limit, first_k = self._fetcher() if len(need) else (None, 0, None)
        judge = self.judge if self.teacher_pos else None
        walker = Walker(fetch, limit, self.cheap, judge, self.cfg, report, first_k, self.start_walk)
        done = 0
        for start in range(0, len(need), ROW_CHUNK):
            chunk = need[start : start + ROW_CHUNK].tolist()
            walks = walker.walk(chunk)
            for i in chunk:
                self._finish(i, walks[i], report)
            yield from self._rows(done, chunk[-1] + 1, walks, report)
            done = chunk[-1] + 1
            self.forget()
        yield from self._rows(done, len(self.store), {}, report)

    def _rows(self, start: int, stop: int, walks: dict[int, RowWalk], report: MineReport) -> Iterator[Triple]:
        for i in range(start, stop):
            if (triple := self.triple(i, walks.get(i), report)) is None:
                report.dropped["no_negative"] += 1
                continue
            report.add(triple)
            yield triple

    def _finish(self, i: int, walk: RowWalk, report: MineReport) -> None:
        """Sample the row's negatives from its survivors; a row left short gets fallbacks."""
        cfg, record = self.cfg, self.record(i)
        wanted = cfg.negatives - self.given_stays(i)
        if not walk.chosen:
            report.rows_without_candidate += 1
        walk.chosen = sampled(walk, wanted, cfg, record.row_id)
        if len(walk.chosen) < wanted:

            def judge_one(found: Found) -> None:
                if self.teacher_pos:
                    self.judge([(i, found)])

            fallback_fill(walk, len(self.pool), lambda c, w: not self.cheap(i, c, 0.0, w, margin=False), judge_one,
                          wanted, cfg, record.row_id)  # fmt: skip
        for found in walk.chosen:
            if found.score is None:
                found.score = float(self.q[i] @ self.pool_vectors[found.cand])

    def _fetcher(self) -> tuple[Fetch, int, int | None]:
        """(fetch, the longest list, the first look) for the configured candidates."""
        cfg = self.cfg
        searcher = Searcher(self.pool_vectors, index=cfg.index) if cfg.candidates != "bm25" else None
        total = len(self.pool) if searcher is None else min(searcher.max_k, searcher.ntotal)
        limit = min(total, cfg.max_window or total)
        if cfg.candidates == "dense":
            if searcher.can_search_below:
                first_k = cfg.negatives if cfg.negative_sampling == "top" else None
                return self._dense_below(searcher), limit, first_k
            return self._dense(searcher), limit, None
        return self._lexical(searcher), limit, None

    def _dense_below(self, searcher: Searcher) -> Fetch:
        """Exact search of the candidates below each row's ceiling (those above: counted as the margin's)."""

        def fetch(rows: list[int], k: int) -> list[Candidates]:
            scores, ids, above = searcher.search_below_counted(self.q[rows], k, self.ceilings[rows])
            # ids are -1 at the ceiling (those lead the top k and are counted in ``above``) and past the end
            return [
                (_listed(row_ids, row_scores, "dense", int(n)), int(n))
                for row_scores, row_ids, n in zip(scores.tolist(), ids.tolist(), above.tolist(), strict=True)
            ]

        return fetch

    def _dense(self, searcher: Searcher) -> Fetch:
        def fetch(rows: list[int], k: int) -> list[Candidates]:
            scores, ids = searcher.search(self.q[rows], k)
            return [
                (_listed(row_ids, row_scores, "dense"), 0)
                for row_scores, row_ids in zip(scores.tolist(), ids.tolist(), strict=True)
            ]

        return fetch

    def _lexical(self, searcher: Searcher | None) -> Fetch:
        """bm25 (medi.lexical) or hybrid candidates; their miner scores are the encoder's cosines (the margin rule
        and the score column read them). The bm25 index holds every pool text."""
        from medi.lexical import Bm25Index, hybrid_merge

        index = Bm25Index(self.pool.texts())

        def fetch(rows: list[int], k: int) -> list[Candidates]:
            texts = [self.record(i).query for i in rows]
            lexical = index.search(texts, k)
            if searcher is None:
                ids, rules = lexical[1], np.full(lexical[1].shape, "bm25", dtype=object)
            else:
                ids, rules = hybrid_merge(searcher.search(self.q[rows], k), lexical, k)
            out = []
            for i, row_ids, row_rules in zip(rows, np.asarray(ids).tolist(), np.asarray(rules).tolist(), strict=True):
                known = [c for c in row_ids if c >= 0]
                scores = (self.pool_vectors[known] @ self.q[i]).tolist() if known else []
                listed = zip(known, scores, [r for c, r in zip(row_ids, row_rules, strict=True) if c >= 0], strict=True)
                out.append(([(c, s, str(rule), at + 1) for at, (c, s, rule) in enumerate(listed)], 0))
            return out

        return fetch

    # --- rows

    def triple(self, i: int, walk: RowWalk | None, report: MineReport) -> Triple | None:
        """Row ``i`` with its negatives (a given one first, unless replaced), provenance and suspects."""
        cfg, record = self.cfg, self.record(i)
        picks = []
        if self.given_stays(i):
            picks.append(self._given_pick(i))
        picks += [self._pick(i, f) for f in (walk.chosen if walk else [])]
        if not picks:
            return None
        first = picks[0]
        pos_teacher = self.teacher_pos.get(i)
        return Triple(
            row_id=record.row_id,
            query=record.query,
            pos=record.pos,
            neg=first["text"],
            pos_origin="given",
            neg_origin=first["origin"],
            pos_score=float(self.pos_scores[i]),
            neg_score=first["score"],
            pos_rule="given",
            neg_rule=first["rule"],
            neg_rank=first["rank"],
            pos_teacher_score=pos_teacher,
            neg_teacher_score=first["teacher_score"],
            extra_negs=picks[1:],
            extra_pos=self._extra_positives(i, report),
            suspects=suspects_of(walk or RowWalk(), self.text, lambda c: None, cfg.keep_suspects),
        )

    def _given_pick(self, i: int) -> dict:
        record = self.record(i)
        score = float(self.q[i] @ self.pool_vectors[int(self.pool.neg_id[i])])
        return {"text": record.neg, "origin": "given", "rule": "given", "rank": None, "score": score,
                "teacher_score": self.teacher_given.get(i), "ref": None}  # fmt: skip

    def _pick(self, i: int, found: Found) -> dict:
        origin = "fallback" if found.rule == "fallback" else "mined"
        return {"text": self.text(found.cand), "origin": origin, "rule": found.rule, "rank": found.rank,
                "score": found.score, "teacher_score": found.teacher_score, "ref": None}  # fmt: skip

    def _extra_positives(self, i: int, report: MineReport) -> list[dict]:
        record = self.record(i)
        texts = self.guard.extra_positives(record.query, {record.query, record.pos})
        if not texts:
            return []
        report.judgements_applied += len(texts)
        teacher = self.guard.scores([record.query] * len(texts), texts) if texts else None
        ids = [self.pool.id_of(t) for t in texts]
        return [
            {"text": t, "rule": "review", "teacher_score": teacher[n] if teacher else None, "ref": None,
             "score": float(self.q[i] @ self.pool_vectors[ids[n]]) if ids[n] is not None else None}
            for n, t in enumerate(texts)
        ]  # fmt: skip


def _near(a: str, b: str, threshold: float) -> bool:
    """Two canonical forms are near-duplicates (``NearDuplicates.same_text``)."""
    return a == b or fuzz.ratio(a, b, score_cutoff=threshold) > 0


TeacherPairs = list[tuple[float | None, float | None]]  # each row's (teacher(q, pos), teacher(q, given neg))


def _given_triples(
    records: list[Record], encoder, cfg: MineConfig, report: MineReport, teacher: TeacherPairs
) -> list[Triple]:
    """Every row with its given negative; scores for a seeded sample of ``cfg.score_rows`` rows only (``teacher``:
    every row's teacher scores, when a teacher is set)."""
    scored = _score_sample(len(records), cfg)
    report.scored = len(scored)
    scores = _given_scores([records[i] for i in scored], encoder) if scored else []  # none: no encoder loaded
    by_row = dict(zip(scored, scores, strict=True))
    return [
        _triple(r, r.neg, "given", *by_row.get(i, (None, None)), report, rule="given", teacher=teacher[i])
        for i, r in enumerate(records)
    ]


def _score_sample(rows: int, cfg: MineConfig) -> list[int]:
    """The seeded sample of ``cfg.score_rows`` row positions (of ``rows``) whose given texts are embedded."""
    return sorted(random.Random(f"{cfg.seed}:scores").sample(range(rows), cfg.score_rows))


def given_only(cfg: MineConfig, teacher=None, judgements=None) -> bool:
    """Whether a pair source whose rows all hold a given negative has nothing to mine under ``cfg``: each given
    negative stays (no replacing, no teacher, no reviewer), one negative a row, only a sample scored."""
    plain = cfg.negatives_from == "mined" and not cfg.replace_negatives and cfg.negatives == 1
    return plain and cfg.score_rows is not None and teacher is None and not judgements


def given_triples_stream(
    records: Callable[[], Iterable[Record]], rows: int, encoder, cfg: MineConfig, report: MineReport
) -> Iterator[Triple]:
    """``mine_pairs`` of ``rows`` (more than ``cfg.score_rows``) records that all keep their given negative
    (``given_only``), as a stream: the same triples and report as ``_given_triples``, in bounded memory.
    ``records()`` is a fresh pass over the rows; a first pass collects the scored sample when there is one."""
    report.mode, report.negatives_from = "pairs", cfg.negatives_from
    scored = _score_sample(rows, cfg)
    report.scored = len(scored)
    wanted = set(scored)
    sample = [r for i, r in enumerate(records()) if i in wanted] if scored else []
    by_row = dict(zip(scored, _given_scores(sample, encoder) if scored else [], strict=True))
    for i, r in enumerate(records()):
        yield _triple(r, r.neg, "given", *by_row.get(i, (None, None)), report, rule="given")


def _teacher_pairs(records: list[Record], guard: Guard) -> list[tuple[float | None, float | None]]:
    """(teacher(q, pos), teacher(q, neg)) of each record (None without a teacher or a negative)."""
    with_neg = [i for i, r in enumerate(records) if r.neg]
    pos = guard.scores([r.query for r in records], [r.pos for r in records])
    neg = guard.scores([records[i].query for i in with_neg], [records[i].neg for i in with_neg])
    if pos is None:
        return [(None, None)] * len(records)
    by_row = dict(zip(with_neg, neg, strict=True))
    return [(pos[i], by_row.get(i)) for i in range(len(records))]


def _given_scores(records: list[Record], encoder) -> list[tuple[float, float]]:
    """(pos score, neg score) of each record's given texts."""
    # one call for the queries and both document sides: their texts share length buckets, fewer part-filled batches
    q, documents = encoder.embed_many(
        [([r.query for r in records], "query"), ([r.pos for r in records] + [r.neg for r in records], "document")]
    )
    p, n = documents[: len(records)], documents[len(records) :]
    return list(zip(np.einsum("ij,ij->i", q, p).tolist(), np.einsum("ij,ij->i", q, n).tolist(), strict=True))


def _triple(
    record: Record, neg: str, origin: str, pos_score, neg_score, report: MineReport, *, rule: str, teacher=(None, None),
    extra_negs: list[dict] | None = None,
) -> Triple:  # fmt: skip
    triple = Triple(
        row_id=record.row_id,
        query=record.query,
        pos=record.pos,
        neg=neg,
        pos_origin="given",
        neg_origin=origin,
        pos_score=pos_score,
        neg_score=neg_score,
        pos_rule="given",
        neg_rule=rule,
        pos_teacher_score=teacher[0],
        neg_teacher_score=teacher[1],
        extra_negs=extra_negs or [],
    )
    report.add(triple)
    return triple


# --- ablations: random or no negatives (MineConfig.negatives_from) -----------------------------------------------


def _pairs_without_mining(
    records: list[Record], encoder, cfg: MineConfig, report: MineReport, symmetric: bool, guard: Guard
) -> list[Triple]:
    """Pair rows with seeded random in-source negatives (``random``; a given negative is replaced too) or with
    none (``none``: an empty negative text, nothing embedded for it).

    No encoder is needed to choose: with ``random`` a seeded sample of ``score_rows`` rows (every row: null) is
    embedded for the first negative's scores, as for given negatives; with ``none`` nothing is embedded.
    """
    if cfg.negatives_from == "none":
        return [_triple(r, "", "none", None, None, report, rule="none") for r in records]
    negatives = _random_pair_negatives(records, cfg, symmetric)
    with_negative = [i for i in range(len(records)) if i in negatives]
    report.dropped["no_negative"] += len(records) - len(with_negative)
    rows = [Record(records[i].row_id, records[i].query, records[i].pos, negatives[i][0]) for i in with_negative]
    size = len(rows) if cfg.score_rows is None else min(cfg.score_rows, len(rows))
    scored = sorted(random.Random(f"{cfg.seed}:scores").sample(range(len(rows)), size))
    report.scored = len(scored)
    scores = dict(zip(scored, _given_scores([rows[i] for i in scored], encoder), strict=True)) if scored else {}
    teacher = _teacher_pairs(rows, guard)
    triples = []
    for n, (i, r) in enumerate(zip(with_negative, rows, strict=True)):
        extra = negatives[i][1:]
        extra_teacher = guard.scores([r.query] * len(extra), extra) if extra else None
        extra_negs = [
            {"text": t, "origin": "random", "rule": "random", "teacher_score": extra_teacher and extra_teacher[k]}
            for k, t in enumerate(extra)
        ]
        triples.append(
            _triple(r, r.neg, "random", *scores.get(n, (None, None)), report, rule="random", teacher=teacher[n],
                    extra_negs=extra_negs)
        )  # fmt: skip
    return triples


def _random_pair_negatives(records: list[Record], cfg: MineConfig, symmetric: bool) -> dict[int, list[str]]:
    """{row: up to ``cfg.negatives`` seeded random texts of the mining pool (positives, given negatives, symmetric
    queries), none a near-duplicate of the row's query, of a positive of any row sharing the query, or of each
    other}; rows with no such text are left out."""
    pool = list(dict.fromkeys([r.pos for r in records] + [r.neg for r in records if r.neg is not None]))
    if symmetric:
        pool = list(dict.fromkeys(pool + [r.query for r in records]))
    dups = NearDuplicates(pool, cfg.near_duplicate)
    siblings: dict[str, set[str]] = {}
    for r in records:
        siblings.setdefault(r.query, set()).add(r.pos)
    negatives = {}
    for i, record in enumerate(records):
        own = [canonical(record.query)] + [canonical(t) for t in sorted(siblings[record.query])]
        picked: list[int] = []
        rng = row_rng(cfg.seed, record.row_id + "#random-negative")

        def ok(candidate: int, own=own, picked=picked) -> bool:
            form = dups.form(candidate)
            return not any(dups.same_text(f, form) for f in own) and not any(dups.same(p, candidate) for p in picked)

        while len(picked) < cfg.negatives and (candidate := _random_pick(len(pool), ok, rng)) is not None:
            picked.append(candidate)
        if picked:
            negatives[i] = [pool[c] for c in picked]
    return negatives
