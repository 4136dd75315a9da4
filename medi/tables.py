"""Tables the commands print (build summary, stats, export): whole cells at any width, piped or on a terminal.

On a terminal wide enough for every cell, a rich table; on a narrower one, each row as its name on a line and its
other cells below it, wrapped at spaces; when not on a terminal (piped, redirected), plain aligned lines that
``grep``/``awk`` can read and that nothing wraps. A cell is never cut or folded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

UNBOUNDED = 1_000_000
INDENT = "  "  # before a stacked row's cells


@dataclass
class TextTable:
    """A title, column headers and rows of text cells; the first column names the row (a source, a task)."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    right: frozenset[int] = frozenset()  # columns aligned right (counts)

    def add_row(self, *cells: str) -> None:
        self.rows.append(list(cells))


def show(console: Console, table: TextTable) -> None:
    """Print ``table`` the way ``console`` can show it whole (see the module docstring)."""
    if not console.is_terminal:
        console.print(aligned_lines(table), markup=False, highlight=False, soft_wrap=True, crop=False)
        return
    boxed = _rich_table(table)
    unbounded = console.options.update_width(UNBOUNDED)  # Measurement.get clamps to the width it is given
    if Measurement.get(console, unbounded, boxed).maximum <= console.width:
        console.print(boxed)
    else:
        _print_stacked(console, table)


def aligned_lines(table: TextTable) -> str:
    """The title, then one line per row, columns two spaces apart (the last one unpadded)."""
    lines = [[_flat(c) for c in table.columns], *table.rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(table.columns))]
    last = len(widths) - 1

    def cell(i: int, text: str) -> str:
        if i in table.right:
            return text.rjust(widths[i])
        return text if i == last else text.ljust(widths[i])

    body = ("  ".join(cell(i, text) for i, text in enumerate(line)).rstrip() for line in lines)
    return "\n".join([table.title, *body])


def _rich_table(table: TextTable) -> Table:
    boxed = Table(title=table.title)
    for i, column in enumerate(table.columns):
        boxed.add_column(column, no_wrap=True, justify="right" if i in table.right else "left")
    for row in table.rows:
        boxed.add_row(*row)
    return boxed


def _print_stacked(console: Console, table: TextTable) -> None:
    """Each row's name on a line of its own, then its other cells (header and value) packed into indented lines,
    broken between cells only (a cell wider than the terminal alone is wrapped)."""
    console.print(table.title, markup=False, highlight=False)
    headers = [_flat(c) for c in table.columns]
    for row in table.rows:
        console.print(Text(row[0], style="bold"), soft_wrap=True)
        cells = [f"{header} {cell}" for header, cell in zip(headers[1:], row[1:], strict=True)]
        for line in _packed(cells, console.width - len(INDENT)):
            console.print(Padding(Text(line), (0, 0, 0, len(INDENT))), highlight=False)


def _packed(cells: list[str], width: int) -> list[str]:
    """``cells`` joined by "; " into lines of at most ``width`` columns where they fit."""
    lines = [cells[0]] if cells else []
    for cell in cells[1:]:
        if cell_len(lines[-1]) + 2 + cell_len(cell) <= width:
            lines[-1] += "; " + cell
        else:
            lines[-1] += ";"
            lines.append(cell)
    return lines


def _flat(header: str) -> str:
    return " ".join(header.split())
