#!/usr/bin/env python3
"""Write the demo mirror and the unit-test fixtures from slices of the real shared data.

Usage:
    python scripts/make_demo_data.py [SHARED_DATA_DIR]      # default: ../shared/data next to the repo
    python scripts/make_demo_data.py --check [SHARED_DATA_DIR]   # verify only, write nothing

Writes (and owns; these trees are deleted and rebuilt on every run):
    demo/mirror/                 small upstream-layout mirror used by `medi build --sources demo`
    demo/PROVENANCE.md, demo/PROVENANCE.tsv
    tests/fixtures/mirror/       slices for unit tests, same layout
    tests/fixtures/bad/          deliberately malformed inputs made from real rows
    tests/fixtures/README.md, tests/fixtures/PROVENANCE.tsv
    sources/_sets.yaml           the `demo` source set

Standard library only. Deterministic: instance selection is by index arithmetic (no randomness), JSON task
files are written like upstream (json.dump(indent=4, ensure_ascii=False), no final newline), .jsonl.gz files
are written with gzip mtime=0 and no file name in the header (byte-stable for a given zlib).
Files marked DERIVED are NOT upstream files: they are real rows re-shaped into the upstream file names and the
five sentence-transformers layouts, because no real sample of those files was available.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import shutil
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "demo"
DEMO_MIRROR = DEMO / "mirror"
FIXTURES = REPO / "tests" / "fixtures"
FIX_MIRROR = FIXTURES / "mirror"
FIX_BAD = FIXTURES / "bad"
SETS_YAML = REPO / "sources" / "_sets.yaml"

SCRIPT = "scripts/make_demo_data.py"
# fmt: off
TASK_KEYS = [
    "Contributors", "Source", "URL", "Categories", "Reasoning", "Definition", "Input_language",
    "Output_language", "Instruction_language", "Domains", "Positive Examples", "Negative Examples",
    "Instances", "Instance License",
]
# fmt: on
SUPERNI_NOTE = (
    "Super-NI task files were copied unchanged from the fork luukkonenr/natural-instructions-fi (commit above), whose\n"
    "folders hold the original English allenai files. Checked against allenai/natural-instructions: identical\n"
    "at commit e0fd31052b21acea5bd95fb00253e1ee1f5d8259 for task1146, task1289 and task006, and at\n"
    "ae457ac40dafe0cd3dcd1370f0a29da54f33df4a for task672 (length + tail). The exact allenai commit is unknown,\n"
    "so the table gives the fork's commit and path, and the upstream path `tasks/<task>.json`.\n"
)
FE = "FlagEmbedding/examples/finetune/embedder/example_data"
FE_FILES = [
    f"{FE}/classification-no_in_batch_neg/AmazonClassification.jsonl",
    f"{FE}/classification-no_in_batch_neg/Banking77Classification.jsonl",
    f"{FE}/clustering-no_in_batch_neg/arXiv_title.jsonl",
    f"{FE}/clustering-no_in_batch_neg/bioRXiv_title.jsonl",
    f"{FE}/retrieval/msmarco.jsonl",
    f"{FE}/retrieval/nli.jsonl",
    f"{FE}/retrieval/nq.jsonl",
    f"{FE}/sts/sts.jsonl",
]
GRIT_TOY = "gritlm/gritlm/training/toy_data/toy_data_embedding.jsonl"
ST_FILES = [*FE_FILES, GRIT_TOY]  # mirror paths; shared path is st-embedding/<mirror path>

# Where the text inside the FlagEmbedding / GritLM example files comes from (their repos are MIT; the text
# keeps the terms of the original dataset).
TEXT_ORIGIN = {
    "AmazonClassification.jsonl": "Amazon reviews (MTEB AmazonClassification); Amazon's terms apply",
    "Banking77Classification.jsonl": "BANKING77 (CC BY 4.0)",
    "arXiv_title.jsonl": "arXiv titles (MTEB clustering)",
    "bioRXiv_title.jsonl": "bioRxiv titles (MTEB clustering)",
    "msmarco.jsonl": "MS MARCO passages/queries: **non-commercial research terms**",
    "nli.jsonl": "MultiNLI premise/hypothesis pairs",
    "nq.jsonl": "Natural Questions + Wikipedia passages (CC BY-SA 3.0)",
    "sts.jsonl": "STS / paraphrase sentence pairs",
    "toy_data_embedding.jsonl": "SNLI/MultiNLI sentences (SNLI: CC BY-SA 4.0)",
}

DEMO_TASKS = [
    "task1289_trec_classification",
    "task227_clariq_classification",
    "task1146_country_capital",
    "task1657_gooaq_question_generation",
    "task1355_sent_comp_summarization",
    "task1319_country_by_barcode_prefix",
    "task293_storycommonsense_emotion_text_generation",
    "task1594_yahoo_answers_topics_question_generation",
]
DEMO_CAP = 120

FIX_FULL_TASKS = [
    "task1146_country_capital",
    "task1319_country_by_barcode_prefix",
    "task861_asdiv_addsub_question_answering",
    "task861_prost_mcq_answers_generation",
    "task1562_zest_text_modification",
    "task120_zest_text_modification",
    "task891_gap_coreference_resolution",
]
FIX_SLICED_TASKS = {
    "task1289_trec_classification": 300,
    "task227_clariq_classification": 200,
    "task293_storycommonsense_emotion_text_generation": 200,
    "task672_amazon_and_yelp_summarization_dataset_summarization": 40,
    "task1345_glue_qqp_question_paraprashing": 300,
    "task082_babi_t1_single_supporting_fact_question_generation": 150,
}

DEMO_SOURCES = [
    *(f"superni/{t}" for t in DEMO_TASKS),
    "st/AllNLI",
    "st/quora_duplicates",
    "st/flickr30k_captions",
    "st/searchQA_top5_snippets",
    "st/msmarco-triplets",
    "flagembedding/nli",
    "flagembedding/msmarco",
    "flagembedding/nq",
    "flagembedding/sts",
    "flagembedding/Banking77Classification",
    "gritlm/toy_data_embedding",
]
# mirror file read by each non-superni demo source (for the distinct-text count)
SOURCE_FILES = {
    "st/AllNLI": "embedding-training-data/AllNLI.jsonl.gz",
    "st/quora_duplicates": "embedding-training-data/quora_duplicates.jsonl.gz",
    "st/flickr30k_captions": "embedding-training-data/flickr30k_captions.jsonl.gz",
    "st/searchQA_top5_snippets": "embedding-training-data/searchQA_top5_snippets.jsonl.gz",
    "st/msmarco-triplets": "embedding-training-data/msmarco-triplets.jsonl.gz",
    "flagembedding/nli": f"{FE}/retrieval/nli.jsonl",
    "flagembedding/msmarco": f"{FE}/retrieval/msmarco.jsonl",
    "flagembedding/nq": f"{FE}/retrieval/nq.jsonl",
    "flagembedding/sts": f"{FE}/sts/sts.jsonl",
    "flagembedding/Banking77Classification": f"{FE}/classification-no_in_batch_neg/Banking77Classification.jsonl",
    "gritlm/toy_data_embedding": GRIT_TOY,
}


# ----------------------------------------------------------------------------------------------- helpers
def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_manifest(shared: Path) -> dict[str, dict[str, str]]:
    lines = (shared / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return {row["path"]: row for row in (dict(zip(header, ln.split("\t"), strict=True)) for ln in lines[1:])}


def read_summary(shared: Path) -> dict[str, dict[str, str]]:
    lines = (shared / "super-ni" / "SUMMARY.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return {row["task"]: row for row in (dict(zip(header, ln.split("\t"), strict=True)) for ln in lines[1:])}


def dump_task(task: dict) -> bytes:
    """Upstream style: indent 4, raw UTF-8, no final newline (all 39 real files round-trip exactly)."""
    assert list(task) == TASK_KEYS or list(task) == [k for k in TASK_KEYS if k != "Instances"], list(task)
    return json.dumps(task, indent=4, ensure_ascii=False).encode("utf-8")


def gz_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


def jsonl_bytes(rows: list) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def quirk_indices(instances: list[dict]) -> set[int]:
    """Instances a slice must keep: first one per output-list length (covers single- and max-output
    instances), every one holding an empty-string output, and the first one per label on label-like tasks."""
    keep: set[int] = set()
    seen_len: set[int] = set()
    for i, inst in enumerate(instances):
        if len(inst["output"]) not in seen_len:
            seen_len.add(len(inst["output"]))
            keep.add(i)
        if any(o == "" for o in inst["output"]):
            keep.add(i)
    labels = Counter(inst["output"][0] for inst in instances if inst["output"])
    if len(labels) <= 10:
        seen_lab: set[str] = set()
        for i, inst in enumerate(instances):
            if inst["output"] and inst["output"][0] not in seen_lab:
                seen_lab.add(inst["output"][0])
                keep.add(i)
    return keep


def pick(instances: list[dict], cap: int, head: int = 0) -> tuple[list[int], set[int]]:
    """Deterministic slice: the quirk instances, the first `head` instances, then evenly spaced ones
    (every k-th of the rest) up to `cap`, in original order."""
    n = len(instances)
    if n <= cap:
        return list(range(n)), set()
    must = quirk_indices(instances) | set(range(min(head, n)))
    assert len(must) <= cap, (len(must), cap)
    rest = [i for i in range(n) if i not in must]
    m = cap - len(must)
    chosen = set(must) | {rest[(j * len(rest)) // m] for j in range(m)}
    return sorted(chosen), must - set(range(min(head, n)))


# ----------------------------------------------------------------------------------------------- writer
class Writer:
    def __init__(self, shared: Path, root: Path, records: list[dict]):
        self.shared = shared
        self.root = root
        self.records = records
        self.manifest = read_manifest(shared)
        self.summary = read_summary(shared)

    def _put(self, rel: str, data: bytes, **rec) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rec.update(path=str(path.relative_to(REPO)), rel=rel, bytes=len(data), sha256=sha256(data))
        self.records.append(rec)

    def _origin(self, shared_rel: str) -> dict:
        m = self.manifest[shared_rel]
        return {
            "repo": m["source_repo"],
            "commit": m["source_commit"],
            "path": m["source_path"],
            "sha256": m["sha256"],
            "shared": shared_rel,
        }

    def _superni_origin(self, task: str) -> dict:
        o = self._origin(f"super-ni/tasks/{task}.json")
        o["upstream"] = f"allenai/natural-instructions : `tasks/{task}.json`"
        return o

    def _task_licence(self, task: str) -> str:
        lic = self.summary[task]["instance_license"].replace("|", ", ")
        return f"Apache-2.0 (task definition); instances: {lic}"

    def copy(self, shared_rel: str, mirror_rel: str, licence: str, note: str = "byte-identical copy") -> None:
        data = (self.shared / shared_rel).read_bytes()
        o = self._origin(shared_rel)
        if shared_rel.startswith("super-ni/tasks/"):
            o = self._superni_origin(Path(shared_rel).stem)
        assert sha256(data) == o["sha256"], shared_rel
        self._put(mirror_rel, data, kind="copy", origins=[o], note=note, licence=licence)

    def split_lists(self) -> None:
        for name in ("train_tasks.txt", "test_tasks.txt"):
            rel = f"super-ni/splits/default/{name}"
            self.copy(
                rel,
                rel,
                "Apache-2.0",
                "byte-identical copy of shared/data (which rebuilt the list from an index: faithful, "
                "not byte-proven against upstream)",
            )

    def task(self, task: str, cap: int | None, head: int = 0) -> None:
        shared_rel = f"super-ni/tasks/{task}.json"
        raw = (self.shared / shared_rel).read_bytes()
        data = json.loads(raw.decode("utf-8"))
        assert list(data) == TASK_KEYS, task
        n = len(data["Instances"])
        if cap is None or n <= cap:
            self.copy(
                shared_rel,
                f"super-ni/tasks/{task}.json",
                self._task_licence(task),
                f"byte-identical copy, all {n} instances",
            )
            return
        idx, quirks = pick(data["Instances"], cap, head)
        data["Instances"] = [data["Instances"][i] for i in idx]
        parts = [f"SLICE: Instances cut from {n} to {len(idx)}"]
        if head:
            parts.append(f"the first {head} (upstream evaluates test tasks on Instances[:100])")
        if quirks:
            parts.append(f"always-kept quirk instances at upstream indices {sorted(quirks)}")
        parts.append(f"plus evenly spaced ones (stride ~{round(n / (len(idx) - len(quirks) - head))})")
        parts.append("all other keys unchanged, same key order")
        self._put(
            f"super-ni/tasks/{task}.json",
            dump_task(data),
            kind="slice",
            origins=[self._superni_origin(task)],
            note="; ".join(parts),
            licence=self._task_licence(task),
        )

    def st_copies(self) -> None:
        for rel in ST_FILES:
            origin = TEXT_ORIGIN[Path(rel).name]
            self.copy(f"st-embedding/{rel}", rel, f"MIT (repo); text from {origin}")

    def derived(self) -> None:
        def rows(rel: str) -> list[dict]:
            return read_jsonl(self.shared / "st-embedding" / rel)

        nli, grit = rows(f"{FE}/retrieval/nli.jsonl"), rows(GRIT_TOY)
        sts, nq, msm = (
            rows(f"{FE}/sts/sts.jsonl"),
            rows(f"{FE}/retrieval/nq.jsonl"),
            rows(f"{FE}/retrieval/msmarco.jsonl"),
        )
        o = {
            k: self._origin(f"st-embedding/{v}")
            for k, v in {
                "nli": f"{FE}/retrieval/nli.jsonl",
                "grit": GRIT_TOY,
                "sts": f"{FE}/sts/sts.jsonl",
                "nq": f"{FE}/retrieval/nq.jsonl",
                "msmarco": f"{FE}/retrieval/msmarco.jsonl",
            }.items()
        }
        hf = "HF dataset sentence-transformers/embedding-training-data"
        specs = [
            (
                "AllNLI",
                "triplet",
                [[r["query"], r["pos"][0], r["neg"][0]] for r in nli + grit],
                [o["nli"], o["grit"]],
                "`[query, pos[0], neg[0]]` of the 10 nli.jsonl rows, then the 10 GritLM toy rows",
                "text from MultiNLI / SNLI (SNLI: CC BY-SA 4.0); repos MIT",
            ),
            (
                "quora_duplicates",
                "pair",
                [[r["query"], r["pos"][0]] for r in sts],
                [o["sts"]],
                "`[query, pos[0]]` of the 10 sts.jsonl rows (STS pairs, not Quora text)",
                "text from STS/paraphrase pairs; repo MIT",
            ),
            (
                "flickr30k_captions",
                "set",
                [{"set": [r["query"], *r["pos"]]} for r in sts],
                [o["sts"]],
                '`{"set": [query, *pos]}` of the 10 sts.jsonl rows (not Flickr captions)',
                "text from STS/paraphrase pairs; repo MIT",
            ),
            (
                "searchQA_top5_snippets",
                "query-pos",
                [{"query": r["query"], "pos": r["pos"]} for r in nq],
                [o["nq"]],
                '`{"query", "pos"}` of the 10 nq.jsonl rows (NQ, not SearchQA)',
                "text from Natural Questions / Wikipedia (CC BY-SA 3.0); repo MIT",
            ),
            (
                "msmarco-triplets",
                "query-pos-neg",
                [{"query": r["query"], "pos": r["pos"], "neg": r["neg"][:3]} for r in msm],
                [o["msmarco"]],
                "the 10 msmarco.jsonl rows keeping only query, pos and the first 3 neg (drops scores/prompt/type)",
                "text from MS MARCO: **non-commercial research terms**; repo MIT",
            ),
        ]
        for name, layout, out_rows, origins, how, licence in specs:
            rel = f"embedding-training-data/{name}.jsonl.gz"
            note = (
                f"**DERIVED** (not the upstream file; {hf} has a file of this name): {layout} layout, "
                f"{len(out_rows)} rows = {how}; gzip mtime=0, no name"
            )
            self._put(
                rel,
                gz_bytes(jsonl_bytes(out_rows)),
                kind="derived",
                origins=origins,
                note=note,
                licence=licence,
                layout=layout,
            )


# ----------------------------------------------------------------------------------------------- builds
def build_demo(shared: Path) -> list[dict]:
    recs: list[dict] = []
    w = Writer(shared, DEMO_MIRROR, recs)
    w.split_lists()
    for t in DEMO_TASKS:
        w.task(t, DEMO_CAP)
    w.st_copies()
    w.derived()
    return recs


def build_fixtures(shared: Path) -> list[dict]:
    recs: list[dict] = []
    w = Writer(shared, FIX_MIRROR, recs)
    w.split_lists()
    for t in FIX_FULL_TASKS:
        w.task(t, None)
    test_tasks = set((shared / "super-ni/splits/default/test_tasks.txt").read_text(encoding="utf-8").split())
    for t, cap in FIX_SLICED_TASKS.items():
        w.task(t, cap, head=100 if t in test_tasks else 0)
    w.st_copies()
    w.derived()
    # malformed inputs, outside the mirror
    bad = Writer(shared, FIX_BAD, recs)
    toy_rel = f"st-embedding/{GRIT_TOY}"
    toy_lines = (shared / toy_rel).read_text(encoding="utf-8").splitlines()
    line3 = toy_lines[2][: len(toy_lines[2]) // 2]
    lines = [toy_lines[0], toy_lines[1], line3, toy_lines[3], "42", toy_lines[5]]
    bad._put(
        "bad_lines.jsonl",
        ("\n".join(lines) + "\n").encode("utf-8"),
        kind="bad",
        origins=[bad._origin(toy_rel)],
        licence="MIT (repo); text from SNLI/MultiNLI",
        note=(
            "6 lines: lines 1, 2, 4, 6 are the real GritLM toy rows 1, 2, 4, 6 verbatim (valid); "
            f"line 3 is real row 3 cut after {len(line3)} of {len(toy_lines[2])} characters (truncated JSON); "
            "line 5 is the JSON number `42` instead of a row"
        ),
    )
    t1319 = "task1319_country_by_barcode_prefix"
    text = (shared / f"super-ni/tasks/{t1319}.json").read_text(encoding="utf-8")
    cut = len(text) // 2
    bad._put(
        "task_broken.json",
        text[:cut].encode("utf-8"),
        kind="bad",
        origins=[bad._superni_origin(t1319)],
        licence=bad._task_licence(t1319),
        note=f"the real {t1319}.json cut after {cut} of {len(text)} characters, inside Instances (invalid JSON)",
    )
    t1146 = "task1146_country_capital"
    data = json.loads((shared / f"super-ni/tasks/{t1146}.json").read_text(encoding="utf-8"))
    del data["Instances"]
    bad._put(
        "task_no_instances.json",
        dump_task(data),
        kind="bad",
        origins=[bad._superni_origin(t1146)],
        licence=bad._task_licence(t1146),
        note=f"the real {t1146}.json without the `Instances` key (13 keys, upstream formatting); valid JSON",
    )
    return recs


def write_sets_yaml() -> None:
    lines = [
        f"# Source sets usable in `--sources`. Written by {SCRIPT}; see docs/CONTRACTS.md.",
        "demo:",
        "  data_dir: demo/mirror",
        "  sources:",
        *(f"    - {s}" for s in DEMO_SOURCES),
    ]
    SETS_YAML.parent.mkdir(parents=True, exist_ok=True)
    SETS_YAML.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------------- docs
LICENCE_TEXT = """\
- **Super-NaturalInstructions** (allenai/natural-instructions): the task definitions and metadata are Apache-2.0;
  each task's **instances keep the licence of their original dataset**, given in the task's `"Instance License"`
  field (copied into the table below). "Unknown" means upstream did not state one: treat it as not cleared.
  No upstream `LICENSE` file was available; the licence is stated in the allenai README.
- **FlagOpen/FlagEmbedding** and **ContextualAI/gritlm**: MIT. The text inside their example files comes from public
  datasets (MultiNLI/SNLI, MS MARCO, Natural Questions, BANKING77, Amazon reviews, arXiv/bioRxiv, STS) whose own
  terms still apply.
- **Non-commercial / restrictive terms:** text from **MS MARCO** (`msmarco.jsonl` and the derived
  `msmarco-triplets.jsonl.gz`) is under Microsoft's non-commercial research terms.
  {extra}No Super-NI task here has a non-commercial (CC BY-NC*) instance licence.
  These files are test/demo data only; do not redistribute them commercially.
- Files marked **DERIVED** are not upstream files: real rows re-shaped into the upstream *file names* and the five
  sentence-transformers layouts (no real sample of `sentence-transformers/embedding-training-data` was available).
  Their text is real, but a source named `quora_duplicates` or `flickr30k_captions` here does **not** hold Quora or
  Flickr text.
"""


REPOS_TEXT = (
    "| repo | commit | licence |\n"
    "| --- | --- | --- |\n"
    "| allenai/natural-instructions (upstream of the Super-NI task files) | unknown; content identical at "
    "`e0fd31052b21acea5bd95fb00253e1ee1f5d8259` / `ae457ac40dafe0cd3dcd1370f0a29da54f33df4a` | Apache-2.0 "
    "(definitions); instances per task |\n"
    "| allenai/natural-instructions `splits/default/` | train `9f4706643a9e3888bf607bddfd624a06de081283`, "
    "test `b00871c954282e35d14de77c546918ee8b9d90da` | Apache-2.0 |\n"
    "| luukkonenr/natural-instructions-fi (where the task files were copied from) | "
    "`26939267e1a0491880d64f3da59023f3e00cb7d0` | as upstream |\n"
    "| FlagOpen/FlagEmbedding | `7ed43d67ec03fbe5c31c0992dbfa941fb1860549` | MIT |\n"
    "| ContextualAI/gritlm | `971068105a8508bca421841c59fddba7f6596402` | MIT |\n"
    "\n" + SUPERNI_NOTE + "The split lists were rebuilt by shared/data from an index of public repositories "
    "(faithful, not byte-proven).\n"
)


def _table(recs: list[dict]) -> list[str]:
    out = [
        "| file | kind | origin repo @ commit : path | what was done | upstream sha256 | licence |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in recs:
        origin = "<br>".join(
            (f"{o['upstream']}, copied unchanged via " if o.get("upstream") else "")
            + f"{o['repo']} @ `{o['commit'][:12]}` : `{o['path']}`"
            for o in r["origins"]
        )
        shas = "<br>".join(f"`{o['sha256']}`" for o in r["origins"])
        kind = {"copy": "copy", "slice": "SLICE", "derived": "**DERIVED**", "bad": "malformed"}[r["kind"]]
        out.append(f"| `{r['rel']}` | {kind} | {origin} | {r['note']} | {shas} | {r['licence']} |")
    return out


def _written(recs: list[dict]) -> list[str]:
    out = ["| file | bytes | sha256 of the file written here |", "| --- | ---: | --- |"]
    out += [f"| `{r['path']}` | {r['bytes']:,} | `{r['sha256']}` |" for r in recs]
    return out


def _tsv(recs: list[dict]) -> str:
    head = "path\tkind\tbytes\tsha256\torigin_repo\torigin_commit\torigin_path\torigin_sha256\n"
    rows = []
    for r in recs:
        os_ = r["origins"]
        cols = [
            r["path"],
            r["kind"],
            str(r["bytes"]),
            r["sha256"],
            ";".join(o["repo"] for o in os_),
            ";".join(o["commit"] for o in os_),
            ";".join(o["path"] for o in os_),
            ";".join(o["sha256"] for o in os_),
        ]
        rows.append("\t".join(cols) + "\n")
    return head + "".join(rows)


def write_demo_docs(recs: list[dict], stats: dict) -> None:
    total = sum(r["bytes"] for r in recs)
    per_src = "\n".join(f"| `{k}` | {v:,} |" for k, v in stats["per_source"].items())
    common = _table(recs)
    readme = [
        "# Demo mirror",
        "",
        f"Generated by `{SCRIPT}` from `shared/data` (see its README). Do not edit by hand: re-run the script.",
        "",
        'A small mirror laid out like the upstream repos (see `docs/CONTRACTS.md`, "Mirror layout"), used by',
        "`medi build --sources demo` (set defined in `sources/_sets.yaml`, `data_dir: demo/mirror`).",
        "",
        "```",
        "super-ni/splits/default/{train,test}_tasks.txt   copies",
        "super-ni/tasks/<task>.json                         8 tasks, each cut to at most 120 instances (SLICE)",
        "embedding-training-data/*.jsonl.gz                 DERIVED: real rows in the 5 sentence-transformers layouts",
        f"{FE}/...   copies",
        f"{GRIT_TOY}                copy",
        "```",
        "",
        f"{len(recs)} files, {total:,} bytes. The demo set embeds **{stats['distinct']:,} distinct texts** "
        "(Super-NI inputs + first outputs; ST rows: query + one pos + one neg).",
        "",
        "Licences: Super-NI task definitions Apache-2.0, instances per task (`Instance License`);",
        "FlagEmbedding and gritlm MIT; MS MARCO text is non-commercial. Full provenance: `demo/PROVENANCE.md`.",
        "",
        "## Files",
        "",
        *common,
        "",
    ]
    (DEMO_MIRROR / "README.md").write_text("\n".join(readme), encoding="utf-8")
    prov = [
        "# Provenance of `demo/`",
        "",
        f"Every file under `demo/mirror/` was written by `{SCRIPT}` from the real samples in `shared/data`",
        "(provenance in `shared/data/README.md` and `MANIFEST.tsv`). Machine-readable: `demo/PROVENANCE.tsv`.",
        "",
        "## Repositories",
        "",
        REPOS_TEXT,
        "## Licences",
        "",
        LICENCE_TEXT.format(extra=""),
        "## How the slices were made",
        "",
        "Super-NI task files keep all 14 keys in upstream order and upstream formatting",
        "(`json.dump(indent=4, ensure_ascii=False)`, no final newline); only `Instances` is cut. The choice is",
        "deterministic: always keep the *quirk* instances (first instance per output-list length, every instance with",
        "an empty-string output, first instance per label when a task has at most 10 distinct first outputs), then",
        "evenly spaced instances (`rest[j * len(rest) // m]`) up to the cap, in upstream order. Tasks with at most",
        "120 instances are byte-identical copies.",
        "",
        "## Files and their origin",
        "",
        *common,
        "",
        "## Files as written",
        "",
        *_written(recs),
        "",
        "## Distinct texts the demo build would embed",
        "",
        f"Total distinct (union over all sources): **{stats['distinct']:,}**. Per source (distinct within it):",
        "",
        "| source | distinct texts |",
        "| --- | ---: |",
        per_src,
        "",
    ]
    (DEMO / "PROVENANCE.md").write_text("\n".join(prov), encoding="utf-8")
    (DEMO / "PROVENANCE.tsv").write_text(_tsv(recs), encoding="utf-8")


def write_fixture_docs(recs: list[dict]) -> None:
    mirror = [r for r in recs if r["kind"] != "bad"]
    bad = [r for r in recs if r["kind"] == "bad"]
    total = sum(r["bytes"] for r in recs)
    doc = [
        "# Test fixtures",
        "",
        f"`mirror/` and `bad/` are generated by `{SCRIPT}` from the real samples in `shared/data` (provenance in",
        "`shared/data/README.md` and `MANIFEST.tsv`). Do not edit by hand: re-run the script. Machine-readable:",
        f"`tests/fixtures/PROVENANCE.tsv`. {len(recs)} files, {total:,} bytes.",
        "",
        "## Repositories",
        "",
        REPOS_TEXT,
        "## Licences",
        "",
        LICENCE_TEXT.format(
            extra="Super-NI test task `task1345_glue_qqp_question_paraprashing` carries the **Quora Terms of "
            "Service** as its instance licence. "
        ),
        "## `mirror/`",
        "",
        "Same layout as the upstream repos (`docs/CONTRACTS.md`). What it offers to tests:",
        "",
        "- split lists (756 train / 119 test names);",
        "- full task files: duplicate task number `task861` (two different tasks), multi-output `task1319`",
        "  (up to 21 outputs), test tasks `task1562` (source `zest`) and `task891`, and excluded `task120`",
        "  (in neither list; shares source `zest` with test task1562);",
        "- slices: `task1289` (6 TREC labels), `task227` (Yes/No), `task293` (incl. the instance whose outputs hold an",
        "  empty string), `task672` (long inputs, 2-3 reference summaries), `task1345` (test task: its first 100",
        "  instances, which upstream evaluates, plus evenly spaced ones), `task082` (only 4 distinct outputs, 1-4",
        "  outputs per instance);",
        "- FlagEmbedding / GritLM files (layout 5, with extra keys) as copies, and the five sentence-transformers",
        "  layouts as DERIVED `embedding-training-data/*.jsonl.gz`.",
        "",
        *_table(mirror),
        "",
        "## `bad/`: deliberately malformed inputs (made from real rows)",
        "",
        *_table(bad),
        "",
        "## Files as written",
        "",
        *_written(recs),
        "",
        "## `clean/`",
        "",
        "Real slices for the dedup / decontaminate / filter / select tests, with their own provenance and licences in",
        "`clean/README.md` (made by `clean/make_clean_fixtures.py`, not by `scripts/make_demo_data.py`).",
        "",
    ]
    (FIXTURES / "README.md").write_text("\n".join(doc), encoding="utf-8")
    (FIXTURES / "PROVENANCE.tsv").write_text(_tsv(recs), encoding="utf-8")


# ----------------------------------------------------------------------------------------------- verify
def row_layout(row: object) -> str | None:
    if isinstance(row, list) and all(isinstance(x, str) for x in row):
        return {2: "pair", 3: "triplet"}.get(len(row))
    if isinstance(row, dict):
        keys = set(row)
        if keys == {"set"} and isinstance(row["set"], list):
            return "set"
        if isinstance(row.get("query"), str) and isinstance(row.get("pos"), list):
            if keys == {"query", "pos"}:
                return "query-pos"
            if keys == {"query", "pos", "neg"} and isinstance(row["neg"], list):
                return "query-pos-neg"
    return None


def load_rows(path: Path) -> list:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    return [json.loads(ln) for ln in raw.decode("utf-8").splitlines() if ln.strip()]


def row_texts(row: object) -> list[str]:
    lay = row_layout(row)
    if lay in ("pair", "triplet"):
        return list(row)  # type: ignore[arg-type]
    if lay == "set":
        return list(row["set"])  # type: ignore[index]
    if isinstance(row, dict):  # query-pos, query-pos-neg and FlagEmbedding rows with extra keys
        return [row["query"], *row["pos"][:1], *row.get("neg", [])[:1]]
    raise ValueError(f"unknown layout: {row!r:.80}")


def distinct_texts(mirror: Path) -> dict:
    per_source: dict[str, int] = {}
    union: set[str] = set()
    for src in DEMO_SOURCES:
        texts: set[str] = set()
        if src.startswith("superni/"):
            task = json.loads((mirror / f"super-ni/tasks/{src.split('/', 1)[1]}.json").read_text(encoding="utf-8"))
            for inst in task["Instances"]:
                texts.add(inst["input"])
                if inst["output"]:
                    texts.add(inst["output"][0])
        else:
            for row in load_rows(mirror / SOURCE_FILES[src]):
                texts.update(row_texts(row))
        texts.discard("")
        per_source[src] = len(texts)
        union |= texts
    return {"distinct": len(union), "per_source": per_source}


def verify(shared: Path) -> list[str]:
    """Check the written trees; return a list of problems (empty when all is well)."""
    problems: list[str] = []
    manifest = read_manifest(shared)
    for tree in (DEMO_MIRROR, FIX_MIRROR, FIX_BAD):
        for path in sorted(p for p in tree.rglob("*") if p.is_file()):
            rel = path.relative_to(tree).as_posix()
            data = path.read_bytes()
            if rel.startswith(("FlagEmbedding/", "gritlm/")) and rel.endswith(".jsonl"):
                m = manifest.get(f"st-embedding/{rel}")
                if not m or sha256(data) != m["sha256"]:
                    problems.append(f"{path}: not byte-identical to MANIFEST")
                else:
                    load_rows(path)
            elif rel.startswith("super-ni/splits/"):
                if sha256(data) != manifest[rel]["sha256"]:
                    problems.append(f"{path}: not byte-identical to MANIFEST")
            elif rel.startswith("super-ni/tasks/"):
                task = json.loads(data.decode("utf-8"))
                if list(task) != TASK_KEYS:
                    problems.append(f"{path}: keys differ from upstream")
                orig = manifest[rel]
                full = json.loads((shared / rel).read_text(encoding="utf-8"))
                if sha256(data) != orig["sha256"]:  # a slice: everything but Instances equal, instances a subset
                    if any(task[k] != full[k] for k in TASK_KEYS if k != "Instances"):
                        problems.append(f"{path}: non-Instances keys changed")
                    ids = [x["id"] for x in full["Instances"]]
                    pos = [ids.index(x["id"]) for x in task["Instances"]]
                    if pos != sorted(pos) or any(
                        task["Instances"][j] != full["Instances"][i] for j, i in enumerate(pos)
                    ):
                        problems.append(f"{path}: Instances are not an ordered subset of upstream")
                    if dump_task(task) != data:
                        problems.append(f"{path}: not in upstream formatting")
            elif rel.endswith(".jsonl.gz"):
                if data[3] & 0x08 or data[4:8] != b"\0\0\0\0":
                    problems.append(f"{path}: gzip header has a file name or an mtime")
                rows = load_rows(path)
                want = {
                    "AllNLI": "triplet",
                    "quora_duplicates": "pair",
                    "flickr30k_captions": "set",
                    "searchQA_top5_snippets": "query-pos",
                    "msmarco-triplets": "query-pos-neg",
                }
                exp = want[Path(rel).name.removesuffix(".jsonl.gz")]
                bad_rows = [i for i, r in enumerate(rows) if row_layout(r) != exp]
                if bad_rows or not rows:
                    problems.append(f"{path}: rows {bad_rows} do not match layout {exp}")
            elif tree == FIX_BAD:
                if rel == "task_broken.json":
                    try:
                        json.loads(data.decode("utf-8"))
                        problems.append(f"{path}: parses but should not")
                    except json.JSONDecodeError:
                        pass
                elif rel == "task_no_instances.json":
                    t = json.loads(data.decode("utf-8"))
                    if "Instances" in t or len(t) != 13:
                        problems.append(f"{path}: should have the 13 keys other than Instances")
                elif rel == "bad_lines.jsonl":
                    lines = data.decode("utf-8").splitlines()
                    ok = []
                    for ln in lines:
                        try:
                            v = json.loads(ln)
                            ok.append(isinstance(v, dict))
                        except json.JSONDecodeError:
                            ok.append(None)
                    if ok != [True, True, None, True, False, True]:
                        problems.append(f"{path}: unexpected line pattern {ok}")
            elif rel == "README.md":
                pass
            else:
                problems.append(f"{path}: unexpected file")
    return problems


# ----------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "shared",
        nargs="?",
        default=str(REPO.parent / "shared" / "data"),
        help="path of shared/data (default: ../shared/data relative to the repo)",
    )
    ap.add_argument("--check", action="store_true", help="verify the written files only")
    args = ap.parse_args(argv)
    shared = Path(args.shared).resolve()
    if not (shared / "MANIFEST.tsv").is_file():
        ap.error(f"{shared} has no MANIFEST.tsv; pass the path of shared/data")

    if not args.check:
        for tree in (DEMO_MIRROR, FIX_MIRROR, FIX_BAD):
            if tree.exists():
                shutil.rmtree(tree)
        demo_recs = build_demo(shared)
        fix_recs = build_fixtures(shared)
        stats = distinct_texts(DEMO_MIRROR)
        write_demo_docs(demo_recs, stats)
        write_fixture_docs(fix_recs)
        write_sets_yaml()
        for name, recs in (("demo/mirror", demo_recs), ("tests/fixtures", fix_recs)):
            print(f"{name}: {len(recs)} files, {sum(r['bytes'] for r in recs):,} bytes")

    problems = verify(shared)
    stats = distinct_texts(DEMO_MIRROR)
    print(f"demo distinct texts to embed: {stats['distinct']:,}")
    for src, n in stats["per_source"].items():
        print(f"  {src}: {n}")
    for p in problems:
        print("PROBLEM:", p, file=sys.stderr)
    print("verify:", "OK" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
