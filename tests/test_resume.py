"""Resumable builds: a SIGKILLed build reruns to the same bytes, and a change reruns only what it affects."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from support import DEMO_MIRROR, MIRROR, RELEASE_FILES

import medi
from medi.build import BuildOptions
from medi.stages.checkpoint import STAGES_DIR

SOURCES = (
    "superni/task1146_country_capital,superni/task1355_sent_comp_summarization,superni/task1289_trec_classification"
)


PROCESS_TIMEOUT = 900  # seconds: a hung build fails its test instead of hanging the run


def medi_build(out: Path, cache: Path) -> subprocess.Popen:
    """``medi build`` in a child process with its own embedding cache (small batches: several cache writes)."""
    command = [sys.executable, "-m", "medi.cli", "build", "--sources", SOURCES, "--data-dir", str(DEMO_MIRROR)]
    command += ["--out", str(out), "--batch-size", "8", "--cache-dir", str(cache)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def checkpoints(cache: Path, stage: str = "*") -> list[Path]:
    """Finished stage outputs (their report file is written last: the completion marker)."""
    return sorted((cache / STAGES_DIR).glob(f"{stage}/*.json"))


def embedding_chunks(cache: Path) -> list[Path]:
    return sorted((cache / "embeddings").glob("*/*.keys.npy"))


def kill_when(process: subprocess.Popen, ready) -> None:
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while not ready():
        assert process.poll() is None, f"the build ended before it could be killed:\n{process.stdout.read()}"
        if time.monotonic() > deadline:  # a hung build fails the test instead of hanging the run
            process.kill()
            pytest.fail(f"the build never reached the point to kill it at:\n{process.communicate()[0]}")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=PROCESS_TIMEOUT)


def finish(process: subprocess.Popen) -> str:
    """The process's log once it ends (killed, and the test failed, if it hangs)."""
    try:
        return process.communicate(timeout=PROCESS_TIMEOUT)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the build hung:\n{process.communicate()[0]}")


def test_a_killed_build_resumes_to_identical_bytes(tmp_path):
    whole = medi_build(tmp_path / "whole", tmp_path / "cache-whole")
    log = finish(whole)
    assert whole.returncode == 0, log

    cache = tmp_path / "cache-killed"
    # killed mid-mine of the second source: its first embedding chunks are written, its mine output is not
    first = medi_build(tmp_path / "killed", cache)
    kill_when(first, lambda: len(checkpoints(cache, "mine")) == 1 and len(embedding_chunks(cache)) >= 3)
    assert first.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed").exists(), "a killed build must not leave a release behind"
    assert len(checkpoints(cache, "mine")) < 3

    second = medi_build(tmp_path / "killed", cache)
    log = finish(second)
    assert second.returncode == 0, log
    assert "resumed: reused" in log
    for name in RELEASE_FILES:
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def _instruction_file(home) -> Path:
    return home.root / "instructions" / "st.yaml"


def test_a_changed_template_reruns_only_the_instructions(make_release, medi_home, own_cache, tmp_path):
    first = make_release("st/quora_duplicates", tmp_path / "one", [MIRROR], cache=own_cache)
    saved = checkpoints(own_cache)
    yaml = YAML()
    path = _instruction_file(medi_home)
    entries = yaml.load(path)
    new_wording = "Represent the Quora question for finding questions asking the same thing:"
    entries["st/quora_duplicates"]["query"][0] = new_wording
    yaml.dump(entries, path)

    second = make_release("st/quora_duplicates", tmp_path / "two", [MIRROR], cache=own_cache)
    # the token budget (select) counts the instruction's tokens, so it reruns; its rows are the same, so the
    # stages before and after it are reused
    assert [p for p in checkpoints(own_cache) if p.parent.name != "select"] == [
        p for p in saved if p.parent.name != "select"
    ], "a wording change must not redo sample, clean or mine"
    # sample, clean, select (the longest wording, which the token budget counts, is unchanged) and mine
    assert "resumed: reused 4" in second.log
    assert {row["query"]["instruction"] for row in second.dataset} == {new_wording}
    assert [r["neg"]["text"] for r in second.dataset] == [r["neg"]["text"] for r in first.dataset]


def test_a_changed_mining_option_reruns_mining_only(make_release, own_cache, tmp_path):
    """Counted in a cache of the test's own: a cache kept between runs (MEDI_TEST_CACHE) may hold either build."""
    make_release("st/AllNLI", tmp_path / "one", [MIRROR], cache=own_cache)
    sampled, mined = checkpoints(own_cache, "sample"), checkpoints(own_cache, "mine")
    make_release("st/AllNLI", tmp_path / "two", [MIRROR], cache=own_cache, mining={"relative_margin": 0.2})
    assert checkpoints(own_cache, "sample") == sampled
    assert len(checkpoints(own_cache, "mine")) == len(mined) + 1


def test_resume_false_recomputes_and_gives_the_same_release(cache_dir, tmp_path):
    options = BuildOptions()
    medi.build("st/AllNLI", tmp_path / "one", [MIRROR], options, cache_dir=cache_dir)
    medi.build("st/AllNLI", tmp_path / "two", [MIRROR], options, cache_dir=cache_dir, resume=False)
    for name in RELEASE_FILES:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
