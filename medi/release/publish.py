"""Publish a release to the Hugging Face Hub as a dataset repo: Parquet per source, a dataset card, a tag.

``publish(release_folder, "ORG/NAME", tag="v1")`` writes the release's Parquet files (``medi.release.export``), a card
(``README.md``: one config per source plus a default ``all``, licences, citations, counts, how it was built) and
the release's ``manifest.json``; compares them with what the repo already holds (LFS sha256 or git blob sha1) and
uploads only what differs, in a few batched commits; then tags the commit. A second publish of the same release
uploads nothing. ``dry_run=True`` plans without writing to the Hub.

The Hub client is ``huggingface_hub.HfApi`` with its usual configuration: the endpoint from ``HF_ENDPOINT``, the
token from ``HF_TOKEN`` or the stored login. The token is never printed, logged or written by medi.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, DatasetCardData, HfApi, get_token
from huggingface_hub.errors import (
    HfHubHTTPError,
    HFValidationError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.errors import HTTPError as HubTransportError
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import validate_repo_id
from rich.console import Console
from rich.table import Table

from medi.errors import MediError
from medi.release import Release, open_release
from medi.release.export import write_parquet_per_source

REPO_TYPE = "dataset"
CARD = "README.md"
MANIFEST = "manifest.json"
DATA_FOLDER = "data/"
ALL_FILES = DATA_FOLDER + "*/*/*.parquet"  # data/<family>/<name>/train-*.parquet: every source's file
FILES_PER_COMMIT = 50
BYTES_PER_COMMIT = 2 * 2**30
ALL_CONFIG = "all"
# as the INSTRUCTOR authors ask to be cited (xlang-ai/instructor-embedding README), authors in BibTeX form
INSTRUCTOR_BIBTEX = """@inproceedings{INSTRUCTOR,
  title={One Embedder, Any Task: Instruction-Finetuned Text Embeddings},
  author={Su, Hongjin and Shi, Weijia and Kasai, Jungo and Wang, Yizhong and Hu, Yushi and Ostendorf, Mari and
    Yih, Wen-tau and Smith, Noah A. and Zettlemoyer, Luke and Yu, Tao},
  url={https://arxiv.org/abs/2212.09741},
  year={2022},
}"""


def config_name(source: str) -> str:
    """A source's config name on the Hub: ``st/AllNLI`` -> ``st--AllNLI`` (``datasets`` forbids ``/`` in names)."""
    return source.replace("/", "--")


@dataclass(frozen=True)
class HubFile:
    """One file of the release as it goes into the repo, with the two hashes the Hub reports back."""

    path: str  # in the repo
    local: Path
    size: int
    sha256: str
    git_sha1: str
    source: str | None = None
    rows: int | None = None

    @classmethod
    def of(cls, path: str, local: Path, source: str | None = None, rows: int | None = None) -> HubFile:
        sha256, git_sha1 = hashlib.sha256(), hashlib.sha1()
        size = local.stat().st_size
        git_sha1.update(b"blob %d\0" % size)
        with local.open("rb") as handle:
            while chunk := handle.read(2**20):
                sha256.update(chunk)
                git_sha1.update(chunk)
        return cls(path, local, size, sha256.hexdigest(), git_sha1.hexdigest(), source, rows)

    def same_as(self, remote) -> bool:
        """Equal content: the LFS sha256 for LFS files, else the git blob id (sha1 of ``blob <size>\\0<bytes>``)."""
        if remote.lfs is not None:
            return remote.lfs.sha256 == self.sha256
        return remote.blob_id == self.git_sha1


@dataclass
class CommitBatch:
    message: str
    files: list[HubFile]
    deletes: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass
class PublishPlan:
    repo_id: str
    tag: str
    endpoint: str
    repo_exists: bool
    head: str | None  # the commit the plan was made against (main)
    remote_private: bool | None
    files: list[HubFile]
    upload: list[HubFile]
    unchanged: list[HubFile]
    delete: list[str]
    commits: list[CommitBatch]
    tag_at: str | None  # the commit the tag names now, None when there is no such tag
    not_compared: str | None = None  # why the repo could not be read (offline dry run): the plan assumes it empty


@dataclass
class PublishResult:
    plan: PublishPlan
    dry_run: bool
    commit_oids: list[str] = field(default_factory=list)
    tagged: str | None = None  # the commit the tag names after publishing


@contextmanager
def hub_errors(repo_id: str, action: str, endpoint: str) -> Iterator[None]:
    """Turn the Hub client's errors into MediErrors naming the repo and what failed (never the token)."""
    where = f"{repo_id} on {endpoint}"
    try:
        yield
    except OfflineModeIsEnabled as exc:
        raise MediError(f"{where}: cannot {action}: HF_HUB_OFFLINE is set; unset it to publish") from exc
    except RepositoryNotFoundError as exc:
        raise MediError(
            f"{where}: cannot {action}: repository not found, or not visible with this token (HTTP {_status(exc)})"
        ) from exc
    except RevisionNotFoundError as exc:
        raise MediError(f"{where}: cannot {action}: revision not found (HTTP {_status(exc)})") from exc
    except HfHubHTTPError as exc:
        status = _status(exc)
        if status == 401:
            why = "the Hub rejected the token (HTTP 401); set HF_TOKEN or log in with `hf auth login`"
        elif status == 403:
            why = f"the token may not write to {repo_id.split('/')[0]} (HTTP 403)"
        else:
            why = f"HTTP {status}: {exc.server_message or exc}".strip()
        raise MediError(f"{where}: cannot {action}: {why}") from exc
    except HubTransportError as exc:
        raise MediError(f"{where}: cannot {action}: the Hub is unreachable ({type(exc).__name__}: {exc})") from exc
    except (ValueError, RuntimeError) as exc:
        # the client's own refusals: card metadata the Hub rejects (ValueError), an LFS upload that failed
        # (RuntimeError wrapping the HTTP error)
        cause = f" ({type(exc.__cause__).__name__}: {exc.__cause__})" if exc.__cause__ else ""
        raise MediError(f"{where}: cannot {action}: {exc}{cause}".strip()) from exc


def _status(exc: HfHubHTTPError) -> int | None:
    return exc.response.status_code if exc.response is not None else None


def publish(
    folder: Path | str,
    repo_id: str,
    tag: str,
    *,
    dry_run: bool = False,
    private: bool = False,
    files_per_commit: int = FILES_PER_COMMIT,
    bytes_per_commit: int = BYTES_PER_COMMIT,
    console: Console | None = None,
) -> PublishResult:
    """Publish the release in ``folder`` to the dataset repo ``repo_id`` and tag it ``tag`` (see module doc)."""
    console = console or Console(stderr=True)
    _check_names(repo_id, tag)
    if files_per_commit < 1 or bytes_per_commit < 1:
        raise MediError("files per commit and bytes per commit must be at least 1")
    if not dry_run and get_token() is None:
        raise MediError(f"{repo_id}: no Hugging Face token: set HF_TOKEN or log in with `hf auth login`")
    release = open_release(folder, verify_checksums=True)
    api = HfApi()
    staging = Path(tempfile.mkdtemp(prefix="medi-publish-"))
    try:
        files = stage_files(release, staging, repo_id, tag)
        plan = make_plan(api, repo_id, tag, files, files_per_commit, bytes_per_commit, offline_ok=dry_run)
        print_plan(plan, console, dry_run=dry_run, private=private)
        _check_tag(plan)
        result = PublishResult(plan, dry_run)
        if not dry_run:
            _write(api, plan, private, result, console)
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_names(repo_id: str, tag: str) -> None:
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise MediError(f"{repo_id!r} is not a valid repo id ({exc})") from exc
    if repo_id.count("/") != 1:
        raise MediError(f"{repo_id!r}: give the repo as ORG/NAME")
    if not tag or any(c.isspace() for c in tag) or tag in ("main", "HEAD"):
        raise MediError(f"{tag!r} is not a usable tag name")


def stage_files(release: Release, staging: Path, repo_id: str, tag: str) -> list[HubFile]:
    """Write the Parquet files, the card and the manifest into ``staging``; their HubFiles in upload order."""
    parquet = write_parquet_per_source(release, staging)
    files = [HubFile.of(p["path"], staging / p["path"], p["source"], p["rows"]) for p in parquet]
    card = staging / CARD
    card.write_text(dataset_card(release, parquet, repo_id, tag), encoding="utf-8")
    files.append(HubFile.of(CARD, card))
    files.append(HubFile.of(MANIFEST, release.folder / MANIFEST))
    return files


def make_plan(
    api: HfApi,
    repo_id: str,
    tag: str,
    files: list[HubFile],
    files_per_commit: int,
    bytes_per_commit: int,
    *,
    offline_ok: bool = False,
) -> PublishPlan:
    """Compare ``files`` with the repo's main branch: what to upload, what is already there, what to delete.

    With ``offline_ok`` (a dry run) a Hub that cannot be reached (HF_HUB_OFFLINE, no network) is no error: the plan
    is made as for an empty repo and says it could not compare (``not_compared``).
    """
    endpoint = api.endpoint
    not_compared = None
    try:
        with hub_errors(repo_id, "read the repo", endpoint):
            info, remote, tag_at = _read_repo(api, repo_id, tag)
    except MediError as exc:
        not_compared = _unreachable(exc.__cause__)
        if not (offline_ok and not_compared):
            raise
        info, remote, tag_at = None, {}, None
    upload = [f for f in files if f.path not in remote or not f.same_as(remote[f.path])]
    unchanged = [f for f in files if f.path in remote and f.same_as(remote[f.path])]
    ours = {f.path for f in files}
    delete = sorted(p for p in remote if p.startswith(DATA_FOLDER) and p not in ours)
    return PublishPlan(
        repo_id=repo_id,
        tag=tag,
        endpoint=endpoint,
        repo_exists=info is not None,
        head=info.sha if info is not None else None,
        remote_private=info.private if info is not None else None,
        files=files,
        upload=upload,
        unchanged=unchanged,
        delete=delete,
        commits=batch_commits(upload, delete, tag, files_per_commit, bytes_per_commit),
        tag_at=tag_at,
        not_compared=not_compared,
    )


def _read_repo(api: HfApi, repo_id: str, tag: str) -> tuple:
    """(repo info or None, {path: RepoFile} on main, the commit ``tag`` names or None)."""
    try:
        info = api.dataset_info(repo_id)
    except RepositoryNotFoundError:
        return None, {}, None
    tree = api.list_repo_tree(repo_id, recursive=True, revision=info.sha, repo_type=REPO_TYPE)
    remote = {entry.path: entry for entry in tree if isinstance(entry, RepoFile)}
    tags = {ref.name: ref.target_commit for ref in api.list_repo_refs(repo_id, repo_type=REPO_TYPE).tags}
    return info, remote, tags.get(tag)


def _unreachable(exc: BaseException | None) -> str | None:
    """Why the Hub could not be asked at all (offline mode, no connection), or None for any other failure."""
    if isinstance(exc, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set"
    if isinstance(exc, HubTransportError) and not isinstance(exc, HfHubHTTPError):
        return f"the Hub is unreachable ({type(exc).__name__}: {exc})"
    return None


def batch_commits(
    upload: list[HubFile], delete: list[str], tag: str, files_per_commit: int, bytes_per_commit: int
) -> list[CommitBatch]:
    """Data files in release order, several sources per commit; the card, manifest and deletions come last."""
    data = [f for f in upload if f.source is not None]
    last = [f for f in upload if f.source is None]
    batches: list[list[HubFile]] = []
    for f in data:
        current = batches[-1] if batches else None
        if (
            current is None
            or len(current) >= files_per_commit
            or sum(x.size for x in current) + f.size > bytes_per_commit
        ):
            batches.append([f])
        else:
            current.append(f)
    if last or delete:
        fits = batches and len(batches[-1]) + len(last) <= files_per_commit
        if fits and sum(f.size for f in batches[-1] + last) <= bytes_per_commit:
            batches[-1].extend(last)
        else:
            batches.append(list(last))
    commits = []
    for number, batch in enumerate(batches, 1):
        deletes = list(delete) if number == len(batches) else []
        commits.append(
            CommitBatch(f"medi {tag}: {_describe(batch, deletes)} ({number}/{len(batches)})", batch, deletes)
        )
    return commits


def _describe(files: list[HubFile], deletes: list[str]) -> str:
    sources = sum(1 for f in files if f.source)
    others = [f.path for f in files if not f.source]
    parts = [f"Parquet of {sources} source(s)"] if sources else []
    parts += [", ".join(others)] if others else []
    parts += [f"remove {len(deletes)} file(s) not in this release"] if deletes else []
    return "; ".join(parts)


def _check_tag(plan: PublishPlan) -> None:
    """A tag names one release: refuse to publish different content under a tag that already exists."""
    if plan.tag_at is None:
        return
    if plan.commits or plan.tag_at != plan.head:
        raise MediError(
            f"{plan.repo_id}: tag {plan.tag!r} already names commit {plan.tag_at[:12]}, which is not this release "
            f"(main is at {(plan.head or '?')[:12]}{', files differ' if plan.commits else ''}); "
            "publish it under a new tag"
        )


def _write(api: HfApi, plan: PublishPlan, private: bool, result: PublishResult, console: Console) -> None:
    repo_id, endpoint = plan.repo_id, plan.endpoint
    head = plan.head
    if not plan.repo_exists:
        with hub_errors(repo_id, "create the dataset repo", endpoint):
            api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
            head = api.dataset_info(repo_id).sha
        console.print(f"created dataset repo {repo_id} ({'private' if private else 'public'})", highlight=False)
    for number, batch in enumerate(plan.commits, 1):
        operations = [CommitOperationAdd(f.path, str(f.local)) for f in batch.files]
        operations += [CommitOperationDelete(path) for path in batch.deletes]
        description = "\n".join(f"- {f.path} ({f.rows} rows)" if f.source else f"- {f.path}" for f in batch.files)
        with hub_errors(repo_id, f"upload commit {number}/{len(plan.commits)} ({batch.message})", endpoint):
            info = api.create_commit(
                repo_id,
                operations,
                commit_message=batch.message,
                commit_description=description,
                repo_type=REPO_TYPE,
                parent_commit=head,
            )
        head = info.oid
        result.commit_oids.append(head)
        console.print(f"committed {batch.message}: {len(batch.files)} file(s), {_size(batch.bytes)} -> {head[:12]}")
    if plan.tag_at == head:
        result.tagged = head
        console.print(f"tag {plan.tag} already names {head[:12]}; nothing to tag")
        return
    with hub_errors(repo_id, f"create tag {plan.tag!r}", endpoint):
        api.create_tag(repo_id, tag=plan.tag, revision=head, repo_type=REPO_TYPE, tag_message=f"medi {plan.tag}")
    result.tagged = head
    console.print(f"tagged {head[:12]} as {plan.tag}")


def print_plan(plan: PublishPlan, console: Console, *, dry_run: bool, private: bool) -> None:
    where = f"exists, main at {plan.head[:12]}" if plan.repo_exists and plan.head else "does not exist yet"
    if plan.not_compared:
        where = "not compared"
    console.print(f"{'plan' if dry_run else 'publishing'}: dataset repo {plan.repo_id} ({where}) on {plan.endpoint}")
    if plan.not_compared:
        console.print(
            f"could not compare with the remote repo: {plan.not_compared}. The plan lists every file as an upload "
            "and the tag as new; a real publish uploads only what differs and refuses a tag naming other content",
            highlight=False,
        )
    if plan.repo_exists and private and plan.remote_private is False:
        console.print("note: the repo exists and is public; --private does not change an existing repo")
    if not plan.repo_exists and not plan.not_compared:
        console.print(f"{'would create' if dry_run else 'create'} the repo ({'private' if private else 'public'})")
    if dry_run:
        table = Table(title=f"{len(plan.files)} files")
        for column in ("path", "rows", "size", "action"):
            table.add_column(column, overflow="fold")
        uploads = {f.path for f in plan.upload}
        upload = "upload (not compared)" if plan.not_compared else "upload"
        for f in plan.files:
            action = upload if f.path in uploads else "skip (same content on the Hub)"
            table.add_row(f.path, str(f.rows) if f.rows is not None else "-", _size(f.size), action)
        for path in plan.delete:
            table.add_row(path, "-", "-", "delete (not in this release)")
        console.print(table)
    uploaded = sum(f.size for f in plan.upload)
    console.print(
        f"{len(plan.upload)} file(s) to upload ({_size(uploaded)}), {len(plan.unchanged)} unchanged, "
        f"{len(plan.delete)} to delete, in {len(plan.commits)} commit(s)"
    )
    if not plan.commits:
        console.print("nothing to upload: every file is already on the Hub with the same content")
    for batch in plan.commits:
        deletes = f", delete {len(batch.deletes)}" if batch.deletes else ""
        console.print(f"  commit: {batch.message}: {len(batch.files)} file(s), {_size(batch.bytes)}{deletes}")
    if plan.not_compared:
        console.print(f"tag {plan.tag}: would be created on the last commit, unless the repo has it already")
    elif plan.tag_at is None:
        console.print(f"tag {plan.tag}: {'would be created' if dry_run else 'to create'} on the last commit")
    else:
        console.print(f"tag {plan.tag}: exists at {plan.tag_at[:12]}")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# --- the dataset card ---


def _licence(entry: dict) -> str:
    licence = (entry.get("catalog") or {}).get("licence") or "unknown"
    instance = (entry.get("task") or {}).get("Instance License") or []
    extra = [x for x in instance if x != licence]
    return f"{licence} (task instances: {', '.join(extra)})" if extra else licence


def _citation(entry: dict) -> str:
    return (entry.get("catalog") or {}).get("citation") or ""


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _size_category(rows: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < limit:
            return name
    for limit, name in ((10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")):
        if rows < limit:
            return name
    return "n>1T" if rows >= 10**12 else "1B<n<10B"


def card_metadata(release: Release, parquet: list[dict]) -> DatasetCardData:
    """The card's YAML header: an ``all`` default config over every file (one glob: a list of 800 paths would
    make the header unwieldy) and one config per source."""
    configs = [{"config_name": ALL_CONFIG, "default": True, "data_files": [{"split": "train", "path": ALL_FILES}]}]
    configs += [
        {"config_name": config_name(p["source"]), "data_files": [{"split": "train", "path": p["path"]}]}
        for p in parquet
    ]
    return DatasetCardData(
        pretty_name="MEDI-style instruction-embedding training data",
        language=["en"],
        license="other",
        license_name="mixed",
        task_categories=["sentence-similarity", "feature-extraction"],
        tags=["medi", "instructor", "embeddings", "text-retrieval"],
        size_categories=[_size_category(release.manifest["rows"])],
        configs=configs,
    )


def dataset_card(release: Release, parquet: list[dict], repo_id: str, tag: str) -> str:
    """README.md for the repo: YAML header, loading, sources (rows, licence, citation), build record, citation."""
    manifest = release.manifest
    sources = manifest["sources"]
    total = sum(p["rows"] for p in parquet)
    first = config_name(parquet[0]["source"]) if parquet else ALL_CONFIG
    rows = "\n".join(
        f"| `{config_name(p['source'])}` | {_cell(p['source'])} | {p['rows']} | "
        f"{_cell(_licence(sources.get(p['source'], {})))} | {_cell(_citation(sources.get(p['source'], {})))} |"
        for p in parquet
    )
    encoder = manifest.get("encoder") or {}
    config = manifest.get("config") or {}
    versions = ", ".join(f"{k} {v}" for k, v in (manifest.get("versions") or {}).items())
    shards = "\n".join(f"  - `{s['file']}`: {s['rows']} rows, sha256 `{s['sha256']}`" for s in manifest["shards"])
    citations = sorted({c for p in parquet if (c := _citation(sources.get(p["source"], {})))})
    source_citations = "\n".join(f"- {c}" for c in citations) or "- (none recorded in the catalog)"
    body = f"""
# MEDI-style instruction-embedding training data ({repo_id}, {tag})

Training data for instruction-following text embedders in the layout of MEDI, the data INSTRUCTOR was trained on
(Su et al. 2023, arXiv:2212.09741). Every row is a triple (query, positive, negative) from one source; every text
carries an instruction ("Represent the ... for ...:"). Built with medi {manifest.get("medi_version", "?")}.

{total} rows from {len(parquet)} sources.

## Loading

```python
import datasets

rows = datasets.load_dataset("{repo_id}", split="train", revision="{tag}")            # every source ("{ALL_CONFIG}")
one = datasets.load_dataset("{repo_id}", "{first}", split="train", revision="{tag}")  # one source
```

Config names are the source names with `/` written as `--`. Rows are grouped by source (task), in release order.

## Columns

| column | content |
| --- | --- |
| `query`, `pos`, `neg` | `{{instruction, text}}`: the text and the instruction to embed it with |
| `task_name`, `task_id` | the source the row comes from, and its number in this release |
| `row_id` | `<source>:<locator>`, pointing back at the source row |
| `pos_origin`, `neg_origin` | `given` by the source, `mined`, or a `fallback` negative |
| `pos_score`, `neg_score` | cosine similarity of the query to the positive and the negative (build encoder) |
| `pos_ref`, `neg_ref` | where a mined text came from |

## Sources

| config | source | rows | licence | citation |
| --- | --- | --: | --- | --- |
{rows}

## Licences

There is no single licence for this dataset: each source keeps its own terms (the table above, from the medi
catalog). Some sources are for non-commercial research only (for example MS MARCO) or fall under a site's terms of
service; Super-NI tasks carry per-instance licences. Check each source's licence before you use or redistribute it.

## How it was built

- medi {manifest.get("medi_version", "?")}, release format {manifest.get("format")}
- selection: `{manifest.get("selection")}`; seed {manifest.get("seed")}
- encoder: {encoder.get("name", "?")} (weights sha256 `{encoder.get("weights_sha256", "?")}`, max_seq_length \
{encoder.get("max_seq_length", "?")}, normalized {encoder.get("normalized", "?")})
- instructions: {config.get("instructions", "?")}; require reviewed: {config.get("require_reviewed", "?")}
- libraries: {versions}
- release shards:
{shards}

`manifest.json` in this repo is the build's full record: per source the rows read, kept and dropped (and why), the
input file's sha256 and revision, mining quality and the instructions used.

## Citation

INSTRUCTOR, whose MEDI layout this follows:

```bibtex
{INSTRUCTOR_BIBTEX}
```

The sources:

{source_citations}
"""
    return f"---\n{card_metadata(release, parquet).to_yaml()}\n---\n{body}"
