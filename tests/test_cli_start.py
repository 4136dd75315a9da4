"""Fast start (issue 14, case 7): what `medi --help` and `medi sources` load, the catalog's YAML reader and its
parsed cache, and a closed pipe. Timings are in bench/cli_start.py, not here."""

from __future__ import annotations

import math
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from support import PROJECT_ROOT

from medi.catalog import Catalog
from medi.errors import MediError
from medi.yamlio import ParsedCache, load_yaml

HEAVY = ("datasets", "pandas", "pyarrow", "faiss", "torch", "sentence_transformers", "matplotlib", "huggingface_hub")
INVOKE = (
    "from typer.testing import CliRunner\nfrom medi.cli import app\n"
    "assert CliRunner().invoke(app, {args}).exit_code == 0"
)
MEDI = [shutil.which("medi")] if shutil.which("medi") else [sys.executable, "-m", "medi.cli"]


def loaded_after(code: str, tmp_path: Path) -> list[str]:
    """The heavy modules a fresh interpreter holds after running ``code``."""
    probe = code + f"\nimport sys\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    env = {**os.environ, "MEDI_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=True
    )
    return eval(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "code",
    [
        "import medi, medi.cli",
        INVOKE.format(args=["--help"]),
        INVOKE.format(args=["sources"]),
    ],
    ids=["import", "help", "sources"],
)
def test_help_and_sources_load_no_heavy_library(code, tmp_path):
    assert loaded_after(code, tmp_path) == []


def test_medi_build_stays_the_function_once_its_module_is_imported(tmp_path):
    code = "import medi, medi.build, medi.cli\nfrom medi.build import BuildOptions\nassert callable(medi.build)"
    assert "datasets" in loaded_after(code, tmp_path)  # the library is there when a build needs it


@pytest.mark.parametrize("args", [["sources"], ["sources", "--json"]])
def test_a_closed_pipe_ends_quietly_with_exit_0(args, tmp_path):
    """`medi sources | head -1` through a real pipe: the reader leaves after one line (the output is ~90 KB, more
    than a pipe holds, so medi is still writing when it goes)."""
    env = {**os.environ, "MEDI_CACHE": str(tmp_path / "cache")}
    with subprocess.Popen([*MEDI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path) as p:
        first = p.stdout.readline()
        p.stdout.close()
        try:
            code = p.wait(timeout=120)
        finally:
            p.kill()
        error = p.stderr.read().decode()
    assert first.strip()
    assert (code, error) == (0, "")


def test_help_runs_from_any_folder(tmp_path):
    done = subprocess.run([*MEDI, "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0 and "sources" in done.stdout and "build" in done.stdout


# ---- the catalog's YAML reader: libyaml with YAML 1.2 meanings, as ruamel reads them ----


def shipped_yaml() -> list[Path]:
    return sorted(p for d in ("sources", "instructions", "manifests") for p in (PROJECT_ROOT / d).rglob("*.yaml"))


def test_fast_reader_agrees_with_ruamel_on_every_shipped_file():
    files = shipped_yaml()
    assert len(files) > 800
    ruamel = YAML(typ="safe", pure=True)
    differ = [p for p in files if load_yaml(p) != ruamel.load(p.read_text(encoding="utf-8"))]
    assert differ == []


SCALARS = """\
yes_word: yes
no_word: no
on_word: on
off_word: Off
y_letter: y
true_word: true
false_caps: FALSE
null_tilde: ~
null_word: Null
empty:
octal_looking: 010
octal: 0o17
hex: 0x1F
binary: 0b101
underscored: 1_000
negative: -42
float: 1.5
exponent: 1e3
exp_sign: 2.5E-3
dot_float: .5
inf: -.inf
nan: .nan
sexagesimal: 1:30
date: 2026-11-27
timestamp: 2026-11-27T10:00:00Z
sha_like: 1234e567
version: 1.2.3
quoted: "yes"
"""


def test_fast_reader_gives_yaml_1_2_meanings(tmp_path):
    path = tmp_path / "scalars.yaml"
    path.write_text(SCALARS, encoding="utf-8")
    fast, ruamel = load_yaml(path), YAML(typ="safe", pure=True).load(SCALARS)
    assert math.isnan(fast.pop("nan")) and math.isnan(ruamel.pop("nan"))  # NaN never equals itself
    assert fast == ruamel
    assert fast["yes_word"] == "yes" and fast["on_word"] == "on" and fast["octal_looking"] == 10


def test_fast_reader_refuses_a_repeated_key(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("adapter: st_jsonl\nlicence: MIT\nlicence: CC-BY\n", encoding="utf-8")
    with pytest.raises(MediError, match=r"duplicate key 'licence'") as caught:
        load_yaml(path)
    assert str(path) in str(caught.value) and "line 3" in str(caught.value)


# ---- the parsed-catalog cache ----


def test_catalog_cache_rereads_a_changed_file(medi_home, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDI_CACHE", str(tmp_path / "cache"))
    first = Catalog.load()
    assert (tmp_path / "cache" / "catalog.pkl").exists()
    path = medi_home.root / "sources" / "st" / "AllNLI.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("licence:", "licence: changed #"), encoding="utf-8")
    again = Catalog.load()
    assert first.specs["st/AllNLI"].licence != "changed"
    assert again.specs["st/AllNLI"].licence == "changed"
    assert again.specs == {**first.specs, "st/AllNLI": again.specs["st/AllNLI"]}


def test_catalog_cache_damaged_or_unwritable_is_only_slower(medi_home, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MEDI_CACHE", str(cache))
    expected = Catalog.load().specs
    (cache / "catalog.pkl").write_bytes(b"\x80\x05 not a pickle")
    assert Catalog.load().specs == expected
    blocked = tmp_path / "a-file"  # a cache "folder" that cannot be created (chmod would not stop root)
    blocked.write_text("", encoding="utf-8")
    monkeypatch.setenv("MEDI_CACHE", str(blocked))
    assert Catalog.load().specs == expected


def test_parsed_cache_keeps_only_the_files_of_its_last_load(tmp_path):
    files = []
    for i in range(3):
        files.append(tmp_path / f"f{i}.yaml")
        files[-1].write_text(f"value: {i}\n", encoding="utf-8")
    cache = ParsedCache(tmp_path / "c.pkl")
    assert [cache.load(p) for p in files] == [{"value": 0}, {"value": 1}, {"value": 2}]
    cache.save()
    files[0].write_text("value: 10\n", encoding="utf-8")
    again = ParsedCache(tmp_path / "c.pkl")
    assert again.load(files[0]) == {"value": 10} and again.missed == 1
    again.save()
    kept = pickle.loads((tmp_path / "c.pkl").read_bytes())
    assert list(kept.values()) == [{"value": 10}]


def test_invalid_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(textwrap.dedent("adapter: st_jsonl\noptions: {columns: [\n"), encoding="utf-8")
    with pytest.raises(MediError, match="invalid YAML") as caught:
        load_yaml(path)
    assert f'"{path}", line' in str(caught.value)
