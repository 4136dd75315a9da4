"""Fetch: find each source's input file in a local mirror, or download it at its pinned revision.

A source of several files (a list or a glob pattern in ``path``, ``mirror`` or ``upstream.path``) is fetched whole:
every file, sorted by its name (its path relative to the files' common folder), one sha256 over all of them.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from medi.atomic import atomic_write, write_text
from medi.catalog import GLOB_CHARS, SourceSpec, file_patterns, names_several
from medi.errors import SourceError

GIT_RAW_BASE = "https://raw.githubusercontent.com"  # env MEDI_GIT_RAW_BASE: another host serving <repo>/<rev>/<path>
CHECKSUMS_DIR = "checksums"  # under the cache dir: sha256 of large inputs, by path, size and mtime
CACHED_CHECKSUM_BYTES = 64 << 20  # smaller files are hashed again: quicker than trusting a stat


@dataclass(frozen=True, slots=True)
class InputFile:
    """One file of a source of several: its ``name`` (its path relative to the files' common folder, the same
    wherever they were found) orders the files and names the file in row ids."""

    path: Path
    name: str
    sha256: str
    bytes: int


@dataclass(frozen=True, slots=True)
class Fetched:
    """Where a source's input came from, and its checksum."""

    path: Path  # the file; of several, the first
    origin: str  # mirror | local | hub | git
    sha256: str  # of several files: of their ``sha256sum`` listing (digest, two spaces, name; in order)
    bytes: int
    revision: str | None
    location: str  # mirror-relative path, hub repo/path or URL; of several, the patterns as listed
    files: tuple[InputFile, ...] = ()  # a source of several files, in read order (by name); () for one file

    def summary(self) -> dict:
        found = {
            "origin": self.origin,
            "location": self.location,
            "revision": self.revision,
            "sha256": self.sha256,
            "bytes": self.bytes,
        }
        if self.files:
            found["files"] = [{"name": f.name, "sha256": f.sha256, "bytes": f.bytes} for f in self.files]
        return found


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
    if spec.several_files:  # looked up by ``locate_in_mirrors``; a hand-made file replaces one file only
        return []
    derived = spec.options.get("derived")
    return [path for path in (derived, spec.mirror) if isinstance(path, str) and path]


def locate_in_mirrors(spec: SourceSpec, data_dirs: list[Path]) -> tuple[Path, str] | None:
    """(file, its path relative to the data dir) for the first preferred path some data dir holds; of a source of
    several files, the first file found (``local_files`` lists all of them)."""
    for relative in mirror_paths(spec):
        for data_dir in data_dirs:
            candidate = data_dir / relative
            if candidate.is_file():
                return candidate, relative
    if names_several(spec.mirror):
        for data_dir in data_dirs:
            if found := _matches(data_dir, spec.mirror):
                return data_dir / found[0], found[0]
    return None


def _matches(base: Path, value: str | list[str]) -> list[str]:
    """The files under ``base`` that a file field names (listed files that exist, glob matches), relative, sorted."""
    found: set[str] = set()
    for pattern in file_patterns(value):
        if GLOB_CHARS.isdisjoint(pattern):
            found.update([pattern] if (base / pattern).is_file() else [])
        else:
            found.update(str(p.relative_to(base)) for p in base.glob(pattern) if p.is_file())
    return sorted(found)


def expand_files(spec: SourceSpec, key: str, base: Path, value: str | list[str]) -> list[tuple[Path, str]]:
    """(file, its path relative to ``base``) for every file a list or glob names; a listed file that is missing or a
    pattern that matches nothing is a SourceError naming the YAML file and key."""
    found: dict[str, Path] = {}
    for pattern in file_patterns(value):
        if GLOB_CHARS.isdisjoint(pattern):
            if not (base / pattern).is_file():
                why = f"{spec.file}: {key}: {pattern} not found (looked in {base})"
                raise SourceError(spec.name, "missing_file", why, base / pattern)
            found.setdefault(os.path.relpath(base / pattern, base), base / pattern)
            continue
        matched = _glob(base, pattern)
        if not matched:
            raise SourceError(spec.name, "missing_file", f"{spec.file}: {key}: {pattern} matches no file in {base}")
        for path in matched:  # an absolute pattern may match outside base: named relative to it all the same
            found.setdefault(os.path.relpath(path, base), path)
    return [(path, relative) for relative, path in sorted(found.items())]


def _glob(base: Path, pattern: str) -> list[Path]:
    if Path(pattern).is_absolute():  # Path.glob takes relative patterns only
        anchor = Path(Path(pattern).anchor)
        base, pattern = anchor, str(Path(pattern).relative_to(anchor))
    return sorted(path for path in base.glob(pattern) if path.is_file())


def find_in_mirrors(spec: SourceSpec, data_dirs: list[Path]) -> Path | None:
    """The file a data dir holds for the source (see ``mirror_paths``), or None."""
    found = locate_in_mirrors(spec, data_dirs)
    return found[0] if found else None


def local_files(spec: SourceSpec, root: Path, data_dirs: list[Path]) -> list[Path]:
    """The source's files on this machine, found as ``fetch`` would find them but without a download or an error
    (a local path or glob, else the first data dir holding them; [] when none): what an executor sizes it by."""
    if spec.path:
        return _glob(root, spec.path) if names_several(spec.path) else [root / spec.path]
    if spec.several_files:
        found = next(((d, files) for d in data_dirs if (files := _matches(d, spec.mirror or []))), None)
        return [found[0] / name for name in found[1]] if found else []
    file = find_in_mirrors(spec, data_dirs)
    return [file] if file else []


def fetch(spec: SourceSpec, data_dirs: list[Path], root: Path, *, remote: bool, cache_dir: Path) -> Fetched:
    """Locate or download a source's file (or files). Raises SourceError naming what was looked for."""
    if spec.several_files:
        return _fetch_several(spec, data_dirs, root, remote=remote, cache_dir=cache_dir)
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


def _fetch_several(spec: SourceSpec, data_dirs: list[Path], root: Path, *, remote: bool, cache_dir: Path) -> Fetched:
    """A source of several files: local (``path``), from the first data dir holding any of them, or downloaded."""
    if spec.path:
        found = expand_files(spec, "path", root, spec.path)
        return _several([(p.resolve(), r) for p, r in found], "local", None, _listed(spec.path), cache_dir)
    for data_dir in data_dirs if spec.mirror else []:
        if _matches(data_dir, spec.mirror):  # this dir holds the source: every file must be there
            found = expand_files(spec, "mirror", data_dir, spec.mirror)
            revision = spec.upstream.revision if spec.upstream else None
            return _several(found, "mirror", revision, _listed(spec.mirror), cache_dir)
    if data_dirs and not remote:
        looked = ", ".join(f"{d}/{pattern}" for pattern in file_patterns(spec.mirror) or ["?"] for d in data_dirs)
        raise SourceError(spec.name, "missing_file", f"{spec.file}: mirror: not in the mirror: expected {looked}")
    if spec.upstream is None:
        raise SourceError(spec.name, "missing_file", "has no upstream location and no local mirror file")
    if spec.upstream.kind == "hub":
        return _several_from_hub(spec, cache_dir)
    if any(not GLOB_CHARS.isdisjoint(p) for p in file_patterns(spec.upstream.path)):
        why = f"{spec.file}: upstream.path: a git upstream cannot list its files: name them in a list, not a glob"
        raise SourceError(spec.name, "missing_file", why)
    up = spec.upstream
    found = [(_git_file(spec, path, cache_dir), path) for path in file_patterns(up.path)]
    location = _listed([git_raw_url(up.repo, up.revision or "HEAD", path) for path in file_patterns(up.path)])
    return _several(found, "git", up.revision, location, cache_dir)


def _listed(value: str | list[str]) -> str:
    """A file field's files and patterns as one location: comma-separated."""
    return ", ".join(file_patterns(value))


def _several(
    found: list[tuple[Path, str]], origin: str, revision: str | None, location: str, cache_dir: Path
) -> Fetched:
    """``found`` (file, relative path) as one input: named relative to their common folder, in name order."""
    common = os.path.commonpath([os.path.dirname(relative) or "." for _, relative in found])
    named = sorted((os.path.relpath(relative, common), path) for path, relative in found)
    files = tuple(InputFile(path, name, sha256_file(path, cache_dir), path.stat().st_size) for name, path in named)
    listing = "".join(f"{f.sha256}  {f.name}\n" for f in files)
    identity = hashlib.sha256(listing.encode("utf-8")).hexdigest()
    return Fetched(files[0].path, origin, identity, sum(f.bytes for f in files), revision, location, files)


def _offline_hint(spec: SourceSpec) -> str:
    if not spec.mirror:
        return "use a local file"
    if spec.several_files:
        return f"use --data-dir MIRROR with the files at MIRROR/{', MIRROR/'.join(file_patterns(spec.mirror))}"
    return f"use --data-dir MIRROR with the file at MIRROR/{spec.mirror}"


def _from_hub(spec: SourceSpec, cache_dir: Path) -> Fetched:
    up = spec.upstream
    assert up is not None and isinstance(up.path, str)
    return _fetched(_hub_file(spec, up.path, cache_dir), "hub", up.revision, f"{up.repo}/{up.path}", cache_dir)


def _hub_file(spec: SourceSpec, filename: str, cache_dir: Path) -> Path:
    """One file of the source's Hub repo at its revision (downloaded once into the cache)."""
    from huggingface_hub import hf_hub_download

    up = spec.upstream
    assert up is not None
    with _hub_errors(spec, f"download {up.repo}/{filename}"):
        path = hf_hub_download(
            repo_id=up.repo,
            filename=filename,
            repo_type=up.repo_type,
            revision=up.revision,
            cache_dir=cache_dir / "hub",
        )
    return Path(path)


@contextmanager
def _hub_errors(spec: SourceSpec, doing: str) -> Iterator[None]:
    """A failed Hub call as a SourceError that says what was tried and how to do without the Hub."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        yield
    except (LocalEntryNotFoundError, HfHubHTTPError, OfflineModeIsEnabled, OSError) as exc:
        revision = spec.upstream.revision if spec.upstream else None
        raise SourceError(
            spec.name,
            "hub_unreachable",
            f"could not {doing}@{revision or 'main (unpinned)'} from the Hugging Face Hub ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); {_offline_hint(spec)}",
        ) from exc


def _several_from_hub(spec: SourceSpec, cache_dir: Path) -> Fetched:
    """Each listed file of the Hub repo, and every file a glob matches in the repo's file list at the revision."""
    up = spec.upstream
    assert up is not None
    patterns = file_patterns(up.path)
    names = [p for p in patterns if GLOB_CHARS.isdisjoint(p)]
    if len(names) < len(patterns):
        from huggingface_hub import HfApi

        with _hub_errors(spec, f"list the files of {up.repo}"):
            listed = HfApi().list_repo_files(up.repo, repo_type=up.repo_type, revision=up.revision)
        for pattern in patterns:
            if pattern in names:
                continue
            matched = [name for name in listed if _repo_match(name, pattern)]
            if not matched:
                why = f"{spec.file}: upstream.path: {pattern} matches no file of {up.repo}@{up.revision or 'main'}"
                raise SourceError(spec.name, "missing_file", why)
            names += matched
    found = [(_hub_file(spec, name, cache_dir), name) for name in sorted(set(names))]
    return _several(found, "hub", up.revision, _listed([f"{up.repo}/{p}" for p in patterns]), cache_dir)


def _repo_match(name: str, pattern: str) -> bool:
    """Whether a repo file matches a glob pattern as a whole path (``*`` stays within a folder)."""
    path, whole = PurePosixPath(name), PurePosixPath(pattern)
    return len(path.parts) == len(whole.parts) and path.match(pattern)


def _from_git(spec: SourceSpec, cache_dir: Path) -> Fetched:
    up = spec.upstream
    assert up is not None and isinstance(up.path, str)
    target = _git_file(spec, up.path, cache_dir)
    return _fetched(target, "git", up.revision, git_raw_url(up.repo, up.revision or "HEAD", up.path), cache_dir)


def _git_file(spec: SourceSpec, file: str, cache_dir: Path) -> Path:
    """One file of the source's git repo at its revision (downloaded once into the cache)."""
    up = spec.upstream
    assert up is not None
    revision = up.revision or "HEAD"
    url = git_raw_url(up.repo, revision, file)
    target = cache_dir / "git" / up.repo / revision / file
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                _atomic_copy(response, target)
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as exc:  # cut: IncompleteRead
            raise SourceError(
                spec.name, "git_unreachable", f"could not download {url} ({exc}); {_offline_hint(spec)}"
            ) from exc
    return target


def git_raw_url(repo: str, revision: str, path: str) -> str:
    """Where a git file is downloaded from: GitHub's raw host, or ``MEDI_GIT_RAW_BASE`` (a mirror, a test server)."""
    base = os.environ.get("MEDI_GIT_RAW_BASE") or GIT_RAW_BASE
    return f"{base.rstrip('/')}/{repo}/{revision}/{path}"


def _atomic_copy(stream, target: Path) -> None:
    """The whole stream into ``target``, or nothing: a cut download leaves no partial file behind."""
    with atomic_write(target, "wb") as handle:
        shutil.copyfileobj(stream, handle)
