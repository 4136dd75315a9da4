"""Manifest: what a release holds and how it was made, written by the build beside the shards."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

from medi.errors import MediError
from medi.schema import FORMAT_VERSION

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


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise MediError(f"{path}: no manifest; is {folder} a medi release?")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MediError(f"{path}, line {exc.lineno}: invalid JSON ({exc.msg})") from exc
    if manifest.get("format") != FORMAT_VERSION:
        raise MediError(f"{path}: release format {manifest.get('format')!r}, this medi reads {FORMAT_VERSION}")
    return manifest
