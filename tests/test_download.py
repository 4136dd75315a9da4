"""Downloads, served by local stand-ins: a git raw file (a real HTTP server on 127.0.0.1 via MEDI_GIT_RAW_BASE) and a
Hub dataset file at its pinned revision (tests/hub_stub.py via HF_ENDPOINT), through builds and `medi add-source`.

Each build gets a cache of its own (``own_cache``: the session's embeddings, no downloads), so what it reads was
downloaded by the test itself, whatever an earlier run left (MEDI_TEST_CACHE).
The session imported huggingface_hub offline (HF_HUB_OFFLINE, read at import), so Hub clients run as processes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from git_stub import RawServer
from hub_stub import GITATTRIBUTES, Blob, HubStub, Repo
from support import ETD, PROJECT_ROOT, TASKS, json_lines, plain, quiet_console, squash

import medi
from medi.build import BuildOptions
from medi.errors import MediError
from medi.release import open_release

TOKEN = "hf_medi_download_tests"  # the stub needs one for writes; downloads here are anonymous
HUB_REPO = "medi-test/pairs"
PROCESS_TIMEOUT = 600  # seconds: a hung client fails the test instead of the run


@pytest.fixture
def raw(tmp_path, monkeypatch):
    with RawServer(tmp_path / "raw") as server:
        monkeypatch.setenv("MEDI_GIT_RAW_BASE", server.url)
        yield server


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(sources: str, out: Path, cache: Path, data_dirs=None, **options) -> dict:
    return medi.build(sources, out, data_dirs, BuildOptions(**options), cache_dir=cache, console=quiet_console())


# --- git raw files ---------------------------------------------------------------------------------------------


def test_a_git_source_downloads_at_its_pinned_revision(raw, catalog, tmp_path, own_cache):
    name = "superni/task1146_country_capital"
    up = catalog.specs[name].upstream
    assert up.kind == "git" and len(up.revision) == 40
    served = raw.serve(up.repo, up.revision, up.path, TASKS / "task1146_country_capital.json")
    manifest = build(name, tmp_path / "out", own_cache)  # no data dir: the file is downloaded
    source = manifest["sources"][name]
    assert source["input"] == {
        "origin": "git",
        "location": f"{raw.url}/{up.repo}/{up.revision}/{up.path}",
        "revision": up.revision,
        "sha256": sha256(served),
        "bytes": served.stat().st_size,
    }
    instances = json.loads(served.read_text(encoding="utf-8"))["Instances"]
    assert source["rows_read"] == len(instances) and manifest["rows"] > 0
    texts = {squash(i["input"]) for i in instances}
    assert {row["query"]["text"] for row in open_release(tmp_path / "out").dataset} <= texts
    assert raw.requests == [f"/{up.repo}/{up.revision}/{up.path}"]

    again = build(name, tmp_path / "again", own_cache)  # the downloaded copy is reused, byte for byte
    assert again["sources"][name]["input"]["sha256"] == sha256(served) and len(raw.requests) == 1


def test_a_git_file_the_host_lacks_is_a_source_error(raw, catalog, tmp_path):
    name = "superni/task1146_country_capital"
    up = catalog.specs[name].upstream
    other = "0" * 40  # the file exists, but not at the pinned revision
    raw.serve(up.repo, other, up.path, TASKS / "task1146_country_capital.json")
    with pytest.raises(MediError, match=rf"could not download {raw.url}/{up.repo}/{up.revision}/") as caught:
        build(name, tmp_path / "out", tmp_path / "cache", on_error="fail")
    assert "HTTP Error 404" in str(caught.value) and "--data-dir MIRROR" in str(caught.value)
    assert not list((tmp_path / "cache").rglob(".part-*"))  # nothing half-written left in the cache


# --- Hub files, through a process that talks to the stub ---------------------------------------------------------


def hub_env(endpoint: str, home: Path, medi_home: Path) -> dict[str, str]:
    """A client process: the stub's endpoint, online, LFS (no Xet), private HF_HOME, medi's MEDI_HOME/MEDI_CACHE."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_OFFLINE"))}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HUB_DISABLE_XET="1",
        HF_HOME=str(home / "hf-home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        MEDI_HOME=str(medi_home),
        MEDI_CACHE=str(home / "medi-cache"),
        PYTHONPATH=str(PROJECT_ROOT),
        COLUMNS="300",
    )
    return env


def medi_process(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medi.cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=PROCESS_TIMEOUT,
    )


@pytest.fixture
def hub():
    """The stub with one dataset repo: ``pairs.jsonl.gz`` (AllNLI rows 1-8) at a first commit, then rows 9-16 at
    ``main``: a pinned source must read the first."""
    rows = json_lines(ETD / "AllNLI.jsonl.gz")
    with HubStub(TOKEN) as stub:
        repo = Repo(HUB_REPO, "dataset", private=False)
        stub.repos[("dataset", HUB_REPO)] = repo
        first = {".gitattributes": Blob(GITATTRIBUTES, lfs=False), "pairs.jsonl.gz": Blob(jsonl_gz(rows[:8]), lfs=True)}
        stub.pinned = repo.add_commit(None, "first rows", first)
        repo.add_commit(stub.pinned.oid, "other rows", {**first, "pairs.jsonl.gz": Blob(jsonl_gz(rows[8:16]), True)})
        stub.rows = rows
        yield stub


def jsonl_gz(rows: list) -> bytes:
    return gzip.compress("".join(json.dumps(row) + "\n" for row in rows).encode(), mtime=0)


def test_a_hub_source_downloads_at_its_pinned_revision(hub, medi_home, tmp_path, own_cache):
    medi_home.add_source(
        "st/hub_pairs",
        {
            "adapter": "st_jsonl",
            "upstream": {"kind": "hub", "repo": HUB_REPO, "path": "pairs.jsonl.gz", "revision": hub.pinned.oid},
            "mirror": "pairs/pairs.jsonl.gz",
        },
    )
    medi_home.add_instructions(["st/hub_pairs"])
    out = tmp_path / "out"
    env = hub_env(hub.url, tmp_path, medi_home.root)
    done = medi_process(env, "build", "--sources", "st/hub_pairs", "--out", str(out), "--cache-dir", str(own_cache))
    assert done.returncode == 0, done.stderr[-3000:]
    source = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["sources"]["st/hub_pairs"]
    pinned_file = hub.repo(HUB_REPO).commits[hub.pinned.oid].files["pairs.jsonl.gz"]
    assert source["input"]["origin"] == "hub" and source["input"]["revision"] == hub.pinned.oid
    assert source["input"]["location"] == f"{HUB_REPO}/pairs.jsonl.gz"
    assert source["input"]["sha256"] == pinned_file.sha256 and source["rows_read"] == 8
    queries = {squash(row[0]) for row in hub.rows[:8]}
    assert {row["query"]["text"] for row in open_release(out).dataset} <= queries  # the pinned rows, not main's
    resolved = [r for r in hub.requests if r.kind == "resolve"]
    assert resolved and all(f"/resolve/{hub.pinned.oid}/" in r.path for r in resolved)
    assert not hub.writes()


def test_add_source_hub_repo_loads_its_first_rows_from_the_hub(hub, medi_home, tmp_path):
    env = hub_env(hub.url, tmp_path, medi_home.root)
    args = ["add-source", "st/from_hub", "--adapter", "st_jsonl", "--hub-repo", HUB_REPO, "--file", "pairs.jsonl.gz"]
    done = medi_process(env, *args, "--revision", hub.pinned.oid, "--rows", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    output = " ".join(plain(done.stdout).split())
    assert all(squash(row[0])[:40] in output for row in hub.rows[:3])  # the preview shows the pinned file's rows
    text = (medi_home.root / "sources" / "st" / "from_hub.yaml").read_text(encoding="utf-8")
    assert HUB_REPO in text and hub.pinned.oid in text
    assert any(f"/resolve/{hub.pinned.oid}/pairs.jsonl.gz" in r.path for r in hub.requests)

    missing = medi_process(env, "add-source", "st/from_hub2", "--adapter", "st_jsonl", "--hub-repo", HUB_REPO,
                           "--file", "nothere.jsonl.gz", "--revision", hub.pinned.oid)  # fmt: skip
    assert missing.returncode == 1 and "cannot load the first rows, nothing written" in plain(missing.stderr)
    assert not (medi_home.root / "sources" / "st" / "from_hub2.yaml").exists()
