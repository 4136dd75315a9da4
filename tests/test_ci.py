"""``.ci/run`` checks what docs/DEVELOPING.md asks before the tests: ``ruff check`` and ``ruff format --check`` on the
whole tree, then pytest; the tree passes both (run here as ``.ci/run`` names them)."""

from __future__ import annotations

import shlex
import subprocess
import sys

from support import PROJECT_ROOT

CI = PROJECT_ROOT / ".ci" / "run"


def ci_commands() -> list[str]:
    lines = [line.strip() for line in CI.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_ci_runs_ruff_before_the_tests():
    commands = ci_commands()
    steps = [next(i for i, c in enumerate(commands) if c.startswith(step)) for step in ("ruff check", "ruff format")]
    tests = next(i for i, c in enumerate(commands) if "pytest" in c)
    assert steps[0] < tests and steps[1] < tests, commands
    assert "ruff check ." in commands and "ruff format --check ." in commands


def test_the_tree_passes_the_ruff_steps_of_ci():
    for command in (c for c in ci_commands() if c.startswith("ruff ")):
        args = [sys.executable, "-m", *shlex.split(command)]
        done = subprocess.run(args, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
