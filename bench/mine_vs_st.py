"""Benchmark: medi's hard-negative miner against sentence-transformers' ``mine_hard_negatives``.

One process, the same real pairs, the same encoder (bundled all-MiniLM-L6-v2) and window, cold (empty caches)
and warm (caches filled by the cold run). Prints a table and ratios against the sentence-transformers baseline.

    python bench/mine_vs_st.py --shared ../shared/data --pairs 10000 [--warm-repeats 5] [--int8]
    python bench/mine_vs_st.py --sections candidates teacher --pairs 2000 --teacher-pairs 500

Fair in both directions: both miners get a loaded model that has already encoded once (medi's own encoder, so its
cold run does not pay for loading weights that ST was handed), every timing starts after a full garbage
collection (so no run pays for the garbage of the one before), and the warm runs alternate ST / medi
``--warm-repeats`` times, the medians compared (a sub-second run on a shared machine moves by 2x between tries).
Cold runs are timed once (minutes each); their CPU seconds are printed too, steadier than wall time when other
processes load the machine. ST does less work per row: it gives up on a row whose top ``window`` holds no text
below the margin (most of the Super-NI rows), medi searches below the ceiling and gives every row a negative.

With --int8 it also runs medi's opt-in int8 encoder cold and reports its neighbour agreement with fp32: the
overlap of each text's 10 nearest neighbours, and the share of rows that get the same negative.

--sections picks what runs (default: st): ``st`` the comparison above; ``candidates`` the candidate lists of issue 19
against dense in the same run, on the same pairs and cached embeddings: an exact dense top-``window`` search, BM25
(bm25s: index build and search), hybrid (both, merged by reciprocal rank), and the whole warm mine with each
(``mining.candidates``); ``teacher`` the teacher guard (``--teacher``, default all-mpnet-base-v2 from
bench/teacher_model.py) on the first ``--teacher-pairs`` pairs: warm mining with and without it, the teacher cold
(its model scores every pair) and warm (scores cached), its cost per 1,000 rows and per 1,000 pairs, and the
candidates it removed. medi must be importable (``PYTHONPATH=.`` from the checkout).

Pairs: Super-NI (input, first output) from the train tasks in SHARED/super-ni, plus the embedding-training rows
(query, first positive) in SHARED/st-embedding; a seeded sample of --pairs of them.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from medi.encode import Encoder, EncoderConfig
from medi.schema import Record
from medi.stages.mine import MineConfig, MineReport, mine_pairs


def load_pairs(shared: Path, count: int, seed: int) -> list[tuple[str, str]]:
    train = set((shared / "super-ni/splits/default/train_tasks.txt").read_text().split())
    pairs = []
    for path in sorted((shared / "super-ni/tasks").glob("*.json")):
        if path.stem not in train:
            continue
        for inst in json.loads(path.read_text(encoding="utf-8"))["Instances"]:
            outputs = [o for o in inst["output"] if o.strip()]
            if inst["input"].strip() and outputs:
                pairs.append((inst["input"], outputs[0]))
    for path in sorted((shared / "st-embedding").rglob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            pairs.append((row["query"], row["pos"][0]))
    pairs = list(dict.fromkeys(pairs))
    random.Random(seed).shuffle(pairs)
    return pairs[:count]


class PeakRss:
    """Peak resident memory above the starting level while the block runs (sampled every 20 ms)."""

    def __enter__(self):
        self.start = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def mib(self) -> float:
        return (self.peak - self.start) / 2**20


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def run_st(pairs, model, window: int, cache_folder: str | None):
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    data = Dataset.from_dict({"query": [q for q, _ in pairs], "pos": [p for _, p in pairs]})
    result = mine_hard_negatives(
        data,
        model,
        range_max=window,
        relative_margin=0.05,
        num_negatives=1,
        sampling_strategy="top",
        use_faiss=True,
        batch_size=64,
        verbose=False,
        cache_folder=cache_folder,
    )
    return [(r["query"], r["pos"], r["negative"]) for r in result]


def run_medi(
    pairs,
    cache_dir: Path,
    window: int,
    precision: str = "fp32",
    encoder: Encoder | None = None,
    candidates: str = "dense",
    teacher=None,
):
    encoder = encoder or Encoder(EncoderConfig(precision=precision), cache_dir=cache_dir)
    records = [Record(row_id=f"bench:{i}", query=q, pos=p) for i, (q, p) in enumerate(pairs)]
    report = MineReport()
    cfg = MineConfig(window=window, candidates=candidates)
    triples = mine_pairs(records, encoder, cfg, report, symmetric=False, teacher=teacher)
    return [(t.query, t.pos, t.neg) for t in triples], report, encoder


def share_neg_ge_pos(triples, encoder: Encoder) -> float:
    if not triples:
        return float("nan")
    q = encoder.embed([t[0] for t in triples])
    p = encoder.embed([t[1] for t in triples])
    n = encoder.embed([t[2] for t in triples])
    return float(np.mean(np.einsum("ij,ij->i", q, n) >= np.einsum("ij,ij->i", q, p)))


def neighbour_agreement(fp32: Encoder, int8: Encoder, texts: list[str], k: int = 10, sample: int = 2000) -> float:
    """Mean overlap of the k nearest neighbours (among ``texts``) that fp32 and int8 embeddings give."""
    a, b = fp32.embed(texts), int8.embed(texts)
    rows = np.random.default_rng(0).choice(len(texts), min(sample, len(texts)), replace=False)
    near_a = np.argsort(-(a[rows] @ a.T), axis=1)[:, 1 : k + 1]  # column 0 is the text itself
    near_b = np.argsort(-(b[rows] @ b.T), axis=1)[:, 1 : k + 1]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(near_a, near_b, strict=True)]))


def loaded_encoder(cache_dir: Path, precision: str = "fp32") -> Encoder:
    """medi's encoder with its model loaded and run once, as ST's model is before its cold run."""
    encoder = Encoder(EncoderConfig(precision=precision), cache_dir=cache_dir)
    encoder.model.encode(["warm up"])
    return encoder


def timed(fn, *args, **kwargs):
    """(result, wall seconds, peak MiB above the start, CPU seconds of this process), after a full collection."""
    gc.collect()
    with PeakRss() as rss:
        start, cpu = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return out, seconds, rss.mib, cpu


def warm_medians(pairs, model, work: Path, window: int, repeats: int) -> tuple[float, float, list, list]:
    """Median wall seconds of ST's and medi's warm runs, alternated ``repeats`` times, and every run's seconds."""
    st_runs, medi_runs = [], []
    for _ in range(repeats):
        st_runs.append(timed(run_st, pairs, model, window, str(work / "st-cache"))[1])
        (_, _, encoder), seconds, _, _ = timed(run_medi, pairs, work / "medi-cache", window)
        assert encoder.texts_encoded == 0, "warm run re-encoded texts"
        medi_runs.append(seconds)
    return float(np.median(st_runs)), float(np.median(medi_runs)), st_runs, medi_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warm-repeats", type=int, default=5, help="warm runs of each miner, alternated")
    parser.add_argument("--int8", action="store_true", help="also run medi's opt-in int8 encoder (cold)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=["st"], help="what to run (default: st)")
    parser.add_argument("--teacher", default=None, help="teacher folder (default: all-mpnet-base-v2, assembled)")
    parser.add_argument("--teacher-pairs", type=int, default=500, help="pairs the teacher section mines")
    args = parser.parse_args()
    pairs = load_pairs(args.shared, args.pairs, args.seed)
    print(f"{len(pairs)} real pairs from {args.shared}", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="medi-bench-"))
    if "st" in args.sections:
        st_rows(args, pairs, work)
    if "candidates" in args.sections:
        candidate_rows(pairs, work, args.window, args.warm_repeats)
    if "teacher" in args.sections:
        teacher_rows(pairs[: args.teacher_pairs], work, args.window, args.teacher)


SECTIONS = ("st", "candidates", "teacher")


def st_rows(args, pairs, work: Path) -> None:
    """medi against sentence-transformers' mine_hard_negatives, cold and warm."""
    from sentence_transformers import SentenceTransformer

    model = Encoder(cache_dir=work / "unused").model  # the same bundled weights medi loads
    model.encode(["warm up"])  # first-call overhead outside every timing

    st_cold, st_cold_s, st_cold_mib, st_cold_cpu = timed(run_st, pairs, model, args.window, str(work / "st-cache"))
    encoder = loaded_encoder(work / "medi-cache")
    (medi_cold, report, _), medi_cold_s, medi_cold_mib, medi_cold_cpu = timed(
        run_medi, pairs, work / "medi-cache", args.window, encoder=encoder
    )
    del encoder
    st_warm_s, medi_warm_s, st_runs, medi_runs = warm_medians(pairs, model, work, args.window, args.warm_repeats)

    distinct = list(dict.fromkeys([q for q, _ in pairs] + [p for _, p in pairs]))
    _, encode_s, _, encode_cpu = timed(model.encode, distinct, batch_size=64, normalize_embeddings=True)
    del SentenceTransformer

    judge = Encoder(cache_dir=work / "medi-cache")  # scores both outputs with the same cached embeddings
    rows = [
        (
            "sentence-transformers (baseline)",
            st_cold_s,
            st_warm_s,
            st_cold_mib,
            len(st_cold),
            len(pairs) - len(st_cold),
            share_neg_ge_pos(st_cold, judge),
        ),
        (
            "medi",
            medi_cold_s,
            medi_warm_s,
            medi_cold_mib,
            len(medi_cold),
            report.neg_origin.get("fallback", 0),
            share_neg_ge_pos(medi_cold, judge),
        ),
    ]
    header = ("miner", "cold s", "cold cpu s", "warm s", "peak MiB", "rows", "dropped/fallback", "neg>=pos")
    print("\n{:34} {:>8} {:>10} {:>8} {:>9} {:>6} {:>17} {:>9}".format(*header))
    for (name, cold, warm, mib, kept, lost, share), cpu in zip(rows, (st_cold_cpu, medi_cold_cpu), strict=True):
        print(f"{name:34} {cold:8.1f} {cpu:10.1f} {warm:8.3f} {mib:9.0f} {kept:6d} {lost:17d} {share:9.3f}")
    print(f"\nwarm runs (s), alternated: ST {_listed(st_runs)}; medi {_listed(medi_runs)}")
    print(f"pure encode of medi's {len(distinct)} distinct texts: {encode_s:.1f} s ({encode_cpu:.1f} s CPU)")
    print("ratios (target in brackets):")
    print(f"  cold speed-up, ST / medi:        {st_cold_s / medi_cold_s:5.2f}x  [>= 1.5]")
    print(f"  warm speed-up, ST warm / medi:   {st_warm_s / medi_warm_s:5.2f}x  [>= 2] (medians)")
    cpu_ratio = medi_cold_cpu / encode_cpu
    print(f"  medi cold / pure encode:         {medi_cold_s / encode_s:5.2f}   [<= 0.85]; CPU seconds {cpu_ratio:.2f}")
    print(f"  peak RSS, medi / ST:             {medi_cold_mib / max(st_cold_mib, 1):5.2f}   [<= 1]")
    print(f"  negatives >= positive, medi:     {rows[1][6]:.3f}  [<= 0.02]; ST {rows[0][6]:.3f}")
    print(f"  fallbacks (medi) vs dropped (ST): {rows[1][5]} vs {rows[0][5]}")
    if args.int8:
        report_int8(pairs, work, args.window, medi_cold, medi_cold_s, st_cold_s, distinct, judge)


def _listed(seconds: list[float]) -> str:
    return " ".join(f"{s:.3f}" for s in seconds)


def report_int8(pairs, work, window, medi_cold, medi_cold_s, st_cold_s, distinct, judge) -> None:
    encoder = loaded_encoder(work / "medi-int8", "int8")
    (int8_rows, _, int8_encoder), int8_s, int8_mib, _ = timed(
        run_medi, pairs, work / "medi-int8", window, encoder=encoder
    )
    same_negative = np.mean([a[2] == b[2] for a, b in zip(medi_cold, int8_rows, strict=True)])
    print("\nmedi --precision int8 (opt-in):")
    print(f"  cold {int8_s:.1f} s: {st_cold_s / int8_s:.2f}x faster than ST, {medi_cold_s / int8_s:.2f}x than fp32")
    print(f"  peak RSS {int8_mib:.0f} MiB; negatives >= positive (fp32 judge) {share_neg_ge_pos(int8_rows, judge):.3f}")
    print(f"  10-NN overlap with fp32: {neighbour_agreement(judge, int8_encoder, distinct):.3f}")
    print(f"  same negative as fp32: {same_negative:.3f}")


def median_timed(repeats: int, fn, *args, **kwargs):
    """(last result, median wall seconds, median CPU seconds) of ``repeats`` runs."""
    runs = [timed(fn, *args, **kwargs) for _ in range(max(1, repeats))]
    return runs[-1][0], float(np.median([r[1] for r in runs])), float(np.median([r[3] for r in runs]))


def candidate_rows(pairs, work: Path, window: int, repeats: int) -> None:
    """BM25 and hybrid candidate lists against dense ones (the baseline), on the same pairs, in speed."""
    from medi.lexical import Bm25Index, hybrid_merge
    from medi.search import Searcher

    queries, pool = [q for q, _ in pairs], list(dict.fromkeys(p for _, p in pairs))
    encoder = loaded_encoder(work / "medi-candidates")
    (q, pool_vectors), embed_s, _, embed_cpu = timed(encoder.embed_many, [(queries, "query"), (pool, "document")])
    searcher = Searcher(pool_vectors)
    dense, dense_s, dense_cpu = median_timed(repeats, searcher.search, q, window)
    index, build_s, build_cpu = median_timed(repeats, Bm25Index, pool)
    lexical, search_s, search_cpu = median_timed(repeats, index.search, queries, window)
    _, merge_s, merge_cpu = median_timed(repeats, hybrid_merge, dense, lexical, window)
    per_k = 1000 / len(pairs)
    print(f"\ncandidate lists: {len(pairs)} queries, {len(pool)} documents, top {window} each (medians of {repeats})")
    print(f"{'candidates':44} {'s':>8} {'cpu s':>8} {'s/1k rows':>10} {'vs dense':>9}")
    rows = [
        ("dense: exact top-k of cached embeddings", dense_s, dense_cpu),
        ("bm25: index build (bm25s)", build_s, build_cpu),
        ("bm25: search", search_s, search_cpu),
        ("bm25: build + search", build_s + search_s, build_cpu + search_cpu),
        ("hybrid: dense + bm25 + rank fusion", dense_s + build_s + search_s + merge_s,
         dense_cpu + build_cpu + search_cpu + merge_cpu),
        ("(cold embedding of those texts, for scale)", embed_s, embed_cpu),
    ]  # fmt: skip
    for name, seconds, cpu in rows:
        print(f"{name:44} {seconds:8.3f} {cpu:8.3f} {seconds * per_k:10.3f} {seconds / dense_s:8.2f}x")
    overlap = np.mean([len(set(a) & set(b) - {-1}) / window for a, b in zip(dense[1], lexical[1], strict=True)])
    print(f"  dense and bm25 lists share {overlap:.1%} of their candidates")
    mined = {}
    print(f"\nwhole warm mine by mining.candidates (medians of {repeats}):")
    print(f"{'candidates':10} {'s':>8} {'cpu s':>8} {'vs dense':>9} {'fallbacks':>10} {'neg>=pos':>9}  neg_rule")
    for mode in ("dense", "bm25", "hybrid"):
        (triples, report, _), seconds, cpu = median_timed(
            repeats, run_medi, pairs, work / "medi-candidates", window, encoder=encoder, candidates=mode
        )
        mined[mode] = (triples, seconds)
        fallbacks, share = report.neg_origin.get("fallback", 0), share_neg_ge_pos(triples, encoder)
        ratio, rules = seconds / mined["dense"][1], dict(report.neg_rule)
        print(f"{mode:10} {seconds:8.3f} {cpu:8.3f} {ratio:8.2f}x {fallbacks:10d} {share:9.3f}  {rules}")
    for mode in ("bm25", "hybrid"):
        same = np.mean([a[2] == b[2] for a, b in zip(mined["dense"][0], mined[mode][0], strict=True)])
        print(f"  {mode}: the same negative as dense in {same:.1%} of rows")


def teacher_rows(pairs, work: Path, window: int, teacher_path: str | None) -> None:
    """The teacher guard: its cost per 1,000 rows (cold: the teacher scores every pair; warm: cached) against
    medi's warm mine without it, and the candidates it removed."""
    from medi.teacher import Teacher

    if teacher_path is None:
        from teacher_model import model_folder  # bench/teacher_model.py

        teacher_path = str(model_folder())
    encoder = loaded_encoder(work / "medi-teacher")
    # the miner's cold run (its encoder embeds every text; cached for the runs below): the teacher's cost compares to it
    _, student_s, _, student_cpu = timed(run_medi, pairs, work / "medi-teacher", window, encoder=encoder)
    (base, base_report, _), base_s, _, base_cpu = timed(run_medi, pairs, work / "medi-teacher", window, encoder=encoder)
    teacher = Teacher.load(teacher_path, cache_dir=work / "teacher-cache")
    _warm_up(teacher)
    (guarded, report, _), cold_s, _, cold_cpu = timed(
        run_medi, pairs, work / "medi-teacher", window, encoder=encoder, teacher=teacher
    )
    again = Teacher.load(teacher_path, cache_dir=work / "teacher-cache")
    _, warm_s, _, warm_cpu = timed(run_medi, pairs, work / "medi-teacher", window, encoder=encoder, teacher=again)
    assert again.pairs_scored == 0, "warm teacher run scored pairs again"
    rows, per_k = len(pairs), 1000 / len(pairs)
    texts = teacher.encoder.texts_encoded if teacher.kind == "bi-encoder" else None
    identity = teacher.identity()
    print(f"\nteacher guard: {identity['name']} ({identity['kind']}, weights {identity['weights_sha256'][:12]}…)")
    print(f"  {rows} rows, window {window}, teacher_relative 0.95; the miner's embeddings cached after its cold run")
    print(f"{'run':40} {'s':>8} {'cpu s':>8} {'s/1k rows':>10}")
    for name, seconds, cpu in (
        ("medi cold, no teacher (student embeds)", student_s, student_cpu),
        ("medi warm, no teacher (baseline)", base_s, base_cpu),
        ("medi + teacher, cold (scores computed)", cold_s, cold_cpu),
        ("medi + teacher, warm (scores cached)", warm_s, warm_cpu),
    ):
        print(f"{name:40} {seconds:8.2f} {cpu:8.2f} {seconds * per_k:10.2f}")
    cold_extra, warm_extra = (cold_s - base_s) * per_k, (warm_s - base_s) * per_k
    print(f"  teacher cost per 1,000 rows: cold +{cold_extra:.1f} s, warm +{warm_extra:.2f} s")
    ratio, cpu_ratio = (cold_s - base_s) / student_s, (cold_cpu - base_cpu) / student_cpu
    print(f"  cold teacher / the miner's own cold mine: {ratio:.2f}x wall, {cpu_ratio:.2f}x CPU seconds")
    pair_cost = (cold_s - base_s) / max(teacher.pairs_scored, 1) * 1000
    scored = teacher.pairs_scored
    print(f"  pairs scored: {scored} ({scored / rows:.2f} a row), {pair_cost:.1f} s per 1,000 pairs")
    if texts is not None:
        print(f"  texts the teacher embedded: {texts} ({texts / rows:.2f} a row)")
    removed = {rule: report.removed.get(rule, 0) for rule in ("teacher_relative", "teacher_max_score")}
    print(f"  candidates removed by the teacher: {removed}, of {report.examined} examined")
    print(f"  (without the teacher {base_report.examined} examined; removed {dict(base_report.removed)})")
    changed = np.mean([a[2] != b[2] for a, b in zip(base, guarded, strict=True)])
    print(f"  rows whose negative changed: {changed:.1%}; rows without a candidate: {report.rows_without_candidate}")
    print(f"  fallbacks: {report.neg_origin.get('fallback', 0)} (baseline {base_report.neg_origin.get('fallback', 0)})")


def _warm_up(teacher) -> None:
    """Load the teacher's model outside every timing, as the miner's is."""
    if teacher.kind == "bi-encoder":
        teacher.encoder.model.encode(["warm up"])
    else:
        teacher.cross_encoder.predict([("warm", "up")])


if __name__ == "__main__":
    main()
