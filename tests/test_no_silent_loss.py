"""Issue 14 cases 2, 3 and 6, rerun as written: a missing data dir or a build that keeps nothing fails; rows lost
to problems are said on stderr (and fail a --strict build); a build off a terminal is never silent."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import pytest
from rich.console import Console
from support import ETD, MIRROR, plain
from typer.testing import CliRunner

from medi.cli import STRICT_EXIT, app
from medi.progress import BuildProgress


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "240", "NO_COLOR": "1"})


def build(runner, cache_dir, *args: str):
    return runner.invoke(app, ["build", "--cache-dir", str(cache_dir), *args])


def test_a_data_dir_that_does_not_exist_is_an_error(runner, cache_dir, tmp_path):
    for sources in ("demo", "st/AllNLI"):
        result = build(runner, cache_dir, "--sources", sources, "--data-dir", "/nonexistent", "--out", str(tmp_path))
        assert result.exit_code == 1, result.output
        assert "--data-dir /nonexistent: no such folder" in plain(result.output)
        assert not any(tmp_path.iterdir()), "nothing may be written"


def test_a_named_source_that_gives_nothing_fails_and_names_itself_once(runner, cache_dir, tmp_path):
    out = tmp_path / "out"
    name = "superni/task1657_gooaq_question_generation"  # in the catalog, not in the fixture mirror
    result = build(runner, cache_dir, "--sources", name, "--data-dir", str(MIRROR), "--no-remote", "--out", str(out))
    assert result.exit_code == 1, result.output
    text = plain(result.output)
    assert "0 rows" in text
    skipped = [line for line in text.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 1 and skipped[0].count(name) == 1, skipped


def truncated_allnli(folder: Path) -> Path:
    """The fixture AllNLI file cut mid-stream (a real truncated download: its gzip trailer is missing)."""
    target = folder / "embedding-training-data" / "AllNLI.jsonl.gz"
    target.parent.mkdir(parents=True)
    data = (ETD / "AllNLI.jsonl.gz").read_bytes()
    target.write_bytes(data[: len(data) * 2 // 5])
    for other in ETD.iterdir():
        if other.name != target.name:
            shutil.copy(other, target.parent / other.name)
    return target


def test_rows_lost_to_a_truncated_file_are_said_and_fail_strict(runner, cache_dir, tmp_path):
    path = truncated_allnli(tmp_path / "mirror")
    args = ["--sources", "st/AllNLI", "--data-dir", str(tmp_path / "mirror")]
    result = build(runner, cache_dir, *args, "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    text = plain(result.output)
    line = next(line for line in text.splitlines() if line.startswith("problems st/AllNLI"))
    assert str(path) in line and "unreadable from here on" in line
    assert line.startswith("problems st/AllNLI: 1; first: ")  # a count of problems: not of rows
    assert "rows lost to 1 problem(s)" in text and "rest of it lost" in text

    strict = build(runner, cache_dir, *args, "--out", str(tmp_path / "strict"), "--strict")
    assert strict.exit_code == STRICT_EXIT, strict.output
    assert "--strict" in plain(strict.output)


def test_off_a_terminal_every_source_gets_a_line_and_a_heartbeat_follows(tmp_path):
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=False, width=200)
    with BuildProgress(console, total=2, heartbeat=0.3) as progress:
        progress.update("st/AllNLI", "read", 1000, 0.5)
        time.sleep(1.6)  # no source finishes: the heartbeat must speak
        progress.finished("st/AllNLI", "read 1,000, sampled 1,000, kept 900")
    lines = stream.getvalue().splitlines()
    beats = [line for line in lines if line.startswith("…")]
    assert beats and "st/AllNLI · read 1,000 rows, 2,000 rows/s" in beats[0]
    assert "[1/2] st/AllNLI: read 1,000, sampled 1,000, kept 900" in lines
