"""The ``medi`` command: a thin typer layer over the library (``medi.build`` and friends)."""

from __future__ import annotations

import inspect
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from medi.errors import MediError
from medi.options import STAGE_FLAGS, STAGE_OPTIONS, BuildOptions, with_flags
from medi.tables import TextTable, show

# Only typer, rich, pydantic (medi.options) and medi.errors load up front: each command imports what it needs
# (datasets, torch, faiss, the Hub client ...) so that `medi --help` and `medi sources` start fast
# (bench/cli_start.py).


def _reader_left() -> None:
    """The reader of stdout went away (`medi sources | head -1`): stop quietly with exit 0, as `cat` would."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the flush at exit cannot fail again
    raise SystemExit(0)


class _Console(Console):
    def on_broken_pipe(self) -> None:
        self.quiet = True
        _reader_left()


PIPED_HELP_COLUMNS = 10_000  # piped help is not wrapped: a pager or grep sees each option's line whole


class _PlainHelp:
    """click's plain help, not typer's boxed rich help, which cuts option names and defaults to fit its columns
    (`medi build --help` at 80 and even 100 columns): wrapped at spaces on a terminal, unwrapped when piped."""

    def format_help(self, ctx, formatter) -> None:
        if not sys.stdout.isatty():
            formatter.width = PIPED_HELP_COLUMNS
        return super().format_help(ctx, formatter)


def _plainer(prefix: re.Match) -> str:
    """ "Input should be greater than or equal to 1" -> "must be ..."; "Value error, 'x' is not one of" -> "'x' ..."."""
    return "must be " if prefix.group(1) == "Input should be " else ""


class _Command(_PlainHelp, typer.core.TyperCommand):
    def parse_args(self, ctx, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except typer.BadParameter as exc:  # typer's checks speak pydantic: say what the flag must be
            exc.message = re.sub(r"^(Value error, |Input should be )", _plainer, exc.message)
            raise


class _Group(_PlainHelp, typer.core.TyperGroup):
    def format_commands(self, ctx, formatter) -> None:
        """Each command's first sentence whole, wrapped (click cuts it with "..." to fit one line)."""
        commands = [(name, self.get_command(ctx, name)) for name in self.list_commands(ctx)]
        rows = [(name, cmd.get_short_help_str(PIPED_HELP_COLUMNS)) for name, cmd in commands if cmd and not cmd.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class _App(typer.Typer):
    """Plain help (_PlainHelp) and errors, help text as written (brackets such as medi[ray] kept), and a closed
    pipe that ends quietly."""

    def __init__(self, **kwargs):
        super().__init__(cls=_Group, rich_markup_mode=None, **kwargs)

    def command(self, *args, **kwargs):
        return super().command(*args, cls=kwargs.pop("cls", _Command), **kwargs)

    def __call__(self, *args, **kwargs):
        was_devnull = _stdout_is_devnull()
        try:
            return super().__call__(*args, **kwargs)
        except BrokenPipeError:
            _reader_left()
        except SystemExit as exc:
            # typer's own rich console (--help) ends a broken pipe with exit 1 after pointing stdout at /dev/null
            if exc.code == 1 and _stdout_is_devnull() and not was_devnull:
                raise SystemExit(0) from None
            raise


def _stdout_is_devnull() -> bool:
    try:
        out, null = os.fstat(sys.stdout.fileno()), os.stat(os.devnull)
    except (OSError, ValueError):  # no real stdout (CliRunner's buffer)
        return False
    return (out.st_dev, out.st_ino) == (null.st_dev, null.st_ino)


app = _App(help="Build MEDI-style instruction-embedding training data.", no_args_is_help=True)
out_console = _Console()
err_console = _Console(stderr=True)

DataDirs = Annotated[
    list[Path] | None,
    typer.Option("--data-dir", help="Local mirror folder laid out like upstream (repeatable); see sources/README.md"),
]


STRICT_EXIT = 3  # `medi build --strict`: the build finished but skipped bad rows or sources


def _fail(exc: MediError) -> None:
    err_console.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
    raise typer.Exit(1)


BUILD_PANEL = "Release options (also the options: of a --config file)"
STAGE_PANEL = "Stage options (keys of options.mining, .dedup, .decontaminate, .filter)"
INTERRUPTED = 130  # Ctrl-C: what finished is kept, the same command resumes


def _option_parameter(flag: str, annotation, default, help: str, metadata, panel: str, ge=None) -> inspect.Parameter:
    """A typer option for ``flag`` whose type, default, choices (a Literal) and range (ge/le) are the option's."""
    bounds = {"min": ge} if ge is not None else {}
    for rule in metadata:
        if getattr(rule, "ge", None) is not None:
            bounds["min"] = rule.ge
        if getattr(rule, "le", None) is not None:
            bounds["max"] = rule.le
    show_default = not (annotation is bool and default is False)  # a flag is off unless given
    option = typer.Option(help=help, rich_help_panel=panel, show_default=show_default, **bounds)
    name = flag.removeprefix("--").replace("-", "_")
    typed = Annotated[annotation, option]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=typed)


def _with_build_flags(command):
    """Give ``command`` (its ``**flags``) a flag for every BuildOptions field but the stage dicts, and STAGE_FLAGS."""
    signature = inspect.signature(command, eval_str=True)
    fixed = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    fields = [
        _option_parameter(name, field.annotation, field.default, field.description, field.metadata, BUILD_PANEL)
        for name, field in BuildOptions.model_fields.items()
        if name not in STAGE_OPTIONS
    ]
    stage = [_option_parameter(f.flag, f.annotation, f.default, f.help, [], STAGE_PANEL, f.ge) for f in STAGE_FLAGS]
    command.__signature__ = signature.replace(parameters=[*fixed, *fields, *stage])
    return command


@app.command("build")
@_with_build_flags
def build_command(
    ctx: typer.Context,
    sources: Annotated[
        str | None, typer.Option(help="all, a set (demo), a family (superni) or comma-separated names")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="New or empty folder, or an earlier release (replaced)")] = None,
    config: Annotated[
        Path | None, typer.Option(help="A release config, e.g. manifests/demo/build.yaml; flags given override it")
    ] = None,
    data_dir: DataDirs = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Embedding cache, downloads (~/.cache/medi)")] = None,
    fresh: Annotated[
        bool, typer.Option(help="Recompute every stage instead of resuming from checkpoints", show_default=False)
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            help="Exit 3 when any bad row or source was skipped (the release is still written)", show_default=False
        ),
    ] = False,
    **flags,
) -> None:
    """Build a release: `medi build --sources demo --out out/demo` or `--config manifests/demo/build.yaml`.

    With --config, the file's options are used and every flag given on the command line overrides the option it
    names (stderr lists them; the manifest records the merged options). Ctrl-C keeps every finished stage output:
    the same command again resumes.
    """
    from medi.build import ReleaseConfig

    given = {name: value for name, value in flags.items() if _given(ctx, name)}
    try:
        if config:
            path = ReleaseConfig.find(config)
            release = ReleaseConfig.load(path)
            options, changed = with_flags(release.options, given)
            changed += _replaced("--sources", sources, "sources", release.sources)
            changed += _replaced("--out", out and str(out), "out", release.out)
            changed += _replaced("--data-dir", data_dir and ",".join(map(str, data_dir)), "data_dirs",
                                 ",".join(release.data_dirs) or None)  # fmt: skip
            if changed:
                lines = "".join(f"\n  {line}" for line in changed)
                err_console.print(f"--config {path}: flags override it:{lines}", highlight=False, markup=False)
            sources, out = sources or release.sources, out or (Path(release.out) if release.out else None)
            data_dir = data_dir or release.data_dir_paths()
        else:
            options, _ = with_flags(BuildOptions(), given)
        if not sources or not out:
            raise MediError("give --sources and --out, or a --config that names them")
    except MediError as exc:
        _fail(exc)
    _run_build(sources, out, data_dir, options, cache_dir=cache_dir, resume=not fresh, strict=strict)


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the flag of parameter ``name`` was given (not its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _replaced(flag: str, value, key: str, configured) -> list[str]:
    if value is None or configured is None or value == configured:
        return []
    return [f"{flag} {value} overrides {key}: {configured}"]


def _run_build(sources, out: Path, data_dir, options, *, cache_dir, resume: bool, strict: bool) -> None:
    from medi.build import build
    from medi.encode import default_cache_dir
    from medi.stages.checkpoint import STAGES_DIR

    stages = (cache_dir or default_cache_dir()) / STAGES_DIR
    before = _finished_stage_outputs(stages)
    try:
        manifest = build(sources, out, data_dir, options, cache_dir=cache_dir, console=err_console, resume=resume)
    except MediError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        _say_interrupted(out, stages, before, resume)
        raise typer.Exit(INTERRUPTED) from None
    show(out_console, summary_table(manifest))
    if contamination := manifest.get("contamination"):
        totals = ", ".join(f"{layer} {n}" for layer, n in contamination["totals"].items())
        err_console.print(
            f"decontaminated against {len(contamination['eval_sets'])} evaluation sets ({totals}); "
            f"details in {out / contamination['file']}",
            highlight=False,
        )
    if manifest["absent_sources"]["count"]:
        err_console.print(
            f"{manifest['absent_sources']['count']} catalog sources are not in the data dirs "
            f"(listed in {out / 'manifest.json'} under absent_sources)"
        )
    lost = sum(source.get("problem_count", 0) for source in manifest["sources"].values())
    if strict and (lost or manifest["skipped_sources"]):
        err_console.print(
            f"[red]--strict:[/] {lost} problem(s) in the rows read, {len(manifest['skipped_sources'])} source(s) "
            f"skipped (the release at {out} is written; see its manifest)",
            highlight=False,
        )
        raise typer.Exit(STRICT_EXIT)


def _finished_stage_outputs(stages: Path) -> set[Path]:
    """The stage outputs stored under ``stages``: a report file is written last, when its output is complete."""
    return set(stages.glob("*/*.json")) if stages.is_dir() else set()


def _say_interrupted(out: Path, stages: Path, before: set[Path], resume: bool) -> None:
    """What an interrupted build kept, and how to go on."""
    kept = Counter(path.parent.name for path in _finished_stage_outputs(stages) - before)
    if kept:
        order = ["sample", "clean", "select", "mine"]
        in_order = sorted(kept, key=lambda stage: order.index(stage) if stage in order else len(order))
        counts = ", ".join(f"{stage} {kept[stage]}" for stage in in_order)
        what = f"the {sum(kept.values())} stage outputs this run finished ({counts}; {kept['mine']} source(s) mined)"
    else:
        what = "no stage output finished by this run"
    release = f"the release at {out} is unchanged" if out.exists() else f"no release was written to {out}"
    again = "the same command again" if resume else "the same command without --fresh"
    err_console.print(
        f"[yellow]interrupted:[/] kept {what} in {stages}, and the embeddings encoded so far; {release}. "
        f"Run {again} to resume from them (--fresh recomputes everything).",
        highlight=False,
        soft_wrap=True,
    )


def summary_table(manifest: dict) -> TextTable:
    columns = ["source", "read", "kept", "dropped (why)", "negatives", "pos / neg score"]
    title = f"release: {manifest['rows']} rows, {len(manifest['shards'])} shard(s)"
    table = TextTable(title, columns, right=frozenset({1, 2}))
    for name, s in manifest["sources"].items():
        dropped = ", ".join(f"{k} {v}" for k, v in s["dropped"].items()) or "-"
        mining = s["mining"]
        negatives = ", ".join(f"{k} {v}" for k, v in mining["neg_origin"].items()) or "-"
        scores = f"{mining['mean_pos_score']} / {mining['mean_neg_score']}" if mining["rows_scored"] else "-"
        table.add_row(name, str(s["rows_read"]), str(s["rows_kept"]), dropped, negatives, scores)
    for name, why in manifest["skipped_sources"].items():
        table.add_row(name, "-", "0", f"skipped: {why['reason']}", "-", "-")
    return table


@app.command("sources")
def sources_command(
    data_dir: DataDirs = None,
    family: Annotated[str | None, typer.Option(help="Only this family (superni, st, ...)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """List the catalog: every source, its adapter, licence and whether a local copy is there."""
    from medi.catalog import Catalog
    from medi.fetch import find_in_mirrors

    try:
        catalog = Catalog.load()
    except MediError as exc:
        _fail(exc)
    dirs = list(data_dir or [])
    rows = []
    for name, spec in sorted(catalog.specs.items()):
        if family and spec.family != family:
            continue
        local = "local" if spec.path or find_in_mirrors(spec, dirs) else "remote"
        pinned = spec.upstream.revision[:10] if spec.upstream and spec.upstream.revision else "unpinned"
        rows.append({"name": name, "adapter": spec.adapter, "licence": spec.licence, "status": local, "rev": pinned})
    if as_json:
        out_console.out(json.dumps(rows, indent=2), highlight=False)
        return
    # plain aligned columns, licence last: rich's Table needs ~0.5 s for the 800 catalog rows (bench/cli_start.py)
    columns = ("name", "adapter", "status", "rev", "licence")
    table = columns_text([columns, *([r[c] for c in columns] for r in rows)])
    out_console.print(table, highlight=False, markup=False, soft_wrap=True)
    where = f" ({', '.join(map(str, dirs))})" if dirs else ""
    out_console.print(f"{len(rows)} sources{where}", highlight=False, markup=False)
    for set_name, source_set in catalog.sets.items():
        line = f"set [bold]{set_name}[/]: {len(source_set.sources)} sources, data dir {source_set.data_dir}"
        out_console.print(line, highlight=False, soft_wrap=True)  # a path to copy, never broken


def columns_text(lines: list[list[str]], widest: int = 64) -> str:
    """Rows as left-aligned columns (each at most ``widest`` wide; a longer cell pushes its line); last one free."""
    widths = [min(widest, max(map(len, column))) for column in zip(*(line[:-1] for line in lines), strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)) + "  " + line[-1]
        for line in lines
    )


cache_app = _App(
    help="The embedding and teacher-score cache (~/.cache/medi/embeddings, teacher-scores; or --cache-dir).",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")
CacheDir = Annotated[Path | None, typer.Option(help="Cache folder (default ~/.cache/medi or $MEDI_CACHE)")]


@cache_app.command("info")
def cache_info_command(cache_dir: CacheDir = None) -> None:
    """Show each encoder's cached embeddings: `medi cache info`."""
    from medi.encode import cache_info, default_cache_dir
    from medi.stages.checkpoint import stages_info

    columns = ["key", "kind", "chunks", "vectors / scores", "distinct", "MiB"]
    table = TextTable(f"cache {cache_dir or default_cache_dir()}", columns, right=frozenset({2, 3, 4, 5}))
    for info in cache_info(cache_dir):
        mib = f"{info['bytes'] / 2**20:.1f}"
        counts = (str(info["chunks"]), str(info["vectors"]), str(info["distinct_texts"]))
        table.add_row(info["encoder_key"], info["kind"], *counts, mib)
    show(out_console, table)
    for stage, info in stages_info(cache_dir or default_cache_dir()).items():
        out_console.print(f"stage checkpoints {stage}: {info['checkpoints']} ({info['bytes'] / 2**20:.1f} MiB)")


@cache_app.command("prune")
def cache_prune_command(
    cache_dir: CacheDir = None,
    keep: Annotated[list[str] | None, typer.Option(help="Encoder / teacher keys to keep; others are deleted")] = None,
    stages: Annotated[bool, typer.Option(help="Also delete every stage checkpoint (all recomputable)")] = False,
) -> None:
    """Merge chunks and drop duplicates (and other encoders' folders with --keep): `medi cache prune`."""
    from medi.encode import default_cache_dir, prune_cache
    from medi.stages.checkpoint import clear_stages

    report = prune_cache(cache_dir, keep)
    if stages:
        report["stage_checkpoints_removed"] = clear_stages(cache_dir or default_cache_dir())
    out_console.print_json(json.dumps(report))


@app.command("publish")
def publish_command(
    release: Annotated[Path, typer.Argument(help="Release folder written by medi build")],
    repo: Annotated[str, typer.Option(help="Dataset repo on the Hub, ORG/NAME")],
    tag: Annotated[str, typer.Option(help="Tag for the published commit, e.g. v1")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; write nothing to the Hub")] = False,
    private: Annotated[bool, typer.Option("--private", help="Create the repo private (if it does not exist)")] = False,
    files_per_commit: Annotated[int, typer.Option(help="Most files in one commit")] = 50,
) -> None:
    """Upload a release to the Hub: `medi publish out/v1 --repo ORG/medi --tag v1 [--dry-run]`.

    The token comes from HF_TOKEN or `hf auth login`; HF_ENDPOINT picks another Hub.
    """
    from medi.release.publish import publish  # the Hub client is only needed here

    try:
        publish(
            release, repo, tag, dry_run=dry_run, private=private, files_per_commit=files_per_commit, console=out_console
        )
    except MediError as exc:
        _fail(exc)


# ---- instructions, review, add-source (medi/authoring/: lint.py, review.py, scaffold.py) ----

instructions_app = _App(help="The instruction templates in instructions/*.yaml.", no_args_is_help=True)
app.add_typer(instructions_app, name="instructions")


@instructions_app.command("lint")
def instructions_lint_command(
    output: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Check every catalog source's instructions: `medi instructions lint` (exit 1 on errors)."""
    from medi.authoring.lint import lint

    if output not in ("table", "json"):
        _fail(MediError(f"--format must be table or json, not {output!r}"))
    try:
        report = lint()
    except MediError as exc:
        _fail(exc)
    if output == "json":
        out_console.print_json(json.dumps(report.as_dict()))
    else:
        title = f"{len(report.errors)} errors, {len(report.findings) - len(report.errors)} warnings"
        table = TextTable(title, ["source", "level", "where", "check", "finding"])
        for f in report.findings:
            table.add_row(f.source or "-", f.level, f.where(), f.code, f.message)
        if report.findings:
            show(out_console, table)
        out_console.print(
            f"{report.sources} catalog sources, {report.entries} instruction entries, {report.drafted} Super-NI "
            f"tasks drafted from their task file at build time: {len(report.errors)} errors, "
            f"{len(report.findings) - len(report.errors)} warnings"
        )
    if report.errors:
        raise typer.Exit(1)


@instructions_app.command("draft")
def instructions_draft_command(
    data_dir: Annotated[Path, typer.Option(help="A mirror with super-ni/tasks/<task>.json")],
    tasks: Annotated[str | None, typer.Option(help="Comma-separated task names (default: every catalog task)")] = None,
) -> None:
    """Write draft entries to instructions/superni.yaml from the task files a mirror holds, for review."""
    from medi.catalog import project_root
    from medi.stages.instruct import write_superni_drafts

    names = [t.strip().removeprefix("superni/") for t in tasks.split(",")] if tasks else None
    try:
        written = write_superni_drafts(project_root(), data_dir / "super-ni" / "tasks", names)
    except MediError as exc:
        _fail(exc)
    out_console.print(f"{len(written)} draft entries written to instructions/superni.yaml (review: medi review)")


review_app = _App(
    help="Review instructions and mined negatives in a browser page and import the decisions.", no_args_is_help=True
)
app.add_typer(review_app, name="review")


@review_app.command("export")
def review_export_command(
    release: Annotated[Path, typer.Option(help="A release folder (medi build --out)")],
    out: Annotated[Path, typer.Option(help="Folder for index.html: new, empty or an earlier review page (replaced)")],
    rows: Annotated[int, typer.Option(help="Rows shown per source")] = 3,
    negative_rows: Annotated[
        int, typer.Option(min=0, help="Rows per source in the negatives view (rows with suspects first)")
    ] = 5,
    pick: Annotated[str, typer.Option(help="vote-k (diverse rows, by query embeddings) or random")] = "vote-k",
    seed: int = 0,
    cache_dir: Annotated[Path | None, typer.Option(help="Embedding cache (~/.cache/medi)")] = None,
) -> None:
    """Write a self-contained review page (instructions and negatives views):
    `medi review export --release out/demo --out review/`."""
    from medi.authoring.review import export_review

    try:
        page = export_review(
            release,
            out,
            rows_per_source=rows,
            negative_rows=negative_rows,
            seed=seed,
            pick=pick,
            cache_dir=cache_dir,
        )
    except MediError as exc:
        _fail(exc)
    out_console.print(f"wrote {page} — open it in a browser (file://{page.resolve()}), then `medi review import`")


@review_app.command("serve")
def review_serve_command(
    folder: Annotated[Path, typer.Argument(help="A folder written by medi review export")],
    port: int = 8765,
) -> None:
    """Serve an exported review page on localhost: `medi review serve review/`."""
    from medi.authoring.review import serve_review

    try:
        server = serve_review(folder, port)
    except MediError as exc:
        _fail(exc)
    out_console.print(f"serving {folder} at http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@review_app.command("import")
def review_import_command(
    decisions: Annotated[Path, typer.Argument(help="decisions.json downloaded from the review page")],
    reviewer: Annotated[str | None, typer.Option(help="Reviewer name, if the page did not record one")] = None,
) -> None:
    """Apply review decisions to instructions/*.yaml and judgements/*.yaml:
    `medi review import review/decisions.json`."""
    from medi.authoring.review import import_decisions

    try:
        result = import_decisions(decisions, reviewer=reviewer)
    except MediError as exc:
        _fail(exc)
    for file, names in result.files.items():
        out_console.print(f"[bold]{file}[/]")
        for name in names:
            out_console.print(f"  {name}: {result.changes[name]}", highlight=False)
    for name, stored in result.judgements.items():
        out_console.print(f"[bold]{stored.file}[/]")
        counts = f"{stored.added} added, {stored.changed} changed, {stored.unchanged} already there"
        verdicts = f"{stored.positives} positive, {stored.negatives} negative"
        out_console.print(f"  {name}: {counts} ({verdicts})", highlight=False, soft_wrap=True)
    for note in result.notes:
        out_console.print(f"note: {note}", highlight=False, soft_wrap=True)
    if result.files:
        out_console.print("review the change with `git diff instructions/`, then `medi instructions lint`")
    if result.judgements:
        out_console.print("the next `medi build` of these sources applies them (see `git diff judgements/`)")


@app.command("add-source")
def add_source_command(
    name: Annotated[str, typer.Argument(help="<family>/<name>, e.g. st/my_pairs")],
    adapter: Annotated[str, typer.Option(help="st_jsonl, table or superni")],
    hub_repo: Annotated[str | None, typer.Option(help="Hugging Face dataset repo ORG/NAME")] = None,
    file: Annotated[str | None, typer.Option(help="File inside the hub repo")] = None,
    revision: Annotated[str | None, typer.Option(help="Full commit sha of the hub repo (never guessed)")] = None,
    path: Annotated[Path | None, typer.Option(help="A local file instead of a hub file")] = None,
    symmetric: Annotated[bool, typer.Option(help="Query and positive are the same kind of text")] = False,
    description: str | None = None,
    licence: str | None = None,
    citation: str | None = None,
    homepage: str | None = None,
    columns: Annotated[str | None, typer.Option(help="table adapter: query=COL,pos=COL[,neg=COL]")] = None,
    table_format: Annotated[str | None, typer.Option("--format", help="table adapter: jsonl or parquet")] = None,
    data_dir: DataDirs = None,
    cap: Annotated[
        int | None, typer.Option(min=1, help="Keep at most N rows of the source in a build (written as medi.cap)")
    ] = None,
    rows: Annotated[int, typer.Option(help="First rows to load and print")] = 5,
    remote: Annotated[bool, typer.Option(help="Download the hub file when no data dir has it")] = True,
) -> None:
    """Scaffold sources/<family>/<name>.yaml and a draft instruction entry, after loading its first rows."""
    from medi.authoring.scaffold import SourceRequest, add_source

    try:
        mapping = dict(part.split("=", 1) for part in columns.split(",")) if columns else {}
    except ValueError:
        _fail(MediError(f"--columns {columns!r}: use query=COL,pos=COL[,neg=COL]"))
    request = SourceRequest(
        name=name, adapter=adapter, hub_repo=hub_repo, file=file, revision=revision,
        path=str(path) if path else None, symmetric=symmetric, description=description, licence=licence,
        citation=citation, homepage=homepage, columns=mapping, table_format=table_format, cap=cap,
    )  # fmt: skip
    try:
        done = add_source(request, data_dirs=list(data_dir or []), remote=remote, rows=rows)
    except MediError as exc:
        _fail(exc)
    table = Table(title=f"first {len(done.preview)} rows of {name} through the {adapter} adapter")
    for column in ("row", "query", "positive", "negative"):
        table.add_column(column, overflow="fold", max_width=60)
    for record in done.preview:
        short = [t if len(t or "") <= 200 else t[:200] + " …" for t in (record.query, record.pos, record.neg)]
        table.add_row(record.row_id.split(":", 1)[-1], *(t or "-" for t in short))
    out_console.print(table)
    for problem in done.problems:
        err_console.print(f"[yellow]problem[/] {problem}", highlight=False)
    for note in done.notes:
        err_console.print(f"[yellow]note[/] {note}", highlight=False)
    out_console.print(f"wrote {done.source_file} and a draft entry in {done.instruction_file}")
    out_console.print(f"next: edit the draft wordings, `medi instructions lint`, `medi build --sources {name} ...`")


# export, verify, stats: reading a release ---------------------------------------------------------------------


@app.command("export")
def export_command(
    release: Annotated[Path, typer.Argument(help="Release folder (from medi build)")],
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="instructor | medi2 | st-triplets | parquet | flagembedding | st-ntuple | tevatron | beir",
        ),
    ],
    out: Annotated[Path, typer.Option(help="File (instructor) or folder (the others) to write")],
    batch_size: Annotated[
        int | None, typer.Option(help="instructor: make every task a multiple of this (the trainer's batch size)")
    ] = None,
    batch_policy: Annotated[str, typer.Option(help="trim: leave out each task's last rows; pad: repeat rows")] = "trim",
    seed: Annotated[int, typer.Option(help="Seed for the rows --batch-policy pad repeats")] = 0,
    st_instructions: Annotated[
        str,
        typer.Option(help="st-triplets, st-ntuple: prefix (instruction + text) or prompts (bare texts + prompts file)"),
    ] = "prefix",
    negatives: Annotated[
        int | None,
        typer.Option(help="medi2, flagembedding, st-ntuple, tevatron, beir: negatives per row (default: all it has)"),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier medi export of this format")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Write a release for a trainer: `medi export out/v1 --format instructor --batch-size 32 --out medi-data.json`.

    The release's shards are checked against the manifest's sha256 first.
    """
    from medi.release import open_release
    from medi.release.export import export

    try:
        report = export(
            open_release(release, verify_checksums=True), format, out, batch_size=batch_size,
            batch_policy=batch_policy, seed=seed, st_instructions=st_instructions, negatives=negatives,
            overwrite=overwrite,
        )  # fmt: skip
    except MediError as exc:
        _fail(exc)
    _warn_left_out(report)
    for note in report["notes"]:
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    if as_json:
        out_console.print_json(json.dumps(report))
        return
    changed = [t for t in report["tasks"] if t["dropped"] or t["added"]]
    if changed:
        columns = ["task", "rows", "written", "dropped", "added (repeats)", "repeats in one batch"]
        title = f"--batch-size {batch_size} --batch-policy {batch_policy}: tasks changed"
        if batch_size is None:  # st-ntuple: rows holding fewer negatives than the split's columns
            title = f"{format}: tasks changed"
        table = TextTable(title, columns, right=frozenset(range(1, len(columns))))
        for t in changed:
            table.add_row(t["task_name"], str(t["rows"]), str(t["written"]), str(t["dropped"]), str(t["added"]),
                          str(t["in_batch_repeats"]))  # fmt: skip
        show(out_console, table)
    out_console.print(
        f"wrote {report['rows']} rows of {report['tasks_written']} tasks as {format} to {out} "
        f"({report['dropped']} rows dropped, {report['added']} added)"
    )


def _warn_left_out(report: dict) -> None:
    """Tasks the batch size trimmed away whole: a warning on stderr naming them, and the two ways to keep them."""
    by_name = {t["task_name"]: t for t in report["tasks"]}
    if not (left := [by_name[name] for name in report["tasks_left_out"]]):
        return
    names = ", ".join(f"{escape(t['task_name'])} ({t['rows']} rows)" for t in left)
    err_console.print(
        f"[yellow]warning:[/] {len(left)} of {len(report['tasks'])} tasks are smaller than --batch-size "
        f"{report['batch_size']} and were left out whole ({sum(t['rows'] for t in left)} rows): {names}. "
        f"Keep them with --batch-policy pad (repeats rows within each task) or --batch-size "
        f"{min(t['rows'] for t in left)} or smaller.",
        highlight=False,
    )


@app.command("verify")
def verify_command(
    release: Annotated[Path, typer.Argument(help="Release folder (from medi build)")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON")] = False,
) -> None:
    """Check a release against its manifest (sha256, sizes, row counts, task index): `medi verify out/v1`.

    Exits 0 when everything matches, 1 after naming every file or count that differs.
    """
    from medi.release.verify import verify_release

    verdict = verify_release(release)
    if as_json:
        out_console.print_json(json.dumps(verdict.as_dict()))
    elif verdict.ok:
        out_console.print(f"ok: {release}: {verdict.files} files, {verdict.rows} rows, {verdict.tasks} tasks verified")
    else:
        for problem in verdict.problems:
            err_console.print(f"[red]differs:[/] {problem}", highlight=False)
        err_console.print(f"{release}: {len(verdict.problems)} problem(s)")
    if not verdict.ok:
        raise typer.Exit(1)


@app.command("stats")
def stats_command(
    release: Annotated[Path, typer.Argument(help="Release folder (from medi build)")],
    plots: Annotated[Path | None, typer.Option(help="Folder to write PNG plots into")] = None,
    format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Rows, text lengths, instructions and mining scores per source: `medi stats out/v1 --plots out/v1-plots/`."""
    from medi.release import open_release
    from medi.release.stats import release_stats, stats_table, write_plots

    if format not in ("table", "json"):
        _fail(MediError(f"--format {format!r}: use table or json"))
    try:
        opened = open_release(release, verify_checksums=True)  # a damaged offset must not reach the readers
        stats = release_stats(opened)
        written = write_plots(opened, stats, plots) if plots else []
    except MediError as exc:
        _fail(exc)
    if format == "json":
        out_console.print_json(json.dumps({**stats, "plots": [str(p) for p in written]}))
        return
    show(out_console, stats_table(stats))
    for path in written:
        out_console.print(f"plot: {path}")


def _with_probe_options(command):
    """``command(**given)`` with the RELEASE arguments and a flag for every other ProbeOptions field."""
    from medi.probe import ProbeOptions

    parameters = []
    for (name, field), flag in zip(ProbeOptions.model_fields.items(), ProbeOptions.flags().values(), strict=True):
        if flag == "argument":
            argument = typer.Argument(help=field.description, show_default=False, metavar="RELEASE...")
            parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                                annotation=Annotated[field.annotation, argument]))  # fmt: skip
            continue
        many = field.default_factory is not None  # a repeatable flag: typer's default is None
        default = inspect.Parameter.empty if field.is_required() else None if many else field.default
        annotation = field.annotation | None if many else field.annotation
        parameters.append(_option_parameter(flag, annotation, default, field.description, field.metadata, "Probe"))
    command.__signature__ = inspect.Signature(parameters)
    return command


@app.command("probe")
@_with_probe_options
def probe_command(**given) -> None:
    """What a release teaches: fine-tune a fresh copy of a model on each release for a fixed budget, evaluate before
    and after: `medi probe out/demo --eval bench/evalsets/stsbenchmark --eval bench/evalsets/scifact`.

    Prints a Markdown table (stdout), writes OUT/probe.json and OUT/probe.png; progress goes to stderr.
    """
    from pydantic import ValidationError

    from medi.probe import ProbeOptions, ablation_table, markdown_table, probe, published_lines

    flags = ProbeOptions.flags()
    field_of = {flag.removeprefix("--").replace("-", "_"): name for name, flag in flags.items()}  # --eval: evals
    try:
        options = ProbeOptions(**{field_of.get(k, k): value for k, value in given.items() if value is not None})
    except ValidationError as exc:
        for error in exc.errors():
            where = flags[error["loc"][0]].replace("argument", "RELEASE")
            err_console.print(f"error: {where}: {error['msg']}", markup=False, highlight=False)
        raise typer.Exit(2) from exc
    try:
        report = probe(options, console=err_console)
    except MediError as exc:
        _fail(exc)
    for block in (markdown_table(report), "\n".join(published_lines(report)), ablation_table(report)):
        if block:
            out_console.print(block + "\n", markup=False, highlight=False, soft_wrap=True)


if __name__ == "__main__":
    app()
