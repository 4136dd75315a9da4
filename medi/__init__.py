"""medi: build MEDI-style (query, positive, negative + instruction) training data, reproducibly.

The public names load on first use, so ``import medi.cli`` (``medi --help``, ``medi sources``) does not pay for
datasets, pandas, torch and faiss.
"""

from __future__ import annotations

import importlib
import sys
import types
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
