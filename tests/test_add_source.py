"""``medi add-source``: scaffold a source and its draft instructions, then build it with no code change."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from support import ETD, MIRROR, json_lines, plain, squash
from typer.testing import CliRunner

import medi
from medi.authoring.lint import lint
from medi.build import BuildOptions
from medi.catalog import Catalog
from medi.cli import app
from medi.release import open_release
from medi.stages.instruct import InstructionBook

REVISION = "015d73e06b0686135d4d8340b1c68177d204b412"  # embedding-training-data commit the catalog pins


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})


def tree(root: Path) -> dict[str, bytes]:
    """Every file of sources/ and instructions/ with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for d in ("sources", "instructions") for p in (root / d).rglob("*")
            if p.is_file()}  # fmt: skip


@pytest.fixture
def local_pairs(medi_home) -> Path:
    """Real msmarco triplets (query, pos, neg) from the fixture mirror, as a plain JSONL inside the project."""
    path = medi_home.root / "data" / "pairs.jsonl"
    path.parent.mkdir(parents=True)
    with gzip.open(ETD / "msmarco-triplets.jsonl.gz", "rt", encoding="utf-8") as src:
        path.write_text(src.read(), encoding="utf-8")
    return path


def test_add_local_source_then_build_it(medi_home, local_pairs, tmp_path, cache_dir):
    rows = json_lines(local_pairs)
    result = invoke("add-source", "st/my_local", "--adapter", "st_jsonl", "--path", str(local_pairs), "--rows", "3")
    assert result.exit_code == 0, result.output
    output = plain(result.output)
    assert "first 3 rows of st/my_local" in output
    assert squash(rows[0]["query"])[:40] in output  # the real first query, printed

    source_file = medi_home.root / "sources" / "st" / "my_local.yaml"
    spec = Catalog.load(medi_home.root).specs["st/my_local"]
    assert (spec.adapter, spec.path, spec.symmetric, spec.upstream) == ("st_jsonl", "data/pairs.jsonl", False, None)
    assert source_file.read_text(encoding="utf-8").startswith("# added by medi add-source")
    entry = InstructionBook.load(medi_home.root).entries["st/my_local"]
    assert entry.status == "draft" and len(entry.query) == 3 and len(entry.document) == 3
    findings = [f for f in lint(medi_home.root).findings if f.source == "st/my_local"]  # valid, but a draft
    draft = ("warning", "draft", _status_line(medi_home, "st/my_local"))
    assert [(f.level, f.code, f.line) for f in findings] == [draft]

    release = medi.build("st/my_local", tmp_path / "out", None, BuildOptions(), cache_dir=cache_dir)
    source = release["sources"]["st/my_local"]
    assert source["rows_kept"] == len(rows) and source["instructions"]["origin"] == "instructions/st.yaml"
    built = open_release(tmp_path / "out").dataset
    assert built[0]["query"] == {"instruction": entry.query[0], "text": squash(rows[0]["query"])}
    assert built[0]["pos"]["instruction"] == entry.document[0]


def _status_line(home, name: str) -> int:
    lines = (home.root / "instructions" / f"{name.split('/')[0]}.yaml").read_text(encoding="utf-8").splitlines()
    start = lines.index(f"{name}:")
    return next(i for i, line in enumerate(lines) if i > start and line.startswith("  status:")) + 1


def test_cap_is_written_and_drafts_in_a_build_are_a_warning(medi_home, local_pairs, tmp_path, cache_dir):
    """Issue 21: `--cap N` becomes the source's medi.cap, which the build keeps to; its draft wordings entering a
    release are a warning naming the source, on stderr and in the manifest (none with --instructions none)."""
    result = invoke("add-source", "st/capped", "--adapter", "st_jsonl", "--path", str(local_pairs), "--cap", "4")
    assert result.exit_code == 0, result.output
    text = (medi_home.root / "sources" / "st" / "capped.yaml").read_text(encoding="utf-8")
    assert "medi: {included: null, cap: 4}   # " in text and "keeps at most 4 rows" in text
    assert Catalog.load(medi_home.root).specs["st/capped"].medi.cap == 4
    args = ["build", "--sources", "st/capped,st/AllNLI", "--data-dir", str(MIRROR), "--cache-dir", str(cache_dir)]
    built = invoke(*args, "--out", str(tmp_path / "out"))
    assert built.exit_code == 0, built.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["sources"]["st/capped"]["rows_kept"] == 4 < len(json_lines(local_pairs))
    assert manifest["draft_instructions"] == {"count": 1, "names": ["st/capped"]}  # st/AllNLI's are reviewed
    warning = " ".join(plain(built.stderr).split())
    assert "warning: 1 source(s) carry draft instruction wordings, not reviewed: st/capped;" in warning
    bare = invoke(*args, "--out", str(tmp_path / "bare"), "--instructions", "none")
    assert bare.exit_code == 0, bare.output
    manifest = json.loads((tmp_path / "bare" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["draft_instructions"] == {"count": 0, "names": []} and "draft instruction" not in plain(bare.stderr)
    refused = invoke("add-source", "st/none_kept", "--adapter", "st_jsonl", "--path", str(local_pairs), "--cap", "0")
    assert refused.exit_code == 2 and "Invalid value for '--cap'" in plain(refused.output)
    assert not (medi_home.root / "sources" / "st" / "none_kept.yaml").exists()


def test_add_hub_source_reads_the_mirror_and_builds(medi_home, tmp_path, cache_dir):
    result = invoke(
        "add-source", "st/nli_again", "--adapter", "st_jsonl", "--symmetric",
        "--hub-repo", "sentence-transformers/embedding-training-data", "--file", "AllNLI.jsonl.gz",
        "--revision", REVISION, "--data-dir", str(MIRROR), "--licence", "CC BY-SA 4.0",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "st/AllNLI reads the same upstream file" in plain(result.output)
    spec = Catalog.load(medi_home.root).specs["st/nli_again"]
    assert spec.upstream.repo == "sentence-transformers/embedding-training-data"
    assert (spec.upstream.path, spec.upstream.revision) == ("AllNLI.jsonl.gz", REVISION)
    assert (
        spec.mirror == "embedding-training-data/AllNLI.jsonl.gz" and spec.symmetric and spec.licence == "CC BY-SA 4.0"
    )
    assert InstructionBook.load(medi_home.root).entries["st/nli_again"].document is None
    manifest = medi.build("st/nli_again", tmp_path / "out", [MIRROR], BuildOptions(), cache_dir=cache_dir)
    assert manifest["sources"]["st/nli_again"]["rows_kept"] == len(json_lines(ETD / "AllNLI.jsonl.gz"))
    assert manifest["sources"]["st/nli_again"]["input"]["revision"] == REVISION


def test_add_table_source_with_a_column_mapping(medi_home, local_pairs, tmp_path, cache_dir):
    table = local_pairs.with_name("qa.jsonl")
    rows = json_lines(local_pairs)
    table.write_text(
        "".join(json.dumps({"question": r["query"], "passage": {"text": r["pos"][0]}}) + "\n" for r in rows), "utf-8"
    )
    result = invoke(
        "add-source", "qa/web_answers", "--adapter", "table", "--path", str(table),
        "--columns", "query=question,pos=passage.text",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (medi_home.root / "instructions" / "qa.yaml").read_text(encoding="utf-8").startswith("# Sources: family qa/")
    spec = Catalog.load(medi_home.root).specs["qa/web_answers"]
    assert spec.options == {"columns": {"query": "question", "pos": "passage.text", "neg": None}}
    manifest = medi.build("qa/web_answers", tmp_path / "out", None, BuildOptions(), cache_dir=cache_dir)
    assert manifest["sources"]["qa/web_answers"]["rows_kept"] == len(rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["st/AllNLI"], "st/AllNLI already exists"),
        (["st/allnli"], "differs only in case"),
        (["st/../../etc/x"], "bad source name"),
        (["../x"], "bad source name"),
        (["st/a/b"], "bad source name"),
        (["st/_hidden"], "bad source name"),
        (["_st/x"], "bad source name"),
        (["st/x.yaml"], "bad source name"),
        (["superni/task9999_new"], "not added by hand"),
        (["st/new_one", "--adapter", "csv"], "unknown adapter 'csv'; known adapters: kilt, st_jsonl, superni, table"),
        (["st/new_one", "--path", "missing.jsonl"], "no such file"),
        (["st/new_one", "--hub-repo", "org/x", "--file", "a.jsonl", "--revision", "main"], "40-character commit"),
        (["st/new_one", "--hub-repo", "org/x", "--file", "a.jsonl", "--no-remote", "--data-dir", "."],
         "cannot load the first rows, nothing written"),
        (["st/new_one", "--adapter", "table", "--path", "PAIRS"], "needs --columns"),
        (["st/new_one", "--path", "NOT_JSON"], "read no rows, nothing written"),
    ],
)  # fmt: skip
def test_refusals_write_nothing(medi_home, local_pairs, args, message):
    garbage = local_pairs.with_name("garbage.jsonl")
    garbage.write_text("this is not json\n{broken\n", encoding="utf-8")
    args = [{"PAIRS": str(local_pairs), "NOT_JSON": str(garbage)}.get(a, a) for a in args]
    if "--adapter" not in args:
        args += ["--adapter", "st_jsonl"]
    if not {"--path", "--hub-repo"} & set(args):
        args += ["--path", str(local_pairs)]
    before = tree(medi_home.root)
    result = invoke("add-source", *args)
    assert result.exit_code == 1, result.output
    assert message in " ".join(plain(result.output).split())
    assert tree(medi_home.root) == before


def test_an_existing_instruction_entry_is_not_overwritten(medi_home, local_pairs):
    medi_home.add_instructions(["st/orphan"], file="st_extra.yaml")
    result = invoke("add-source", "st/orphan", "--adapter", "st_jsonl", "--path", str(local_pairs))
    assert result.exit_code == 1 and "already has instructions in instructions/st_extra.yaml" in plain(result.output)
    assert not (medi_home.root / "sources" / "st" / "orphan.yaml").exists()
