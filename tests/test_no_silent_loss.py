"""Issue 14 cases 2, 3 and 6, rerun as written: a missing data dir or a build that keeps nothing fails; rows lost
to problems are said on stderr (and fail a --strict build); a build off a terminal is never silent. Issue 21: an
empty source is a counted problem; a build that keeps nothing writes no release; the progress line, the table and
the manifest count rows read alike; rows read are reported while a file is read."""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
import sys
import time
import zlib
from pathlib import Path

import pytest
from rich.console import Console
from support import BAD, ETD, FIXTURES, MIRROR, PROJECT_ROOT, plain, squash
from typer.testing import CliRunner

import medi.stages.units
from medi.build import BuildOptions
from medi.cli import STRICT_EXIT, app
from medi.progress import BuildProgress
from medi.stages.units import SAMPLE, Runner, rows_read, run_source

sys.path.insert(0, str(PROJECT_ROOT / "bench"))
from synthetic import write_source


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


def lines_before_the_cut(path: Path) -> int:
    """The whole lines a cut gzip file still holds (zlib, not medi: an independent count)."""
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(path.read_bytes()).count(b"\n")


def table_read(text: str, name: str) -> int:
    """The read column of ``name``'s row in the printed summary table (whatever its borders)."""
    row = re.compile(rf"\W*{re.escape(name)}[\s│|]+(\d[\d,]*)\b")  # the name first, then its read column
    (read,) = [found[1] for line in text.splitlines() if (found := row.match(line))]
    return int(read.replace(",", ""))


def test_rows_lost_to_a_truncated_file_are_said_and_fail_strict(runner, cache_dir, tmp_path):
    """A cut gzip file is one problem that loses the rest of the file (how many rows: not knowable); the progress
    line, the table and the manifest give the same rows read: the whole lines before the cut."""
    path = truncated_allnli(tmp_path / "mirror")
    whole = lines_before_the_cut(path)
    args = ["--sources", "st/AllNLI", "--data-dir", str(tmp_path / "mirror")]
    result = build(runner, cache_dir, *args, "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    text = plain(result.output)
    said = squash(text)  # the lines unwrapped
    cost = "1 problem(s): the rest of the file lost (its row count is not knowable)"
    first = f"{path}: unreadable after line {whole}: the rest of the file lost ("
    assert f"problems st/AllNLI: {cost}; first: {first}" in said
    assert "bad row" not in said
    assert "1 problem(s): 0 rows lost, and the rest of 1 file(s) cut short" in said

    source = json.loads((tmp_path / "out" / "manifest.json").read_text())["sources"]["st/AllNLI"]
    assert source["rows_read"] == whole == source["rows_kept"] + sum(source["dropped"].values())
    assert source["problem_count"] == source["rest_lost"] == 1 and source["rows_lost"] == {}
    assert f"[1/1] st/AllNLI: read {whole:,}, " in text  # the progress line ...
    assert table_read(text, "st/AllNLI") == whole  # ... and the table say the same

    strict = build(runner, cache_dir, *args, "--out", str(tmp_path / "strict"), "--strict")
    assert strict.exit_code == STRICT_EXIT, strict.output
    assert "--strict" in plain(strict.output)


def add_bad_lines(medi_home) -> Path:
    medi_home.add_source("tests/bad_lines", {"adapter": "st_jsonl", "mirror": "bad/bad_lines.jsonl", "symmetric": True})
    medi_home.add_instructions(["tests/bad_lines"])
    return BAD / "bad_lines.jsonl"


def test_bad_rows_are_read_rows_in_every_count(runner, cache_dir, tmp_path, medi_home):
    """6 lines, 2 of them bad: read 6 in the progress line, the table and the manifest (it said 4 / 6)."""
    path = add_bad_lines(medi_home)
    lines = len(path.read_text(encoding="utf-8").splitlines())
    args = ["--sources", "tests/bad_lines", "--data-dir", str(FIXTURES)]
    result = build(runner, cache_dir, *args, "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    text = plain(result.output)
    said = squash(text)
    source = json.loads((tmp_path / "out" / "manifest.json").read_text())["sources"]["tests/bad_lines"]
    assert source["rows_read"] == lines == 6 and source["rows_lost"] == {"malformed_row": 2}
    assert "[1/1] tests/bad_lines: read 6, sampled 4, kept 4; 2 problem(s): 2 bad rows skipped" in text
    assert table_read(text, "tests/bad_lines") == 6
    assert "problems tests/bad_lines: 2 problem(s): 2 bad rows skipped; first: " in said


# --- empty sources ----------------------------------------------------------------------------------------------


def empty_sources(medi_home, folder: Path) -> dict[str, Path]:
    """An empty JSONL file, an empty gzip stream and a Super-NI task with no instances (the real task1146 file,
    its instances removed)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"tests/empty_jsonl": folder / "empty.jsonl", "tests/empty_gz": folder / "empty.jsonl.gz"}
    files["tests/empty_jsonl"].write_bytes(b"")
    files["tests/empty_gz"].write_bytes(gzip.compress(b""))
    task = json.loads((MIRROR / "super-ni" / "tasks" / "task1146_country_capital.json").read_text(encoding="utf-8"))
    files["tests/empty_task"] = folder / "empty_task.json"
    files["tests/empty_task"].write_text(json.dumps({**task, "Instances": []}), encoding="utf-8")
    for name, path in files.items():
        adapter = "superni" if path.suffix == ".json" else "st_jsonl"
        medi_home.add_source(name, {"adapter": adapter, "mirror": path.name, "symmetric": True})
    medi_home.add_instructions(list(files))
    return files


def test_an_empty_source_is_a_counted_problem_in_a_multi_source_build(runner, cache_dir, tmp_path, medi_home):
    files = empty_sources(medi_home, tmp_path / "empty")
    sources = ",".join([*files, "st/AllNLI"])
    args = ["--sources", sources, "--data-dir", str(tmp_path / "empty"), "--data-dir", str(MIRROR)]
    result = build(runner, cache_dir, *args, "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output  # the other source still builds
    text = squash(plain(result.output))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    for name, path in files.items():
        source = manifest["sources"][name]
        assert source["problem_count"] == 1 and source["rows_read"] == source["rows_kept"] == 0, name
        assert source["problems"] == [f"{path}: the file holds no rows"]
        assert f"problems {name}: 1 problem(s): no rows lost; first: {path}: the file holds no rows" in text
    assert manifest["sources"]["st/AllNLI"]["rows_kept"] == 20

    strict = build(runner, cache_dir, *args, "--out", str(tmp_path / "strict"), "--strict")
    assert strict.exit_code == STRICT_EXIT, strict.output
    assert "--strict: 3 problem(s)" in squash(plain(strict.output))


def test_a_build_that_keeps_nothing_writes_no_release(runner, cache_dir, tmp_path, medi_home):
    """An empty source built alone fails, and leaves nothing `medi verify` could take for a good release; an
    earlier release at --out stays as it was."""
    files = empty_sources(medi_home, tmp_path / "empty")
    out = tmp_path / "out"
    for name in files:
        result = build(runner, cache_dir, "--sources", name, "--data-dir", str(tmp_path / "empty"), "--out", str(out))
        assert result.exit_code == 1, result.output
        assert f"nothing written to {out}: the build kept 0 rows" in squash(plain(result.output))
        assert not out.exists()
        verified = runner.invoke(app, ["verify", str(out)])
        assert verified.exit_code != 0, verified.output

    earlier = build(runner, cache_dir, "--sources", "st/AllNLI", "--data-dir", str(MIRROR), "--out", str(out))
    assert earlier.exit_code == 0, earlier.output
    before = (out / "manifest.json").read_bytes()
    again = build(
        runner, cache_dir, "--sources", "tests/empty_jsonl", "--data-dir", str(tmp_path / "empty"), "--out", str(out)
    )
    assert again.exit_code == 1, again.output
    assert (out / "manifest.json").read_bytes() == before
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0


# --- progress -----------------------------------------------------------------------------------------------------


def test_rows_read_are_reported_while_a_file_is_read(tmp_path, medi_home, cache_dir, monkeypatch):
    """The sample stage reports rows read (and seconds) as it reads, not only at the end, however slowly rows
    come: here on every look at the clock; the last report is the manifest's rows read."""
    monkeypatch.setattr(medi.stages.units, "PROGRESS_SECONDS", 0.0, raising=False)
    rows = 5_000
    write_source(tmp_path / "mirror" / "rows.jsonl.gz", "pairs", rows)
    medi_home.add_source("tests/rows", {"adapter": "st_jsonl", "mirror": "rows.jsonl.gz", "symmetric": True})
    events = []
    options = BuildOptions(eval_sets="none", max_per_source=10)
    runner = Runner(options, [tmp_path / "mirror"], cache_dir, reuse=False, progress=lambda *e: events.append(e))
    outcome = run_source(runner, runner.catalog.specs["tests/rows"], stages=(SAMPLE,))
    reads = [(count, seconds) for source, stage, *rest in events if stage == "read" for count, seconds in [rest]]
    counts = [count for count, _ in reads]
    assert counts == sorted(counts) and counts[-1] == rows == rows_read(outcome.infos["sample"])
    assert [c for c in counts if 0 < c < rows], counts  # reports while reading, before the end
    assert all(seconds >= 0 for _, seconds in reads)


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
