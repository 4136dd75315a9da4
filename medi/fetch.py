"""Fetch: find each source's input file in a local mirror, or download it at its pinned revision."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from medi.atomic import atomic_write, write_text
from medi.catalog import SourceSpec
from medi.errors import SourceError

GIT_RAW_BASE = "https://raw.githubusercontent.com"  # env MEDI_GIT_RAW_BASE: another host serving <repo>/<rev>/<path>
CHECKSUMS_DIR = "checksums"  # under the cache dir: sha256 of large inputs, by path, size and mtime
CACHED_CHECKSUM_BYTES = 64 << 20  # smaller files are hashed again: quicker than trusting a stat


@dataclass(frozen=True, slots=True)
class Fetched:
    """Where a source's input came from, and its checksum."""

    path: Path
    origin: str  # mirror | local | hub | git
    sha256: str
    bytes: int
    revision: str | None
    location: str  # mirror-relative path, hub repo/path or URL

    def summary(self) -> dict:
        return {
            "origin": self.origin,
            "location": self.location,
            "revision": self.revision,
            "sha256": self.sha256,
            "bytes": self.bytes,
        }


def sha256_file(path: Path, cache_dir: Path | None = None) -> str:
    """The file's sha256; with ``cache_dir``, a large file's is remembered by (path, size, mtime) and not read again
    while those stay the same (hashing a 35 GB input on every build would not do; ``extra_inputs`` trusts the same
    stat to key the sample stage)."""
    if cache_dir is None or path.stat().st_size < CACHED_CHECKSUM_BYTES:
        return _sha256_of(path)
    if (known := cached_sha256(path, cache_dir)) is not None:
        return known
    before = file_identity(path)
    digest = _sha256_of(path)
    remember_sha256(path, before, digest, cache_dir)
    return digest


def _sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def file_identity(path: Path) -> dict:
    """What a cached fact about a file is keyed by: its resolved path, size and modification time."""
    stat = path.stat()
    return {"path": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _checksum_record(path: Path, cache_dir: Path) -> Path:
    name = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    return cache_dir / CHECKSUMS_DIR / f"{name}.json"


def cached_sha256(path: Path, cache_dir: Path) -> str | None:
    """The sha256 remembered for the file as it is now (same size and mtime), or None."""
    record = _checksum_record(path, cache_dir)
    try:
        stored = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stored.get("sha256") if stored.get("file") == file_identity(path) else None


def remember_sha256(path: Path, before: dict, digest: str, cache_dir: Path) -> None:
    """Store the sha256 a caller computed of a file whose ``file_identity`` was ``before`` when it began; a file
    changed meanwhile is not remembered."""
    if file_identity(path) != before:
        return
    record = _checksum_record(path, cache_dir)
    record.parent.mkdir(parents=True, exist_ok=True)
    write_text(record, json.dumps({"file": before, "sha256": digest}))


def mirror_paths(spec: SourceSpec) -> list[str]:
    """Where a source's input may lie under a data dir, preferred first.

    A hand-made derived file (``options.derived``, e.g. a KILT task joined with its passages) comes before the
    upstream file (``mirror``), so those who have one keep using it and everyone else reads the upstream file.
    """
    derived = spec.options.get("derived")
    return [path for path in (derived, spec.mirror) if isinstance(path, str) and path]


def locate_in_mirrors(spec: SourceSpec, data_dirs: list[Path]) -> tuple[Path, str] | None:
    """(file, its path relative to the data dir) for the first preferred path some data dir holds."""
    for relative in mirror_paths(spec):
        for data_dir in data_dirs:
            candidate = data_dir / relative
            if candidate.is_file():
                return candidate, relative
    return None


def find_in_mirrors(spec: SourceSpec, data_dirs: list[Path]) -> Path | None:
    """The file a data dir holds for the source (see ``mirror_paths``), or None."""
    found = locate_in_mirrors(spec, data_dirs)
    return found[0] if found else None


def fetch(spec: SourceSpec, data_dirs: list[Path], root: Path, *, remote: bool, cache_dir: Path) -> Fetched:
    """Locate or download a source's file. Raises SourceError naming what was looked for."""
    if spec.path:
        path = (root / spec.path).resolve()
        if not path.is_file():
            raise SourceError(spec.name, "missing_file", f"file not found: {path}", path)
        return _fetched(path, "local", None, spec.path, cache_dir)
    if found := locate_in_mirrors(spec, data_dirs):
        file, relative = found
        upstream_file = spec.upstream is not None and relative == spec.mirror  # not a derived file
        return _fetched(file, "mirror", spec.upstream.revision if upstream_file else None, relative, cache_dir)
    if data_dirs and not remote:
        looked = ", ".join(str(d / relative) for relative in (mirror_paths(spec) or ["?"]) for d in data_dirs)
        raise SourceError(spec.name, "missing_file", f"not in the mirror: expected {looked}")
    if spec.upstream is None:
        raise SourceError(spec.name, "missing_file", "has no upstream location and no local mirror file")
    if spec.upstream.kind == "hub":
        return _from_hub(spec, cache_dir)
    return _from_git(spec, cache_dir)


def _fetched(path: Path, origin: str, revision: str | None, location: str, cache_dir: Path) -> Fetched:
    return Fetched(path, origin, sha256_file(path, cache_dir), path.stat().st_size, revision, location)


def _offline_hint(spec: SourceSpec) -> str:
    return f"use --data-dir MIRROR with the file at MIRROR/{spec.mirror}" if spec.mirror else "use a local file"


def _from_hub(spec: SourceSpec, cache_dir: Path) -> Fetched:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    up = spec.upstream
    assert up is not None
    try:
        path = hf_hub_download(
            repo_id=up.repo,
            filename=up.path,
            repo_type=up.repo_type,
            revision=up.revision,
            cache_dir=cache_dir / "hub",
        )
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        where = f"{up.repo}/{up.path}@{up.revision or 'main (unpinned)'}"
        raise SourceError(
            spec.name,
            "hub_unreachable",
            f"could not download {where} from the Hugging Face Hub ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); {_offline_hint(spec)}",
        ) from exc
    return _fetched(Path(path), "hub", up.revision, f"{up.repo}/{up.path}", cache_dir)


def _from_git(spec: SourceSpec, cache_dir: Path) -> Fetched:
    up = spec.upstream
    assert up is not None
    revision = up.revision or "HEAD"
    url = git_raw_url(up.repo, revision, up.path)
    target = cache_dir / "git" / up.repo / revision / up.path
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                _atomic_copy(response, target)
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as exc:  # cut: IncompleteRead
            raise SourceError(
                spec.name, "git_unreachable", f"could not download {url} ({exc}); {_offline_hint(spec)}"
            ) from exc
    return _fetched(target, "git", up.revision, url, cache_dir)


def git_raw_url(repo: str, revision: str, path: str) -> str:
    """Where a git file is downloaded from: GitHub's raw host, or ``MEDI_GIT_RAW_BASE`` (a mirror, a test server)."""
    base = os.environ.get("MEDI_GIT_RAW_BASE") or GIT_RAW_BASE
    return f"{base.rstrip('/')}/{repo}/{revision}/{path}"


def _atomic_copy(stream, target: Path) -> None:
    """The whole stream into ``target``, or nothing: a cut download leaves no partial file behind."""
    with atomic_write(target, "wb") as handle:
        shutil.copyfileobj(stream, handle)
