"""``medi stats``: what a release holds, per source — rows, text lengths, instructions, mining scores — as a
table, as JSON, and as PNG plots a person can read.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medi.errors import MediError
from medi.release import Release
from medi.tables import TextTable

SIDES = ("query", "pos", "neg")
MARGIN_QUANTILES = (5, 25, 50, 75, 95)  # percentiles of positive - negative score reported per source
TOP_SOURCES = 40  # bar charts name at most this many sources (the largest); the family chart covers the rest


def release_stats(release: Release) -> dict:
    """``{"rows", "sources": {name: {...}}, "families": {...}, "overall": {...}}`` for the release."""
    sources = {task["task_name"]: source_stats(release, task["task_name"]) for task in release.tasks}
    families: Counter[str] = Counter()
    for name, stats in sources.items():
        families[family_of(name)] += stats["rows"]
    table = release.dataset.data.table
    return {
        "release": str(release.folder),
        "rows": release.manifest["rows"],
        "sources": sources,
        "families": dict(families.most_common()),
        "overall": {
            "lengths": {side: _length_summary(_lengths(table, side)) for side in SIDES},
            "scores": _score_summary(table),
        },
        "skipped_sources": sorted(release.manifest.get("skipped_sources", {})),
    }


def source_stats(release: Release, name: str) -> dict:
    table = release.task_table(name)
    summary = release.sources.get(name, {})
    mining = summary.get("mining", {})
    instructions = summary.get("instructions", {})
    return {
        "rows": table.num_rows,
        "rows_read": summary.get("rows_read"),
        "dropped": summary.get("dropped", {}),
        "lengths": {side: _length_summary(_lengths(table, side)) for side in SIDES},
        "instructions": {
            "status": instructions.get("status"),
            "origin": instructions.get("origin"),
            "wordings": {side: len(instructions.get(side, []) or []) for side in ("query", "document")},
            "distinct_in_rows": {side: _distinct(table, side) for side in SIDES},
        },
        "mining": {
            "mode": mining.get("mode"),
            "pos_origin": mining.get("pos_origin", {}),
            "neg_origin": mining.get("neg_origin", {}),
            "fallbacks": mining.get("fallbacks"),
            "mean_pos_score": mining.get("mean_pos_score"),
            "mean_neg_score": mining.get("mean_neg_score"),
            "share_neg_ge_pos": mining.get("share_neg_ge_pos"),
            **_rule_summary(mining),
        },
        "scores": _score_summary(table),
        "margins": _margin_summary(table),
    }


def _rule_summary(mining: dict) -> dict:
    """The candidates each rule removed (count and share of those examined), rows left without a candidate,
    negatives per row and the teacher (releases mined before provenance have none of these: empty)."""
    removed = mining.get("removed") or {}
    examined = mining.get("candidates_examined") or 0
    teacher = mining.get("teacher") or {}
    return {
        "candidates_examined": examined,
        "removed": removed,
        "removed_share": {rule: round(n / examined, 4) if examined else None for rule, n in removed.items()},
        "rows_without_candidate": mining.get("rows_without_candidate"),
        "negatives_per_row": mining.get("negatives_per_row") or {},
        "teacher": teacher.get("name"),
    }


def _margin_summary(table: pa.Table) -> dict:
    """Percentiles of positive - negative score (first negative) over the scored rows."""
    pos, neg = _scores(table)
    margins = pos - neg
    return {
        "scored_rows": len(margins),
        **{f"p{q}": round(float(np.percentile(margins, q)), 4) if len(margins) else None for q in MARGIN_QUANTILES},
    }


def family_of(name: str) -> str:
    return name.split("/", 1)[0] if "/" in name else name


def _texts(table: pa.Table, side: str) -> pa.ChunkedArray:
    return pc.struct_field(table.column(side), "text")


def _lengths(table: pa.Table, side: str) -> np.ndarray:
    """Characters per text (Unicode code points)."""
    return pc.utf8_length(_texts(table, side)).to_numpy(zero_copy_only=False).astype(np.int64)


def _length_summary(lengths: np.ndarray) -> dict:
    if not len(lengths):
        return {"median": None, "p95": None, "max": None, "mean": None}
    return {
        "median": float(np.median(lengths)),
        "p95": float(np.percentile(lengths, 95)),
        "max": int(lengths.max()),
        "mean": round(float(lengths.mean()), 1),
    }


def _distinct(table: pa.Table, side: str) -> int:
    return len(pc.unique(pc.struct_field(table.column(side), "instruction")))


def _scores(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative scores of the rows that have both (given pairs may lack them)."""
    pos = table.column("pos_score").to_numpy(zero_copy_only=False).astype(np.float64)
    neg = table.column("neg_score").to_numpy(zero_copy_only=False).astype(np.float64)
    both = ~(np.isnan(pos) | np.isnan(neg))
    return pos[both], neg[both]


def _score_summary(table: pa.Table) -> dict:
    pos, neg = _scores(table)
    if not len(pos):
        return {"scored_rows": 0, "mean_pos": None, "mean_neg": None, "share_neg_ge_pos": None}
    return {
        "scored_rows": len(pos),
        "mean_pos": round(float(pos.mean()), 4),
        "mean_neg": round(float(neg.mean()), 4),
        "share_neg_ge_pos": round(float((neg >= pos).mean()), 4),
    }


def stats_table(stats: dict) -> TextTable:
    """One line per source: rows, median and p95 characters per side, instructions, mining scores."""
    columns = ["source", "rows", "median chars q/pos/neg", "p95 chars q/pos/neg", "wordings q/d, review",
               "negatives", "mean score pos/neg", "neg ≥ pos", "fallbacks"]  # fmt: skip
    title = f"{stats['release']}: {stats['rows']} rows, {len(stats['sources'])} sources"
    table = TextTable(title, columns, right=frozenset({1, 2, 3, 6, 7, 8}))  # the counts
    for name, s in stats["sources"].items():
        lengths = s["lengths"]
        instructions, mining = s["instructions"], s["mining"]
        share = mining["share_neg_ge_pos"]
        table.add_row(
            name,
            str(s["rows"]),
            " / ".join(_num(lengths[side]["median"]) for side in SIDES),
            " / ".join(_num(lengths[side]["p95"]) for side in SIDES),
            f"{instructions['wordings']['query']}/{instructions['wordings']['document']}, "
            f"{instructions['status'] or '-'}",
            ", ".join(f"{k} {v}" for k, v in mining["neg_origin"].items()) or "-",
            f"{mining['mean_pos_score']:.2f} / {mining['mean_neg_score']:.2f}"
            if mining["mean_pos_score"] is not None
            else "-",
            f"{share:.0%}" if share is not None else "-",
            str(mining["fallbacks"]) if mining["fallbacks"] is not None else "-",
        )
    return table


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


# Plots ------------------------------------------------------------------------------------------------------


def write_plots(release: Release, stats: dict, folder: Path | str) -> list[Path]:
    """PNG plots into ``folder``: rows per source and per family, text lengths, pos vs neg scores."""
    try:
        import matplotlib
    except ImportError as exc:
        raise MediError("--plots needs matplotlib: pip install 'medi[plots]'") from exc
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = release.dataset.data.table
    paths = [
        _rows_per_source(plt, stats, folder / "rows_per_source.png"),
        _rows_per_family(plt, stats, folder / "rows_per_family.png"),
        _length_histograms(plt, table, folder / "text_lengths.png"),
        _score_histograms(plt, table, folder / "scores.png"),
        _scores_per_source(plt, stats, folder / "scores_per_source.png"),
        _margins_per_source(plt, release, stats, folder / "margins_per_source.png"),
        _removed_per_source(plt, stats, folder / "removed_per_source.png"),
    ]
    return paths


def _largest(stats: dict) -> list[tuple[str, dict]]:
    ranked = sorted(stats["sources"].items(), key=lambda item: (-item[1]["rows"], item[0]))
    return ranked[:TOP_SOURCES]


def _tall_figure(plt, bars: int, labels: list[str] = ()):
    """A horizontal chart tall enough to give each source label its own line, wide enough for the longest."""
    longest = max((len(label) for label in labels), default=0)
    return plt.subplots(figsize=(max(11.0, 6.0 + 0.075 * longest), max(3.0, 0.32 * bars + 1.8)), layout="constrained")


def _save(plt, fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _rows_per_source(plt, stats: dict, path: Path) -> Path:
    shown = _largest(stats)
    names = [name for name, _ in shown][::-1]
    rows = [s["rows"] for _, s in shown][::-1]
    fig, ax = _tall_figure(plt, len(shown), names)
    bars = ax.barh(names, rows, color="#4C72B0")
    ax.bar_label(bars, labels=[f"{r:,}" for r in rows], padding=3, fontsize=8)
    total = len(stats["sources"])
    scope = f"the {len(shown)} largest of {total} sources" if total > len(shown) else f"{total} sources"
    ax.set_title(f"Rows per source ({scope}; {stats['rows']:,} rows in all)")
    ax.set_xlabel("rows")
    ax.tick_params(axis="y", labelsize=8)
    ax.margins(x=0.12)
    return _save(plt, fig, path)


def _rows_per_family(plt, stats: dict, path: Path) -> Path:
    families = list(stats["families"].items())[::-1]
    counts = Counter(family_of(name) for name in stats["sources"])
    labels = [f"{name} ({counts[name]} source{'s' if counts[name] != 1 else ''})" for name, _ in families]
    fig, ax = _tall_figure(plt, len(families), labels)
    bars = ax.barh(labels, [rows for _, rows in families], color="#55A868")
    ax.bar_label(bars, labels=[f"{rows:,}" for _, rows in families], padding=3, fontsize=9)
    ax.set_title("Rows per source family")
    ax.set_xlabel("rows")
    ax.margins(x=0.12)
    return _save(plt, fig, path)


def _length_histograms(plt, table: pa.Table, path: Path) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), layout="constrained", sharey=True)
    all_lengths = {side: _lengths(table, side) for side in SIDES}
    longest = max((int(v.max()) for v in all_lengths.values() if len(v)), default=1)
    bins = np.logspace(0, np.log10(max(longest, 10)) + 0.05, 40)
    for ax, side in zip(axes, SIDES, strict=True):
        lengths = np.maximum(all_lengths[side], 1)
        ax.hist(lengths, bins=bins, color="#4C72B0", edgecolor="white", linewidth=0.4)
        ax.set_xscale("log")
        if len(lengths):
            median = float(np.median(lengths))
            ax.axvline(median, color="#C44E52", linestyle="--", label=f"median {median:.0f}")
            ax.legend(loc="upper right", fontsize=9)
        ax.set_title(f"{side} text length")
        ax.set_xlabel("characters (log scale)")
    axes[0].set_ylabel("rows")
    fig.suptitle(f"Text lengths over all {table.num_rows:,} rows")
    return _save(plt, fig, path)


def _score_histograms(plt, table: pa.Table, path: Path) -> Path:
    pos, neg = _scores(table)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
    if len(pos):
        bins = np.linspace(min(pos.min(), neg.min(), 0.0), max(pos.max(), neg.max(), 1.0), 41)
        left.hist(pos, bins=bins, alpha=0.6, color="#55A868", label=f"positive (mean {pos.mean():.2f})")
        left.hist(neg, bins=bins, alpha=0.6, color="#C44E52", label=f"negative (mean {neg.mean():.2f})")
        left.legend(fontsize=9)
        margin = pos - neg
        right.hist(margin, bins=40, color="#8172B2", edgecolor="white", linewidth=0.4)
        right.axvline(0, color="black", linewidth=1)
        right.set_title(f"positive − negative score per row ({(neg >= pos).mean():.0%} of rows at or below 0)")
    else:
        for ax in (left, right):
            ax.text(0.5, 0.5, "no scored rows", ha="center", va="center", transform=ax.transAxes)
    left.set_title(f"Encoder cosine scores of positives and negatives ({len(pos):,} scored rows)")
    left.set_xlabel("cosine similarity to the query")
    left.set_ylabel("rows")
    right.set_xlabel("score margin")
    right.set_ylabel("rows")
    return _save(plt, fig, path)


def _scores_per_source(plt, stats: dict, path: Path) -> Path:
    shown = [(n, s) for n, s in _largest(stats) if s["scores"]["scored_rows"]][::-1]
    labels = [f"{name} ({s['scores']['share_neg_ge_pos']:.0%} neg ≥ pos)" for name, s in shown]
    fig, ax = _tall_figure(plt, len(shown), labels)
    y = np.arange(len(shown))
    pos = [s["scores"]["mean_pos"] for _, s in shown]
    neg = [s["scores"]["mean_neg"] for _, s in shown]
    ax.hlines(y, neg, pos, color="#BBBBBB", linewidth=2)
    ax.scatter(pos, y, color="#55A868", label="mean positive score", zorder=3)
    ax.scatter(neg, y, color="#C44E52", label="mean negative score", zorder=3)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("mean cosine similarity to the query")
    total = len(stats["sources"])
    scope = f"the {len(shown)} largest of {total} sources" if total > len(shown) else f"{len(shown)} sources"
    fig.suptitle(
        f"Mean positive and negative score per source ({scope})\n"
        "in brackets: share of rows whose negative scores at least as high as their positive",
        fontsize=11,
    )
    fig.legend(loc="outside lower center", ncols=2, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return _save(plt, fig, path)


def _margins_per_source(plt, release: Release, stats: dict, path: Path) -> Path:
    """Per source, the distribution of positive − negative score (first negative) as a box plot."""
    shown = [(n, s) for n, s in _largest(stats) if s["margins"]["scored_rows"]][::-1]
    fig, ax = _tall_figure(plt, max(len(shown), 1), [name for name, _ in shown])
    if shown:
        margins = []
        for name, _ in shown:
            pos, neg = _scores(release.task_table(name))
            margins.append(pos - neg)
        ax.boxplot(margins, vert=False, whis=(5, 95), showfliers=False, widths=0.6)
        ax.set_yticks(np.arange(1, len(shown) + 1), [f"{n} ({s['margins']['scored_rows']:,})" for n, s in shown],
                      fontsize=8)  # fmt: skip
        ax.axvline(0, color="#C44E52", linewidth=1)
    else:
        ax.text(0.5, 0.5, "no scored rows", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("positive − negative cosine score (box: quartiles; whiskers: 5th and 95th percentile)")
    ax.set_title("Score margin per source (in brackets: scored rows); left of the red line: negative ≥ positive")
    ax.grid(axis="x", alpha=0.3)
    return _save(plt, fig, path)


def _removed_per_source(plt, stats: dict, path: Path) -> Path:
    """Per source, the share of the mining candidates examined that each rule removed (stacked bars)."""
    shown = [(n, s) for n, s in _largest(stats) if s["mining"]["candidates_examined"]][::-1]
    rules = sorted({rule for _, s in shown for rule, n in s["mining"]["removed"].items() if n})
    labels = [f"{n} ({s['mining']['candidates_examined']:,})" for n, s in shown]
    fig, ax = _tall_figure(plt, max(len(shown), 1), labels)
    if shown and rules:
        left = np.zeros(len(shown))
        colors = plt.get_cmap("tab10")
        for k, rule in enumerate(rules):
            share = np.array([s["mining"]["removed_share"].get(rule) or 0.0 for _, s in shown])
            ax.barh(labels, share, left=left, color=colors(k % 10), label=rule)
            left += share
        ax.set_xlim(0, 1)
        fig.legend(loc="outside lower center", ncols=min(len(rules), 4), fontsize=9)
    else:
        ax.text(0.5, 0.5, "no mining rule removed a candidate (or the release predates the counts)", ha="center",
                va="center", transform=ax.transAxes)  # fmt: skip
    ax.set_xlabel("share of the candidates examined (in brackets: candidates examined)")
    ax.set_title("Candidates removed per rule and source (the rest were chosen, or ranked after the chosen)")
    ax.tick_params(axis="y", labelsize=8)
    return _save(plt, fig, path)
