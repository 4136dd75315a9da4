"""How fast the ``medi`` command starts: ``medi --help`` and ``medi sources`` against ``python -c "import typer"``.

    python bench/cli_start.py [--runs 7] [--against OLD_CHECKOUT]

Each command runs ``--runs`` times, interleaved, in fresh processes (stdout to a pipe); the medians and their ratio
to the typer baseline, measured in the same run, are printed. ``medi sources (cold)`` points MEDI_CACHE at an empty
folder each time, so the catalog's ~800 YAML files are parsed (the parsed catalog is cached by content otherwise).
``--against DIR`` adds the same two commands run from another checkout of medi (PYTHONPATH and MEDI_HOME set to
DIR), e.g. the commit before the fast start: ``git archive 2b8e3a7 | tar -x -C /tmp/before``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# the console script of this interpreter (a pyenv shim on PATH adds ~0.1 s of bash before Python starts)
SCRIPT = Path(sys.executable).parent / "medi"
MEDI = [str(SCRIPT)] if SCRIPT.is_file() else [shutil.which("medi") or "medi"]
COMMANDS = {
    'python -c "import typer"': [sys.executable, "-c", "import typer"],
    "medi --help": [*MEDI, "--help"],
    "medi sources": [*MEDI, "sources"],
    "medi sources (cold)": [*MEDI, "sources"],
}


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    cwd = env.get("MEDI_HOME", tempfile.gettempdir())  # `python -c` imports medi from its working folder first
    subprocess.run(command, env=env, cwd=cwd, capture_output=True, check=True, timeout=120)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--against", help="another medi checkout to time the same commands from")
    args = parser.parse_args()
    runs = args.runs
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    envs = dict.fromkeys(COMMANDS, env)
    if args.against:
        old = [sys.executable, "-c", "import sys; from medi.cli import app; sys.argv[0] = 'medi'; app()"]
        COMMANDS["medi --help (against)"] = [*old, "--help"]
        COMMANDS["medi sources (against)"] = [*old, "sources"]
        against = {**env, "PYTHONPATH": args.against, "MEDI_HOME": args.against}
        envs["medi --help (against)"] = envs["medi sources (against)"] = against
    subprocess.run([*MEDI, "sources"], env=env, capture_output=True, check=True, timeout=120)  # warm the OS cache
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        for name, command in COMMANDS.items():
            if name.endswith("(cold)"):
                with tempfile.TemporaryDirectory() as empty:
                    times[name].append(timed(command, {**envs[name], "MEDI_CACHE": empty}))
            else:
                times[name].append(timed(command, envs[name]))
    base = statistics.median(times['python -c "import typer"'])
    print(f"{'command':28} {'median s':>9} {'min s':>7} {'x typer':>8}   ({runs} runs each, {os.cpu_count()} cores)")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:28} {median:9.3f} {min(values):7.3f} {median / base:8.1f}")


if __name__ == "__main__":
    main()
