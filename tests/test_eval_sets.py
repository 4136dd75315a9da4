"""Evaluation sets through `medi build`: `--eval-sets none|all`, `--eval-shared refuse`, and an evaluation set that
cannot be read (skipped and named under `--on-error skip`, the end of the build under `--on-error fail`).

The quora-style rows come from tests/fixtures/clean (20 of them are rows of the Super-NI test task task1345, which
the fixture mirror holds); `--eval-sets all` downloads task1345 from a local stand-in of GitHub's raw host.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from git_stub import RawServer
from support import FIXTURES, MIRROR, TASKS, plain
from typer.testing import CliRunner

from medi.cli import app
from medi.fetch import find_in_mirrors

CLEAN = FIXTURES / "clean"
QQP_TEST = "eval/task1345_glue_qqp_question_paraprashing"
ZEST_TEST = "eval/task1562_zest_text_modification"
SOURCES = "st/quora_duplicates,superni/task1146_country_capital"
WIDE = {"COLUMNS": "240", "NO_COLOR": "1"}


def build(out: Path, cache_dir: Path, data_dirs: list[Path], *options: str):
    args = ["build", "--sources", SOURCES, "--out", str(out), "--cache-dir", str(cache_dir)]
    for folder in data_dirs:
        args += ["--data-dir", str(folder)]
    return CliRunner(env=WIDE).invoke(app, [*args, *options])


def read(out: Path, name: str) -> dict:
    return json.loads((out / name).read_text(encoding="utf-8"))


def test_eval_sets_mirror_and_none(tmp_path, cache_dir, catalog):
    mirror = build(tmp_path / "mirror", cache_dir, [CLEAN, MIRROR])  # the default: the eval sets the mirror holds
    assert mirror.exit_code == 0, mirror.output
    held = sorted(name for name, spec in catalog.eval_specs.items() if find_in_mirrors(spec, [CLEAN, MIRROR]))
    assert QQP_TEST in held and ZEST_TEST in held
    assert sorted(s["name"] for s in read(tmp_path / "mirror", "contamination.json")["eval_sets"]) == held
    quora = read(tmp_path / "mirror", "manifest.json")["sources"]["st/quora_duplicates"]
    assert quora["dropped"]["eval_exact"] == 20

    none = build(tmp_path / "none", cache_dir, [CLEAN, MIRROR], "--eval-sets", "none")
    assert none.exit_code == 0, none.output
    report = read(tmp_path / "none", "contamination.json")
    assert report["eval_sets"] == [] and report["totals"]["exact"] == 0
    quora = read(tmp_path / "none", "manifest.json")["sources"]["st/quora_duplicates"]
    assert "eval_exact" not in quora["dropped"] and quora["rows_read"] == 31


def test_eval_sets_all_downloads_what_the_data_dirs_lack(tmp_path, own_cache, catalog, monkeypatch):
    with RawServer(tmp_path / "raw") as raw:
        monkeypatch.setenv("MEDI_GIT_RAW_BASE", raw.url)
        up = catalog.eval_specs[QQP_TEST].upstream
        raw.serve(up.repo, up.revision, up.path, TASKS / "task1345_glue_qqp_question_paraprashing.json")
        result = build(tmp_path / "all", own_cache, [CLEAN], "--eval-sets", "all")  # nothing downloaded before
    assert result.exit_code == 0, result.output
    report = read(tmp_path / "all", "contamination.json")
    assert [s["name"] for s in report["eval_sets"]] == [QQP_TEST]  # the one the stand-in serves
    skipped = report["skipped_eval_sets"]
    assert set(skipped) == set(catalog.eval_specs) - {QQP_TEST}  # every other one is named, with why
    assert f"could not download {raw.url}/" in skipped[ZEST_TEST]
    assert "mteb/quora" in skipped["eval/mteb_QuoraRetrieval"]  # a Hub set: the session is offline
    assert read(tmp_path / "all", "manifest.json")["sources"]["st/quora_duplicates"]["dropped"]["eval_exact"] == 20
    assert f"/{up.repo}/{up.revision}/{up.path}" in raw.requests


def test_eval_shared_refuse_skips_the_source_sharing_a_dataset(tmp_path, cache_dir):
    result = build(tmp_path / "out", cache_dir, [CLEAN, MIRROR], "--eval-shared", "refuse")
    assert result.exit_code == 0, result.output
    manifest = read(tmp_path / "out", "manifest.json")
    skipped = manifest["skipped_sources"]["st/quora_duplicates"]
    assert skipped["reason"] == "shares_eval_dataset" and QQP_TEST in skipped["message"]
    assert list(manifest["sources"]) == ["superni/task1146_country_capital"]

    failed = build(tmp_path / "fail", cache_dir, [CLEAN, MIRROR], "--eval-shared", "refuse", "--on-error", "fail")
    assert failed.exit_code == 1 and "shares its upstream dataset with evaluation sets" in plain(failed.output)
    assert not (tmp_path / "fail").exists()


@pytest.fixture
def broken_eval(tmp_path) -> tuple[Path, Path]:
    """A data dir whose copy of the test task task1345 is cut short (a download that stopped)."""
    path = tmp_path / "broken" / "super-ni" / "tasks" / "task1345_glue_qqp_question_paraprashing.json"
    path.parent.mkdir(parents=True)
    text = (TASKS / path.name).read_bytes()
    path.write_bytes(text[: len(text) // 2])
    return tmp_path / "broken", path


def test_an_unreadable_eval_set_is_named_then_skipped_or_fatal(tmp_path, cache_dir, broken_eval):
    folder, path = broken_eval
    skipped = build(tmp_path / "skip", cache_dir, [CLEAN, folder, MIRROR])  # the cut copy comes first
    assert skipped.exit_code == 0, skipped.output
    why = read(tmp_path / "skip", "contamination.json")["skipped_eval_sets"][QQP_TEST]
    assert str(path) in why and "invalid JSON" in why

    failed = build(tmp_path / "fail", cache_dir, [CLEAN, folder, MIRROR], "--on-error", "fail")
    assert failed.exit_code == 1
    message = " ".join(plain(failed.output).split())
    assert f"evaluation set {QQP_TEST}: {path}, line " in message and "(--on-error fail)" in message
    assert not (tmp_path / "fail").exists()


def test_a_bad_row_in_an_eval_set_is_fatal_under_on_error_fail(tmp_path, cache_dir):
    task = json.loads((TASKS / "task1345_glue_qqp_question_paraprashing.json").read_text(encoding="utf-8"))
    task["Instances"][3]["input"] = 17  # not a text
    path = tmp_path / "bad" / "super-ni" / "tasks" / "task1345_glue_qqp_question_paraprashing.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(task), encoding="utf-8")
    failed = build(tmp_path / "fail", cache_dir, [CLEAN, path.parents[2], MIRROR], "--on-error", "fail")
    assert failed.exit_code == 1
    assert f"evaluation set {QQP_TEST}: {path}, Instances[3]: an instance needs a string `input`" in " ".join(
        plain(failed.output).split()
    )
