"""Decontaminate: keep evaluation-set text out of a release, in four layers, and report every hit.

1. registry: a source whose upstream dataset is also an evaluation set's (Super-NI ``Source``, the catalog's
   dataset ids) is marked "seen" for that set, or refused;
2. exact: the canonical form (``medi.stages.normalize.canonical``) of every text field of a row — query, positive,
   negative, each output — against every distinctive evaluation text (the primary test);
3. n-gram: texts sharing 13-grams (8-grams when the shorter text has 8-12 words) with an evaluation text,
   confirmed by coverage: the shared 13-grams cover at least ``coverage`` of the shorter text's words; the shared
   8-grams cover all of the shorter text, or ``short_coverage`` of both (a shared 8-word opening such as "how
   old do you have to be to" is common phrasing, not a copy);
4. embedding audit: the nearest evaluation text of each remaining query by cosine (faiss); pairs above
   ``audit_threshold`` are listed for review and nothing is dropped.

A row with a query, positive or output hit (layers 2-3) is dropped; a negative hit only clears the negative, so
mining replaces it. Evaluation inputs under ``exact_min_words`` words, outputs under ``output_min_words`` words,
and outputs repeated in ``label_repeats`` or more instances of one set (labels such as "Yes") are not matched:
short answers ("George W. Bush") recur across datasets without being copies.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from medi.errors import MediError, SourceError
from medi.schema import Record
from medi.search import Searcher
from medi.stages.normalize import NormalizeReport, canonical, normalize
from medi.stages.report import MAX_EXAMPLES

LAYERS = ("registry", "exact", "ngram", "embedding")
MAX_CANDIDATES = 5  # evaluation texts sharing the most n-grams get the coverage check
_ID = re.compile(r"[^a-z0-9]+")


def dataset_id(name: str) -> str:
    """The comparison form of an upstream dataset name: lowercase letters and digits only (``SQuAD 1.1`` → squad11)."""
    return _ID.sub("", name.lower())


@dataclass
class EvalSet:
    """An evaluation set: its texts (inputs first, then outputs) and the upstream datasets it comes from."""

    name: str
    inputs: list[str]
    outputs: list[str] = field(default_factory=list)
    datasets: frozenset[str] = frozenset()
    split: str = "test"

    @classmethod
    def from_records(cls, name: str, records: Iterable[Record], datasets: Iterable[str] = (), split: str = "test"):
        """Inputs = queries (and positives of pair sources), outputs = negatives and Super-NI outputs."""
        inputs, outputs = [], []
        for record in records:
            inputs.append(record.query)
            if record.pos is not None:
                inputs.append(record.pos)
            if record.neg is not None:
                outputs.append(record.neg)
            outputs.extend(record.outputs)
        return cls(name, inputs, outputs, frozenset(dataset_id(d) for d in datasets), split)


@dataclass
class DecontamConfig:
    exact_min_words: int = 3  # evaluation inputs shorter than this are not matched
    output_min_words: int = 6  # evaluation outputs shorter than this are not matched (short answers recur)
    label_repeats: int = 3  # an output found in this many instances of one set is a label, not matched
    ngram: int = 13
    short_ngram: int = 8  # for texts of short_ngram..ngram-1 words
    coverage: float = 0.5  # 13-grams: share of the shorter text covered
    short_coverage: float = 0.8  # 8-grams: share of both texts covered (or all of the shorter one)
    registry: Literal["mark", "refuse"] = "mark"
    audit: bool = True
    audit_threshold: float = 0.9
    audit_fields: tuple[str, ...] = ("query",)

    def __post_init__(self) -> None:
        if self.registry not in ("mark", "refuse"):
            raise ValueError(f"registry must be one of mark, refuse, not {self.registry!r}")


@dataclass
class EvalText:
    set_index: int
    text: str
    words: list[str]


class EvalIndex:
    """All evaluation sets of a build, indexed for the exact and n-gram layers (and embedded for the audit)."""

    def __init__(self, sets: list[EvalSet], config: DecontamConfig | None = None):
        self.sets = sets
        self.config = config or DecontamConfig()
        self.texts: list[EvalText] = []
        self.exact: dict[str, list[int]] = defaultdict(list)
        self.long_grams: dict[int, set[int]] = defaultdict(set)  # ngram-grams of texts >= ngram words
        self.short_grams: dict[int, set[int]] = defaultdict(set)  # short_ngram-grams of texts of 8-12 words
        self.all_short_grams: dict[int, set[int]] = defaultdict(set)  # short_ngram-grams of every text >= 8 words
        self._vectors: np.ndarray | None = None
        for number, eval_set in enumerate(sets):
            for text in self._distinctive(eval_set):
                self._add(number, text)

    def _distinctive(self, eval_set: EvalSet) -> list[str]:
        cfg = self.config
        labels = Counter(canonical(o) for o in eval_set.outputs)
        inputs = [t for t in dict.fromkeys(eval_set.inputs) if len(canonical(t).split()) >= cfg.exact_min_words]
        outputs = [
            o
            for o in dict.fromkeys(eval_set.outputs)
            if labels[canonical(o)] < cfg.label_repeats and len(canonical(o).split()) >= cfg.output_min_words
        ]
        return inputs + outputs

    def _add(self, set_index: int, text: str) -> None:
        form = canonical(text)
        words = form.split()
        if any(self.texts[i].set_index == set_index for i in self.exact.get(form, ())):
            return
        number = len(self.texts)
        self.texts.append(EvalText(set_index, text, words))
        self.exact[form].append(number)
        cfg = self.config
        if len(words) >= cfg.ngram:
            for gram in grams(words, cfg.ngram):
                self.long_grams[gram].add(number)
        if len(words) >= cfg.short_ngram:
            for gram in grams(words, cfg.short_ngram):
                self.all_short_grams[gram].add(number)
                if len(words) < cfg.ngram:
                    self.short_grams[gram].add(number)

    def exact_hits(self, form: str) -> list[int]:
        return self.exact.get(form, [])

    def ngram_hits(self, words: list[str]) -> list[tuple[int, float]]:
        """(evaluation text, coverage) for texts sharing n-grams with ``words`` and covering enough of them."""
        cfg = self.config
        if len(words) >= cfg.ngram:
            lookups = [(cfg.ngram, self.long_grams), (cfg.short_ngram, self.short_grams)]
        elif len(words) >= cfg.short_ngram:
            lookups = [(cfg.short_ngram, self.all_short_grams)]
        else:
            return []
        hits = []
        for n, index in lookups:
            shared = Counter(i for gram in grams(words, n) for i in index.get(gram, ()))
            for number, _ in shared.most_common(MAX_CANDIDATES):
                theirs = self.texts[number].words
                short_cover, long_cover = coverage(words, theirs, n)
                if self._confirmed(n, short_cover, long_cover):
                    hits.append((number, short_cover))
        return hits

    def _confirmed(self, n: int, short_cover: float, long_cover: float) -> bool:
        if n >= self.config.ngram:
            return short_cover >= self.config.coverage
        return short_cover == 1.0 or long_cover >= self.config.short_coverage

    def vectors(self, embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        if self._vectors is None:
            self._vectors = embed([t.text for t in self.texts])
        return self._vectors


def grams(words: list[str], n: int) -> list[int]:
    return [hash(tuple(words[i : i + n])) for i in range(len(words) - n + 1)]


def coverage(a: list[str], b: list[str], n: int) -> tuple[float, float]:
    """Shares of the shorter and of the longer word list covered by the n-grams the two lists share."""
    short, other = (a, b) if len(a) <= len(b) else (b, a)
    return _covered(short, other, n), _covered(other, short, n)


def _covered(words: list[str], other: list[str], n: int) -> float:
    theirs = set(grams(other, n))
    covered = np.zeros(len(words), dtype=bool)
    for start, gram in enumerate(grams(words, n)):
        if gram in theirs:
            covered[start : start + n] = True
    return float(covered.mean()) if len(words) else 0.0


@dataclass
class DecontamReport:
    """One source against every evaluation set: hits per layer and set, with examples."""

    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    changed: Counter = field(default_factory=Counter)
    registry: dict[str, list[str]] = field(default_factory=dict)  # eval set -> shared upstream datasets
    hits: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # eval set -> layer -> rows
    examples: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))

    def hit(self, eval_set: str, layer: str, **example) -> None:
        self.hits[eval_set][layer] += 1
        bucket = self.examples[eval_set]
        if sum(e["layer"] == layer for e in bucket) < MAX_EXAMPLES:
            bucket.append({"layer": layer, **example})

    def summary(self) -> dict:
        sets = sorted(set(self.hits) | set(self.registry))
        return {
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "changed": dict(sorted(self.changed.items())),
            "eval_sets": {
                name: {
                    "registry": self.registry.get(name, []),
                    **{layer: self.hits.get(name, {}).get(layer, 0) for layer in LAYERS[1:]},
                    "examples": self.examples.get(name, []),
                }
                for name in sets
            },
        }


def registry_overlap(source_datasets: Iterable[str], index: EvalIndex) -> dict[str, list[str]]:
    """{evaluation set: upstream datasets it shares with the source}."""
    own = {dataset_id(d) for d in source_datasets}
    return {s.name: sorted(own & s.datasets) for s in index.sets if own & s.datasets}


def decontaminate(
    records: list[Record],
    index: EvalIndex,
    report: DecontamReport,
    *,
    source: str = "",
    source_datasets: Iterable[str] = (),
    embed: Callable[[list[str]], np.ndarray] | None = None,
) -> list[Record]:
    """Records free of evaluation text (layers 1-3); layer 4 runs when ``embed`` is given and only reports."""
    cfg = index.config
    report.registry = registry_overlap(source_datasets, index)
    if report.registry and cfg.registry == "refuse":
        shared = "; ".join(f"{name}: {', '.join(ds)}" for name, ds in report.registry.items())
        raise SourceError(source, "shares_eval_dataset", f"shares its upstream dataset with evaluation sets ({shared})")
    if not index.texts:  # no evaluation text to find (no eval sets, or --eval-sets none): every row stays
        report.kept = len(records)
        return list(records)
    kept = []
    for record in records:
        cleaned = _check_record(record, index, report)
        if cleaned is not None:
            kept.append(cleaned)
    report.kept = len(kept)
    if embed is not None and cfg.audit and kept and index.texts:
        audit(kept, index, report, embed)
    return kept


def _fields(record: Record) -> list[tuple[str, str]]:
    fields = [("query", record.query)]
    if record.pos is not None:
        fields.append(("pos", record.pos))
    if record.neg is not None:
        fields.append(("neg", record.neg))
    fields += [("output", o) for o in record.outputs]
    return fields


def _check_record(record: Record, index: EvalIndex, report: DecontamReport) -> Record | None:
    """The record, the record with its negative cleared, or None when a query/positive/output is contaminated."""
    neg_hit = False
    for name, text in _fields(record):
        found = _first_hit(text, index)
        if found is None:
            continue
        layer, number, extra = found
        eval_text = index.texts[number]
        report.hit(
            index.sets[eval_text.set_index].name,
            layer,
            row_id=record.row_id,
            field=name,
            text=text,
            eval_text=eval_text.text,
            **extra,
        )
        if name != "neg":
            report.dropped[f"eval_{layer}"] += 1
            return None
        neg_hit = True
    if neg_hit:
        report.changed["eval_neg_to_mine"] += 1
        return Record(row_id=record.row_id, query=record.query, pos=record.pos, neg=None, outputs=record.outputs)
    return record


def _first_hit(text: str, index: EvalIndex) -> tuple[str, int, dict] | None:
    form = canonical(text)
    if exact := index.exact_hits(form):
        return "exact", exact[0], {}
    if ngram := index.ngram_hits(form.split()):
        number, cover = max(ngram, key=lambda hit: (hit[1], -hit[0]))
        return "ngram", number, {"coverage": round(cover, 3)}
    return None


def audit(
    records: list[Record],
    index: EvalIndex,
    report: DecontamReport,
    embed: Callable[[list[str]], np.ndarray],
) -> None:
    """Layer 4: list rows whose query (or other audited field) is a likely paraphrase of an evaluation text."""
    cfg = index.config
    texts, owners = [], []
    for record in records:
        for name, text in _fields(record):
            if name in cfg.audit_fields:
                texts.append(text)
                owners.append((record.row_id, name))
    scores, ids = Searcher(index.vectors(embed)).search(embed(texts), 1)
    for row in np.flatnonzero(scores[:, 0] >= cfg.audit_threshold):
        eval_text = index.texts[int(ids[row, 0])]
        row_id, name = owners[row]
        report.hit(
            index.sets[eval_text.set_index].name,
            "embedding",
            row_id=row_id,
            field=name,
            text=texts[row],
            eval_text=eval_text.text,
            cosine=round(float(scores[row, 0]), 4),
        )


def load_eval_sets(catalog, selection: str, dirs: list, options, cache_dir) -> tuple[list[EvalSet], list, dict]:
    """(evaluation sets, [(name, sha256)] of their files, {name: why skipped}) for a build.

    ``selection``: ``mirror`` (the catalog's eval sources the data dirs hold; nothing is downloaded), ``none``,
    ``all`` (every eval source, downloaded where the data dirs lack it and ``options.remote`` allows), or a
    comma-separated list of eval source names. With ``options.on_error == "fail"`` a set that cannot be read, or a
    bad row in one, stops the build (a set skipped or cut short would check the release against less than asked).
    """
    from medi.adapters import get_adapter
    from medi.fetch import fetch, find_in_mirrors

    specs = _eval_specs(catalog, selection)
    if selection == "mirror":
        specs = [s for s in specs if s.path or find_in_mirrors(s, dirs)]
    sets, fingerprint, skipped = [], [], {}
    remote = options.remote and selection != "mirror"
    for spec in specs:
        try:
            fetched = fetch(spec, dirs, catalog.root, remote=remote, cache_dir=cache_dir)
            adapted = get_adapter(spec.adapter, spec.name)(fetched.path, spec, options.seed)
            rows = _eval_rows(adapted.rows, spec.name, fail=options.on_error == "fail")
            records = list(normalize(rows, NormalizeReport(), options.max_chars))
        except SourceError as exc:
            if options.on_error == "fail":
                raise MediError(f"evaluation set {exc} (--on-error fail)") from exc
            skipped[spec.name] = str(exc)
            continue
        sets.append(EvalSet.from_records(spec.name, records, catalog.datasets_of(spec, adapted.meta)))
        fingerprint.append((spec.name, fetched.sha256))
    return sets, fingerprint, skipped


def _eval_rows(rows: Iterable, name: str, *, fail: bool) -> Iterable[Record]:
    for row in rows:
        if isinstance(row, Record):
            yield row
        elif fail:
            raise MediError(f"evaluation set {name}: {row} (--on-error fail)")


def _eval_specs(catalog, selection: str) -> list:
    available = catalog.eval_specs
    if selection in ("mirror", "all"):
        return list(available.values())
    if selection == "none":
        return []
    names = [n.strip() for n in selection.split(",") if n.strip()]
    if unknown := [n for n in names if n not in available]:
        raise MediError(f"unknown evaluation sets {unknown}: use mirror, all, none or names of eval/ sources")
    return [available[n] for n in names]


def training_datasets(registry: dict[str, dict[str, list[str]]], splits: dict[str, str]) -> dict[str, list[str]]:
    """MTEB ModelMeta ``training_datasets`` form ({evaluation set: [splits]}) for the whole release.

    ``registry``: {source: {eval set: shared datasets}}; ``splits``: {eval set: split the sources drew on}.
    """
    out: dict[str, set[str]] = defaultdict(set)
    for per_source in registry.values():
        for eval_set in per_source:
            out[eval_set].add(splits.get(eval_set, "train"))
    return {name: sorted(s) for name, s in sorted(out.items())}


def contamination_report(reports: dict[str, DecontamReport], index: EvalIndex) -> dict:
    """The release's contamination report: per source and evaluation set, hits per layer with examples."""
    registry = {source: r.registry for source, r in sorted(reports.items()) if r.registry}
    return {
        "layers": list(LAYERS),
        "config": asdict(index.config),
        "eval_sets": [
            {"name": s.name, "datasets": sorted(s.datasets), "split": s.split, "texts": len(s.inputs) + len(s.outputs)}
            for s in index.sets
        ],
        "source_shares_dataset_with": {source: {name: ["train"] for name in per} for source, per in registry.items()},
        "training_datasets": training_datasets(registry, {}),
        "totals": _totals(reports),
        "sources": {source: r.summary() for source, r in sorted(reports.items()) if r.registry or r.hits},
    }


def _totals(reports: dict[str, DecontamReport]) -> dict[str, int]:
    totals = Counter({layer: 0 for layer in LAYERS})
    for r in reports.values():
        totals["registry"] += bool(r.registry)
        for per_layer in r.hits.values():
            totals.update(per_layer)
    return dict(totals)
