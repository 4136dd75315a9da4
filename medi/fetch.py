"""Fetch: find each source's input file in a local mirror, or download it at its pinned revision."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from medi.atomic import atomic_write
from medi.catalog import SourceSpec
from medi.errors import SourceError

GIT_RAW_BASE = "https://raw.githubusercontent.com"  # env MEDI_GIT_RAW_BASE: another host serving <repo>/<rev>/<path>


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


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        return _fetched(path, "local", None, spec.path)
    if found := locate_in_mirrors(spec, data_dirs):
        file, relative = found
        upstream_file = spec.upstream is not None and relative == spec.mirror  # not a derived file
        return _fetched(file, "mirror", spec.upstream.revision if upstream_file else None, relative)
    if data_dirs and not remote:
        looked = ", ".join(str(d / relative) for relative in (mirror_paths(spec) or ["?"]) for d in data_dirs)
        raise SourceError(spec.name, "missing_file", f"not in the mirror: expected {looked}")
    if spec.upstream is None:
        raise SourceError(spec.name, "missing_file", "has no upstream location and no local mirror file")
    if spec.upstream.kind == "hub":
        return _from_hub(spec, cache_dir)
    return _from_git(spec, cache_dir)


def _fetched(path: Path, origin: str, revision: str | None, location: str) -> Fetched:
    return Fetched(path, origin, sha256_file(path), path.stat().st_size, revision, location)


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
    return _fetched(Path(path), "hub", up.revision, f"{up.repo}/{up.path}")


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
    return _fetched(target, "git", up.revision, url)


def git_raw_url(repo: str, revision: str, path: str) -> str:
    """Where a git file is downloaded from: GitHub's raw host, or ``MEDI_GIT_RAW_BASE`` (a mirror, a test server)."""
    base = os.environ.get("MEDI_GIT_RAW_BASE") or GIT_RAW_BASE
    return f"{base.rstrip('/')}/{repo}/{revision}/{path}"


def _atomic_copy(stream, target: Path) -> None:
    """The whole stream into ``target``, or nothing: a cut download leaves no partial file behind."""
    with atomic_write(target, "wb") as handle:
        shutil.copyfileobj(stream, handle)
