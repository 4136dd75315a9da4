"""The source catalog: one YAML file per source under ``sources/<family>/``, parsed into SourceSpec."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from medi.errors import MediError, explain_validation
from medi.yamlio import ParsedCache, load_yaml

SUPERNI = "superni"
EVAL = "eval"  # sources/eval/: evaluation sets, read only to keep their text out of releases
SUPERNI_REVISION = "e0fd31052b21acea5bd95fb00253e1ee1f5d8259"  # the commit the catalog's task files pin


PACKAGED_DATA = Path(__file__).resolve().parent / "_data"  # sources/, instructions/, ... copied in by setup.py


def project_root() -> Path:
    """The folder holding ``sources/``, ``instructions/``, ``manifests/`` and ``demo/``: $MEDI_HOME; else the working
    copy medi is imported from (a checkout, or an editable install of one); else the copy an installed wheel carries
    (``medi/_data``, read-only: see ``working_copy``)."""
    if home := os.environ.get("MEDI_HOME"):
        return Path(home)
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "sources").is_dir() and (checkout / "pyproject.toml").is_file():
        return checkout
    return PACKAGED_DATA if PACKAGED_DATA.is_dir() else Path.cwd()


def working_copy(root: Path | None = None, *, command: str) -> Path:
    """``root`` (default: ``project_root()``) when ``command`` may write into it. The data inside an installed
    package is refused: an upgrade or reinstall would silently lose the change."""
    root = root or project_root()
    if root.resolve() == PACKAGED_DATA:
        raise MediError(
            f"{command} edits the catalog or instruction files, and {root} is the read-only copy inside the "
            "installed medi package: run it in a working copy of medi (a git clone, `pip install -e .`) or set "
            "MEDI_HOME to one"
        )
    return root


GLOB_CHARS = frozenset("*?[")
ONE_FILE_ADAPTERS = frozenset({"kilt", SUPERNI})  # a task file; a KILT task joined with its knowledge source


def _one_or_several(value: object) -> object:
    """A file field's value: one file, a glob pattern (``data/train-*.parquet``) or a list of files and patterns."""
    items = value if isinstance(value, list) else [value]
    if not isinstance(value, str | list) or not all(isinstance(item, str) and item.strip() for item in items):
        raise ValueError(f"give a file, a glob pattern or a list of them, not {value!r}")
    if not items:
        raise ValueError("an empty list names no file")
    if len(set(items)) < len(items):
        raise ValueError(f"names a file twice: {sorted(i for i in set(items) if items.count(i) > 1)}")
    return value


def _one_file_or_glob(value: object) -> object:
    if isinstance(value, list):  # medi.executors sizes a local input as root / path: one string
        raise ValueError("a list of local files is not read: give one file or a glob pattern (data/train-*.jsonl)")
    return _one_or_several(value) if value is not None else None


Files = Annotated[str | list[str], BeforeValidator(_one_or_several)]


def file_patterns(value: str | list[str] | None) -> list[str]:
    """A file field's files and glob patterns, as listed."""
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def names_several(value: str | list[str] | None) -> bool:
    """Whether a file field names several files: a list, or a glob pattern (even one that matches one file: its
    row ids name the file, so a shard added later changes no other row)."""
    return isinstance(value, list) or (isinstance(value, str) and not GLOB_CHARS.isdisjoint(value))


class Upstream(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["hub", "git"]
    repo: str
    path: Files
    revision: str | None = None
    repo_type: Literal["dataset", "model", "space"] = "dataset"


class MediInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    included: bool | None = None
    cap: int | None = Field(default=None, ge=1)


class SourceSpec(BaseModel):
    """One catalog entry. ``name`` and ``file`` come from the YAML file's path, not its contents."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    file: str = ""
    adapter: str
    description: str | None = None
    upstream: Upstream | None = None
    mirror: Files | None = None  # under --data-dir: a file, a glob pattern or a list (a source of several files)
    path: Annotated[str | None, BeforeValidator(_one_file_or_glob)] = None  # a local file or glob, from the root
    licence: str = "unknown"
    citation: str | None = None
    homepage: str | None = None
    symmetric: bool = False
    medi: MediInfo = MediInfo()
    options: dict = Field(default_factory=dict)
    datasets: list[str] = Field(default_factory=list)  # upstream dataset ids, matched against evaluation sets
    filter: dict = Field(default_factory=dict)  # this source's medi.stages.filter.FilterConfig settings (length limits)

    def files_problem(self) -> str | None:
        """What is wrong with the file fields: several files (a list or a glob) where one is read, or named
        differently in ``mirror`` and ``upstream.path``; None when nothing is."""
        fields = {"path": self.path, "mirror": self.mirror, "upstream.path": self.upstream and self.upstream.path}
        several = [key for key, value in fields.items() if names_several(value)]
        if several and (self.adapter in ONE_FILE_ADAPTERS or self.family == EVAL):
            reader = "an evaluation set" if self.family == EVAL else f"adapter {self.adapter}"
            return f"{several[0]}: {reader} reads one file; a list or a glob pattern names several"
        if self.mirror and self.upstream and names_several(self.mirror) != names_several(self.upstream.path):
            return (
                "mirror and upstream.path must both name one file or both several (a list or a glob): the row ids "
                "of a source of several files name the file"
            )
        return None

    @property
    def several_files(self) -> bool:
        """Whether the source is read from several files (a list or a glob in its file fields)."""
        return any(names_several(v) for v in (self.path, self.mirror, self.upstream and self.upstream.path))

    @property
    def family(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def stem(self) -> str:
        return self.name.split("/", 1)[1]


@dataclass
class SourceSet:
    name: str
    sources: list[str]
    data_dir: Path | None = None


@dataclass
class Catalog:
    """All sources, named sets, and the Super-NI split policy."""

    root: Path
    specs: dict[str, SourceSpec]
    sets: dict[str, SourceSet] = field(default_factory=dict)
    eval_files: dict[str, SourceSpec] = field(default_factory=dict)  # sources/eval/*.yaml

    @classmethod
    def load(cls, root: Path | None = None) -> Catalog:
        root = root or project_root()
        sources_dir = root / "sources"
        if not sources_dir.is_dir():
            raise MediError(f"no source catalog at {sources_dir} (set MEDI_HOME to the medi project folder)")
        every = {spec.name: spec for spec in _read_specs(sources_dir)}
        specs = {name: spec for name, spec in every.items() if spec.family != EVAL}
        evals = {name: spec for name, spec in every.items() if spec.family == EVAL}
        return cls(root=root, specs=specs, sets=_read_sets(sources_dir / "_sets.yaml", root), eval_files=evals)

    @cached_property
    def eval_specs(self) -> dict[str, SourceSpec]:
        """Evaluation sets: every Super-NI test task (``eval/<task>``) plus the files of ``sources/eval/``."""
        specs = {f"{EVAL}/{task}": self._superni_test_spec(task) for task in sorted(self.superni_test_tasks)}
        specs.update(self.eval_files)
        return specs

    def _superni_test_spec(self, task: str) -> SourceSpec:
        return SourceSpec(
            name=f"{EVAL}/{task}",
            file="sources/superni/_splits/test_tasks.txt",
            adapter=SUPERNI,
            description=f"Super-NI test task {task}",
            upstream=Upstream(
                kind="git", repo="allenai/natural-instructions", path=f"tasks/{task}.json", revision=SUPERNI_REVISION
            ),
            mirror=f"super-ni/tasks/{task}.json",
            licence="per instance: see the task file's Instance License",
            citation="Wang et al. 2022, Super-NaturalInstructions (EMNLP)",
            datasets=list(self.superni_test_sources.get(task, [])),
        )

    @cached_property
    def source_datasets_table(self) -> dict[str, list[str]]:
        """{training source: upstream dataset ids}, from ``sources/_datasets.yaml``."""
        path = self.root / "sources" / "_datasets.yaml"
        return {k: list(v or []) for k, v in (load_yaml(path) or {}).items()} if path.exists() else {}

    def datasets_of(self, spec: SourceSpec, meta: dict | None = None) -> list[str]:
        """A source's upstream datasets: its ``datasets`` field, the shared table, and a Super-NI task's Source."""
        found = [*spec.datasets, *self.source_datasets_table.get(spec.name, [])]
        if spec.adapter == SUPERNI and meta:
            found += list(meta.get("Source") or [])
        return sorted(set(found))

    @cached_property
    def superni_train_tasks(self) -> frozenset[str]:
        return _read_lines(self.root / "sources" / SUPERNI / "_splits" / "train_tasks.txt")

    @cached_property
    def superni_test_tasks(self) -> frozenset[str]:
        return _read_lines(self.root / "sources" / SUPERNI / "_splits" / "test_tasks.txt")

    @cached_property
    def superni_test_sources(self) -> dict[str, list[str]]:
        """{test task: its Source values}, as shipped in ``sources/superni/_test_sources.yaml``."""
        path = self.root / "sources" / SUPERNI / "_test_sources.yaml"
        return dict(load_yaml(path) or {}) if path.exists() else {}

    def resolve(self, selection: str | list[str]) -> tuple[list[SourceSpec], SourceSet | None]:
        """Turn ``all``, a set name, a family name or a comma list of source names into specs.

        Test tasks are refused by name; unknown names get the closest catalog names.
        """
        names = selection.split(",") if isinstance(selection, str) else list(selection)
        names = [n.strip() for n in names if n.strip()]
        if not names:
            raise MediError("no sources selected: give --sources all, a set, a family or source names")
        chosen: dict[str, SourceSpec] = {}
        used_set = None
        for name in names:
            for spec in self._expand(name):
                chosen.setdefault(spec.name, spec)
            if name in self.sets:
                used_set = self.sets[name]
        return list(chosen.values()), used_set

    def _expand(self, name: str) -> list[SourceSpec]:
        if name == "all":
            return [s for n, s in sorted(self.specs.items())]
        if name in self.sets:
            return [self._one(n) for n in self.sets[name].sources]
        family = [s for n, s in sorted(self.specs.items()) if s.family == name]
        return family or [self._one(name)]

    def _one(self, name: str) -> SourceSpec:
        self.refuse_test_task(name)
        if name == EVAL or name.startswith(f"{EVAL}/"):
            raise MediError(f"{name}: evaluation sets (sources/{EVAL}/) never enter a release; see --eval-sets")
        if name in self.specs:
            return self.specs[name]
        from rapidfuzz import process

        choices = [*self.specs, *self.sets, *{s.family for s in self.specs.values()}, "all"]
        close = [m for m, _, _ in process.extract(name, choices, limit=3, score_cutoff=60)]
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise MediError(f"unknown source {name!r}{hint} (run `medi sources` for the catalog)")

    def refuse_test_task(self, name: str) -> None:
        task = name.split("/", 1)[-1]
        if name.startswith(f"{SUPERNI}/") and task in self.superni_test_tasks:
            raise MediError(
                f"{name} is a Super-NI test task (sources/superni/_splits/test_tasks.txt); "
                "test tasks never enter a release"
            )


def _read_specs(sources_dir: Path) -> list[SourceSpec]:
    parsed = ParsedCache(user_cache_dir() / "catalog.pkl")
    specs = []
    for path in sorted(sources_dir.glob("*/*.yaml")):
        if path.name.startswith("_") or path.parent.name.startswith("_"):
            continue
        specs.append(read_spec(path, sources_dir, parsed.load))
    parsed.save()
    return specs


def user_cache_dir() -> Path:
    """medi's cache folder: $MEDI_CACHE, else ~/.cache/medi (embeddings, stage checkpoints, the parsed catalog)."""
    return Path(os.environ.get("MEDI_CACHE", Path.home() / ".cache" / "medi"))


def read_spec(path: Path, sources_dir: Path, load=load_yaml) -> SourceSpec:
    """Parse one source file; a wrong key or value is an error naming the file and the key."""
    data = load(path)
    if not isinstance(data, dict):
        raise MediError(f"{path}: expected a mapping of source fields, got {type(data).__name__}")
    name = f"{path.parent.name}/{path.stem}"
    try:
        spec = SourceSpec(**data, name=name, file=str(path.relative_to(sources_dir.parent)))
    except ValidationError as exc:
        raise MediError(f"{path}: {explain_validation(exc)}") from exc
    if problem := spec.files_problem():
        raise MediError(f"{path}: {problem}")
    return spec


def _read_sets(path: Path, root: Path) -> dict[str, SourceSet]:
    if not path.exists():
        return {}
    sets = {}
    for name, body in (load_yaml(path) or {}).items():
        if not isinstance(body, dict) or not isinstance(body.get("sources"), list):
            raise MediError(f"{path}: set {name!r} needs a `sources:` list")
        unknown = set(body) - {"sources", "data_dir", "description"}
        if unknown:
            raise MediError(f"{path}: set {name!r} has unknown keys {sorted(unknown)}")
        data_dir = root / body["data_dir"] if body.get("data_dir") else None
        sets[name] = SourceSet(name=name, sources=list(body["sources"]), data_dir=data_dir)
    return sets


def _read_lines(path: Path) -> frozenset[str]:
    if not path.exists():
        raise MediError(f"missing split list {path}")
    return frozenset(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def spec_summary(spec: SourceSpec) -> dict:
    """The catalog fields a manifest records for a source."""
    return json.loads(spec.model_dump_json(exclude={"file"}))
