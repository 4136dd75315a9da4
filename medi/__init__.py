"""medi: build MEDI-style (query, positive, negative + instruction) training data, reproducibly."""

__version__ = "0.1.0"

from medi.build import BuildOptions, build
from medi.catalog import Catalog
from medi.errors import MediError

__all__ = ["BuildOptions", "Catalog", "MediError", "__version__", "build"]
