"""medi: build MEDI-style (query, positive, negative + instruction) training data, reproducibly.

The public names load on first use, so ``import medi.cli`` (``medi --help``, ``medi sources``) does not pay for
datasets, pandas, torch and faiss.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings
from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["BuildOptions", "Catalog", "MediError", "__version__", "build"]

_LAZY = {"BuildOptions": "medi.options", "build": "medi.build", "Catalog": "medi.catalog", "MediError": "medi.errors"}

if TYPE_CHECKING:
    from medi.build import build
    from medi.catalog import Catalog
    from medi.errors import MediError
    from medi.options import BuildOptions


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'medi' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    setattr(sys.modules[__name__], name, value)
    return value


class _Package(types.ModuleType):
    """``medi.build`` stays the function: importing the submodule ``medi.build`` must not rebind it to the module."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "build" and isinstance(value, types.ModuleType):
            self.__dict__.pop("build", None)  # resolved again (to the function) by __getattr__
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


# Modules that moved into the wings (issue 20): their old names stay importable for code outside this repo, as the
# same module object with a DeprecationWarning; medi itself imports the new names (tests/test_layout.py).
_MOVED = {
    "checkpoint": "stages.checkpoint",
    "decontaminate": "stages.decontaminate",
    "dedup": "stages.dedup",
    "export": "release.export",
    "filter": "stages.filter",
    "instruct": "stages.instruct",
    "lint": "authoring.lint",
    "manifest": "release.manifest",
    "mine": "stages.mine",
    "normalize": "stages.normalize",
    "publish": "release.publish",
    "report": "stages.report",
    "review": "authoring.review",
    "sample": "stages.sample",
    "scaffold": "authoring.scaffold",
    "select": "stages.select",
    "shard": "release.shard",
    "splits": "stages.splits",
    "stats": "release.stats",
    "verify": "release.verify",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``medi.<old name>`` of a moved module as the module at its new place."""

    def find_spec(self, fullname: str, path=None, target=None):
        old = fullname.removeprefix("medi.")
        if fullname.startswith("medi.") and old in _MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return None  # a placeholder: exec_module puts the real module in its place

    def exec_module(self, module: types.ModuleType) -> None:
        new = f"medi.{_MOVED[module.__name__.removeprefix('medi.')]}"
        warnings.warn(f"{module.__name__} moved to {new}", DeprecationWarning, stacklevel=2)
        sys.modules[module.__name__] = importlib.import_module(new)  # the import returns what sys.modules holds


sys.meta_path.insert(0, _MovedModules())
