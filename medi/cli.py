"""The ``medi`` command: a thin typer layer over the library (``medi.build`` and friends)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from medi.errors import MediError

# Only typer, rich and medi.errors load up front: each command imports what it needs (datasets, torch, faiss, the
# Hub client ...) so that `medi --help` and `medi sources` start fast (bench/cli_start.py).


def _reader_left() -> None:
    """The reader of stdout went away (`medi sources | head -1`): stop quietly with exit 0, as `cat` would."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the flush at exit cannot fail again
    raise SystemExit(0)


class _Console(Console):
    def on_broken_pipe(self) -> None:
        self.quiet = True
        _reader_left()


class _App(typer.Typer):
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


@app.command("build")
def build_command(
    sources: Annotated[
        str | None, typer.Option(help="all, a set (demo), a family (superni) or comma-separated names")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="New or empty folder, or an earlier release (replaced)")] = None,
    config: Annotated[Path | None, typer.Option(help="A release config, e.g. manifests/demo/build.yaml")] = None,
    data_dir: DataDirs = None,
    seed: int = 0,
    shard_rows: Annotated[int, typer.Option(help="Rows per Arrow shard")] = 100_000,
    on_error: Annotated[str, typer.Option(help="skip: report and skip bad rows/sources; fail: stop")] = "skip",
    instructions: Annotated[str, typer.Option(help="primary, or paraphrase (one wording per row)")] = "primary",
    require_reviewed: Annotated[bool, typer.Option(help="Refuse sources whose instructions are drafts")] = False,
    remote: Annotated[bool, typer.Option(help="Download named sources the data dirs lack")] = True,
    encoder: Annotated[
        str, typer.Option(help="sentence-transformers model name or folder")
    ] = "bundled:all-MiniLM-L6-v2",
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda")] = "auto",
    batch_size: int = 64,
    precision: Annotated[
        str,
        typer.Option(
            help="fp32, or int8 (CPU; ~1.5x faster encoding but, with MiniLM, only 70% of 10-NN kept and 28% of "
            "negatives above their positive under fp32: measure with bench/mine_vs_st.py --int8 first)"
        ),
    ] = "fp32",
    max_chars: Annotated[int, typer.Option(help="Texts longer than this are cut")] = 8000,
    cache_dir: Annotated[Path | None, typer.Option(help="Embedding cache, downloads (~/.cache/medi)")] = None,
    fresh: Annotated[bool, typer.Option(help="Recompute every stage instead of resuming from checkpoints")] = False,
    workers: Annotated[int, typer.Option(help="Sources built in parallel, one per process (same release bytes)")] = 1,
    strict: Annotated[
        bool, typer.Option(help="Exit 3 when any bad row or source was skipped (the release is still written)")
    ] = False,
    max_per_source: Annotated[
        int | None, typer.Option(help="Keep at most N rows per source (replaces the catalog's MEDI caps)")
    ] = None,
    select: Annotated[str, typer.Option(help="Rows over a cap: random, or diverse (fast vote-k)")] = "random",
    diverse_share: Annotated[float, typer.Option(help="With --select diverse: share by vote-k, rest random")] = 1.0,
    eval_sets: Annotated[
        str, typer.Option(help="Decontaminate against: mirror (eval sets in the data dirs), all, none, or eval/ names")
    ] = "mirror",
    eval_shared: Annotated[
        str, typer.Option(help="A source sharing an eval set's upstream dataset: mark (report) or refuse")
    ] = "mark",
    across_sources: Annotated[str, typer.Option(help="Pairs seen in an earlier source: report or remove")] = "report",
    token_budget: Annotated[int, typer.Option(help="Tokens per side incl. the instruction (0: no count)")] = 512,
    score_rows: Annotated[
        int,
        typer.Option(min=0, help="Given negatives, nothing to mine: embed a seeded sample of N rows for the scores"),
    ] = 0,
    tokenizer: Annotated[
        str, typer.Option(help="Token counter: bundled (all-MiniLM-L6-v2) or a tokenizer folder/tokenizer.json")
    ] = "bundled",
    engine: Annotated[
        str | None, typer.Option(help="local (default), or ray: sources run on a Ray cluster (pip install 'medi[ray]')")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="With --engine ray: the cluster host:port (default: a local `ray start`, or new)")
    ] = None,
) -> None:
    """Build a release: e.g. `medi build --sources demo --out out/demo` or `--config manifests/demo/build.yaml`.

    With --config, the file's options are used and command-line build options are ignored (but --engine and
    --ray-address, which choose where the build runs, not what it makes).
    """
    from medi.build import BuildOptions, ReleaseConfig, build

    where = {key: value for key, value in (("engine", engine), ("ray_address", ray_address)) if value is not None}
    try:
        options = BuildOptions(
            seed=seed,
            shard_rows=shard_rows,
            on_error=on_error,
            instructions=instructions,
            require_reviewed=require_reviewed,
            remote=remote,
            encoder=encoder,
            device=device,
            batch_size=batch_size,
            precision=precision,
            max_chars=max_chars,
            max_per_source=max_per_source,
            select=select,
            diverse_share=diverse_share,
            eval_sets=eval_sets,
            decontaminate={"registry": eval_shared} if eval_shared != "mark" else {},
            dedup={"across_sources": across_sources} if across_sources != "report" else {},
            filter={"token_budget": token_budget or None, "tokenizer": tokenizer},
            mining={"score_rows": score_rows} if score_rows else {},
            workers=workers,
            **where,
        )
    except ValueError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    try:
        if config:
            release = ReleaseConfig.load(ReleaseConfig.find(config))
            sources, options = sources or release.sources, release.options
            out = out or (Path(release.out) if release.out else None)
            data_dir = data_dir or release.data_dir_paths()
            options = options.model_copy(update=where)  # validated above
        if not sources or not out:
            raise MediError("give --sources and --out, or a --config that names them")
        manifest = build(sources, out, data_dir, options, cache_dir=cache_dir, console=err_console, resume=not fresh)
    except MediError as exc:
        _fail(exc)
    out_console.print(summary_table(manifest))
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


def summary_table(manifest: dict) -> Table:
    table = Table(title=f"release: {manifest['rows']} rows, {len(manifest['shards'])} shard(s)")
    for column in ("source", "read", "kept", "dropped (why)", "negatives", "pos / neg score"):
        table.add_column(column, overflow="fold")
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


cache_app = typer.Typer(help="The embedding cache (~/.cache/medi/embeddings, or --cache-dir).", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
CacheDir = Annotated[Path | None, typer.Option(help="Cache folder (default ~/.cache/medi or $MEDI_CACHE)")]


@cache_app.command("info")
def cache_info_command(cache_dir: CacheDir = None) -> None:
    """Show each encoder's cached embeddings: `medi cache info`."""
    from medi.checkpoint import stages_info
    from medi.encode import cache_info, default_cache_dir

    table = Table(title=f"embedding cache {cache_dir or default_cache_dir()}")
    for column in ("encoder key", "chunks", "vectors", "distinct texts", "MiB"):
        table.add_column(column)
    for info in cache_info(cache_dir):
        mib = f"{info['bytes'] / 2**20:.1f}"
        table.add_row(info["encoder_key"], str(info["chunks"]), str(info["vectors"]), str(info["distinct_texts"]), mib)
    out_console.print(table)
    for stage, info in stages_info(cache_dir or default_cache_dir()).items():
        out_console.print(f"stage checkpoints {stage}: {info['checkpoints']} ({info['bytes'] / 2**20:.1f} MiB)")


@cache_app.command("prune")
def cache_prune_command(
    cache_dir: CacheDir = None,
    keep: Annotated[list[str] | None, typer.Option(help="Encoder keys to keep; others are deleted")] = None,
    stages: Annotated[bool, typer.Option(help="Also delete every stage checkpoint (all recomputable)")] = False,
) -> None:
    """Merge chunks and drop duplicates (and other encoders' folders with --keep): `medi cache prune`."""
    from medi.checkpoint import clear_stages
    from medi.encode import default_cache_dir, prune_cache

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
    from medi.publish import publish  # the Hub client is only needed here

    try:
        publish(
            release, repo, tag, dry_run=dry_run, private=private, files_per_commit=files_per_commit, console=out_console
        )
    except MediError as exc:
        _fail(exc)


# ---- instructions, review, add-source (medi/lint.py, medi/review.py, medi/scaffold.py) ----

instructions_app = typer.Typer(help="The instruction templates in instructions/*.yaml.", no_args_is_help=True)
app.add_typer(instructions_app, name="instructions")


@instructions_app.command("lint")
def instructions_lint_command(
    output: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Check every catalog source's instructions: `medi instructions lint` (exit 1 on errors)."""
    from medi.lint import lint

    if output not in ("table", "json"):
        _fail(MediError(f"--format must be table or json, not {output!r}"))
    try:
        report = lint()
    except MediError as exc:
        _fail(exc)
    if output == "json":
        out_console.print_json(json.dumps(report.as_dict()))
    else:
        table = Table(title=f"{len(report.errors)} errors, {len(report.findings) - len(report.errors)} warnings")
        for column in ("level", "where", "source", "check", "finding"):
            table.add_column(column, overflow="fold")
        for f in report.findings:
            level = "[red]error[/]" if f.level == "error" else "[yellow]warning[/]"
            table.add_row(level, f.where(), f.source, f.code, f.message)
        if report.findings:
            out_console.print(table)
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
    from medi.instruct import write_superni_drafts

    names = [t.strip().removeprefix("superni/") for t in tasks.split(",")] if tasks else None
    try:
        written = write_superni_drafts(project_root(), data_dir / "super-ni" / "tasks", names)
    except MediError as exc:
        _fail(exc)
    out_console.print(f"{len(written)} draft entries written to instructions/superni.yaml (review: medi review)")


review_app = typer.Typer(help="Review instructions in a browser page and import the decisions.", no_args_is_help=True)
app.add_typer(review_app, name="review")


@review_app.command("export")
def review_export_command(
    release: Annotated[Path, typer.Option(help="A release folder (medi build --out)")],
    out: Annotated[Path, typer.Option(help="Folder for index.html: new, empty or an earlier review page (replaced)")],
    rows: Annotated[int, typer.Option(help="Rows shown per source")] = 3,
    pick: Annotated[str, typer.Option(help="vote-k (diverse rows, by query embeddings) or random")] = "vote-k",
    seed: int = 0,
    cache_dir: Annotated[Path | None, typer.Option(help="Embedding cache (~/.cache/medi)")] = None,
) -> None:
    """Write a self-contained review page: `medi review export --release out/demo --out review/`."""
    from medi.review import export_review

    try:
        page = export_review(release, out, rows_per_source=rows, seed=seed, pick=pick, cache_dir=cache_dir)
    except MediError as exc:
        _fail(exc)
    out_console.print(f"wrote {page} — open it in a browser (file://{page.resolve()}), then `medi review import`")


@review_app.command("serve")
def review_serve_command(
    folder: Annotated[Path, typer.Argument(help="A folder written by medi review export")],
    port: int = 8765,
) -> None:
    """Serve an exported review page on localhost: `medi review serve review/`."""
    from medi.review import serve_review

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
    """Apply review decisions to instructions/*.yaml: `medi review import review/decisions.json`."""
    from medi.review import import_decisions

    try:
        result = import_decisions(decisions, reviewer=reviewer)
    except MediError as exc:
        _fail(exc)
    for file, names in result.files.items():
        out_console.print(f"[bold]{file}[/]")
        for name in names:
            out_console.print(f"  {name}: {result.changes[name]}", highlight=False)
    out_console.print("review the change with `git diff instructions/`, then `medi instructions lint`")


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
    rows: Annotated[int, typer.Option(help="First rows to load and print")] = 5,
    remote: Annotated[bool, typer.Option(help="Download the hub file when no data dir has it")] = True,
) -> None:
    """Scaffold sources/<family>/<name>.yaml and a draft instruction entry, after loading its first rows."""
    from medi.scaffold import SourceRequest, add_source

    try:
        mapping = dict(part.split("=", 1) for part in columns.split(",")) if columns else {}
    except ValueError:
        _fail(MediError(f"--columns {columns!r}: use query=COL,pos=COL[,neg=COL]"))
    request = SourceRequest(
        name=name, adapter=adapter, hub_repo=hub_repo, file=file, revision=revision,
        path=str(path) if path else None, symmetric=symmetric, description=description, licence=licence,
        citation=citation, homepage=homepage, columns=mapping, table_format=table_format,
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
    format: Annotated[str, typer.Option("--format", help="instructor | medi2 | st-triplets | parquet")],
    out: Annotated[Path, typer.Option(help="File (instructor) or folder (the others) to write")],
    batch_size: Annotated[
        int | None, typer.Option(help="instructor: make every task a multiple of this (the trainer's batch size)")
    ] = None,
    batch_policy: Annotated[str, typer.Option(help="trim: leave out each task's last rows; pad: repeat rows")] = "trim",
    seed: Annotated[int, typer.Option(help="Seed for the rows --batch-policy pad repeats")] = 0,
    st_instructions: Annotated[
        str, typer.Option(help="st-triplets: prefix (instruction + text) or prompts (bare texts + prompts file)")
    ] = "prefix",
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier medi export of this format")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Write a release for a trainer: `medi export out/v1 --format instructor --batch-size 32 --out medi-data.json`.

    The release's shards are checked against the manifest's sha256 first.
    """
    from medi.export import export
    from medi.release import open_release

    try:
        report = export(
            open_release(release, verify_checksums=True), format, out, batch_size=batch_size,
            batch_policy=batch_policy, seed=seed, st_instructions=st_instructions, overwrite=overwrite,
        )  # fmt: skip
    except MediError as exc:
        _fail(exc)
    _warn_left_out(report)
    if as_json:
        out_console.print_json(json.dumps(report))
        return
    changed = [t for t in report["tasks"] if t["dropped"] or t["added"]]
    if changed:
        table = Table(title=f"--batch-size {batch_size} --batch-policy {batch_policy}: tasks changed")
        table.add_column("task", overflow="fold", min_width=24)
        for column in ("rows", "written", "dropped", "added (repeats)", "repeats in one batch"):
            table.add_column(column, justify="right")
        for t in changed:
            table.add_row(t["task_name"], str(t["rows"]), str(t["written"]), str(t["dropped"]), str(t["added"]),
                          str(t["in_batch_repeats"]))  # fmt: skip
        out_console.print(table)
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
    from medi.verify import verify_release

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
    from medi.stats import release_stats, stats_table, write_plots

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
    out_console.print(stats_table(stats))
    for path in written:
        out_console.print(f"plot: {path}")


if __name__ == "__main__":
    app()
