"""``medi stats``: numbers checked against the release's own rows and manifest; plots are real PNG images."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from collections import Counter

import matplotlib.image
import numpy as np
import pytest
from PIL import Image
from support import PROJECT_ROOT, plain, run_in_terminal
from typer.testing import CliRunner

import medi.release.stats
from medi.cli import app
from medi.release import open_release
from medi.release.stats import release_stats, write_plots

WIDE = {"COLUMNS": "260", "NO_COLOR": "1"}
PLOTS = ("rows_per_source.png", "rows_per_family.png", "text_lengths.png", "scores.png", "scores_per_source.png",
         "margins_per_source.png", "removed_per_source.png")  # fmt: skip


@pytest.fixture(scope="module")
def stats(demo_release) -> dict:
    return release_stats(open_release(demo_release.out))


def test_rows_and_lengths_match_the_rows(stats, demo_release):
    assert stats["rows"] == demo_release.manifest["rows"] == sum(s["rows"] for s in stats["sources"].values())
    assert {name: s["rows"] for name, s in stats["sources"].items()} == {
        t["task_name"]: t["rows"] for t in demo_release.manifest["tasks"]
    }
    families = Counter()
    for task in demo_release.manifest["tasks"]:
        families[task["task_name"].split("/")[0]] += task["rows"]
    assert stats["families"] == dict(families) and set(families) == {"superni", "st", "flagembedding", "gritlm"}
    rows = demo_release.rows_of("st/AllNLI")
    for side in ("query", "pos", "neg"):
        lengths = [len(row[side]["text"]) for row in rows]
        summary = stats["sources"]["st/AllNLI"]["lengths"][side]
        assert summary["median"] == statistics.median(lengths)
        assert summary["max"] == max(lengths)
        assert summary["p95"] == pytest.approx(float(np.percentile(lengths, 95)))


def test_instructions_and_mining_come_from_the_manifest(stats, demo_release):
    for name, source in demo_release.manifest["sources"].items():
        got = stats["sources"][name]
        assert got["instructions"]["status"] == source["instructions"]["status"]
        assert got["instructions"]["wordings"]["query"] == len(source["instructions"]["query"])
        assert got["instructions"]["distinct_in_rows"] == {"query": 1, "pos": 1, "neg": 1}  # primary wordings
        assert got["mining"]["mean_pos_score"] == source["mining"]["mean_pos_score"]
        assert got["mining"]["share_neg_ge_pos"] == source["mining"]["share_neg_ge_pos"]
        assert got["mining"]["fallbacks"] == source["mining"]["fallbacks"]
    scored = [r for r in demo_release.dataset if r["pos_score"] is not None and r["neg_score"] is not None]
    share = sum(r["neg_score"] >= r["pos_score"] for r in scored) / len(scored)
    assert stats["overall"]["scores"]["share_neg_ge_pos"] == pytest.approx(share, abs=1e-4)
    assert stats["overall"]["scores"]["scored_rows"] == len(scored)


def test_cli_table_and_json(demo_release):
    runner = CliRunner(env=WIDE)
    result = runner.invoke(app, ["stats", str(demo_release.out)])
    assert result.exit_code == 0, result.output
    text = plain(result.stdout)
    rows, sources = demo_release.manifest["rows"], len(demo_release.manifest["tasks"])
    assert f"{rows} rows, {sources} sources" in text
    trec = next(line for line in text.splitlines() if "superni/task1289_trec_classification" in line)
    trec_rows = next(
        t["rows"] for t in demo_release.manifest["tasks"] if t["task_name"].endswith("trec_classification")
    )
    cells = re.split(r"\s{2,}", trec.strip())  # piped: aligned columns two or more spaces apart
    status = demo_release.manifest["sources"]["superni/task1289_trec_classification"]["instructions"]["status"]
    assert status in ("draft", "reviewed")  # the status the build recorded, whichever the shipped entry has
    assert cells[1] == str(trec_rows) and cells[4] == f"3/3, {status}" and cells[5] == f"mined {trec_rows}"
    as_json = runner.invoke(app, ["stats", str(demo_release.out), "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert data["rows"] == rows and len(data["sources"]) == sources
    bad = runner.invoke(app, ["stats", str(demo_release.out), "--format", "xml"])
    assert bad.exit_code == 1 and "use table or json" in plain(bad.output)


def test_source_names_stay_whole_piped_and_at_80_columns(demo_release, stats, tmp_path):
    """Issue 21: rich folded the source column of an 80-column table into 6-character pieces. Piped, every source
    is one aligned line; on an 80-column terminal, too narrow for the table, its name is a line of its own."""
    command = [sys.executable, "-m", "medi.cli", "stats", str(demo_release.out)]
    piped = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"}, timeout=300)
    assert piped.returncode == 0, piped.stderr
    lines = piped.stdout.splitlines()
    assert lines[1].startswith("source") and lines[1].rstrip().endswith("fallbacks")
    for name, source in stats["sources"].items():
        cells = re.split(r"\s{2,}", next(line for line in lines if line.startswith(name + " ")))
        assert cells[0] == name and cells[1] == str(source["rows"]) and len(cells) == 9
    code, text = run_in_terminal(command, 80, timeout=300)
    assert code == 0, text
    lines = text.splitlines()
    assert max(map(len, lines)) <= 80
    for name, source in stats["sources"].items():
        assert lines[lines.index(name) + 1].startswith(f"  rows {source['rows']}; median chars q/pos/neg ")
    code, wide = run_in_terminal(command, 260, timeout=300)  # wide enough: the table, every cell whole
    assert code == 0 and all(re.search(rf"│ {re.escape(name)} +│", wide) for name in stats["sources"])


def test_plots_are_real_readable_images(demo_release, tmp_path):
    result = CliRunner(env=WIDE).invoke(app, ["stats", str(demo_release.out), "--plots", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(PLOTS)
    for name in PLOTS:
        path = tmp_path / "plots" / name
        assert f"plot: {path}" in " ".join(plain(result.stdout).split())
        with Image.open(path) as image:
            assert image.format == "PNG"
            width, height = image.size
            assert width >= 1000 and height >= 300
            assert len(np.unique(np.asarray(image.convert("L")))) > 20  # drawn, not blank
        pixels = matplotlib.image.imread(path)
        assert pixels.shape[:2] == (height, width)


def test_source_charts_grow_with_the_sources_shown(demo_release, tmp_path, monkeypatch):
    release = open_release(demo_release.out)
    stats = release_stats(release)
    write_plots(release, stats, tmp_path / "all")
    monkeypatch.setattr(medi.release.stats, "TOP_SOURCES", 5)  # a many-source release shows only its largest sources
    write_plots(release, stats, tmp_path / "top5")
    with (
        Image.open(tmp_path / "all" / "rows_per_source.png") as full,
        Image.open(tmp_path / "top5" / "rows_per_source.png") as top,
    ):
        assert top.size[1] < full.size[1]


def test_readme_and_help_give_the_same_plots_folder_beside_the_release():
    """Issue 14, case 8: the README's `medi stats ... --plots` example and `--help`'s agree, and keep the plots out
    of the release folder (a rebuild into it must not meet files medi did not write)."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    help_text = " ".join(plain(CliRunner(env=WIDE).invoke(app, ["stats", "--help"]).stdout).split())
    pattern = r"medi stats (\S+) --plots ([^\s`]+)"
    documented = re.findall(pattern, readme)
    assert documented and set(documented) == set(re.findall(pattern, help_text))
    for release, plots in documented:
        assert not plots.startswith(release.rstrip("/") + "/"), plots
