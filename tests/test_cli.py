"""The ``medi`` command through typer's CliRunner."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from support import MIRROR, plain
from typer.testing import CliRunner

from medi.cli import app
from medi.fetch import find_in_mirrors

WIDE = {"COLUMNS": "240", "NO_COLOR": "1"}


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner(env=WIDE)


def lines_of(text: str) -> dict[str, str]:
    """The line of each source name found at its start: a table row ('│ name │ ...') or aligned columns (sources)."""
    rows = {}
    for line in plain(text).splitlines():
        cells = [c.strip() for c in line.strip().strip("│|").split("│")] if "│" in line else line.split()
        if cells and cells[0]:
            rows.setdefault(cells[0], line)
    return rows


def test_sources_lists_the_catalog(runner, catalog):
    result = runner.invoke(app, ["sources", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == sorted(catalog.specs)
    families = Counter(r["name"].split("/", 1)[0] for r in rows)
    assert families["superni"] == 756
    assert families["st"] == 40 and families["flagembedding"] == 8 and families["gritlm"] == 1
    assert {r["status"] for r in rows} == {"remote"}  # no data dir: nothing is local
    assert {r["adapter"] for r in rows} == {"superni", "st_jsonl", "table", "kilt"}


def test_sources_marks_local_with_a_data_dir(runner, catalog):
    result = runner.invoke(app, ["sources", "--json", "--data-dir", str(MIRROR)])
    assert result.exit_code == 0, result.output
    status = {r["name"]: r["status"] for r in json.loads(result.stdout)}
    local = {n for n, s in catalog.specs.items() if find_in_mirrors(s, [MIRROR])}
    assert {n for n, v in status.items() if v == "local"} == local
    assert len(local) == 23 and status["superni/task1146_country_capital"] == "local"
    assert status["st/NQ-train_pairs"] == "remote"


def test_sources_table(runner, catalog):
    result = runner.invoke(app, ["sources", "--data-dir", str(MIRROR)])
    assert result.exit_code == 0, result.output
    text = plain(result.stdout)
    assert f"{len(catalog.specs)} sources ({MIRROR})" in text
    rows = lines_of(text)
    assert "local" in rows["superni/task1146_country_capital"]
    assert "remote" in rows["superni/task1657_gooaq_question_generation"]
    assert "remote" in rows["st/NQ-train_pairs"] and "015d73e06b" in rows["st/NQ-train_pairs"]
    assert "unpinned" in rows["kilt/nq"]
    assert "set demo: 19 sources" in text


def test_sources_one_family(runner):
    result = runner.invoke(app, ["sources", "--json", "--family", "flagembedding"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 8


def build_args(sources: str, out: Path, cache_dir: Path, *extra: str) -> list[str]:
    """``medi build`` over the fixture mirror with the session's embedding cache."""
    return [
        "build",
        "--sources",
        sources,
        "--out",
        str(out),
        "--data-dir",
        str(MIRROR),
        "--cache-dir",
        str(cache_dir),
        *extra,
    ]


def test_build_prints_the_summary(runner, tmp_path, cache_dir):
    out = tmp_path / "release"
    result = runner.invoke(app, build_args("st/quora_duplicates,gritlm/toy_data_embedding", out, cache_dir))
    assert result.exit_code == 0, result.output
    text = plain(result.stdout)
    assert "release: 20 rows, 1 shard(s)" in text
    rows = lines_of(text)
    assert "mined 10" in rows["st/quora_duplicates"] and "given 10" in rows["gritlm/toy_data_embedding"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"] == 20 and set(manifest["sources"]) == {"st/quora_duplicates", "gritlm/toy_data_embedding"}
    assert f"wrote {out}" in plain(result.stderr)


def test_build_reports_skipped_sources(runner, tmp_path, cache_dir):
    out = tmp_path / "release"
    sources = "st/quora_duplicates,superni/task1657_gooaq_question_generation"
    result = runner.invoke(app, build_args(sources, out, cache_dir, "--no-remote"))
    assert result.exit_code == 0, result.output
    rows = lines_of(result.stdout)
    assert "skipped: missing_file" in rows["superni/task1657_gooaq_question_generation"]
    assert "task1657_gooaq_question_generation.json" in plain(result.stderr)


def test_build_unknown_source_exits_1(runner, tmp_path):
    args = ["build", "--sources", "superni/task1146_country_captal", "--out", str(tmp_path / "x")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    message = " ".join(plain(result.stderr).split())
    assert "error: unknown source 'superni/task1146_country_captal'" in message
    assert "superni/task1146_country_capital" in message
    assert not (tmp_path / "x").exists()


def test_build_test_task_exits_1(runner, tmp_path):
    args = ["build", "--sources", "superni/task1562_zest_text_modification", "--out", str(tmp_path / "x")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "Super-NI test task" in " ".join(plain(result.stderr).split())


def test_build_bad_option_exits_2(runner, tmp_path):
    args = ["build", "--sources", "st/AllNLI", "--out", str(tmp_path / "x"), "--on-error", "ignore"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "Invalid value for '--on-error': 'ignore' is not one of 'skip', 'fail'" in plain(result.stderr)


def test_build_on_error_fail_exits_1(runner, tmp_path):
    args = [
        "build",
        "--sources",
        "st/NQ-train_pairs",
        "--out",
        str(tmp_path / "x"),
        "--data-dir",
        str(MIRROR),
        "--no-remote",
        "--on-error",
        "fail",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    message = " ".join(plain(result.stderr).split())
    assert "not in the mirror" in message and "NQ-train_pairs.jsonl.gz" in message
