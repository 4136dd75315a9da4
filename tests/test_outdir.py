"""Output paths (issue 14, case 1): `medi build`, `medi export` and `medi review export` write only into a new path,
an empty folder or an earlier medi output of the same kind; anything else is refused by name and left untouched."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pytest
from support import MIRROR, plain
from typer.testing import CliRunner

from medi.authoring.review import export_review
from medi.cli import app
from medi.errors import MediError
from medi.outdir import check_out, install, medi_kind
from medi.release import open_release
from medi.release.export import export
from medi.release.verify import verify_release

WIDE = {"COLUMNS": "240", "NO_COLOR": "1"}
SMALL = "st/quora_duplicates"  # 10 rows from the fixture mirror: a build of a few seconds


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner(env=WIDE)


@pytest.fixture(scope="module")
def release(demo_release):
    return open_release(demo_release.out)


def build(runner: CliRunner, out: Path, cache_dir: Path):
    args = ["build", "--sources", SMALL, "--data-dir", str(MIRROR), "--out", str(out), "--cache-dir", str(cache_dir)]
    return runner.invoke(app, args)


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (or ``path`` itself) with its bytes: what a refusal must leave as it was."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def message(result) -> str:
    return " ".join(plain(result.output).split())


def test_build_refuses_a_file_and_leaves_it(runner, tmp_path, cache_dir):
    afile = tmp_path / "afile"
    afile.write_text("hi\n")
    result = build(runner, afile, cache_dir)
    assert result.exit_code == 1
    assert f"{afile}: is a file; medi build writes a folder" in message(result)
    assert afile.read_text() == "hi\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # no staging folder left beside it


def test_build_refuses_a_folder_it_did_not_write(runner, tmp_path, cache_dir):
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "notes.txt").write_text("my notes")
    (mine / "sub" / "data.csv").write_text("a,b\n")
    before = snapshot(mine)
    result = build(runner, mine, cache_dir)
    assert result.exit_code == 1
    text = message(result)
    assert f"{mine}: is not empty and not a release (it holds notes.txt, sub)" in text
    assert "choose another --out" in text
    assert snapshot(mine) == before


def test_build_writes_new_and_empty_folders_and_replaces_its_own_release(runner, tmp_path, cache_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert build(runner, empty, cache_dir).exit_code == 0
    assert verify_release(empty).ok
    fresh = tmp_path / "a" / "b" / "v1"
    assert build(runner, fresh, cache_dir).exit_code == 0
    first = snapshot(fresh)
    assert build(runner, fresh, cache_dir).exit_code == 0  # a rebuild replaces the release medi wrote
    assert snapshot(fresh) == first and verify_release(fresh).ok
    assert sorted(p.name for p in fresh.parent.iterdir()) == ["v1"]  # no staging or old folder left


def test_rebuild_refuses_files_medi_did_not_write_and_names_them(runner, tmp_path, cache_dir):
    v1 = tmp_path / "out" / "v1"
    assert build(runner, v1, cache_dir).exit_code == 0
    plotted = runner.invoke(app, ["stats", str(v1), "--plots", str(v1 / "plots")])  # the README's old advice
    assert plotted.exit_code == 0, plotted.output
    (v1 / "notes.txt").write_text("why v1 exists")
    before = snapshot(v1)
    result = build(runner, v1, cache_dir)
    assert result.exit_code == 1
    text = message(result)
    assert f"{v1}: holds files medi did not write: notes.txt, plots/" in text
    assert "move them out of the folder" in text
    assert snapshot(v1) == before  # release, plots and notes all as they were

    (v1 / "notes.txt").rename(tmp_path / "out" / "notes.txt")
    shutil.rmtree(v1 / "plots")
    plotted = runner.invoke(app, ["stats", str(v1), "--plots", str(tmp_path / "out" / "v1-plots")])  # README now
    assert plotted.exit_code == 0, plotted.output
    plots = snapshot(tmp_path / "out" / "v1-plots")
    assert plots and build(runner, v1, cache_dir).exit_code == 0
    assert snapshot(tmp_path / "out" / "v1-plots") == plots and verify_release(v1).ok


def test_build_refuses_another_kind_of_medi_output(runner, release, tmp_path, cache_dir):
    pq = tmp_path / "pq"
    export(release, "parquet", pq)
    before = snapshot(pq)
    result = build(runner, pq, cache_dir)
    assert result.exit_code == 1
    assert f"{pq}: is a medi parquet export, not a release" in message(result)
    assert snapshot(pq) == before


def test_build_refuses_a_symbolic_link(runner, tmp_path, cache_dir):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    result = build(runner, tmp_path / "link", cache_dir)
    assert result.exit_code == 1 and "is a symbolic link" in message(result)
    assert (tmp_path / "link").is_symlink() and not any((tmp_path / "real").iterdir())


def test_export_replaces_only_its_own_earlier_export(release, demo_release, tmp_path):
    """Per format: a rerun needs --overwrite; --overwrite replaces medi's export but never anything else."""
    outs = {"instructor": tmp_path / "medi.json", **{f: tmp_path / f for f in ("medi2", "st-triplets", "parquet")}}
    for fmt, out in outs.items():
        export(release, fmt, out)
        assert medi_kind(out) == (None if fmt == "instructor" else fmt)
        with pytest.raises(MediError, match="already exists; give --overwrite to replace it"):
            export(release, fmt, out)
        export(release, fmt, out, overwrite=True)
    assert datasets.load_from_disk(str(outs["st-triplets"])).num_rows  # the marker file does not disturb readers
    assert sorted(p.suffix for p in outs["medi2"].iterdir()) == [".jsonl"] * len(release.tasks)  # nothing else
    loaded = datasets.load_dataset("parquet", data_dir=str(outs["parquet"]), split="train")
    assert len(loaded) == demo_release.manifest["rows"]

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    theirs = tmp_path / "theirs.json"  # INSTRUCTOR's own medi-data.json layout, not written by medi
    theirs.write_text(json.dumps([{"query": ["Represent the question: ", "q"], "pos": ["", "p"], "neg": ["", "n"]}]))
    for fmt in outs:
        for target in (theirs, foreign, *(o for f, o in outs.items() if f != fmt)):
            before = snapshot(target)
            with pytest.raises(MediError) as refused:
                export(release, fmt, target, overwrite=True)
            assert str(target) in str(refused.value)
            assert snapshot(target) == before
    assert not list(tmp_path.glob("*.partial"))


def test_export_refuses_its_own_export_holding_other_files(release, tmp_path):
    for fmt in ("medi2", "st-triplets", "parquet"):
        out = tmp_path / fmt
        export(release, fmt, out)
        (out / "README.txt").write_text("notes about this export")
        with pytest.raises(MediError, match=r"holds files medi did not write: README\.txt"):
            export(release, fmt, out, overwrite=True)
        assert (out / "README.txt").read_text() == "notes about this export"


def test_cli_export_overwrite_refuses_a_foreign_file(demo_release, tmp_path):
    theirs = tmp_path / "medi-data.json"
    theirs.write_text('[{"query": ["Represent: ", "q"]}]')
    args = ["export", str(demo_release.out), "--format", "instructor", "--out", str(theirs), "--overwrite"]
    result = CliRunner(env=WIDE).invoke(app, args)
    assert result.exit_code == 1
    assert f"{theirs}: exists and is not a medi instructor export" in message(result)
    assert theirs.read_text() == '[{"query": ["Represent: ", "q"]}]'


def test_review_export_replaces_only_its_own_page(demo_release, medi_home, tmp_path):
    def page(out: Path) -> Path:
        return export_review(demo_release.out, out, root=medi_home.root, pick="random")

    out = tmp_path / "review"
    first = page(out)
    assert sorted(p.name for p in out.iterdir()) == ["index.html"] and medi_kind(out) == "review"
    assert page(out) == first  # an earlier page is replaced
    (out / "decisions.json").write_text("{}")
    with pytest.raises(MediError, match=r"holds files medi did not write: decisions\.json"):
        page(out)
    foreign = tmp_path / "site"
    foreign.mkdir()
    (foreign / "index.html").write_text("<title>my site</title>")
    for target in (foreign, demo_release.out):
        before = snapshot(target)
        with pytest.raises(MediError, match=r"not a medi review page folder|is a release, not"):
            page(target)
        assert snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "review", "site"]  # no staging left


def test_check_out_knows_older_outputs_and_refuses_odd_paths(demo_release, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(demo_release.out, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["files"]  # a release from before the manifest listed every file
    (old / "manifest.json").write_text(json.dumps(manifest))
    check_out(old, "release", replace=True)
    (old / "plot.png").write_bytes(b"\x89PNG")
    with pytest.raises(MediError, match=r"holds files medi did not write: plot\.png"):
        check_out(old, "release", replace=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(MediError, match="is not a folder"):
        check_out(tmp_path / "file" / "release", "release", replace=True)
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "manifest.json").write_text('{"format": 1, "sha')  # cut: not recognisably medi's
    with pytest.raises(MediError, match="is not empty and not a release"):
        check_out(tmp_path / "damaged", "release", replace=True)


def test_leftovers_of_an_interrupted_swap_go_with_the_next_one(tmp_path):
    """A kill while the old output was being removed leaves it half gone beside the new one; only those go."""
    for leftover in (".page.old-0123abcd", ".page.old"):
        (tmp_path / leftover).mkdir()
        (tmp_path / leftover / "state.json").write_text("{}")  # what is left once the manifest is gone
    (tmp_path / ".page.older").mkdir()  # not a name medi gives
    staging = tmp_path / ".page.staging"
    staging.mkdir()
    (staging / "index.html").write_text("<title>medi · instruction review</title>")
    install(staging, tmp_path / "page", "review", replace=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".page.older", "page"]
