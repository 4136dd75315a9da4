"""Evaluation sets for ``medi probe``: detected from a folder's files, loaded, and scored by the standard protocols.

- STS: one ``*.tsv``/``*.csv`` (``.gz`` too) with ``sentence1``, ``sentence2``, ``score`` (rows of a ``split``
  column other than ``test`` are left out) → Spearman of the cosine similarities (MTEB's ``cosine_spearman``, what
  sentence-transformers' ``EmbeddingSimilarityEvaluator`` reports as ``spearman_cosine``).
- Retrieval (BEIR): ``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv`` → nDCG@10, MRR@10, Recall@100 by exact
  search, as trec_eval counts them (graded gains); a document whose id is the query's id is never a result (MTEB).
- Classification: one ``*.jsonl`` of ``text``, ``label`` and optional ``split`` (train/test; without it a seeded
  50/50 split) → accuracy of MTEB's protocol: logistic regression (max_iter 100) on the embeddings of 8 training
  texts per label, drawn anew in each of 10 seeded experiments, averaged.
- ``probe.yaml`` beside the files: ``kind``, ``query_instruction``, ``document_instruction``, ``published``.

An evaluation sees its texts through ``embed(texts) -> unit vectors``; it asks for all of them in one call, so
an embedder that embeds each distinct text once (``medi.encode.Encoder``) never embeds a text twice.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medi.errors import MediError, explain_validation
from medi.yamlio import load_yaml

Kind = Literal["sts", "retrieval", "classification"]
Embed = Callable[[list[str]], np.ndarray]
PROBE_YAML = "probe.yaml"
MTEB_SEED = 42  # MTEB's task seed: the classification draws and the split of a file without one
TOP_K = 100  # results kept per query: enough for Recall@100

# Used when probe.yaml names no instruction; INSTRUCTOR-style wordings ("Represent the ... for ...:")
DEFAULT_INSTRUCTIONS: dict[str, tuple[str, str]] = {
    "sts": ("Represent the sentence for retrieving semantically similar sentences: ",) * 2,
    "retrieval": (
        "Represent the question for retrieving supporting documents: ",
        "Represent the document for retrieval: ",
    ),
    "classification": ("Represent the text for classifying its category: ",) * 2,
}


class ProbeYaml(BaseModel):
    """``probe.yaml`` beside an evaluation set's files."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind | None = None  # overrides detection from the file names
    query_instruction: str | None = None  # STS: sentence1; classification: every text
    document_instruction: str | None = None  # STS: sentence2; classification: used when query_instruction is absent
    published: dict[str, dict[str, float | str]] = Field(default_factory=dict)  # {model: {metric: value, source}}
    samples_per_label: int = Field(default=8, ge=1)  # classification: MTEB's training texts per label
    n_experiments: int = Field(default=10, ge=1)  # classification: MTEB's draws, averaged


def with_instruction(instruction: str, text: str) -> str:
    """The text as INSTRUCTOR reads it: the instruction right before it (a space between unless it ends in one)."""
    if not instruction:
        return text
    return instruction + text if instruction[-1].isspace() else f"{instruction} {text}"


@dataclass
class EvalTask:
    """One evaluation set: its name (the folder's), kind, files and instructions."""

    name: str
    folder: Path
    config: ProbeYaml
    kind: Kind = "sts"
    metrics: tuple[str, ...] = ()
    main_metric: str = ""

    @property
    def instructions(self) -> tuple[str, str]:
        """(query, document) instructions for the instructed protocol: probe.yaml's, else the kind's defaults."""
        query, document = self.config.query_instruction, self.config.document_instruction
        if query is None and document is None:
            return DEFAULT_INSTRUCTIONS[self.kind]
        return (query if query is not None else document), (document if document is not None else query)

    def texts(self) -> list[str]:
        """The texts a training release must not hold (for the contamination check)."""
        raise NotImplementedError

    def evaluate(self, embed: Embed, instructed: bool) -> dict[str, float]:
        """``{metric: value}`` (0-1) of the embedder, with or without the instructions."""
        raise NotImplementedError

    def published(self, model: str) -> dict | None:
        """probe.yaml's published score of ``model`` (matched by its name without the organisation), if any."""
        wanted = _model_key(model)
        for name, entry in self.config.published.items():
            if _model_key(name) == wanted:
                return entry
        return None


def _model_key(name: str) -> str:
    return name.removeprefix("bundled:").removesuffix(" (bundled)").rstrip("/").rsplit("/", 1)[-1].lower()


@dataclass
class STSTask(EvalTask):
    pairs: list[tuple[str, str]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    kind: Kind = "sts"
    metrics: tuple[str, ...] = ("cosine_spearman", "cosine_pearson")
    main_metric: str = "cosine_spearman"

    def texts(self) -> list[str]:
        return [text for pair in self.pairs for text in pair]

    def evaluate(self, embed: Embed, instructed: bool) -> dict[str, float]:
        from scipy.stats import pearsonr, spearmanr

        first, second = self.instructions if instructed else ("", "")
        left = [with_instruction(first, a) for a, _ in self.pairs]
        right = [with_instruction(second, b) for _, b in self.pairs]
        vectors = unit(embed(left + right))
        cosines = np.sum(vectors[: len(left)] * vectors[len(left) :], axis=1)
        return {
            "cosine_spearman": float(spearmanr(self.scores, cosines)[0]),
            "cosine_pearson": float(pearsonr(self.scores, cosines)[0]),
        }


@dataclass
class RetrievalTask(EvalTask):
    queries: dict[str, str] = field(default_factory=dict)  # only queries with judgements
    corpus: dict[str, str] = field(default_factory=dict)  # id -> (title + " " + text).strip()
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    kind: Kind = "retrieval"
    metrics: tuple[str, ...] = ("ndcg_at_10", "mrr_at_10", "recall_at_100")
    main_metric: str = "ndcg_at_10"

    def texts(self) -> list[str]:
        judged = {doc for docs in self.qrels.values() for doc in docs}
        return list(self.queries.values()) + [self.corpus[doc] for doc in judged]

    def evaluate(self, embed: Embed, instructed: bool) -> dict[str, float]:
        query_instruction, doc_instruction = self.instructions if instructed else ("", "")
        query_ids, doc_ids = list(self.queries), list(self.corpus)
        texts = [with_instruction(query_instruction, self.queries[q]) for q in query_ids]
        texts += [with_instruction(doc_instruction, self.corpus[d]) for d in doc_ids]
        vectors = unit(embed(texts))
        ranked = rank(vectors[: len(query_ids)], vectors[len(query_ids) :], query_ids, doc_ids)
        return retrieval_metrics(ranked, self.qrels)


@dataclass
class ClassificationTask(EvalTask):
    train: list[tuple[str, str | int]] = field(default_factory=list)
    test: list[tuple[str, str | int]] = field(default_factory=list)
    kind: Kind = "classification"
    metrics: tuple[str, ...] = ("accuracy", "f1")
    main_metric: str = "accuracy"

    def texts(self) -> list[str]:
        return [text for text, _ in self.test]

    def evaluate(self, embed: Embed, instructed: bool) -> dict[str, float]:
        instruction = self.instructions[0] if instructed else ""
        texts = [with_instruction(instruction, text) for text, _ in self.train + self.test]
        vectors = embed(texts)
        return mteb_classification(
            vectors[: len(self.train)],
            [label for _, label in self.train],
            vectors[len(self.train) :],
            [label for _, label in self.test],
            samples_per_label=self.config.samples_per_label,
            n_experiments=self.config.n_experiments,
        )


# --- metrics -----------------------------------------------------------------------------------------------------


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def rank(
    queries: np.ndarray, docs: np.ndarray, query_ids: list[str], doc_ids: list[str], k: int = TOP_K
) -> dict[str, list[str]]:
    """Each query's top ``k`` documents by cosine (exact search), best first, never the document with its own id."""
    from medi.search import Searcher

    _, found = Searcher(docs, use_gpu=False).search(queries, k + 1)
    position = {doc: i for i, doc in enumerate(doc_ids)}
    ranked = {}
    for row, query in enumerate(query_ids):
        own = position.get(query, -1)
        ranked[query] = [doc_ids[i] for i in found[row] if i >= 0 and i != own][:k]
    return ranked


def retrieval_metrics(ranked: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """Mean nDCG@10 (linear gains: trec_eval's), MRR@10 and Recall@100 over the judged queries."""
    ndcg, mrr, recall = [], [], []
    for query, judged in qrels.items():
        results = ranked.get(query, [])
        gains = [max(judged.get(doc, 0), 0) for doc in results]
        ideal = sorted((g for g in judged.values() if g > 0), reverse=True)
        discounts = 1 / np.log2(np.arange(2, 12))
        idcg = float(np.dot(ideal[:10], discounts[: len(ideal[:10])]))
        dcg = float(np.dot(gains[:10], discounts[: len(gains[:10])]))
        ndcg.append(dcg / idcg if idcg else 0.0)
        first = next((i for i, g in enumerate(gains[:10]) if g > 0), None)
        mrr.append(0.0 if first is None else 1 / (first + 1))
        relevant = sum(g > 0 for g in judged.values())
        recall.append(sum(g > 0 for g in gains[:100]) / relevant if relevant else 0.0)
    return {"ndcg_at_10": _mean(ndcg), "mrr_at_10": _mean(mrr), "recall_at_100": _mean(recall)}


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else 0.0


def mteb_classification(
    train_x: np.ndarray,
    train_y: list,
    test_x: np.ndarray,
    test_y: list,
    *,
    samples_per_label: int = 8,
    n_experiments: int = 10,
    seed: int = MTEB_SEED,
) -> dict[str, float]:
    """MTEB's classification score: in each experiment the shuffled training texts give ``samples_per_label``
    per label (one RandomState(seed) per experiment, shuffling the previous order again), a logistic regression
    (max_iter 100, random_state seed) fits them and predicts the test texts; accuracy and macro F1 are averaged."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    order = list(range(len(train_y)))
    accuracy, f1 = [], []
    for _ in range(n_experiments):
        np.random.RandomState(seed).shuffle(order)
        picked = undersample(order, train_y, samples_per_label)
        classifier = LogisticRegression(max_iter=100, random_state=seed)
        classifier.fit(train_x[picked], [train_y[i] for i in picked])
        predicted = classifier.predict(test_x)
        accuracy.append(accuracy_score(test_y, predicted))
        f1.append(f1_score(test_y, predicted, average="macro"))
    return {"accuracy": _mean(accuracy), "f1": _mean(f1)}


def undersample(order: list[int], labels: list, per_label: int) -> list[int]:
    """The first ``per_label`` positions of each label, in ``order``."""
    counts: dict = defaultdict(int)
    picked = []
    for i in order:
        if counts[labels[i]] < per_label:
            picked.append(i)
            counts[labels[i]] += 1
    return picked


# --- loading -----------------------------------------------------------------------------------------------------


def load_eval(folder: Path | str) -> EvalTask:
    """The evaluation set in ``folder``; a missing folder, an unknown layout or a bad file is a MediError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MediError(f"--eval {folder}: no such folder")
    config = load_probe_yaml(folder / PROBE_YAML)
    kind = config.kind or detect_kind(folder)
    loader = {"sts": load_sts, "retrieval": load_retrieval, "classification": load_classification}[kind]
    return loader(folder, config)


def load_probe_yaml(path: Path) -> ProbeYaml:
    if not path.is_file():
        return ProbeYaml()
    data = load_yaml(path)
    if data is None:
        return ProbeYaml()
    if not isinstance(data, dict):
        raise MediError(f"{path}: expected a mapping of kind, query_instruction, document_instruction, published")
    try:
        config = ProbeYaml(**data)
    except ValidationError as exc:
        raise MediError(f"{path}: {explain_validation(exc)}") from exc
    for model, entry in config.published.items():
        if not isinstance(entry.get("source"), str):
            raise MediError(f"{path}: published.{model}: needs a source (where the score was published)")
        for metric, value in entry.items():
            if metric != "source" and not (isinstance(value, float | int) and 0 <= value <= 1):
                raise MediError(f"{path}: published.{model}.{metric}: {value!r} is not a score on the 0-1 scale")
    return config


def detect_kind(folder: Path) -> Kind:
    names = {p.name for p in folder.iterdir()}
    if _jsonl_name(folder, "corpus") or _jsonl_name(folder, "queries") or "qrels" in names:
        return "retrieval"
    if _data_files(folder, (".tsv", ".csv")):
        return "sts"
    if _data_files(folder, (".jsonl",)):
        return "classification"
    raise MediError(
        f"--eval {folder}: cannot tell the kind of evaluation set: expected a .tsv/.csv of sentence1, sentence2, "
        "score (STS), corpus.jsonl + queries.jsonl + qrels/test.tsv (BEIR retrieval), or a .jsonl of text, label "
        f"(classification); or give kind: in {PROBE_YAML}"
    )


def _data_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.removesuffix(".gz").endswith(suffixes))


def _one_data_file(folder: Path, suffixes: tuple[str, ...], what: str) -> Path:
    files = _data_files(folder, suffixes)
    if len(files) != 1:
        found = ", ".join(p.name for p in files) or "none"
        raise MediError(f"--eval {folder}: expected one {what} file ({' or '.join(suffixes)}, .gz too); found {found}")
    return files[0]


def _jsonl_name(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _open_text(path: Path) -> io.TextIOBase:
    try:
        if path.suffix == ".gz":
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
        return path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise MediError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a text file, gzip or not; unreadable bytes are a MediError naming the file."""
    with _open_text(path) as handle:
        try:
            yield from enumerate(handle, start=1)
        except (UnicodeDecodeError, OSError, EOFError) as exc:
            raise MediError(f"{path}: unreadable ({exc})") from exc


def _json_rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    for number, line in _read_lines(path):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise MediError(f"{path}, line {number}: invalid JSON ({exc})") from exc
        if not isinstance(row, dict) or (missing := [key for key in required if key not in row]):
            keys = ", ".join(required)
            raise MediError(f"{path}, line {number}: expected an object with {keys}; missing {missing or keys}")
        yield number, row


def _tsv_rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """Rows of a .tsv or .csv file with a header, as Python's csv module writes them (a field holding quotes is
    quoted, its quotes doubled; a quote inside an unquoted field is a plain character)."""
    tab = path.name.removesuffix(".gz").endswith(".tsv")
    with _open_text(path) as handle:
        reader = csv.DictReader(handle, delimiter="\t" if tab else ",")
        try:
            header = reader.fieldnames or []
            if missing := [column for column in required if column not in header]:
                raise MediError(f"{path}: header {header} lacks the columns {missing}")
            for row in reader:
                if None in row or any(row[c] is None for c in required):
                    raise MediError(f"{path}, line {reader.line_num}: {len(header)} columns expected")
                yield reader.line_num, row
        except (UnicodeDecodeError, OSError, EOFError, csv.Error) as exc:
            raise MediError(f"{path}, line {reader.line_num}: unreadable ({exc})") from exc


def load_sts(folder: Path, config: ProbeYaml) -> STSTask:
    path = _one_data_file(folder, (".tsv", ".csv"), "STS")
    pairs, scores = [], []
    for number, row in _tsv_rows(path, ("sentence1", "sentence2", "score")):
        if row.get("split", "test") != "test":
            continue
        try:
            scores.append(float(row["score"]))
        except ValueError:
            raise MediError(f"{path}, line {number}: score {row['score']!r} is not a number") from None
        pairs.append((row["sentence1"], row["sentence2"]))
    if len(pairs) < 2:
        raise MediError(f"{path}: {len(pairs)} test pairs; a correlation needs at least 2")
    return STSTask(folder.name, folder, config, pairs=pairs, scores=scores)


def load_retrieval(folder: Path, config: ProbeYaml) -> RetrievalTask:
    corpus_file, queries_file = _jsonl_name(folder, "corpus"), _jsonl_name(folder, "queries")
    qrels_file = folder / "qrels" / "test.tsv"
    for path, name in ((corpus_file, "corpus.jsonl"), (queries_file, "queries.jsonl"), (qrels_file, None)):
        if path is None or not path.is_file():
            raise MediError(f"--eval {folder}: no {name or 'qrels/test.tsv'} (a BEIR folder needs all three)")
    corpus = _id_texts(corpus_file, titled=True)
    queries = _id_texts(queries_file, titled=False)
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for number, row in _tsv_rows(qrels_file, ("query-id", "corpus-id", "score")):
        query, doc = row["query-id"], row["corpus-id"]
        if query not in queries:
            raise MediError(f"{qrels_file}, line {number}: query-id {query!r} is not in {queries_file.name}")
        if doc not in corpus:
            raise MediError(f"{qrels_file}, line {number}: corpus-id {doc!r} is not in {corpus_file.name}")
        try:
            qrels[query][doc] = int(row["score"])
        except ValueError:
            raise MediError(f"{qrels_file}, line {number}: score {row['score']!r} is not an integer") from None
    if not qrels:
        raise MediError(f"{qrels_file}: no judgements")
    judged = {q: queries[q] for q in qrels}
    return RetrievalTask(folder.name, folder, config, queries=judged, corpus=corpus, qrels=dict(qrels))


def _id_texts(path: Path, *, titled: bool) -> dict[str, str]:
    texts: dict[str, str] = {}
    for number, row in _json_rows(path, ("_id", "text")):
        key, text, title = str(row["_id"]), row["text"], row.get("title") or ""
        if not isinstance(text, str) or not isinstance(title, str):
            raise MediError(f"{path}, line {number}: text and title must be strings")
        if key in texts:
            raise MediError(f"{path}, line {number}: _id {key!r} appears twice")
        texts[key] = f"{title} {text}".strip() if titled else text
    if not texts:
        raise MediError(f"{path}: no rows")
    return texts


def load_classification(folder: Path, config: ProbeYaml) -> ClassificationTask:
    path = _one_data_file(folder, (".jsonl",), "classification")
    rows, splits = [], set()
    for number, row in _json_rows(path, ("text", "label")):
        label = row["label"]
        if not isinstance(row["text"], str) or not isinstance(label, str | int) or isinstance(label, bool):
            raise MediError(f"{path}, line {number}: text must be a string and label a string or an integer")
        split = row.get("split")
        if split not in (None, "train", "test"):
            raise MediError(f"{path}, line {number}: split {split!r}; use train or test (or no split at all)")
        splits.add(split)
        rows.append((number, row["text"], row["label"], split))
    if None in splits and len(splits) > 1:
        raise MediError(f"{path}: some rows have a split and some do not; give every row one, or none")
    if None in splits:  # MTEB's seed, so the split never depends on --seed
        order = np.random.RandomState(MTEB_SEED).permutation(len(rows))
        test_rows = set(order[: len(rows) // 2].tolist())
        rows = [(n, text, label, "test" if i in test_rows else "train") for i, (n, text, label, _) in enumerate(rows)]
    train = [(text, label) for _, text, label, split in rows if split == "train"]
    test = [(text, label) for _, text, label, split in rows if split == "test"]
    if not train or not test:
        raise MediError(f"{path}: {len(train)} train and {len(test)} test rows; both splits need rows")
    return ClassificationTask(folder.name, folder, config, train=train, test=test)
