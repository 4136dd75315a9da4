"""Paths and small helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
from pathlib import Path

from rich.console import Console
from ruamel.yaml import YAML

import medi
from medi.catalog import SourceSpec

PROJECT_ROOT = Path(medi.__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"
MIRROR = FIXTURES / "mirror"
BAD = FIXTURES / "bad"
DEMO_MIRROR = PROJECT_ROOT / "demo" / "mirror"
TASKS = MIRROR / "super-ni" / "tasks"
ETD = MIRROR / "embedding-training-data"
FLAG = MIRROR / "FlagEmbedding" / "examples" / "finetune" / "embedder" / "example_data"
GRIT = MIRROR / "gritlm" / "gritlm" / "training" / "toy_data" / "toy_data_embedding.jsonl"

RELEASE_FILES = (
    "data-00000-of-00001.arrow",
    "state.json",
    "dataset_info.json",
    "manifest.json",
    "contamination.json",
)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def json_lines(path: Path) -> list[object]:
    """The JSON value of every non-blank line of a (possibly gzipped) JSONL file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def task_file(name: str) -> dict:
    return json.loads((TASKS / f"{name}.json").read_text(encoding="utf-8"))


def quiet_console() -> Console:
    """A console whose output the test can read back (``console.file.getvalue()``)."""
    return Console(file=io.StringIO(), width=300, color_system=None)


def plain(text: str) -> str:
    return ANSI.sub("", text)


def spec(name: str, adapter: str, **fields) -> SourceSpec:
    return SourceSpec(name=name, adapter=adapter, file=f"sources/{name}.yaml", **fields)


def dump_yaml(data: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    yaml = YAML()
    yaml.default_flow_style = False
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
    return path


class MediHome:
    """A private copy of the project's ``sources/`` and ``instructions/`` that tests may add to (MEDI_HOME)."""

    def __init__(self, root: Path):
        self.root = root
        shutil.copytree(PROJECT_ROOT / "sources", root / "sources")
        shutil.copytree(PROJECT_ROOT / "instructions", root / "instructions")

    def add_source(self, name: str, body: dict) -> Path:
        family, stem = name.split("/", 1)
        return dump_yaml(body, self.root / "sources" / family / f"{stem}.yaml")

    def add_source_text(self, name: str, text: str) -> Path:
        family, stem = name.split("/", 1)
        path = self.root / "sources" / family / f"{stem}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def add_instructions(self, names: list[str], *, file: str = "tests.yaml", symmetric: bool = True) -> Path:
        """A draft entry per name (query wording only for symmetric sources), appended to ``instructions/<file>``."""
        path = self.root / "instructions" / file
        existing = YAML(typ="safe").load(path.read_text(encoding="utf-8")) if path.exists() else {}
        for name in names:
            entry = {"query": [f"Represent the test sentence of {name} for retrieving similar sentences:"]}
            if not symmetric:
                entry["document"] = [f"Represent the test passage of {name} for retrieving its query:"]
            entry["status"] = "draft"
            existing[name] = entry
        return dump_yaml(existing, path)

    def set_draft(self, name: str) -> Path:
        """Make the entry of ``name`` in this copy a draft again (status draft, no reviewer, no date), as an
        unreviewed entry reads; every other line of its file stays as it was. Returns the file changed."""
        path = self.root / "instructions" / f"{name.split('/', 1)[0]}.yaml"
        text = path.read_text(encoding="utf-8")
        start = text.index(f"\n{name}:\n") + 1
        end = text.find("\n\n", start)
        end = len(text) if end < 0 else end
        block = text[start:end]
        for key, value in (("status", "draft"), ("reviewer", "null"), ("date", "null")):
            block, count = re.subn(rf"^  {key}: .*$", f"  {key}: {value}", block, flags=re.MULTILINE)
            assert count == 1, f"{path}: {name} has {count} '{key}:' lines"
        path.write_text(text[:start] + block + text[end:], encoding="utf-8")
        return path


def squash(text: str) -> str:
    """Whitespace collapsed, as the build's normalize stage leaves a one-line text."""
    return " ".join(text.split())


def release_texts(dataset) -> list[str]:
    """Every query, positive and negative text of a release."""
    return [row[side]["text"] for row in dataset for side in ("query", "pos", "neg")]


def run_in_terminal(args: list[str], columns: int, timeout: float = 600, **popen) -> tuple[int, str]:
    """Run ``args`` with stdout and stderr on a pseudo-terminal ``columns`` wide, as a person at a terminal of that
    width sees it (colours removed); its exit code and output. A run that outlives ``timeout`` is killed."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import termios
    import time

    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "HF_HUB_OFFLINE": "1", **popen.pop("env", {})}
    output = bytearray()
    with subprocess.Popen(args, stdout=child, stderr=child, stdin=subprocess.DEVNULL, env=env, **popen) as process:
        os.close(child)
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() > deadline:
                process.kill()
                raise TimeoutError(f"{args} ran over {timeout} s:\n{output.decode(errors='replace')}")
            if not select.select([main], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(main, 1 << 16)
            except OSError:  # EIO: the child's side closed
                break
            if not chunk:
                break
            output += chunk
        code = process.wait(timeout=timeout)
    os.close(main)
    controls = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colours, and the cursor hidden and shown
    return code, controls.sub("", output.decode(errors="replace")).replace("\r\n", "\n")


def single_reader_sample(rows, source_name: str, seed: int, size: int | None):
    """What the sample stage's single reader keeps of an adapter's rows: (sample, or every row when ``size`` is
    None; the sampler's report; the problems in order)."""
    from medi.errors import Problem
    from medi.stages.sample import Sampler

    sampler, problems, every = Sampler(size, f"{seed}:{source_name}"), [], []
    for item in rows:
        if isinstance(item, Problem):
            problems.append(item)
        else:
            sampler.offer(item)
            every.append(item)
    sample = sampler.finish()
    return (sample if size is not None else every), sampler.report, problems
