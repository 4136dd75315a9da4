"""``medi publish`` against a Hub stand-in: a real HTTP server on 127.0.0.1 (tests/hub_stub.py).

The real ``huggingface_hub`` client and ``datasets.load_dataset`` talk to it. Both read HF_ENDPOINT (and the offline
and Xet switches) when they are imported, and this test session imported them offline, so every client runs in a
subprocess (``python -m medi.cli publish ...``) with HF_ENDPOINT, HF_HUB_DISABLE_XET=1 and HF_TOKEN set.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hub_stub import Blob, HubStub
from support import PROJECT_ROOT, plain

from medi.release.publish import INSTRUCTOR_BIBTEX, config_name

REPO = "medi-org/medi"
TOKEN = f"hf_{secrets.token_hex(17)}"  # a fresh secret per session: finding it anywhere means medi leaked it
PROCESS_TIMEOUT = 600  # seconds: a hung client fails its test instead of hanging the run


LOAD_SCRIPT = """
import json, sys, datasets
repo, revision, names = sys.argv[1], sys.argv[2], sys.argv[3:]
out = {}
for name in names:  # "-": no name (the default config); "stream:<config>": streaming, read with range requests
    config, streaming = name.removeprefix("stream:"), name.startswith("stream:")
    config = None if config == "-" else config
    ds = datasets.load_dataset(repo, name=config, split="train", revision=revision, streaming=streaming)
    out[name] = [[r["task_name"], r["query"]["text"], r["pos"]["text"], r["neg"]["text"], r["query"]["instruction"]]
                 for r in ds]
print(json.dumps(out))
"""


def client_env(endpoint: str, home: Path, token: str | None = TOKEN) -> dict[str, str]:
    """The environment of a Hub client process: the stub's endpoint, LFS (no Xet), online, a private HF_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_OFFLINE"))}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HUB_DISABLE_XET="1",
        HF_HOME=str(home / "hf-home"),
        HF_DATASETS_CACHE=str(home / "datasets-cache"),
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONPATH=str(PROJECT_ROOT),
        COLUMNS="400",  # rich wraps nothing the tests look for
    )
    if token is not None:
        env["HF_TOKEN"] = token
    return env


class Client:
    """Runs ``medi publish`` and ``datasets.load_dataset`` as processes against one endpoint; keeps their output."""

    def __init__(self, endpoint: str, home: Path, token: str | None = TOKEN):
        self.home = home
        self.env = client_env(endpoint, home, token)
        self.outputs: list[str] = []

    def run(self, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, *args], cwd=PROJECT_ROOT, env=self.env, capture_output=True, text=True, check=False,
            timeout=PROCESS_TIMEOUT,
        )  # fmt: skip
        self.outputs += [done.stdout, done.stderr]
        return done

    def publish(self, release: Path, *options: str, tag: str = "v1") -> subprocess.CompletedProcess:
        return self.run("-m", "medi.cli", "publish", str(release), "--repo", REPO, "--tag", tag, *options)

    def load(self, *configs: str | None, revision: str = "v1") -> dict:
        """``{config: [[task_name, query, pos, neg, query instruction], ...]}`` read back with load_dataset."""
        done = self.run("-c", LOAD_SCRIPT, REPO, revision, *[c or "-" for c in configs])
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])


def expected_rows(release, task_names: list[str]) -> list[list]:
    dataset = release.dataset
    return [
        [r["task_name"], r["query"]["text"], r["pos"]["text"], r["neg"]["text"], r["query"]["instruction"]]
        for name in task_names
        for r in dataset
        if r["task_name"] == name
    ]


def assert_no_token(client: Client, hub: HubStub, *folders: Path) -> None:
    """The token is in no output of any client run, no file they could write, and no file on the Hub."""
    for output in client.outputs:
        assert TOKEN not in output
    needle = TOKEN.encode()
    for folder in (client.home, *folders):
        for path in Path(folder).rglob("*"):
            if path.is_file():
                assert needle not in path.read_bytes(), path
    for repo in hub.repos.values():
        for commit in repo.commits.values():
            assert all(needle not in blob.content for blob in commit.files.values())


def task_names(release) -> list[str]:
    return [task["task_name"] for task in release.manifest["tasks"]]


def data_path(source: str) -> str:
    return f"data/{source}/train-00000-of-00001.parquet"


# --- one publish of the demo release, read back several ways ---


@pytest.fixture(scope="module")
def published(demo_release, tmp_path_factory):
    """The demo release published (8 files per commit) to a stub that lives for this module."""
    with HubStub(TOKEN) as hub:
        client = Client(hub.url, tmp_path_factory.mktemp("publish"))
        done = client.publish(demo_release.out, "--files-per-commit", "8")
        assert done.returncode == 0, done.stderr[-3000:]
        yield hub, client, done


def test_publish_uploads_parquet_per_source_in_batched_commits(published, demo_release):
    hub, _, done = published
    names = task_names(demo_release)
    files = hub.files(REPO)
    assert set(files) == {".gitattributes", "README.md", "manifest.json", *map(data_path, names)}
    assert all(files[data_path(name)].lfs for name in names)  # Parquet went through the LFS batch API
    assert files["manifest.json"].content == (demo_release.out / "manifest.json").read_bytes()

    commits = [r for r in hub.requests if r.kind == "commit"]
    assert len(commits) == 3  # 19 sources + card + manifest, 8 files per commit: not one push per source
    assert all(r.status == 200 for r in commits)
    assert len([r for r in hub.requests if r.kind == "lfs-put"]) == len(names)
    repo = hub.repo(REPO)
    assert repo.tags == {"v1": repo.branches["main"]}
    assert f"tagged {repo.branches['main'][:12]} as v1" in plain(done.stdout)


def test_card_has_configs_licences_citation_counts_and_build(published, demo_release):
    hub, _, _ = published
    card = hub.files(REPO)["README.md"].content.decode()
    header = yaml.safe_load(re.match(r"^---\n(.*?)\n---\n", card, re.DOTALL).group(1))
    names = task_names(demo_release)
    configs = {c["config_name"]: c for c in header["configs"]}
    assert configs["all"]["default"] is True
    assert configs["all"]["data_files"] == [{"split": "train", "path": "data/*/*/*.parquet"}]
    assert all(fnmatch.fnmatch(data_path(n), "data/*/*/*.parquet") for n in names)
    for name in names:
        assert configs[config_name(name)]["data_files"] == [{"split": "train", "path": data_path(name)}]
    assert len(configs) == len(names) + 1

    manifest = demo_release.manifest
    for name in names:
        catalog = manifest["sources"][name]["catalog"]
        rows = next(t["rows"] for t in manifest["tasks"] if t["task_name"] == name)
        line = next(line for line in card.splitlines() if line.startswith(f"| `{config_name(name)}` |"))
        assert f"| {rows} |" in line
        assert catalog["licence"].replace("|", "\\|") in line
        assert catalog["citation"] in card
    assert INSTRUCTOR_BIBTEX in card
    assert f"{manifest['rows']} rows from {len(names)} sources" in card
    assert manifest["encoder"]["weights_sha256"] in card
    assert f"selection: `{manifest['selection']}`; seed {manifest['seed']}" in card
    assert f"medi {manifest['medi_version']}" in card


def test_load_dataset_through_the_endpoint_returns_the_rows(published, demo_release):
    superni, st = "superni/task1146_country_capital", "st/AllNLI"
    hub, client, _ = published
    before = len(hub.requests)
    loaded = client.load(config_name(superni), config_name(st), None, f"stream:{config_name(st)}")
    assert loaded[config_name(superni)] == expected_rows(demo_release, [superni])
    assert loaded[config_name(st)] == expected_rows(demo_release, [st])
    assert loaded[f"stream:{config_name(st)}"] == loaded[config_name(st)]
    assert any(r.kind == "resolve" and r.status == 206 for r in hub.requests[before:])  # streaming read ranges
    assert len(loaded[config_name(st)]) == 20
    everything = loaded["-"]  # no name: the default config, "all"
    assert len(everything) == demo_release.manifest["rows"]
    # the "all" glob reads the sources' files in path order, each file one task's rows in release order
    assert everything == expected_rows(demo_release, sorted(task_names(demo_release), key=data_path))


def test_second_publish_uploads_nothing(published, demo_release):
    hub, client, _ = published
    head = hub.repo(REPO).branches["main"]
    before = len(hub.requests)
    done = client.publish(demo_release.out, "--files-per-commit", "8")
    assert done.returncode == 0, done.stderr[-3000:]
    out = plain(done.stdout)
    assert "nothing to upload: every file is already on the Hub with the same content" in out
    assert "0 file(s) to upload (0 B), 21 unchanged" in out
    assert "tag v1 already names" in out
    assert hub.writes(before) == []
    assert hub.repo(REPO).branches["main"] == head


def test_token_is_never_printed_or_written(published, demo_release):
    hub, client, _ = published
    assert client.outputs
    assert_no_token(client, hub, demo_release.out)


# --- dry run, resuming, tags, errors: each on a fresh stub ---


@pytest.fixture
def hub():
    with HubStub(TOKEN) as stub:
        yield stub


def test_dry_run_prints_the_plan_and_writes_nothing(hub, demo_release, tmp_path):
    client = Client(hub.url, tmp_path)
    done = client.publish(demo_release.out, "--dry-run", "--files-per-commit", "8")
    assert done.returncode == 0, done.stderr[-3000:]
    out = plain(done.stdout)
    assert f"plan: dataset repo {REPO} (does not exist yet)" in out
    assert "would create the repo (public)" in out
    assert "21 file(s) to upload" in out and "in 3 commit(s)" in out
    assert "tag v1: would be created on the last commit" in out
    for name in task_names(demo_release):
        assert re.search(rf"{re.escape(data_path(name))}\s.*\supload\s", out), name
    assert hub.writes() == [] and hub.repos == {}
    assert_no_token(client, hub)


@pytest.mark.parametrize("way", ["HF_HUB_OFFLINE", "unreachable endpoint"])
def test_dry_run_offline_prints_the_full_plan(way, hub, demo_release, tmp_path):
    """Issue 14, case 5: `medi publish R --repo ORG/medi --tag v1 --dry-run` without the Hub prints the whole plan,
    says it could not compare with the remote repo, and exits 0."""
    if way == "HF_HUB_OFFLINE":
        client = Client(hub.url, tmp_path)
        client.env["HF_HUB_OFFLINE"] = "1"
        why = "HF_HUB_OFFLINE is set"
    else:
        client = Client(f"http://127.0.0.1:{free_port()}", tmp_path)
        why = "the Hub is unreachable ("
    done = client.publish(demo_release.out, "--dry-run", "--files-per-commit", "8")
    assert done.returncode == 0, done.stdout + done.stderr
    out = plain(done.stdout)
    flat = " ".join(out.split())
    assert f"plan: dataset repo {REPO} (not compared) on " in flat
    assert f"could not compare with the remote repo: {why}" in flat
    assert "21 file(s) to upload" in flat and "in 3 commit(s)" in flat
    assert "tag v1: would be created on the last commit, unless the repo has it already" in flat
    for path in [*map(data_path, task_names(demo_release)), "README.md", "manifest.json"]:
        assert re.search(rf"{re.escape(path)}\s.*\supload \(not compared\)", out), path
    assert hub.requests == []  # not one request reached the stub
    assert_no_token(client, hub)


def test_interrupted_publish_resumes_without_uploading_again(hub, demo_release, tmp_path):
    client = Client(hub.url, tmp_path)
    hub.fail_next("POST", r"^/api/datasets/.*/commit/", 500, after=1, message="disk full")
    failed = client.publish(demo_release.out, "--files-per-commit", "8")
    assert failed.returncode == 1
    error = " ".join(plain(failed.stderr).split())
    assert f"{REPO} on {hub.url}: cannot upload commit 2/3" in error and "HTTP 500" in error
    assert len([p for p in hub.files(REPO) if p.startswith("data/")]) == 8  # the first commit landed
    assert hub.repo(REPO).tags == {}

    before = len(hub.requests)
    done = client.publish(demo_release.out, "--files-per-commit", "8")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "13 file(s) to upload" in plain(done.stdout) and "8 unchanged" in plain(done.stdout)
    first_eight = {data_path(name) for name in task_names(demo_release)[:8]}
    committed = [path for r in hub.requests[before:] if r.kind == "commit" for path in r.detail]
    assert len(committed) == 13 and not first_eight & set(committed)  # what the first commit holds is not sent
    assert len(hub.files(REPO)) == 22
    assert hub.repo(REPO).tags == {"v1": hub.repo(REPO).branches["main"]}
    assert_no_token(client, hub)


def test_changed_repo_refuses_the_old_tag_and_uploads_only_the_difference(hub, demo_release, tmp_path):
    client = Client(hub.url, tmp_path)
    assert client.publish(demo_release.out, "--private").returncode == 0
    repo = hub.repo(REPO)
    assert repo.private  # the stub answers reads of a private repo only with the token: the later runs send it
    edited = dict(hub.files(REPO))
    edited["README.md"] = Blob(b"# edited on the Hub\n", lfs=False)
    edited["data/old/gone/train-00000-of-00001.parquet"] = Blob(b"PAR1 stale", lfs=True)
    repo.add_commit(repo.branches["main"], "edit the card", edited)

    refused = client.publish(demo_release.out)
    assert refused.returncode == 1
    assert "tag 'v1' already names commit" in " ".join(plain(refused.stderr).split())

    before = len(hub.requests)
    done = client.publish(demo_release.out, tag="v2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 file(s) to upload" in plain(done.stdout) and "1 to delete" in plain(done.stdout)
    assert [r.kind for r in hub.requests[before:] if r.kind in ("commit", "lfs-put")] == ["commit"]
    files = hub.files(REPO)
    assert "data/old/gone/train-00000-of-00001.parquet" not in files
    assert files["README.md"].content.startswith(b"---\n")
    assert set(repo.tags) == {"v1", "v2"} and repo.tags["v2"] == repo.branches["main"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_hub_errors_name_the_repo_and_what_failed(hub, demo_release, tmp_path):
    wrong = Client(hub.url, tmp_path / "wrong", token="hf_not_the_right_token_at_all")
    done = wrong.publish(demo_release.out)
    error = " ".join(plain(done.stderr).split())
    assert done.returncode == 1
    assert f"{REPO} on {hub.url}: cannot create the dataset repo: the Hub rejected the token (HTTP 401)" in error
    assert "hf_not_the_right_token_at_all" not in error + done.stdout

    nobody = Client(hub.url, tmp_path / "none", token=None)
    done = nobody.publish(demo_release.out)
    assert done.returncode == 1 and "no Hugging Face token" in plain(done.stderr)

    away = Client(f"http://127.0.0.1:{free_port()}", tmp_path / "away")
    done = away.publish(demo_release.out)
    error = " ".join(plain(done.stderr).split())
    assert done.returncode == 1
    assert f"{REPO} on http://127.0.0.1:" in error and "cannot read the repo: the Hub is unreachable" in error

    offline = Client(hub.url, tmp_path / "offline")
    offline.env["HF_HUB_OFFLINE"] = "1"
    done = offline.publish(demo_release.out)  # a dry run offline is fine (test_dry_run_offline_...), this is not
    assert done.returncode == 1 and "cannot read the repo: HF_HUB_OFFLINE is set" in plain(done.stderr)

    client = Client(hub.url, tmp_path / "ok")
    hub.fail_next("PUT", r"^/__lfs/", 403, message="upload URL expired")
    done = client.publish(demo_release.out)
    error = " ".join(plain(done.stderr).split())
    assert done.returncode == 1
    assert f"{REPO} on {hub.url}: cannot upload commit 1/1" in error and "Error while uploading 'data/" in error

    hub.fail_next("POST", r"^/api/validate-yaml$", 400)
    done = client.publish(demo_release.out)
    error = " ".join(plain(done.stderr).split())
    assert done.returncode == 1
    assert f"{REPO} on {hub.url}: cannot upload commit 1/1" in error and "Invalid metadata in README.md" in error

    hub.fail_next("POST", r"^/api/datasets/.*/tag/", 404, code="RepoNotFound")
    done = client.publish(demo_release.out)
    error = " ".join(plain(done.stderr).split())
    assert done.returncode == 1
    assert f"{REPO} on {hub.url}: cannot create tag 'v1': repository not found" in error and "HTTP 404" in error
    for run in (wrong, nobody, away, offline, client):
        assert_no_token(run, hub)


def test_commits_hold_many_files_within_the_file_and_byte_limits(tmp_path):
    from medi.release.publish import HubFile, batch_commits

    def hub_file(path: str, size: int, source: str | None) -> HubFile:
        local = tmp_path / path.replace("/", "_")
        local.write_bytes(b"x" * size)
        return HubFile.of(path, local, source, 1 if source else None)

    data = [hub_file(data_path(f"st/s{i}"), 100, f"st/s{i}") for i in range(7)]
    card, manifest = hub_file("README.md", 10, None), hub_file("manifest.json", 10, None)
    commits = batch_commits([*data, card, manifest], ["data/old/x.parquet"], "v1", 3, 250)
    assert (
        [[f.path for f in c.files] for c in commits]
        == [
            [f.path for f in data[0:2]],  # 2 x 100 bytes: a third would pass 250
            [f.path for f in data[2:4]],
            [f.path for f in data[4:6]],
            [data[6].path, "README.md", "manifest.json"],  # the card and manifest ride with the last data
        ]
    )
    assert [c.deletes for c in commits] == [[], [], [], ["data/old/x.parquet"]]
    assert (
        commits[-1].message
        == "medi v1: Parquet of 1 source(s); README.md, manifest.json; remove 1 file(s) not in this release (4/4)"
    )
    only_card = batch_commits([card], [], "v2", 3, 250)
    assert [(c.message, len(c.files)) for c in only_card] == [("medi v2: README.md (1/1)", 1)]
