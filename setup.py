"""Build hook: a wheel (or a non-editable install) carries medi's data folders.

The top-level ``sources/``, ``instructions/``, ``manifests/`` and ``demo/`` stay the one source of truth; at build
time they are copied into the package as ``medi/_data/<folder>/``, where ``medi.catalog.project_root`` finds them
when no working copy is around. An editable install reads the checkout itself, so nothing is copied for it. The
sdist carries the folders through MANIFEST.in. Everything else is configured in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DATA_FOLDERS = ("sources", "instructions", "manifests", "demo", "judgements")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


class BuildPyWithData(build_py):
    """``build_py`` plus the data folders, copied into ``<build_lib>/medi/_data/``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "medi" / "_data"
        shutil.rmtree(target, ignore_errors=True)  # files deleted from a folder must not linger in a rebuild
        for folder in DATA_FOLDERS:
            if not (ROOT / folder).is_dir():
                raise SystemExit(f"setup.py: {ROOT / folder} is missing; build from a checkout or the sdist")
            shutil.copytree(ROOT / folder, target / folder, ignore=SKIP)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        target = Path(self.build_lib) / "medi" / "_data"
        return outputs + [str(p) for p in sorted(target.rglob("*")) if p.is_file()]


setup(cmdclass={"build_py": BuildPyWithData})
