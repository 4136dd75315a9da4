"""Manifest: what a release holds and how it was made, written by the build beside the shards."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

MANIFEST = "manifest.json"
KEY_LIBRARIES = (
    "medi",
    "datasets",
    "pyarrow",
    "numpy",
    "faiss-cpu",
    "faiss-gpu",
    "sentence-transformers",
    "transformers",
    "torch",
    "rapidfuzz",
    "huggingface_hub",
)


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in KEY_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def write_manifest(folder: Path, manifest: dict) -> Path:
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")
    return path
