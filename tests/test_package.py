"""Installable as a package (issue 14, case 9): the wheel carries the catalog, instructions, release configs and the
demo mirror (copied in at build time by setup.py); installed into a fresh venv, medi works from any folder with no
checkout, MEDI_HOME still picks a working copy, and the commands that edit instruction or catalog files refuse the
installed package's read-only copy.

The wheel is built from a copy of the checkout (as ``pip wheel .`` would, without touching the shared tree) and
installed with ``pip install --no-deps --no-index`` into a fresh ``python -m venv``, which sees the libraries medi
needs through a ``.pth`` file naming the site-packages of the interpreter running the tests: a virtualenv's, or the
system's (``--system-site-packages`` would see the base interpreter's, which a fresh virtualenv's libraries are not
in). Plain paths, so the running environment's own ``.pth`` files (its editable medi) are not processed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from support import PROJECT_ROOT

from medi.catalog import Catalog

DATA_FOLDERS = ("sources", "instructions", "manifests", "demo", "judgements")
NOT_BUILT = shutil.ignore_patterns(  # what a fresh clone lacks: git data, build outputs, caches
    ".git", "build", "dist", "out", "*.egg-info", "__pycache__", "*.pyc", ".*cache", ".hypothesis", ".benchmarks"
)


def run(args: list, *, timeout: int = 600, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and done.returncode != 0:
        raise AssertionError(f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def data_files(root: Path) -> set[str]:
    """Every file of the data folders, relative to ``root``, as the build copies them (no caches, no dot files)."""
    return {
        p.relative_to(root).as_posix()
        for folder in DATA_FOLDERS
        for p in (root / folder).rglob("*")
        if p.is_file() and not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(root).parts)
    }


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory) -> Path:
    """A copy of the checkout as a fresh clone would have it."""
    src = tmp_path_factory.mktemp("package") / "src"
    shutil.copytree(PROJECT_ROOT, src, ignore=NOT_BUILT)
    return src


@pytest.fixture(scope="module")
def wheel(source_tree) -> Path:
    dist = source_tree.parent / "dist"
    run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-w", dist], cwd=source_tree)
    (found,) = dist.glob("medi-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel) -> Path:
    """A fresh venv holding the wheel's medi (and the running interpreter's libraries), outside any checkout."""
    venv = wheel.parent.parent / "venv"
    run([sys.executable, "-m", "venv", venv])
    inner = run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout
    (Path(inner.strip()) / "_running_interpreter.pth").write_text("\n".join(running_site_packages()) + "\n")
    run([venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-index", wheel])
    return venv


def running_site_packages() -> list[str]:
    """Where the interpreter running the tests finds its libraries: its site-packages (a virtualenv's, plus the
    base's when it was made with system site-packages) and the user's."""
    found = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
    return [path for path in dict.fromkeys(found) if Path(path).is_dir()]


@pytest.fixture
def user_env(tmp_path) -> dict[str, str]:
    """The environment of a user with no checkout: no MEDI_HOME, their own (empty) cache, offline."""
    env = {k: v for k, v in os.environ.items() if k not in ("MEDI_HOME", "PYTHONPATH")}
    return {**env, "MEDI_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}


def medi(venv: Path, *args, env: dict[str, str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run([venv / "bin" / "medi", *args], env=env, cwd=cwd, check=check)


def installed_data(venv: Path, env: dict[str, str], cwd: Path) -> Path:
    code = "import medi.catalog as c; print(c.__file__); print(c.project_root())"
    module, root = run([venv / "bin" / "python", "-c", code], env=env, cwd=cwd).stdout.split()
    assert Path(module).is_relative_to(venv.resolve()), module  # the venv's medi, not the checkout's editable install
    return Path(root)


def test_wheel_carries_the_data_folders(wheel, source_tree):
    names = set(zipfile.ZipFile(wheel).namelist())
    packaged = {n.removeprefix("medi/_data/") for n in names if n.startswith("medi/_data/")}
    assert packaged == data_files(source_tree)
    expected = {"sources/_sets.yaml", "instructions/superni.yaml", "manifests/demo/build.yaml", "judgements/README.md"}
    assert expected <= packaged
    assert "demo/mirror/embedding-training-data/AllNLI.jsonl.gz" in packaged
    assert {"medi/cli.py", "medi/catalog.py", "medi/authoring/review_page.html"} <= names
    assert not [n for n in names if n.startswith(DATA_FOLDERS)]  # nothing at the top level of site-packages
    with zipfile.ZipFile(wheel) as archive:  # copied, not regenerated: the same bytes as the checkout's files
        for name in ("sources/st/AllNLI.yaml", "demo/mirror/embedding-training-data/AllNLI.jsonl.gz"):
            assert archive.read(f"medi/_data/{name}") == (source_tree / name).read_bytes()


def test_sdist_carries_the_data_folders(source_tree, tmp_path):
    code = f"from setuptools import build_meta; print(build_meta.build_sdist({str(tmp_path)!r}))"
    name = run([sys.executable, "-c", code], cwd=source_tree).stdout.split()[-1]
    with tarfile.open(tmp_path / name) as sdist:
        members = {m.split("/", 1)[1] for m in sdist.getnames() if "/" in m}
    assert data_files(source_tree) <= members
    assert {"setup.py", "MANIFEST.in", "pyproject.toml"} <= members


def test_sources_works_from_any_folder_without_a_checkout(venv, user_env, tmp_path, source_tree):
    root = installed_data(venv, user_env, tmp_path)
    packages = venv.resolve() / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert root == packages / "medi" / "_data"
    listed = json.loads(medi(venv, "sources", "--json", env=user_env, cwd=tmp_path).stdout)
    assert [r["name"] for r in listed] == sorted(Catalog.load(source_tree).specs)
    text = medi(venv, "sources", env=user_env, cwd=tmp_path).stdout
    assert f"set demo: 19 sources, data dir {root / 'demo' / 'mirror'}" in text


def test_demo_build_from_the_installed_package_matches_the_checkout(venv, user_env, tmp_path, source_tree, cache_dir):
    """`medi build --sources demo --out X` in an empty folder gives the release the checkout builds, byte for byte."""
    env = {**user_env, "MEDI_CACHE": str(cache_dir)}  # the session's embeddings: the same result, sooner
    medi(venv, "build", "--sources", "demo", "--out", "installed", env=env, cwd=tmp_path)
    from_checkout = [sys.executable, "-c", "from medi.cli import app; app()", "build", "--sources", "demo"]
    run([*from_checkout, "--out", tmp_path / "checkout"], env={**env, "PYTHONPATH": source_tree}, cwd=source_tree)
    installed, checkout = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("installed", "checkout"))
    assert installed["rows"] == checkout["rows"] > 1000
    assert installed["shards"] == checkout["shards"]
    assert installed["sources"] == checkout["sources"]
    # the shipped release config, named as the README names it, from a folder with no checkout
    medi(venv, "build", "--config", "manifests/demo/build.yaml", "--out", "config", env=env, cwd=tmp_path)
    assert json.loads((tmp_path / "config" / "manifest.json").read_text())["rows"] == installed["rows"]


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize(
    "args",
    [
        ["instructions", "draft", "--data-dir", "{data}/demo/mirror"],
        ["review", "import", "decisions.json"],
        ["add-source", "st/mine", "--adapter", "st_jsonl", "--path", "pairs.jsonl"],
    ],
    ids=["instructions-draft", "review-import", "add-source"],
)
def test_editing_commands_refuse_the_installed_package(args, venv, user_env, tmp_path):
    root = installed_data(venv, user_env, tmp_path)
    (tmp_path / "decisions.json").write_text("{}", encoding="utf-8")
    (tmp_path / "pairs.jsonl").write_text('{"query": "a", "pos": "b"}\n', encoding="utf-8")
    before = tree_digest(root)
    args = [a.format(data=root) for a in args]
    done = medi(venv, *args, env={**user_env, "COLUMNS": "300"}, cwd=tmp_path, check=False)
    message = " ".join(done.stderr.split())
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{root} is the read-only copy inside the installed medi package" in message
    assert "working copy" in message and "MEDI_HOME" in message
    assert tree_digest(root) == before


def test_medi_home_still_points_at_a_working_copy(venv, user_env, tmp_path, medi_home):
    medi_home.add_source("tests/extra", {"adapter": "st_jsonl", "mirror": "embedding-training-data/AllNLI.jsonl.gz"})
    env = {**user_env, "MEDI_HOME": str(medi_home.root)}
    assert installed_data(venv, env, tmp_path) == medi_home.root
    listed = json.loads(medi(venv, "sources", "--json", "--family", "tests", env=env, cwd=tmp_path).stdout)
    assert [r["name"] for r in listed] == ["tests/extra"]
    (medi_home.root / "instructions" / "superni.yaml").unlink()  # its drafts are written anew
    task, mirror = "task1146_country_capital", PROJECT_ROOT / "demo" / "mirror"
    done = medi(venv, "instructions", "draft", "--data-dir", mirror, "--tasks", task, env=env, cwd=tmp_path)
    assert "1 draft entries written" in done.stdout
    assert f"superni/{task}:" in (medi_home.root / "instructions" / "superni.yaml").read_text(encoding="utf-8")
