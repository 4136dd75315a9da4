"""The ``medi`` command: a thin typer layer over the library (``medi.build`` and friends)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from medi.build import BuildOptions, ReleaseConfig, build
from medi.catalog import Catalog
from medi.encode import cache_info, default_cache_dir, prune_cache
from medi.errors import MediError
from medi.fetch import find_in_mirrors

app = typer.Typer(help="Build MEDI-style instruction-embedding training data.", no_args_is_help=True)
out_console = Console()
err_console = Console(stderr=True)

DataDirs = Annotated[
    list[Path] | None,
    typer.Option("--data-dir", help="Local mirror folder laid out like upstream (repeatable); see sources/README.md"),
]


def _fail(exc: MediError) -> None:
    err_console.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
    raise typer.Exit(1)


@app.command("build")
def build_command(
    sources: Annotated[
        str | None, typer.Option(help="all, a set (demo), a family (superni) or comma-separated names")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Release folder to write (replaced when the build succeeds)")] = None,
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
    max_chars: Annotated[int, typer.Option(help="Texts longer than this are cut")] = 8000,
    cache_dir: Annotated[Path | None, typer.Option(help="Embedding cache, downloads (~/.cache/medi)")] = None,
) -> None:
    """Build a release: e.g. `medi build --sources demo --out out/demo` or `--config manifests/demo/build.yaml`.

    With --config, the file's options are used and command-line build options are ignored.
    """
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
            max_chars=max_chars,
        )
    except ValueError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    try:
        if config:
            release = ReleaseConfig.load(config)
            sources, options = sources or release.sources, release.options
            out = out or (Path(release.out) if release.out else None)
            data_dir = data_dir or [Path(d) for d in release.data_dirs]
        if not sources or not out:
            raise MediError("give --sources and --out, or a --config that names them")
        manifest = build(sources, out, data_dir, options, cache_dir=cache_dir, console=err_console)
    except MediError as exc:
        _fail(exc)
    out_console.print(summary_table(manifest))
    if manifest["skipped_sources"]:
        for name, why in manifest["skipped_sources"].items():
            err_console.print(f"[yellow]skipped[/] {name}: {why['message']}", highlight=False)
    if manifest["absent_sources"]["count"]:
        err_console.print(
            f"{manifest['absent_sources']['count']} catalog sources are not in the data dirs "
            f"(listed in {out / 'manifest.json'} under absent_sources)"
        )


def summary_table(manifest: dict) -> Table:
    table = Table(title=f"release: {manifest['rows']} rows, {len(manifest['shards'])} shard(s)")
    for column in ("source", "read", "kept", "dropped (why)", "negatives", "pos / neg score"):
        table.add_column(column, overflow="fold")
    for name, s in manifest["sources"].items():
        dropped = ", ".join(f"{k} {v}" for k, v in s["dropped"].items()) or "-"
        mining = s["mining"]
        negatives = ", ".join(f"{k} {v}" for k, v in mining["neg_origin"].items()) or "-"
        scores = f"{mining['mean_pos_score']} / {mining['mean_neg_score']}" if mining["kept"] else "-"
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
        out_console.print_json(json.dumps(rows))
        return
    table = Table(title=f"{len(rows)} sources" + (f" ({', '.join(map(str, dirs))})" if dirs else ""))
    for column in ("name", "adapter", "licence", "status", "rev"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row.values())
    out_console.print(table)
    for set_name, source_set in catalog.sets.items():
        out_console.print(f"set [bold]{set_name}[/]: {len(source_set.sources)} sources, data dir {source_set.data_dir}")


cache_app = typer.Typer(help="The embedding cache (~/.cache/medi/embeddings, or --cache-dir).", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
CacheDir = Annotated[Path | None, typer.Option(help="Cache folder (default ~/.cache/medi or $MEDI_CACHE)")]


@cache_app.command("info")
def cache_info_command(cache_dir: CacheDir = None) -> None:
    """Show each encoder's cached embeddings: `medi cache info`."""
    table = Table(title=f"embedding cache {cache_dir or default_cache_dir()}")
    for column in ("encoder key", "chunks", "vectors", "distinct texts", "MiB"):
        table.add_column(column)
    for info in cache_info(cache_dir):
        mib = f"{info['bytes'] / 2**20:.1f}"
        table.add_row(info["encoder_key"], str(info["chunks"]), str(info["vectors"]), str(info["distinct_texts"]), mib)
    out_console.print(table)


@cache_app.command("prune")
def cache_prune_command(
    cache_dir: CacheDir = None,
    keep: Annotated[list[str] | None, typer.Option(help="Encoder keys to keep; others are deleted")] = None,
) -> None:
    """Merge chunks and drop duplicates (and other encoders' folders with --keep): `medi cache prune`."""
    out_console.print_json(json.dumps(prune_cache(cache_dir, keep)))


if __name__ == "__main__":
    app()
