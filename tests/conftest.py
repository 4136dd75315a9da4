"""Shared fixtures: one embedding cache per session, the release builds several test modules read, MEDI_HOME copies.

The Hub is never reached: HF_HUB_OFFLINE is set before medi (and huggingface_hub) are imported.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("MEDI_HOME", None)  # the checkout's own catalog unless a test says otherwise

from dataclasses import dataclass
from pathlib import Path

import datasets
import pytest
from support import MIRROR, MediHome, quiet_console

import medi
from medi.build import BuildOptions
from medi.catalog import Catalog


@dataclass
class Release:
    out: Path
    manifest: dict
    log: str

    @property
    def dataset(self) -> datasets.Dataset:
        return datasets.load_from_disk(str(self.out))

    def rows_of(self, task_name: str) -> list[dict]:
        return [row for row in self.dataset if row["task_name"] == task_name]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """The one embedding cache of the session: every build and Encoder in the tests uses it.

    MEDI_TEST_CACHE names a folder to keep it between runs while developing; CI starts cold without it.
    """
    if kept := os.environ.get("MEDI_TEST_CACHE"):
        Path(kept).mkdir(parents=True, exist_ok=True)
        return Path(kept)
    return tmp_path_factory.mktemp("medi-cache")


@pytest.fixture
def own_cache(cache_dir, tmp_path) -> Path:
    """A cache folder of the test's own: no downloads and no stage outputs from earlier builds or runs, but the
    session's embeddings (keyed by encoder and text: the same vectors whoever computed them), so nothing is
    embedded twice. For tests that look at what a build downloads or computes."""
    (cache_dir / "embeddings").mkdir(parents=True, exist_ok=True)
    own = tmp_path / "own-cache"
    own.mkdir()
    (own / "embeddings").symlink_to(cache_dir / "embeddings", target_is_directory=True)
    return own


@pytest.fixture(scope="session", autouse=True)
def _medi_cache_env(cache_dir):
    """A build or Encoder given no cache_dir= (the CLI without --cache-dir) still uses the session cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDI_CACHE", str(cache_dir))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def make_release(cache_dir):
    """``make_release(sources, out, data_dirs=None, cache=None, **BuildOptions fields) -> Release``; ``cache``:
    another cache folder than the session's (``own_cache``)."""

    def make(sources, out: Path, data_dirs=None, cache: Path | None = None, **options) -> Release:
        console = quiet_console()
        built = cache or cache_dir
        manifest = medi.build(sources, out, data_dirs, BuildOptions(**options), cache_dir=built, console=console)
        return Release(Path(out), manifest, console.file.getvalue())

    return make


def _outside_medi_home():
    mp = pytest.MonkeyPatch()
    mp.delenv("MEDI_HOME", raising=False)
    return mp


@pytest.fixture(scope="session")
def demo_release(make_release, tmp_path_factory) -> Release:
    """``medi.build("demo", out)``: the demo set from demo/mirror (its set's data dir)."""
    mp = _outside_medi_home()
    try:
        return make_release("demo", tmp_path_factory.mktemp("demo") / "release")
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def mirror_release(make_release, tmp_path_factory) -> Release:
    """``--sources all --data-dir tests/fixtures/mirror``: every catalog source the fixture mirror holds."""
    mp = _outside_medi_home()
    try:
        return make_release("all", tmp_path_factory.mktemp("all") / "release", [MIRROR])
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The checkout's own catalog, loaded once (read it; do not change it)."""
    mp = _outside_medi_home()
    try:
        return Catalog.load()
    finally:
        mp.undo()


@pytest.fixture
def medi_home(tmp_path, monkeypatch) -> MediHome:
    """A tmp copy of sources/ and instructions/, made the project root through MEDI_HOME."""
    home = MediHome(tmp_path / "home")
    monkeypatch.setenv("MEDI_HOME", str(home.root))
    return home
