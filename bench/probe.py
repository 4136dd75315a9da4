"""Benchmark: what medi's data decisions do to a model (issue 18), measured with ``medi probe``.

Builds releases of the same sources that differ in one thing only, then fine-tunes and evaluates each with
``medi probe`` (a subprocess per seed, all variants in one call) and prints, per eval set, the untouched model
("before"), every variant's score as mean ± sd over the seeds, and its difference from the mined default (the
per-seed difference, mean ± sd):

- ``mined``: today's default (mined hard negatives, given negatives kept, primary instructions);
- ``random-negatives``: ``mining.negatives_from: random`` (a seeded random in-source negative for every row);
- ``no-negatives``: ``mining.negatives_from: none`` (in-batch negatives only);
- ``no-instructions``: ``instructions: none`` (every instruction empty; the rows are the mined default's).

Issue 19's groups (``--variants``, comma-separated groups; default ``decisions``, the four above):

- ``negatives``: ``negatives-3`` (``mining.negatives: 3``; the probe trains on all three) against ``mined`` (one);
- ``teacher``: ``teacher`` (``mining.teacher``: all-mpnet-base-v2, assembled offline by ``bench/teacher_model.py``,
  removes candidates it scores >= 0.95 x the positive) against ``mined`` (no teacher);
- ``candidates``: ``bm25`` and ``hybrid`` (``mining.candidates``) against ``mined`` (dense).

Every variant is built once (build seed 0), so the spread over seeds is the fine-tune's (batch order), not the
data's. The retrieval set is cut to a fixed subset (``--retrieval-queries`` queries, their relevant documents and
evenly spaced others up to ``--retrieval-docs``) because a 2-core CPU cannot embed SciFact's 5,183 abstracts for
every variant and seed in the budget; its numbers are therefore not MTEB's (``--retrieval-docs 0``: the full set).

    python bench/probe.py [--variants decisions,negatives,teacher,candidates]
                          [--sources demo] [--steps 20] [--batch-size 16] [--seeds 3] [--eval DIR ...]
                          [--retrieval-queries 50] [--retrieval-docs 300] [--cache-dir DIR] [--work DIR]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import medi
from medi.build import BuildOptions
from medi.catalog import load_yaml
from medi.release import open_release

ROOT = Path(__file__).resolve().parents[1]
EVALSETS = ROOT / "bench" / "evalsets"
DEFAULT_EVALS = (EVALSETS / "stsbenchmark", EVALSETS / "scifact")
BASELINE = "mined"
TEACHER = "all-mpnet-base-v2 (bench/teacher_model.py)"  # replaced by its folder when the group is asked for
GROUPS: dict[str, dict[str, dict]] = {
    "decisions": {
        "random-negatives": {"mining": {"negatives_from": "random"}},
        "no-negatives": {"mining": {"negatives_from": "none"}},
        "no-instructions": {"instructions": "none"},
    },
    "negatives": {"negatives-3": {"mining": {"negatives": 3}}},
    "teacher": {"teacher": {"mining": {"teacher": TEACHER}}},
    "candidates": {"bm25": {"mining": {"candidates": "bm25"}}, "hybrid": {"mining": {"candidates": "hybrid"}}},
}
VARIANTS: dict[str, dict] = {BASELINE: {}}  # filled from --variants
MAIN_METRIC = {"sts": "cosine_spearman", "retrieval": "ndcg_at_10", "classification": "accuracy"}
UNTOUCHED = ("before", "before-instructed")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", default="demo", help="the sources every variant is built from")
    parser.add_argument("--data-dir", action="append", type=Path, help="mirror folder(s); default: the set's own")
    parser.add_argument("--steps", type=int, default=20, help="fine-tune steps per variant and seed")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-seq-length", type=int, default=128, help="tokens per training text (0: the model's)")
    parser.add_argument("--seeds", type=int, default=3, help="probe seeds 0 .. N-1")
    parser.add_argument("--eval", action="append", type=Path, help="eval folder(s); default: STSBenchmark, SciFact")
    parser.add_argument("--retrieval-queries", type=int, default=50, help="queries kept of a retrieval set (0: all)")
    parser.add_argument("--retrieval-docs", type=int, default=300, help="documents kept of a retrieval set (0: all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", type=Path, default=Path("/tmp/medi-probe-bench"), help="releases, evals, runs")
    parser.add_argument("--cache-dir", type=Path, help="embedding cache of the builds and of the untouched model")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one `medi probe` call may take")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    parser.add_argument(
        "--variants", default="decisions", help=f"comma-separated groups of variants: {', '.join(GROUPS)}"
    )
    args = parser.parse_args(argv)
    unknown = [g for g in args.variants.split(",") if g not in GROUPS]
    if unknown:
        parser.error(f"--variants: unknown group(s) {', '.join(unknown)}; known: {', '.join(GROUPS)}")
    return args


def choose_variants(groups: str) -> None:
    """Fill ``VARIANTS`` with the baseline and the asked groups; the teacher's folder is assembled when asked for."""
    for group in groups.split(","):
        for name, options in GROUPS[group].items():
            if options.get("mining", {}).get("teacher") == TEACHER:
                sys.path.insert(0, str(ROOT / "bench"))
                from teacher_model import model_folder

                options = {"mining": {"teacher": str(model_folder())}}
            VARIANTS[name] = options


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- releases -------------------------------------------------------------------------------------------------


def build_variants(args: argparse.Namespace) -> dict[str, Path]:
    """One release per variant under ``work/releases``; checks they hold the same rows (ids, queries, positives)."""
    folders = {}
    for name, options in VARIANTS.items():
        out = args.work / "releases" / name
        started = time.perf_counter()
        manifest = medi.build(
            args.sources, out, args.data_dir, BuildOptions(seed=0, **options), cache_dir=args.cache_dir
        )
        say(f"built {name}: {manifest['rows']} rows in {time.perf_counter() - started:.1f} s")
        folders[name] = out
    check_same_rows(folders)
    return folders


def check_same_rows(folders: dict[str, Path]) -> None:
    """The variants differ in negatives or instructions only: the same rows, queries and positives, in order.

    A teacher or other candidates may leave a row without a negative (it is dropped) or pick a Super-NI positive
    from other candidates: said on stderr with the count, not refused, as that is the decision being measured.
    """
    baseline = row_texts(folders[BASELINE])
    for name, folder in folders.items():
        rows = row_texts(folder)
        if rows == baseline:
            continue
        if name in GROUPS["decisions"]:
            raise SystemExit(f"release {name} does not hold the rows of {BASELINE}: the comparison would be unfair")
        differ = len(set(rows) ^ set(baseline))
        say(f"note: {name} differs from {BASELINE} in {differ} (row, query, positive) entries of {len(baseline)}")


def row_texts(folder: Path) -> list[tuple[str, str, str]]:
    rows = open_release(folder).dataset.select_columns(["row_id", "query", "pos"]).to_list()
    return [(r["row_id"], r["query"]["text"], r["pos"]["text"]) for r in rows]


# --- eval sets ------------------------------------------------------------------------------------------------


def prepare_evals(args: argparse.Namespace) -> list[Path]:
    """The eval folders to probe with; a retrieval set is cut to its subset (unless both limits are 0)."""
    prepared = []
    for folder in args.eval or DEFAULT_EVALS:
        is_retrieval = (folder / "qrels").is_dir()
        if is_retrieval and (args.retrieval_queries or args.retrieval_docs):
            folder = retrieval_subset(folder, args.retrieval_queries, args.retrieval_docs, args.work / "evals")
        prepared.append(folder)
    return prepared


def evenly_spaced(items: list, count: int) -> list:
    """``count`` items at even strides through ``items`` (all of them when count is 0 or too large)."""
    if not count or count >= len(items):
        return list(items)
    if count == 1:
        return items[:1]
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def retrieval_subset(folder: Path, queries: int, docs: int, into: Path) -> Path:
    """A BEIR folder of ``queries`` evenly spaced judged queries, all their relevant documents and evenly spaced
    others up to ``docs`` documents; rows copied unchanged. Its probe.yaml keeps the instructions only (the
    published score is the full set's, not this subset's)."""
    out = into / f"{folder.name}-q{queries or 'all'}-d{docs or 'all'}"
    qrel_lines = (folder / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    qrels = list(csv.DictReader(qrel_lines, delimiter="\t"))
    judged = list(dict.fromkeys(r["query-id"] for r in qrels))
    kept_queries = set(evenly_spaced(judged, queries))
    relevant = {r["corpus-id"] for r in qrels if r["query-id"] in kept_queries}
    corpus_path = next(p for p in (folder / "corpus.jsonl.gz", folder / "corpus.jsonl") if p.is_file())
    opener = gzip.open if corpus_path.suffix == ".gz" else open
    with opener(corpus_path, "rt", encoding="utf-8") as handle:
        corpus = handle.readlines()
    ids = [json.loads(line)["_id"] for line in corpus]
    others = [i for i, doc in enumerate(ids) if doc not in relevant]
    padding = set(evenly_spaced(others, max(docs - len(relevant), 0))) if docs else set(others)
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    (out / "corpus.jsonl").write_text(
        "".join(line for i, line in enumerate(corpus) if ids[i] in relevant or i in padding), encoding="utf-8"
    )
    query_lines = (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (out / "queries.jsonl").write_text(
        "".join(line for line in query_lines if json.loads(line)["_id"] in kept_queries), encoding="utf-8"
    )
    kept_qrels = [line for line, row in zip(qrel_lines[1:], qrels, strict=True) if row["query-id"] in kept_queries]
    (out / "qrels" / "test.tsv").write_text(qrel_lines[0] + "".join(kept_qrels), encoding="utf-8")
    config = load_yaml(folder / "probe.yaml") or {}
    kept = {k: config[k] for k in ("kind", "query_instruction", "document_instruction") if k in config}
    note = (
        f"# Subset of {folder.name} cut by bench/probe.py: {len(kept_queries)} queries, {len(relevant)} relevant docs\n"
    )
    (out / "probe.yaml").write_text(note + "".join(f"{k}: {json.dumps(v)}\n" for k, v in kept.items()), "utf-8")
    say(f"eval {out.name}: {len(kept_queries)} queries, {len(relevant) + len(padding)} documents")
    return out


# --- probing --------------------------------------------------------------------------------------------------


def run_probe(releases: dict[str, Path], evals: list[Path], seed: int, args: argparse.Namespace) -> dict:
    """``medi probe`` on every release for one seed; its probe.json."""
    out = args.work / "runs" / f"seed-{seed}"  # medi probe replaces its own earlier output there
    command = [shutil.which("medi") or "medi", "probe", *map(str, releases.values())]
    for folder in evals:
        command += ["--eval", str(folder)]
    command += ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--seed", str(seed)]
    command += ["--device", args.device, "--out", str(out)]
    if args.max_seq_length:
        command += ["--max-seq-length", str(args.max_seq_length)]
    if args.cache_dir:  # the untouched model's embeddings are computed once, not once per seed
        command += ["--cache-dir", str(args.cache_dir)]
    say(f"seed {seed}: {' '.join(command)}")
    started = time.perf_counter()
    log = args.work / "runs" / f"seed-{seed}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, timeout=args.timeout, check=False)
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8")[-3000:]
        raise SystemExit(f"medi probe (seed {seed}) exited {done.returncode}; the end of {log}:\n{tail}")
    say(f"seed {seed}: done in {time.perf_counter() - started:.0f} s")
    return json.loads((out / "probe.json").read_text(encoding="utf-8"))


def main_metric(results: list[dict], eval_name: str) -> str:
    kinds = {r["kind"] for r in results if r["eval"] == eval_name}
    metrics = [r["metric"] for r in results if r["eval"] == eval_name]
    wanted = MAIN_METRIC.get(next(iter(kinds), ""), "")
    return wanted if wanted in metrics else metrics[0]


def values(runs: list[dict], variant: str, eval_name: str, metric: str) -> list[float]:
    """The value of (variant, eval, metric) in each run, in seed order."""
    found = []
    for run in runs:
        hits = [
            r["value"] for r in run["results"] if (r["variant"], r["eval"], r["metric"]) == (variant, eval_name, metric)
        ]
        if len(hits) != 1:
            raise SystemExit(f"probe.json of seed {run['seed']}: {len(hits)} results for {variant} / {eval_name}")
        found.append(hits[0])
    return found


def spread(numbers: list[float]) -> str:
    """mean ± sd (sample sd; 0 for one number), in points (x100)."""
    sd = statistics.stdev(numbers) if len(numbers) > 1 else 0.0
    return f"{100 * statistics.fmean(numbers):.2f} ± {100 * sd:.2f}"


def summarize(runs: list[dict]) -> tuple[list[dict], str]:
    """Rows of (eval, metric, variant, values per seed, differences per seed) and the Markdown table.

    After-numbers are evaluated with the eval set's instructions, so "after − before" is taken against
    ``before-instructed`` (the untouched model, same protocol); "− mined" is the per-seed difference from the default.
    """
    results = runs[0]["results"]
    evals = list(dict.fromkeys(r["eval"] for r in results))
    rows = []
    lines = [
        "| eval set (metric) | variant | score | after − before-instructed | − mined |",
        "| --- | --- | --- | --- | --- |",
    ]
    for eval_name in evals:
        metric = main_metric(results, eval_name)
        present = list(dict.fromkeys(r["variant"] for r in results if r["eval"] == eval_name))
        baseline = values(runs, BASELINE, eval_name, metric)
        untouched = values(runs, "before-instructed", eval_name, metric)
        for variant in [v for v in UNTOUCHED if v in present] + [v for v in VARIANTS if v in present]:
            got = values(runs, variant, eval_name, metric)
            gain = [a - b for a, b in zip(got, untouched, strict=True)]
            difference = [a - b for a, b in zip(got, baseline, strict=True)]
            rows.append({"eval": eval_name, "metric": metric, "variant": variant, "values": got,
                         "minus_before_instructed": gain, "minus_mined": difference})  # fmt: skip
            after = variant in VARIANTS
            lines.append(
                f"| {eval_name} ({metric}) | {variant if after else f'{variant} (untouched model)'} | {spread(got)} "
                f"| {spread(gain) if after else '—'} | {spread(difference) if after and variant != BASELINE else '—'} |"
            )
    return rows, "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    choose_variants(args.variants)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    releases = build_variants(args)
    evals = prepare_evals(args)
    built = time.perf_counter() - started
    runs = [run_probe(releases, evals, seed, args) for seed in range(args.seeds)]
    rows, table = summarize(runs)
    total = time.perf_counter() - started
    print(f"\nsources {args.sources}, {args.steps} steps of batch {args.batch_size}, seeds 0-{args.seeds - 1}, "
          f"model {runs[0]['model']}; builds {built:.0f} s, total {total:.0f} s; "
          "scores x100, mean ± sd over the seeds\n")  # fmt: skip
    print(table)
    if args.json:
        summary = {"sources": args.sources, "steps": args.steps, "batch_size": args.batch_size,
                   "seeds": args.seeds, "model": runs[0]["model"], "evals": [str(e) for e in evals],
                   "seconds": round(total), "rows": rows}  # fmt: skip
        args.json.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
