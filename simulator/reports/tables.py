"""Console tables that never cut what a user must type, and the same tables as JSON or CSV.

rich, which prints servesim's tables, sizes them to the terminal and cuts a cell that does not
fit with an ellipsis; when stdout is not a terminal it assumes 80 columns and cuts there too.
So a model name, a scheduler label or a path could come out as ``llama-3.1-…``. Here:

* ``console()`` is a terminal-sized console on a terminal, and an unbounded one otherwise
  (``NO_WRAP_WIDTH`` columns): piped or redirected output gets every row in full, one line each.
* ``print_table`` folds instead of cutting: every column of the table (and of tables nested in
  it) that would end in an ellipsis wraps onto the next line instead, so no character is lost.
* ``TableData`` is one table as plain values; ``emit`` prints a list of them as rich tables,
  JSON (``{key: [row, ...]}``, numbers as numbers) or CSV (one table; a header row, then rows).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from rich.console import Console
from rich.table import Table

FORMATS = ("table", "json", "csv")
NO_WRAP_WIDTH = 100_000  # columns of a console writing to a file or pipe: wide enough for any row


def console(stderr: bool = False, file: IO[str] | None = None) -> Console:
    """A rich console on stdout (or stderr, or ``file``): terminal-sized on a terminal, else
    ``NO_WRAP_WIDTH`` columns wide so no line is wrapped or cut."""
    stream = file if file is not None else (sys.stderr if stderr else sys.stdout)
    is_tty = bool(getattr(stream, "isatty", lambda: False)())
    if is_tty:
        return Console(file=stream)
    return Console(file=stream, width=NO_WRAP_WIDTH, soft_wrap=False)


MIN_OTHER_WIDTH = 4  # columns a non-key column keeps when the key column is held on one line


def foldable(renderable: Any, width: int | None = None) -> Any:
    """Make ``renderable`` (a rich ``Table``, possibly holding tables in its cells) wrap its cells
    instead of cutting them, and return it (changed in place).

    Columns with ``overflow="ellipsis"`` (rich's default) or ``"crop"`` fold onto the next line.
    The first column holds what a user types (a name, an operator, a series): when ``width``
    leaves every other column ``MIN_OTHER_WIDTH`` characters, it is held on one line (rich would
    fold the widest column first, which is usually the name); narrower still, it folds too, so
    no character is ever lost.
    """
    if not isinstance(renderable, Table):
        return renderable
    columns = renderable.columns
    for column in columns:
        if column.overflow in ("ellipsis", "crop"):
            column.overflow = "fold"
        for cell in column.cells:
            foldable(cell, width)
    if columns and width is not None:
        key = columns[0]
        longest = max((len(_plain_text(cell)) for cell in key.cells), default=0)
        borders = 3 * len(columns) + 1
        if longest + (len(columns) - 1) * MIN_OTHER_WIDTH + borders <= width:
            key.no_wrap, key.min_width = True, max(key.min_width or 0, longest)
        else:
            key.no_wrap = False
    return renderable


def _plain_text(cell: Any) -> str:
    """A cell's longest line as plain text (a str, a rich ``Text``; other renderables count as empty)."""
    text = getattr(cell, "plain", cell) if not isinstance(cell, str) else cell
    return max(str(text).splitlines() or [""], key=len) if isinstance(text, str) else ""


def print_table(renderable: Any, out: Console | None = None) -> None:
    """Print a rich table (or any renderable) so that no cell is cut (``foldable``, ``console``)."""
    out = out or console()
    out.print(foldable(renderable, out.width))


@dataclass(frozen=True)
class Column:
    """One column: its heading, the JSON/CSV key, alignment, and how a value shows in a table."""

    name: str
    key: str = ""
    justify: str = "left"
    show: Callable[[Any], str] | None = None  # default: str(value), "-" for None

    def text(self, value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return self.show(value) if self.show is not None else str(value)

    @property
    def field_name(self) -> str:
        return self.key or self.name


@dataclass
class TableData:
    """One table as plain values: ``rows`` of raw values (numbers stay numbers), one per column.

    Attributes:
        key: the table's name in JSON output and on the command line (``models``, ``gpus``).
        title: the heading of the printed table.
        columns: the columns, in order.
        rows: one sequence of values per row, ``len(columns)`` each.
        caption: a note printed under the table (tables only).
    """

    key: str
    title: str
    columns: list[Column]
    rows: list[Sequence[Any]] = field(default_factory=list)
    caption: str | None = None

    def rich(self) -> Table:
        """The table as a rich ``Table`` whose cells wrap rather than being cut."""
        table = Table(title=self.title, caption=self.caption, header_style="bold")
        for col in self.columns:
            table.add_column(col.name, justify=col.justify, overflow="fold")  # type: ignore[arg-type]
        for row in self.rows:
            table.add_row(*(col.text(v) for col, v in zip(self.columns, row)))
        return table

    def records(self) -> list[dict[str, Any]]:
        """The rows as dicts by column key, values as given (JSON's numbers, strings, null)."""
        return [{col.field_name: _plain(v) for col, v in zip(self.columns, row)} for row in self.rows]


def frame_table(key: str, title: str, frame: Any) -> TableData:
    """A pandas DataFrame as a ``TableData``: one column per frame column (its name as heading and
    key, numbers right-aligned), one row per frame row, values as stored."""
    columns = [Column(str(c), justify="right" if frame[c].dtype.kind in "fiu" else "left") for c in frame.columns]
    return TableData(key, title, columns, [list(row) for row in frame.itertuples(index=False)])


def _plain(value: Any) -> Any:
    """A value JSON can hold: numpy scalars as Python numbers, NaN as None, others as given."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def emit(tables: Sequence[TableData], fmt: str, out: IO[str] | None = None, notes: Sequence[str] = ()) -> None:
    """Print ``tables`` in ``fmt``: ``table`` (rich tables, then ``notes`` lines), ``json`` (one
    object, ``{key: [records]}``) or ``csv`` (exactly one table: a header row of keys, then rows).

    Raises:
        ValueError: an unknown format, or ``csv`` with other than one table (the caller says
            which table to pick).
    """
    stream = out if out is not None else sys.stdout
    if fmt == "table":
        con = console(file=stream)
        for table in tables:
            print_table(table.rich(), con)
        for note in notes:
            con.print(note, highlight=False, markup=False)
    elif fmt == "json":
        json.dump({t.key: t.records() for t in tables}, stream, indent=2)
        stream.write("\n")
    elif fmt == "csv":
        if len(tables) != 1:
            raise ValueError(f"csv prints one table; pick one of {', '.join(t.key for t in tables)}")
        table = tables[0]
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow([c.field_name for c in table.columns])
        for record in table.records():
            writer.writerow(["" if v is None else v for v in record.values()])
    else:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
